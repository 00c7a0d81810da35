"""Ratings on the five-level 好差评 scale (one per appointment, 一次一评) and the complaints
that low ratings or an explicit 投诉 open for staff."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.accounts import may_act_on
from storage.audit import audit
from storage.centre import Centre
from storage.models import Appointment, AppointmentStatus, Complaint, Rating, RequestStatus
from storage.outbox import STAFF_TARGET, enqueue
from storage.privacy import mask_text
from storage.rules import working_days_later

LEVELS = (5, 4, 3, 2, 1)          # 非常满意, 满意, 基本满意, 不满意, 非常不满意
SATISFIED = 4                     # 满意 or better
COMPLAINT_AT_OR_BELOW = 2         # 不满意 or worse opens a complaint


class RatingRefused(enum.StrEnum):
    NOT_YOURS = "not_yours"
    NOT_SERVED = "not_served"
    ALREADY_RATED = "already_rated"
    BAD_LEVEL = "bad_level"


class FeedbackError(Exception):
    def __init__(self, reason: RatingRefused) -> None:
        super().__init__(reason.value)
        self.reason = reason


async def rate(session: AsyncSession, centre: Centre, now: dt.datetime, *, appointment_id: int,
               identity_id: int, level: int, answer_days: int,
               resolve_days: int) -> tuple[Rating, Complaint | None]:
    """Record the citizen's rating of a served appointment; a low one opens a complaint.

    Only the account the booking belongs to rates it: the one that made it (or is linked to
    it by proof), or the one a staff-made booking's notifications went to. Whose ID number the
    account typed plays no part. A reply days later still counts; a second rating of the same
    appointment is refused.

    Raises:
        FeedbackError: NOT_YOURS, NOT_SERVED, ALREADY_RATED, BAD_LEVEL.
    """
    if level not in LEVELS:
        raise FeedbackError(RatingRefused.BAD_LEVEL)
    appointment = await session.get(Appointment, appointment_id)
    if appointment is None or (appointment.identity_id != identity_id and not await may_act_on(
            session, account_id=identity_id, appointment_id=appointment_id)):
        raise FeedbackError(RatingRefused.NOT_YOURS)
    if appointment.status not in (AppointmentStatus.COMPLETED, AppointmentStatus.CHECKED_IN):
        raise FeedbackError(RatingRefused.NOT_SERVED)
    if await session.scalar(select(Rating.id).where(Rating.appointment_id == appointment_id)):
        raise FeedbackError(RatingRefused.ALREADY_RATED)
    rating = Rating(appointment_id=appointment_id, identity_id=identity_id, level=level,
                    created_at=now)
    session.add(rating)
    await session.flush()
    await audit(session, now, f"identity:{identity_id}", "rate", "appointment", appointment_id,
                level=level)
    complaint = None
    if level <= COMPLAINT_AT_OR_BELOW:
        complaint = await open_complaint(session, centre, now, identity_id=identity_id,
                                         appointment_id=appointment_id, rating_id=rating.id,
                                         text="", answer_days=answer_days, resolve_days=resolve_days)
    return rating, complaint


async def add_comment(session: AsyncSession, now: dt.datetime, rating_id: int,
                      comment: str) -> None:
    """Attach the citizen's optional comment (masked) to their rating, and to its complaint:
    a complaint's text goes to staff as a follow-up of its alert (outbox kind
    "complaint_details", to the staff group), claimed or not."""
    rating = await session.get(Rating, rating_id)
    if rating is None:
        return
    rating.comment = mask_text(comment[:1000])
    complaint = await session.scalar(select(Complaint).where(Complaint.rating_id == rating_id))
    if complaint is not None and not complaint.text:
        complaint.text = rating.comment
        await enqueue(session, kind="complaint_details", now=now, target=STAFF_TARGET,
                      dedup_key=f"complaint:{complaint.id}:details",
                      payload={"complaint": complaint.id})


async def open_complaint(session: AsyncSession, centre: Centre, now: dt.datetime, *,
                         identity_id: int, text: str, appointment_id: int | None = None,
                         rating_id: int | None = None, answer_days: int = 1,
                         resolve_days: int = 15) -> Complaint:
    """Open a complaint with its first-answer and resolution due times, and alert staff.

    Args:
        answer_days: working days for the first answer (1 = the same or next working day).
        resolve_days: working days to resolve it.
    """
    complaint = Complaint(
        identity_id=identity_id, appointment_id=appointment_id, rating_id=rating_id,
        text=mask_text(text[:1000]),
        status=RequestStatus.OPEN, opened_at=now,
        first_answer_due=working_days_later(now, answer_days, centre.calendar, centre.tz),
        resolution_due=working_days_later(now, resolve_days, centre.calendar, centre.tz))
    session.add(complaint)
    await session.flush()
    await audit(session, now, f"identity:{identity_id}", "complaint", "complaint", complaint.id,
                appointment=appointment_id, rating=rating_id)
    await enqueue(session, kind="complaint_alert", now=now, target=STAFF_TARGET,
                  dedup_key=f"complaint:{complaint.id}:open", payload={"complaint": complaint.id})
    return complaint
