"""The named steps of every flow, in one place (aiogram's ``StatesGroup``).

A step name knows its flow: ``Booking.DATE.flow == "booking"``. Flows move with
``ctx.enter(Booking.DATE)``; the conversation row stores the flow and the step's value. Names
live here, apart from the code of the steps, so that one flow can send the citizen into another
(my bookings → booking's dates, to reschedule) without the two modules importing each other.

The steps of a sub-flow (``Details``) belong to no flow of their own: they run inside the flow
that entered them, which keeps its data.
"""

from __future__ import annotations

import enum
from typing import Any


class StepName(enum.StrEnum):
    """A step of one flow; subclasses name their flow: ``class Guide(StepName, flow="guide")``."""

    _flow: str | None

    def __init_subclass__(cls, *, flow: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._flow = flow

    @property
    def flow(self) -> str | None:
        """The flow this step belongs to (None: a sub-flow's, run inside the current flow)."""
        return type(self)._flow


class BookingMode(enum.StrEnum):
    """How the booking steps run: a citizen booking online, moving a booking, or staff booking
    a walk-in or phone caller from the seats kept for the window (代办)."""

    BOOK = "book"
    RESCHEDULE = "reschedule"
    WALK_IN = "walkin"


class Booking(StepName, flow="booking"):
    DEPARTMENT = "department"
    SERVICE = "service"
    NOTICE = "notice"
    DATE = "date"
    SLOT = "slot"
    WAITLIST = "waitlist"
    SUMMARY = "summary"


class Details(StepName):
    """Who the booking or request is for, and their real-name details (handlers/details.py)."""

    IDENTITY = "identity"
    NAME = "name"
    MOBILE = "mobile"
    ID_NUMBER = "id_number"


class MyBookings(StepName, flow="my"):
    LIST = "list"
    DETAIL = "detail"
    CONFIRM_CANCEL = "confirm_cancel"


class Guide(StepName, flow="guide"):
    PICK = "pick"
    SHOW = "show"


class Handoff(StepName, flow="handoff"):
    OPEN = "open"


class HomeVisit(StepName, flow="home_visit"):
    REASON = "reason"
    ADDRESS = "address"
    TIMES = "times"


class Rating(StepName, flow="rating"):
    COMMENT = "comment"


class Staff(StepName, flow="staff"):
    CLOSURE_CONFIRM = "closure_confirm"
    VISIT_TIME = "hv_time"
    VISIT_REASON = "hv_reason"


class StaffCase(StepName, flow="staff"):
    """Opening a case at the window (handlers/staff/cases.py): its kind, then what it needs."""

    KIND = "case_kind"
    MISSING = "case_missing"
    REASON = "case_reason"
    BASIS = "case_basis"
    PARTS = "case_parts"


class Complaining(StepName, flow="complaint"):
    """A complaint or suggestion (handlers/complaints.py)."""

    KIND = "kind"
    CATEGORY = "category"
    SUBJECT = "subject"
    TEXT = "text"
    PHOTO = "photo"


class CaseProgress(StepName, flow="cases"):
    """The citizen's cases (handlers/cases.py): the comment after a 回访 answer."""

    COMMENT = "comment"
