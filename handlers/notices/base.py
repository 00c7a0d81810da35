"""What every notice is made from: the outbox row and what it refers to, looked up once
(``Note``), and what comes out of it (``Rendered``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from handlers.context import global_option
from handlers.core import Choice, Reply
from handlers.i18n import format_when, translate
from handlers.payloads import Payload
from storage.catalog import ServiceDef
from storage.centre import Centre
from storage.db import Session
from storage.feedback import LEVELS
from storage.models import Appointment, Outbox
from storage.settings import Settings


@dataclass
class Rendered:
    """What to send, the values a template message needs, or why not to send at all."""

    replies: list[Reply] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)
    drop: str | None = None


@dataclass(frozen=True)
class ForWhom:
    """Who a booking is for, named the same way in a chat notice (``text``, "您为父母 李*华
    预约的：") and a template message (``person``, "父母 李*华"); both empty for the account's
    own booking (本人)."""

    text: str = ""
    person: str = ""


@dataclass
class Note:
    """Everything a renderer may need, looked up once."""

    session: Session
    centre: Centre
    settings: Settings
    now: dt.datetime
    row: Outbox
    locale: str
    appointment: Appointment | None = None
    service: ServiceDef | None = None
    # Who the appointment is for when the account booked for someone else (empty for the
    # account's own, 本人); see ``handlers.notices.accounts.for_whom``.
    booked_for: ForWhom = field(default_factory=ForWhom)

    @property
    def for_whom(self) -> str:
        """The chat notice's "您为父母 李*华 预约的：" ("" for the account's own booking)."""
        return self.booked_for.text

    def t(self, key: str, **values: object) -> str:
        return translate(self.locale, key, **values)

    def when(self, instant: dt.datetime) -> str:
        return format_when(instant.astimezone(self.centre.tz), self.locale,
                           self.now.astimezone(self.centre.tz).date())

    def fields(self) -> dict[str, str]:
        """Template values: service, when (and ``starts_at``, the instant, for a template's
        time keyword), place, code, the reason a notice gives (a closure's), the appointment's
        id (which WeChat subscription consent to use), and whom it is for: ``person`` ("父母
        李*华", or "本人" for the account's own) and, for someone else's only, ``service_for``
        (the service named with the person, for a template with no keyword for the person)."""
        if self.appointment is None or self.service is None:
            return {}
        reason = str(self.row.payload.get("reason") or "")
        service = self.service.name.get(self.locale)
        person = self.booked_for.person
        whom = ({"person": person, "service_for": self.t("people.template_service",
                                                          person=person, service=service)}
                if person else {"person": self.t("people.relation_self")})
        return {"service": service,
                "when": self.when(self.appointment.starts_at),
                "starts_at": self.appointment.starts_at.isoformat(),
                "place": self.service.place.get(self.locale), "code": self.appointment.code,
                "appointment": str(self.appointment.id), **({"reason": reason} if reason else {}),
                **whom}


Renderer = Callable[[Note], Awaitable[Rendered]]



def rating_buttons(note: Note, payload: Callable[[int], Payload]) -> tuple[tuple[Choice, ...], ...]:
    """The five levels of the 好差评 scale, 非常满意 first, one button a row, each working
    outside any flow (they come in a notification)."""
    return tuple((global_option(note.t(f"rating.level_{level}"), payload(level)),) for level in LEVELS)
