"""What the staff-side tests share: settings with a staff group and supervisors, a staff member
talking to the engine from the group, and a sender that records what the dispatcher gave it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import select

from bot.channels import Sender
from bot.dispatch import Dispatcher
from handlers.core import Incoming, Reply
from handlers.engine import Assistant
from storage import booking
from storage.models import Appointment, Channel, Service
from storage.settings import AccessSettings, Settings
from tests.helpers import account, person, slots_of

STAFF_GROUP = -1001987654321
OTHER_GROUP = -1001000000042
STAFF_A, STAFF_B, STAFF_PRIVATE = 6200000001, 6200000002, 6200000009
SUPERVISOR = 6400000001
_message_ids = itertools.count(1)


def staff_settings(base: Settings | None = None, **telegram: object) -> Settings:
    base = base or Settings()
    return dataclasses.replace(
        base, telegram=dataclasses.replace(base.telegram, staff_chat_id=STAFF_GROUP, **telegram),
        access=AccessSettings(staff=(f"telegram:{STAFF_PRIVATE}",),
                              supervisors=(f"telegram:{SUPERVISOR}",)))


def staff_dispatcher(assistant: Assistant, settings: Settings, group: Sender,
                     **senders: Sender) -> Dispatcher:
    """A dispatcher over ``assistant``'s database whose staff messages go to ``group`` and the
    citizens' to ``senders`` (by channel)."""
    return Dispatcher(database=assistant.database, centre=assistant.centre, settings=settings,
                      clock=assistant.clock, senders=senders, staff_senders=[group])


async def book_telegram(assistant: Assistant, service: str, day: dt.date, index: int, *,
                        user: str, name: str, mobile: str, id_number: str) -> Appointment:
    """A booking made before the test starts (from the window's seats, so today works too)."""
    async with assistant.database.session() as session:
        services = {s.code: s for s in (await session.scalars(select(Service))).all()}
        now = assistant.clock.now()
        slot = (await slots_of(session, assistant.centre, services[service], now, day))[index]
        citizen = await person(session, assistant.centre, now, name=name, mobile=mobile,
                               id_number=id_number)
        identity = await account(session, now, user=user, person_id=citizen.id)
        return await booking.book(session, assistant.centre, now, person_id=citizen.id,
                                  slot_id=slot.id, identity_id=identity.id,
                                  channel=Channel.TELEGRAM, made_by=f"telegram:{user}",
                                  offline=True, confirm=False)


class Staff:
    """A staff member writing to the bot from the staff group (or a private chat)."""

    def __init__(self, assistant: Assistant, user_id: int, name: str, *,
                 chat: int = STAFF_GROUP, locale: str = "zh-hans") -> None:
        self.assistant, self.user_id, self.name, self.chat = assistant, user_id, name, chat
        self.locale = locale
        self.last: list[Reply] = []

    async def send(self, **fields: object) -> list[Reply]:
        incoming = Incoming(channel="telegram", user_id=str(self.user_id), chat_id=str(self.chat),
                            is_group=self.chat < 0, user_name=self.name, locale=self.locale,
                            message_id=f"m{self.chat}:{next(_message_ids)}",
                            **fields)  # type: ignore[arg-type]
        self.last = await self.assistant.handle(incoming)
        return self.last

    async def command(self, name: str, args: str = "") -> str:
        await self.send(command=name, args=args, text=f"/{name} {args}")
        return self.text

    async def say(self, text: str) -> str:
        await self.send(text=text)
        return self.text

    async def press(self, token: str) -> str:
        await self.send(choice=token)
        return self.text

    async def press_label(self, label: str) -> str:
        for reply in self.last:
            for choice in reply.flat_choices:
                if label in choice.label:
                    return await self.press(choice.token)
        raise AssertionError(f"no button {label!r} in {self.text}")

    @property
    def text(self) -> str:
        return "\n".join(r.text for r in self.last)

    @property
    def labels(self) -> list[str]:
        return [c.label for r in self.last for c in r.flat_choices]


@dataclass
class Delivery:
    chat_id: str
    kind: str
    replies: list[Reply]

    @property
    def text(self) -> str:
        return "\n".join(r.text for r in self.replies)

    @property
    def tokens(self) -> list[str]:
        return [c.token for r in self.replies for c in r.flat_choices]


@dataclass
class Recorder:
    """A ``bot.channels.Sender`` that keeps what it was asked to deliver."""

    channel: str
    sent: list[Delivery] = field(default_factory=list)

    async def deliver(self, chat_id: str, replies: list[Reply], *, kind: str = "message",
                      fields: Mapping[str, str] | None = None) -> None:
        self.sent.append(Delivery(chat_id, kind, list(replies)))

    def of_kind(self, kind: str) -> list[Delivery]:
        return [d for d in self.sent if d.kind == kind]

    def take(self) -> list[Delivery]:
        taken, self.sent = self.sent, []
        return taken
