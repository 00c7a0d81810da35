"""Staff control of one booking: cancel it for the citizen (no strike, with a reason and an
apology), and move it to another slot with the citizen's consent. Each goes through the booking
rules of storage.booking and is audited. Nothing here commits.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from storage.booking import ChangeResult, appointment_by_code, cancel
from storage.centre import Centre
from storage.models import AppointmentStatus
from storage.refusals import BookingRefused


class ControlRefusal(enum.StrEnum):
    UNKNOWN_CODE = "unknown_code"
    PAST = "past"
    NOT_BOOKED = "not_booked"
    REASON_REQUIRED = "reason_required"


class ControlRefused(Exception):
    """What staff asked of one booking the rules refuse; ``details`` hold the facts a message
    needs (the code, the status)."""

    def __init__(self, reason: ControlRefusal, **details: Any) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.details = details


async def staff_cancel(session: AsyncSession, centre: Centre, now: dt.datetime, code: str, *,
                       actor: str, reason: str) -> ChangeResult:
    """Cancel a booking for its citizen: no strike, the seat goes back (to the waitlist first),
    the citizen is told the reason with an apology and a way to rebook, and it is audited.

    Raises:
        ControlRefused: UNKNOWN_CODE, REASON_REQUIRED, PAST (it has started), NOT_BOOKED
            (cancelled, checked in, done or a no-show already; ``status``).
    """
    try:
        appointment = await appointment_by_code(session, code, lock=True)
    except BookingRefused:
        raise ControlRefused(ControlRefusal.UNKNOWN_CODE, code=code.strip().upper()) from None
    if not reason.strip():
        raise ControlRefused(ControlRefusal.REASON_REQUIRED, code=appointment.code)
    if appointment.status != AppointmentStatus.BOOKED:
        raise ControlRefused(ControlRefusal.NOT_BOOKED, code=appointment.code,
                             status=appointment.status)
    if appointment.starts_at <= now:
        raise ControlRefused(ControlRefusal.PAST, code=appointment.code,
                             starts_at=appointment.starts_at)
    return await cancel(session, centre, now, appointment.id, actor=actor, by_staff=True,
                        reason=reason.strip(), notify=True)
