"""Small builders shared by the tests: a centre, the demo catalog, people and chat accounts."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import itertools
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.telegram import TelegramChannel, build_telegram
from bot.telegram.limiter import RateLimiter
from bot.wiring import App
from handlers.engine import Assistant
from storage.catalog import Catalog, load_catalog, read_catalog
from storage.centre import Centre
from storage.identity import (
    IdHasher,
    PersonDetails,
    find_or_create_person,
    id_check_digit,
    identity_for,
)
from storage.models import (
    AccountPerson,
    ChannelIdentity,
    LinkMethod,
    Person,
    Relation,
    Service,
    Slot,
)
from storage.settings import NotificationSettings, RuleSettings
from storage.slots import ensure_slots
from storage.workdays import WorkCalendar
from tests.fakes.telegram_api import FakeTelegram
from tests.fakes.wechat_api import APP_ID, APP_SECRET, SAMPLE_AES_KEY, SAMPLE_TOKEN

ROOT = Path(__file__).resolve().parent.parent


def examples(whole: int, *, on_postgres: int) -> int:
    """How many generated examples a property test or a fuzz corpus tries: ``whole`` on SQLite,
    ``on_postgres`` on PostgreSQL. scripts/test.sh runs such a test on both databases: the SQLite
    pass searches the rules with the whole number, and a share of it is enough to run every query
    of the test on PostgreSQL as well (the examples given with @example run on both)."""
    return on_postgres if os.environ.get("YUYUE_TEST_DATABASE_URL") else whole
TZ = ZoneInfo("Asia/Shanghai")


def valid_id(prefix17: str = "11010519491231002") -> str:
    return prefix17 + id_check_digit(prefix17)


def make_centre(calendar: WorkCalendar | None = None, **rules: Any) -> Centre:
    base = RuleSettings()
    return Centre(calendar=calendar or WorkCalendar(), tz=TZ,
                  rules=dataclasses.replace(base, **rules),
                  hasher=IdHasher(b"test-key-0123456789abcdef"),
                  notifications=NotificationSettings())


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=TZ)


@functools.cache
def demo_catalog() -> Catalog:
    """The demo catalog, read and checked once per run (it is immutable)."""
    return read_catalog(ROOT / "catalog" / "demo.toml")


async def load_demo(session: AsyncSession, now: dt.datetime, *,
                    resources: bool = True) -> dict[str, Service]:
    """The demo catalog; without its doctors (``resources=False``) every service has the
    plain slots of its opening hours."""
    catalog = demo_catalog()
    if not resources:
        catalog = dataclasses.replace(catalog, resources=())
    await load_catalog(session, catalog, now)
    return {s.code: s for s in (await session.scalars(select(Service))).all()}


async def person(session: AsyncSession, centre: Centre, now: dt.datetime, *, name: str = "张三",
                 mobile: str = "13812345678", id_number: str | None = None) -> Person:
    details = PersonDetails(name, mobile, id_number or valid_id())
    return await find_or_create_person(session, details, centre.hasher, now)


async def account(session: AsyncSession, now: dt.datetime, user: str = "1",
                  channel: str = "telegram", person_id: int | None = None) -> ChannelIdentity:
    identity = await identity_for(session, channel, user, "zh-CN", now)
    if person_id is not None:  # a binding from before accounts held people, as 0003 carried it
        identity.person_id = person_id
        await session.flush()
        if await session.scalar(select(AccountPerson.id).where(
                AccountPerson.identity_id == identity.id, AccountPerson.person_id == person_id)) is None:
            session.add(AccountPerson(identity_id=identity.id, person_id=person_id,
                                      relation=Relation.SELF, method=LinkMethod.MIGRATED,
                                      created_at=now))
    await session.flush()
    return identity


async def slots_of(session: AsyncSession, centre: Centre, service: Service, now: dt.datetime,
                   day: dt.date | None = None) -> list[Slot]:
    await ensure_slots(session, centre, service, now)
    query = select(Slot).where(Slot.service_id == service.id).order_by(Slot.starts_at)
    if day is not None:
        query = query.where(Slot.local_date == day)
    return list((await session.scalars(query)).all())


@contextlib.asynccontextmanager
async def running_telegram(app: App, limiter: RateLimiter,
                           assistant: Assistant | None = None) -> AsyncIterator[TelegramChannel]:
    """A started Telegram channel for ``app`` (closed on leaving); the conversation is
    ``assistant``, by default the engine over ``app``."""
    assistant = assistant or Assistant(database=app.database, centre=app.centre, clock=app.clock,
                                       settings=app.settings)
    channel = build_telegram(app, assistant, limiter=limiter)
    await channel.start()
    try:
        yield channel
    finally:
        await channel.close()


_telegram_update_ids = itertools.count(800001)


async def feed(channel: TelegramChannel, update: dict[str, Any]) -> None:
    """One update from the fake Bot API into ``channel``, with an update id of its own."""
    update.setdefault("update_id", next(_telegram_update_ids))
    await channel.process_json(update)


def texts(api: FakeTelegram, chat: int) -> list[str]:
    """The texts the bot sent to ``chat``, oldest first."""
    return [m.get("text", "") for m in api.chat_messages(chat)]


def wechat_toml(api_url: str) -> str:
    """The ``[wechat]`` settings of a process test: the fake account, in safe mode with WeChat's
    sample Token and EncodingAESKey, calling the fake API at ``api_url``."""
    return f"""[wechat]
app_id = "{APP_ID}"
app_secret = "{APP_SECRET}"
token = "{SAMPLE_TOKEN}"
encoding_aes_key = "{SAMPLE_AES_KEY}"
api_base_url = "{api_url}"
"""
