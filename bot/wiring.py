"""Wiring in one place: settings loaded once, then the database, the clock and the calendar built
from them and passed to whoever needs them. No module-level state."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import select

from bot.reports import FileReports
from handlers.engine import Assistant
from storage.centre import Centre
from storage.clock import Clock, SystemClock
from storage.db import Database, resolve_url
from storage.identity import IdHasher
from storage.models import CalendarOverride
from storage.settings import Settings
from storage.workdays import WorkCalendar


@dataclass
class App:
    settings: Settings
    database: Database
    centre: Centre
    clock: Clock = field(default_factory=SystemClock)

    async def close(self) -> None:
        await self.database.dispose()


def open_database(settings: Settings) -> Database:
    return Database(resolve_url(settings.database.url, settings.base_dir),
                    echo=settings.database.echo, pool_size=settings.database.pool_size,
                    busy_timeout_ms=settings.database.sqlite_busy_timeout_ms)


def build_calendar(settings: Settings,
                   overrides: dict[dt.date, tuple[bool, str]] | None = None) -> WorkCalendar:
    return WorkCalendar(closed=settings.calendar.closed_dates,
                        extra_working=settings.calendar.extra_working_dates, overrides=overrides)


async def load_calendar(settings: Settings, database: Database) -> WorkCalendar:
    """The calendar with the centre's date overrides from the database applied."""
    async with database.read() as session:
        rows = (await session.scalars(select(CalendarOverride))).all()
    return build_calendar(settings, {r.day: (r.working, r.note) for r in rows})


def build_centre(settings: Settings, calendar: WorkCalendar) -> Centre:
    """The calendar, zone, rules and ID-hash key every booking operation needs."""
    return Centre(calendar=calendar, tz=settings.general.timezone, rules=settings.rules,
                  hasher=IdHasher.from_settings(settings.privacy.id_hash_key,
                                                settings.path(settings.general.data_dir)),
                  notifications=settings.notifications, accounts=settings.accounts,
                  cases=settings.cases, sms=settings.sms)


async def build_app(settings: Settings, clock: Clock | None = None) -> App:
    """Everything the product needs, built once from the settings."""
    return App(settings=settings, database=open_database(settings),
               centre=build_centre(settings, build_calendar(settings)),
               clock=clock or SystemClock())


def staff_channels(settings: Settings) -> list[str]:
    """The channels where staff can see and answer hand-offs, as configured (the WeCom group
    robot only tells: it is an extra sink for alerts, not one of these)."""
    channels = []
    if settings.telegram.token and settings.telegram.staff_chat_id:
        channels.append("telegram staff group")
    if settings.wecom.app_enabled:
        channels.append("WeCom app")
    return channels


def citizen_channels(settings: Settings) -> list[str]:
    """The chat channels citizens reach the assistant on, as configured."""
    return [name for name, on in (("telegram", bool(settings.telegram.token)),
                                  ("wechat", bool(settings.wechat.token))) if on]


def build_assistant(app: App) -> Assistant:
    """The conversation engine every channel feeds."""
    return Assistant(database=app.database, centre=app.centre, clock=app.clock, settings=app.settings,
                     reports=FileReports())
