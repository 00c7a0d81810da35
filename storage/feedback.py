"""Ratings on the five-level 好差评 scale (one per appointment, 一次一评) and the complaints
that low ratings open (storage.complaints handles every complaint)."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.accounts import may_act_on
from storage.audit import audit
from storage.centre import Centre
from storage.complaints import about, add_event, alert_supervisors, register
from storage.models import Appointment, AppointmentStatus, Complaint, Rating
from storage.privacy import mask_text

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
    a complaint's text goes to the supervisors as a follow-up of its alert (outbox kind
    "complaint_details"), claimed or not."""
    rating = await session.get(Rating, rating_id)
    if rating is None:
        return
    rating.comment = mask_text(comment[:1000])
    complaint = await session.scalar(select(Complaint).where(Complaint.rating_id == rating_id))
    if complaint is not None and not complaint.text:
        complaint.text = rating.comment
        await add_event(session, now, complaint, f"identity:{rating.identity_id}", "details",
                        rating.comment)
        await alert_supervisors(session, now, complaint, "complaint_details", "details")


async def open_complaint(session: AsyncSession, centre: Centre, now: dt.datetime, *,
                         identity_id: int, text: str, appointment_id: int | None = None,
                         case_id: int | None = None, rating_id: int | None = None,
                         answer_days: int = 1, resolve_days: int = 15) -> Complaint:
    """Open the complaint a low rating makes, about what was rated, and alert the supervisors
    (storage.complaints: never the staff group).

    Args:
        answer_days: working days for the first answer (1 = the same or next working day).
        resolve_days: working days to resolve it.
    """
    # The rating was checked to be the citizen's: what it rated is what the complaint is about.
    subject = await about(session, appointment_id=appointment_id, case_id=case_id)
    return await register(session, centre, now, identity_id=identity_id, text=text,
                          subject=subject, rating_id=rating_id, answer_days=answer_days,
                          resolve_days=resolve_days)
