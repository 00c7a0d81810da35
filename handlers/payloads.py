"""What a choice means, typed: the payloads behind buttons and numbered menu entries.

A payload is a small frozen dataclass with a prefix, written as ``prefix:field:field``
(``Day(2026-11-24)`` is ``"day:2026-11-24"``) and read back with ``read``, which gives None for
anything that is not exactly such a payload: a forged button, a digit that is not ASCII, a
number too big for a row id, a date that does not exist. Steps never slice strings.

Most payloads stay in the conversation state (the menu remembers what each number or token
meant). The ``global`` ones travel on the wire inside notifications (``g:cancel:ABC234``), so an
encoded payload with its ``g:`` prefix must fit Telegram's 64 bytes of callback data.
A button with nothing to carry is a ``Button``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import typing
from typing import Any, ClassVar, Self

from handlers.core import as_id
from storage.models import CaseKind, Relation, WaitKind

WIRE_LIMIT = 64         # bytes of Telegram callback data
SEPARATOR = ":"


class Button(enum.StrEnum):
    """A button that carries nothing but itself."""

    ADD_PERSON = "addp"
    AGE = "age"
    AGREE = "agree"
    BACK = "back"
    BOOK = "book"
    CANCEL = "cancel"
    CHANGE = "change"
    CONFIRM = "confirm"
    DISABILITY = "disability"
    DISAGREE = "disagree"
    ERASE = "erase"
    HOME_VISIT = "home"
    JOIN = "join"
    LINK = "link"
    LINK_ATTACH = "attach"
    LINK_CODE = "lcode"
    LINK_SHOW = "lshow"
    LINK_SMS = "lsms"
    MORE = "more"
    MY_DATA = "mydata"
    NO = "no"
    OTHER_TIME = "time"
    PEOPLE = "people"
    READY = "ready"
    REMOVE = "remove"
    RESCHEDULE = "resched"
    SKIP = "skip"
    SMS_BY_ID = "smsid"
    STOP = "stop"
    USE_SAVED = "use"
    YES = "yes"


_PREFIXES: dict[str, str] = {}


class Payload:
    """A choice with values. Subclasses are frozen dataclasses declared with their prefix:
    ``class Day(Payload, prefix="day")``; their fields are ``int`` (a row id: 1-9 ASCII
    digits), ``str`` (not empty, no separator), ``datetime.date`` or a ``StrEnum``."""

    prefix: ClassVar[str]
    _types: ClassVar[dict[str, Any]]

    def __init_subclass__(cls, *, prefix: str, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Two kinds on one prefix would both read the same button: refused at import.
        if (taken := _PREFIXES.setdefault(prefix, cls.__qualname__)) != cls.__qualname__:
            raise TypeError(f"payload prefix {prefix!r} of {cls.__qualname__} is {taken}'s")
        cls.prefix = prefix
        cls._types = typing.get_type_hints(cls)

    def encode(self) -> str:
        values = [_write(getattr(self, f.name)) for f in dataclasses.fields(self)]  # type: ignore[arg-type]
        return SEPARATOR.join([self.prefix, *values])

    @classmethod
    def read(cls, text: str | None) -> Self | None:
        """The payload ``text`` encodes, or None when it is not one of this kind."""
        if not text:
            return None
        prefix, *values = text.split(SEPARATOR)
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        if prefix != cls.prefix or len(values) != len(fields):
            return None
        parsed = [_parse(cls._types[f.name], value) for f, value in zip(fields, values, strict=True)]
        if any(value is None for value in parsed):
            return None
        return cls(*parsed)


def pressed(value: str | None) -> Button | None:
    """The button ``value`` is, or None."""
    try:
        return Button(value) if value else None
    except ValueError:
        return None


def prefix_of(text: str) -> str:
    """The prefix a payload's text starts with (which kind of payload it claims to be)."""
    return text.partition(SEPARATOR)[0]


def _write(value: object) -> str:
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _parse(kind: Any, text: str) -> object | None:
    if kind is int:
        return as_id(text)
    if kind is str:
        return text if text else None
    if kind is dt.date:
        try:
            return dt.date.fromisoformat(text) if text.isascii() and len(text) == 10 else None
        except ValueError:
            return None
    if isinstance(kind, type) and issubclass(kind, enum.StrEnum):
        try:
            return kind(text)
        except ValueError:
            return None
    raise TypeError(f"a payload field cannot be a {kind!r}")


# --- in a conversation --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Main(Payload, prefix="main"):
    """An entry of the main menu, which works as its command ("book", "my", "menu"...)."""

    command: str


@dataclasses.dataclass(frozen=True)
class Language(Payload, prefix="lang"):
    code: str


@dataclasses.dataclass(frozen=True)
class DepartmentPick(Payload, prefix="dep"):
    department: int


@dataclasses.dataclass(frozen=True)
class ServicePick(Payload, prefix="svc"):
    service: int


@dataclasses.dataclass(frozen=True)
class DayPick(Payload, prefix="day"):
    day: dt.date


@dataclasses.dataclass(frozen=True)
class WaitForDay(Payload, prefix="waitday"):
    """A full day (wait for a seat) or one not released yet (wait for the release)."""

    kind: WaitKind
    day: dt.date


@dataclasses.dataclass(frozen=True)
class SlotPick(Payload, prefix="slot"):
    slot: int


@dataclasses.dataclass(frozen=True)
class HalfDay(Payload, prefix="half"):
    """上午 or 下午 of the day's time slots, when they are too many for one list."""

    part: str     # "am" or "pm"


@dataclasses.dataclass(frozen=True)
class WeekPick(Payload, prefix="week"):
    """A week of dates (长辈 mode shows weeks first); the day is its first date shown."""

    day: dt.date


@dataclasses.dataclass(frozen=True)
class WaitForSlot(Payload, prefix="wait"):
    slot: int


@dataclasses.dataclass(frozen=True)
class AppointmentPick(Payload, prefix="appt"):
    appointment: int


@dataclasses.dataclass(frozen=True)
class LeaveWaitlist(Payload, prefix="leave"):
    entry: int


# --- the account's people and links (handlers/people.py) ------------------------------------


@dataclasses.dataclass(frozen=True)
class PersonPick(Payload, prefix="pers"):
    person: int


@dataclasses.dataclass(frozen=True)
class RelationPick(Payload, prefix="rel"):
    relation: Relation


@dataclasses.dataclass(frozen=True)
class Unlink(Payload, prefix="unlink"):
    account: int


# --- on the wire: buttons in notifications that work outside any flow ---------------------------


@dataclasses.dataclass(frozen=True)
class CancelBooking(Payload, prefix="cancel"):
    code: str


@dataclasses.dataclass(frozen=True)
class RescheduleBooking(Payload, prefix="resched"):
    code: str


@dataclasses.dataclass(frozen=True)
class Rate(Payload, prefix="rate"):
    appointment: int
    level: int


@dataclasses.dataclass(frozen=True)
class Rebook(Payload, prefix="rebook"):
    service: int


@dataclasses.dataclass(frozen=True)
class BookAgain(Payload, prefix="bookagain"):
    """Start a booking from a notice (a lifted block)."""


@dataclasses.dataclass(frozen=True)
class TakeOffer(Payload, prefix="offer"):
    slot: int


@dataclasses.dataclass(frozen=True)
class Talk(Payload, prefix="talk"):
    """Write back to the staff member who answered a hand-off."""

    handoff: int


@dataclasses.dataclass(frozen=True)
class RateHelp(Payload, prefix="rateh"):
    handoff: int
    level: int


@dataclasses.dataclass(frozen=True)
class ClaimHandoff(Payload, prefix="claim"):
    handoff: int


@dataclasses.dataclass(frozen=True)
class ClaimComplaint(Payload, prefix="claimc"):
    complaint: int


@dataclasses.dataclass(frozen=True)
class ApproveVisit(Payload, prefix="hvok"):
    request: int


@dataclasses.dataclass(frozen=True)
class DeclineVisit(Payload, prefix="hvno"):
    request: int


# --- complaints and suggestions (投诉/建议) -------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ComplaintKindPick(Payload, prefix="tskind"):
    kind: str           # "complaint" or "suggestion"


@dataclasses.dataclass(frozen=True)
class ComplaintCategoryPick(Payload, prefix="tscat"):
    category: str       # storage.complaints.CATEGORIES


@dataclasses.dataclass(frozen=True)
class ComplaintCasePick(Payload, prefix="tscase"):
    case: int


@dataclasses.dataclass(frozen=True)
class ComplaintFollowup(Payload, prefix="tsfu"):
    """The citizen's 回访 answer to a complaint's outcome (on the wire): 1 satisfied, 0 not."""

    complaint: int
    satisfied: int


# --- cases (办件) ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CaseKindPick(Payload, prefix="ckind"):
    kind: CaseKind


@dataclasses.dataclass(frozen=True)
class MissingItem(Payload, prefix="cmiss"):
    """A material of the service's list, toggled on or off in a 补正 notice."""

    item: int


@dataclasses.dataclass(frozen=True)
class ApproveExtension(Payload, prefix="cextok"):
    extension: int


@dataclasses.dataclass(frozen=True)
class RefuseExtension(Payload, prefix="cextno"):
    extension: int


@dataclasses.dataclass(frozen=True)
class RateCase(Payload, prefix="rcase"):
    """The 回访 answer for a whole case."""

    case: int
    level: int


@dataclasses.dataclass(frozen=True)
class WithdrawCase(Payload, prefix="cwd"):
    """The citizen asks to withdraw their open case (撤回申请); a confirmation follows."""

    case: int


# --- doctors and windows (resources) ------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DoctorPick(Payload, prefix="doc"):
    """A named doctor (or window) picked when the service has several."""

    resource: int


@dataclasses.dataclass(frozen=True)
class AnyDoctor(Payload, prefix="anydoc"):
    """Any doctor of the service: the times of all of them."""


# --- a doctor's 停诊: the patient's answer (on the wire) ------------------------------------------


@dataclasses.dataclass(frozen=True)
class AcceptSubstitute(Payload, prefix="subok"):
    offer: int


@dataclasses.dataclass(frozen=True)
class DeclineSubstitute(Payload, prefix="subno"):
    offer: int


@dataclasses.dataclass(frozen=True)
class MoveTo(Payload, prefix="mvto"):
    offer: int
    slot: int


@dataclasses.dataclass(frozen=True)
class MoveCancel(Payload, prefix="mvno"):
    offer: int


@dataclasses.dataclass(frozen=True)
class SubstitutePick(Payload, prefix="subpick"):
    """Staff, deciding a booking of a doctor's 停诊: this doctor substitutes (替诊)."""

    resource: int


# --- staff moving one booking (/move): the citizen's answer ------------------------------------


@dataclasses.dataclass(frozen=True)
class AcceptMove(Payload, prefix="mvok"):
    offer: int


@dataclasses.dataclass(frozen=True)
class DeclineMove(Payload, prefix="mvkeep"):
    offer: int
