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
    DOCTOR = "doctor"         # 任意医生 or a named one, when the service has several
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
    # Adding a person to the account (添加办事人): who they are to the holder, then the
    # holder's confirmation that they may act for them, then name, mobile, ID as above.
    RELATION = "relation"
    AUTHORISE = "authorise"


class MyBookings(StepName, flow="my"):
    LIST = "list"
    DETAIL = "detail"
    CONFIRM_CANCEL = "confirm_cancel"


class People(StepName, flow="people"):
    """我的办事人, 我的信息 and 绑定 (handlers/people.py)."""

    LIST = "list"
    PERSON = "person"
    MY_DATA = "my_data"
    CONFIRM_ERASE = "confirm_erase"
    LINK = "link"
    LINK_CODE = "link_code"
    ATTACH_CODE = "attach_code"
    ATTACH_TAIL = "attach_tail"
    SMS_PERSON = "sms_person"
    SMS_CODE = "sms_code"
    SMS_RELATION = "sms_relation"   # 短信验证 of someone not on the list: who they are to the holder,
    SMS_NAME = "sms_name"           # their name,
    SMS_ID = "sms_id"               # and their ID number (never kept in the conversation)


class Guide(StepName, flow="guide"):
    PICK = "pick"
    SHOW = "show"


class Handoff(StepName, flow="handoff"):
    OPEN = "open"
    END = "end"         # 取消 while it is open: end it, or keep waiting?


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


class StaffMove(StepName, flow="staff"):
    """Moving one booking (handlers/staff/control.py): the new day, then the new slot."""

    DAY = "move_day"
    SLOT = "move_slot"


class Complaining(StepName, flow="complaint"):
    """A complaint or suggestion (handlers/complaints.py)."""

    KIND = "kind"
    CATEGORY = "category"
    SUBJECT = "subject"
    TEXT = "text"
    PHOTO = "photo"


class CaseProgress(StepName, flow="cases"):
    """The citizen's cases (handlers/cases.py): the comment after a 回访 answer, and the
    confirmation of a withdrawal (撤回申请)."""

    COMMENT = "comment"
    WITHDRAW = "withdraw"


class StaffResourceClosure(StepName, flow="staff"):
    """A doctor's 停诊 (handlers/staff/resource_closures.py): each booking's way, then yes."""

    DECIDE = "rclose_decide"
    CONFIRM = "rclose_confirm"
