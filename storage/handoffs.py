"""Requests staff work on: hand-offs (人工服务), opened for a citizen and owned by the first to
claim them (首问负责), with relay both ways; complaints, claimed the same way; home-visit
requests and their decisions; and escalation of whatever is overdue.

Claims are conditional UPDATEs (``... WHERE status = 'open'``): on PostgreSQL a second claimer
waits on the row lock and then re-checks the condition against the first claimer's committed
row, so exactly one wins; on SQLite writers are serialised by BEGIN IMMEDIATE. Every change is
audited and every message it implies is an outbox row written in the same transaction.
Nothing here commits.

Staff are named by their account key ("telegram:<user id>", "wechat:<openid>"); the display
name they chose on their platform is kept as a shared value so messages can say who owns what.
"""

from __future__ import annotations

import datetime as dt
import enum
import secrets
from typing import Any, TypeVar

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.audit import audit
from storage.centre import Centre
from storage.complaints import SUPERVISORS
from storage.feedback import COMPLAINT_AT_OR_BELOW, LEVELS, open_complaint
from storage.identity import mask_mobile, mask_name
from storage.models import (
    Channel,
    ChannelIdentity,
    Complaint,
    Handoff,
    HomeVisitRequest,
    Person,
    Rating,
    RequestStatus,
)
from storage.outbox import STAFF_TARGET, enqueue
from storage.privacy import mask_text, mask_texts
from storage.reach import in_wechat_window
from storage.rules import working_days_later
from storage.shared import read_value, write_value

ACTIVE = (RequestStatus.OPEN, RequestStatus.CLAIMED)
KEPT_MESSAGES = 10


class StaffRefusal(enum.StrEnum):
    UNKNOWN = "unknown"                  # no such hand-off / complaint / request
    ALREADY_CLAIMED = "already_claimed"  # owner
    NOT_OWNER = "not_owner"              # owner
    CLOSED = "closed"
    ALREADY_DECIDED = "already_decided"  # status
    TEXT_REQUIRED = "text_required"
    BAD_TIME = "bad_time"
    WINDOW_CLOSED = "window_closed"      # last (WeChat: last message from the citizen)
    UNREACHABLE = "unreachable"          # the citizen blocked the bot / unsubscribed


class StaffRefused(Exception):
    """A staff action the state of the request does not allow; ``details`` hold the facts the
    message needs (who owns it, since when)."""

    def __init__(self, reason: StaffRefusal, **details: Any) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.details = details


# --- staff names ------------------------------------------------------------------------------


def _name_key(actor: str) -> str:
    return f"staff_name:{actor}"[:80]


async def remember_staff_name(session: AsyncSession, actor: str, name: str,
                              now: dt.datetime) -> None:
    """Keep the display name a staff member shows on their platform (for "owned by ...")."""
    if name:
        await write_value(session, _name_key(actor), name[:60], now)


async def staff_name(session: AsyncSession, actor: str | None) -> str:
    """The display name of a staff account, or its key when none is known."""
    if not actor:
        return "-"
    stored = await read_value(session, _name_key(actor))
    return stored.value if stored is not None and stored.value else actor


# --- claiming: hand-offs and complaints alike -------------------------------------------------

Request = TypeVar("Request", Handoff, Complaint)


async def _request(session: AsyncSession, model: type[Request], number: int) -> Request:
    """A hand-off or complaint as it is now in the database (another process may have claimed it)."""
    found = await session.scalar(select(model).where(model.id == number)
                                 .execution_options(populate_existing=True))
    if found is None:
        raise StaffRefused(StaffRefusal.UNKNOWN, number=number)
    return found


async def claim(session: AsyncSession, now: dt.datetime, model: type[Request], number: int, *,
                actor: str, name: str = "") -> Request:
    """Make ``actor`` the owner of an open hand-off (首问负责) or complaint; the first claim wins.

    Claiming what one already owns again is not an error (a double press).

    Args:
        model: ``Handoff`` or ``Complaint``.
        name: the display name the staff member shows on their platform (for "owned by ...").

    Raises:
        StaffRefused: UNKNOWN, ALREADY_CLAIMED (owner, since), CLOSED.
    """
    await remember_staff_name(session, actor, name, now)
    won = await session.execute(
        update(model).where(model.id == number, model.status == RequestStatus.OPEN)
        .values(status=RequestStatus.CLAIMED, claimed_by=actor, claimed_at=now)
        .execution_options(synchronize_session=False))
    found = await _request(session, model, number)
    if won.rowcount:  # type: ignore[attr-defined]
        await audit(session, now, actor, "claim", model.__tablename__, number)
        return found
    if found.status == RequestStatus.CLOSED:
        raise StaffRefused(StaffRefusal.CLOSED, number=number)
    if found.claimed_by == actor:
        return found
    raise StaffRefused(StaffRefusal.ALREADY_CLAIMED, number=number,
                       owner=await staff_name(session, found.claimed_by), since=found.claimed_at)


async def _owned(session: AsyncSession, now: dt.datetime, model: type[Request], number: int,
                 actor: str, name: str) -> Request:
    """The hand-off or complaint, claimed by ``actor`` now if nobody had (acting on it is
    claiming it)."""
    found = await _request(session, model, number)
    if found.status == RequestStatus.OPEN:
        found = await claim(session, now, model, number, actor=actor, name=name)
    if found.status == RequestStatus.CLOSED:
        raise StaffRefused(StaffRefusal.CLOSED, number=number)
    if found.claimed_by != actor:
        raise StaffRefused(StaffRefusal.NOT_OWNER, number=number,
                           owner=await staff_name(session, found.claimed_by))
    return found


# --- hand-offs --------------------------------------------------------------------------------


async def active_handoff(session: AsyncSession, identity_id: int) -> Handoff | None:
    """The citizen's hand-off that is open or claimed, if any."""
    return await session.scalar(select(Handoff).where(
        Handoff.identity_id == identity_id, Handoff.status.in_(ACTIVE)))


async def open_handoff(session: AsyncSession, now: dt.datetime, *, identity_id: int,
                       person_id: int | None, channel: str, came_from: str | None, locale: str,
                       said: list[str], answer_from: dt.datetime | None = None) -> Handoff:
    """Open a hand-off (人工服务) for a citizen and alert the staff group (outbox kind
    "handoff_alert", naming the citizen masked).

    Args:
        came_from: the flow the citizen was in, for staff.
        said: what the bot did not understand, so staff need not ask again.
        answer_from: when staff are back, if they are not now: escalation counts from then,
            not from a night-time request.
    """
    person = await session.get(Person, person_id) if person_id is not None else None
    contact = {"name": mask_name(person.name) if person and person.name else None,
               "mobile": mask_mobile(person.mobile) if person and person.mobile else None}
    context: dict[str, Any] = {"flow": came_from, "locale": locale, "channel": channel,
                               "contact": contact,
                               "messages": mask_texts([text[:500] for text in said])}
    if answer_from is not None:
        context["answer_from"] = answer_from.isoformat()
    handoff = Handoff(identity_id=identity_id, status=RequestStatus.OPEN, opened_at=now,
                      context=context)
    session.add(handoff)
    await session.flush()
    await enqueue(session, kind="handoff_alert", now=now, target=STAFF_TARGET,
                  dedup_key=f"handoff:{handoff.id}:open",
                  payload={"handoff": handoff.id, "channel": channel, "flow": came_from,
                           **contact})
    return handoff


async def unclosed_handoffs(session: AsyncSession) -> list[Handoff]:
    """Every hand-off not closed yet, the oldest first."""
    return list((await session.scalars(select(Handoff).where(Handoff.status.in_(ACTIVE))
                                       .order_by(Handoff.opened_at))).all())


def _message_key(message_key: str | None) -> str:
    return (message_key or secrets.token_hex(8))[:100]


async def reply_to_citizen(session: AsyncSession, now: dt.datetime, handoff_id: int, *,
                           actor: str, text: str, name: str = "",
                           message_key: str | None = None) -> Handoff:
    """Send the owner's answer to the citizen (outbox kind "relay"); the first answer is
    recorded as the hand-off's first reply. An open hand-off is claimed by whoever answers.

    Args:
        message_key: the staff message's platform id, so a redelivered message relays once.

    Raises:
        StaffRefused: UNKNOWN, CLOSED, NOT_OWNER (owner), TEXT_REQUIRED, UNREACHABLE,
            WINDOW_CLOSED (last: when the WeChat citizen last wrote).
    """
    if not text.strip():
        raise StaffRefused(StaffRefusal.TEXT_REQUIRED, number=handoff_id)
    handoff = await _owned(session, now, Handoff, handoff_id, actor, name)
    identity = await session.get(ChannelIdentity, handoff.identity_id)
    if identity is None or identity.unreachable_at is not None:
        raise StaffRefused(StaffRefusal.UNREACHABLE, number=handoff_id)
    if identity.channel == Channel.WECHAT and not in_wechat_window(identity.last_inbound_at, now):
        raise StaffRefused(StaffRefusal.WINDOW_CLOSED, number=handoff_id,
                           last=identity.last_inbound_at)
    if handoff.first_reply_at is None:
        handoff.first_reply_at = now
    await enqueue(session, kind="relay", now=now, identity_id=handoff.identity_id,
                  dedup_key=f"relay:{handoff_id}:{_message_key(message_key)}",
                  payload={"handoff": handoff_id,
                           "text": mask_text(text.strip()[:3000], keep_mobiles=True)})
    await audit(session, now, actor, "reply", "handoff", handoff_id, length=len(text.strip()))
    return handoff


async def relay_from_citizen(session: AsyncSession, now: dt.datetime, handoff: Handoff, text: str,
                             *, message_key: str | None = None) -> bool:
    """Keep the citizen's message with the hand-off and pass it to the staff group (outbox
    kind "handoff_message"): to its owner once someone owns it, and before that to everyone,
    with the claim button, so staff see what the citizen asks without claiming first.

    The message is masked first (``storage.privacy``): ID numbers and cards always; a mobile
    number the citizen gives is kept for the owner, who may have to call, but masked in the
    group. When the message has one, the owner also gets it as written in their private chat
    with the bot (outbox kind "handoff_private"), and the audit notes that a number was shown.

    Returns:
        True when it was passed to an owner (False: waiting for a claim).
    """
    written = mask_text(text[:3000], keep_mobiles=True)
    kept = [*handoff.context.get("messages", []), written[:500]][-KEPT_MESSAGES:]
    handoff.context = {**handoff.context, "messages": kept}
    key = _message_key(message_key)
    if handoff.status != RequestStatus.CLAIMED:
        await enqueue(session, kind="handoff_message", now=now, target=STAFF_TARGET,
                      dedup_key=f"handoff_msg:{handoff.id}:{key}",
                      payload={"handoff": handoff.id, "owner": None, "text": mask_text(written)})
        return False
    await enqueue(session, kind="handoff_message", now=now, target=STAFF_TARGET,
                  dedup_key=f"handoff_msg:{handoff.id}:{key}",
                  payload={"handoff": handoff.id, "owner": handoff.claimed_by,
                           "text": mask_text(written)})
    if written != mask_text(written) and handoff.claimed_by:
        await enqueue(session, kind="handoff_private", now=now, target=handoff.claimed_by,
                      dedup_key=f"handoff_private:{handoff.id}:{key}",
                      payload={"handoff": handoff.id, "text": written})
        await audit(session, now, f"identity:{handoff.identity_id}", "mobile_to_owner",
                    "handoff", handoff.id, owner=handoff.claimed_by)
    return True


async def close_handoff(session: AsyncSession, now: dt.datetime, handoff_id: int, *,
                        actor: str, summary: str, name: str = "") -> Handoff:
    """Close a hand-off with a summary for the records; the citizen is told and offered a
    rating of the help (outbox kind "handoff_closed"). The summary stays with staff.

    Raises:
        StaffRefused: UNKNOWN, CLOSED, NOT_OWNER (owner), TEXT_REQUIRED.
    """
    if not summary.strip():
        raise StaffRefused(StaffRefusal.TEXT_REQUIRED, number=handoff_id)
    handoff = await _owned(session, now, Handoff, handoff_id, actor, name)
    handoff.status, handoff.closed_at = RequestStatus.CLOSED, now
    handoff.summary = mask_text(summary.strip())
    await audit(session, now, actor, "close", "handoff", handoff_id)
    await enqueue(session, kind="handoff_closed", now=now, identity_id=handoff.identity_id,
                  dedup_key=f"handoff:{handoff_id}:closed", payload={"handoff": handoff_id})
    return handoff


async def withdraw_handoff(session: AsyncSession, now: dt.datetime, *,
                           identity_id: int) -> Handoff | None:
    """The citizen withdraws their open or claimed hand-off: it is closed, audited, and the
    staff group is told (outbox kind "handoff_withdrawn", naming the owner if any), so nobody
    answers a question that is gone. No rating is asked.

    Returns:
        The hand-off closed, or None when the citizen had none open.
    """
    handoff = await session.scalar(select(Handoff).where(
        Handoff.identity_id == identity_id, Handoff.status.in_(ACTIVE)).with_for_update())
    if handoff is None:
        return None
    handoff.status, handoff.closed_at = RequestStatus.CLOSED, now
    await audit(session, now, f"identity:{identity_id}", "withdraw", "handoff", handoff.id)
    await enqueue(session, kind="handoff_withdrawn", now=now, target=STAFF_TARGET,
                  dedup_key=f"handoff:{handoff.id}:withdrawn",
                  payload={"handoff": handoff.id, "owner": handoff.claimed_by})
    return handoff


async def owned_handoffs(session: AsyncSession, actor: str) -> list[Handoff]:
    """The hand-offs ``actor`` owns that are not closed, most recently claimed first."""
    return list((await session.scalars(select(Handoff).where(
        Handoff.claimed_by == actor, Handoff.status == RequestStatus.CLAIMED)
        .order_by(Handoff.claimed_at.desc()))).all())


async def rate_handoff(session: AsyncSession, centre: Centre, now: dt.datetime, *,
                       handoff_id: int, identity_id: int, level: int, answer_days: int,
                       resolve_days: int) -> tuple[Rating, Complaint | None] | None:
    """The citizen rates the help of a closed hand-off (once); 不满意 or worse opens a complaint.

    Returns:
        The rating and any complaint, or None when it is not theirs, not closed or rated.
    """
    handoff = await session.get(Handoff, handoff_id)
    if level not in LEVELS or handoff is None or handoff.identity_id != identity_id \
            or handoff.status != RequestStatus.CLOSED:
        return None
    if await session.scalar(select(Rating.id).where(Rating.handoff_id == handoff_id)):
        return None
    rating = Rating(handoff_id=handoff_id, identity_id=identity_id, level=level, created_at=now)
    session.add(rating)
    await session.flush()
    await audit(session, now, f"identity:{identity_id}", "rate", "handoff", handoff_id, level=level)
    complaint = None
    if level <= COMPLAINT_AT_OR_BELOW:
        complaint = await open_complaint(session, centre, now, identity_id=identity_id, text="",
                                         rating_id=rating.id, answer_days=answer_days,
                                         resolve_days=resolve_days)
    return rating, complaint


# --- home visits ------------------------------------------------------------------------------


async def request_home_visit(session: AsyncSession, centre: Centre, now: dt.datetime, *,
                             identity_id: int, person_id: int | None, service_id: int,
                             address: str, preferred_times: str, ground: str,
                             age: int | None) -> HomeVisitRequest:
    """Record a citizen's home-visit request (上门服务), due for a decision within one working
    day, and alert the staff group (outbox kind "home_visit_alert").

    Args:
        ground: what makes the citizen eligible: "age" or "disability".
    """
    request = HomeVisitRequest(
        identity_id=identity_id, person_id=person_id, service_id=service_id,
        address=mask_text(address), preferred_times=mask_text(preferred_times),
        eligibility=ground, age=age, status=RequestStatus.OPEN,
        created_at=now, due_at=working_days_later(now, 1, centre.calendar, centre.tz))
    session.add(request)
    await session.flush()
    await enqueue(session, kind="home_visit_alert", now=now, target=STAFF_TARGET,
                  dedup_key=f"home:{request.id}:open", payload={"request": request.id})
    return request


async def _decide(session: AsyncSession, now: dt.datetime, request_id: int, actor: str,
                  **values: Any) -> HomeVisitRequest:
    decided = await session.execute(
        update(HomeVisitRequest).where(HomeVisitRequest.id == request_id,
                                       HomeVisitRequest.status == RequestStatus.OPEN)
        .values(decided_by=actor, decided_at=now, **values)
        .execution_options(synchronize_session=False))
    request = await session.scalar(select(HomeVisitRequest).where(
        HomeVisitRequest.id == request_id).execution_options(populate_existing=True))
    if request is None:
        raise StaffRefused(StaffRefusal.UNKNOWN, number=request_id)
    if not decided.rowcount:  # type: ignore[attr-defined]
        raise StaffRefused(StaffRefusal.ALREADY_DECIDED, number=request_id,
                           status=request.status.value,
                           owner=await staff_name(session, request.decided_by))
    return request


async def approve_home_visit(session: AsyncSession, now: dt.datetime, request_id: int, *,
                             actor: str, visit_at: dt.datetime, name: str = "") -> HomeVisitRequest:
    """Approve a home-visit request for a visit time; the citizen is told (outbox kind
    "home_visit_approved"). The first decision wins.

    Raises:
        StaffRefused: UNKNOWN, ALREADY_DECIDED (status, owner), BAD_TIME (in the past).
    """
    if visit_at <= now:
        raise StaffRefused(StaffRefusal.BAD_TIME, number=request_id)
    await remember_staff_name(session, actor, name, now)
    request = await _decide(session, now, request_id, actor, status=RequestStatus.APPROVED,
                            visit_at=visit_at)
    await audit(session, now, actor, "approve", "home_visit", request_id,
                visit_at=visit_at.isoformat())
    await enqueue(session, kind="home_visit_approved", now=now, identity_id=request.identity_id,
                  dedup_key=f"home:{request_id}:decided", payload={"request": request_id})
    return request


async def decline_home_visit(session: AsyncSession, now: dt.datetime, request_id: int, *,
                             actor: str, reason: str, name: str = "") -> HomeVisitRequest:
    """Decline a home-visit request with a reason the citizen is told (outbox kind
    "home_visit_declined"). The first decision wins.

    Raises:
        StaffRefused: UNKNOWN, ALREADY_DECIDED (status, owner), TEXT_REQUIRED.
    """
    if not reason.strip():
        raise StaffRefused(StaffRefusal.TEXT_REQUIRED, number=request_id)
    await remember_staff_name(session, actor, name, now)
    request = await _decide(session, now, request_id, actor, status=RequestStatus.DECLINED,
                            decline_reason=mask_text(reason.strip()[:200]))
    await audit(session, now, actor, "decline", "home_visit", request_id)
    await enqueue(session, kind="home_visit_declined", now=now, identity_id=request.identity_id,
                  dedup_key=f"home:{request_id}:decided", payload={"request": request_id})
    return request


# --- escalation -------------------------------------------------------------------------------


async def _raise_level(session: AsyncSession, model: Any, row_id: int, level: int,
                       *conditions: Any) -> bool:
    """Move a request's escalation level up to ``level`` unless it already is there: the
    conditional UPDATE makes each level happen once, whichever process gets there first."""
    result = await session.execute(
        update(model).where(model.id == row_id, model.escalations < level, *conditions)
        .values(escalations=level).execution_options(synchronize_session=False))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def _tell_supervisors(session: AsyncSession, now: dt.datetime, supervisors: tuple[str, ...],
                            *, kind: str, key: str, payload: dict[str, Any]) -> None:
    """An alert to each supervisor's private chat; with none configured, to the staff group."""
    for target in supervisors or (STAFF_TARGET,):
        await enqueue(session, kind=kind, now=now, target=target,
                      dedup_key=f"{key}:{target}"[:160], payload=payload)


async def escalate_overdue(session: AsyncSession, centre: Centre, now: dt.datetime, *,
                           escalate_minutes: int, supervisors: tuple[str, ...] | list[str]) -> int:
    """Escalate what staff have left waiting (the scheduler calls this every minute).

    - A hand-off nobody claimed ``escalate_minutes`` after it was opened (or after staff came
      back, when it was opened outside staff hours) is alerted to the staff group again; after
      twice that, to each supervisor.
    - A complaint past its first-answer due time without an answer, and one past its
      resolution due time unresolved, are alerted to the supervisors (with none, the
      managers; never the staff group).
    - A home-visit request still undecided at its due time is alerted to the supervisors.

    Each level happens at most once per request: the level is raised with a conditional UPDATE
    and every alert has a de-duplication key, so the job is idempotent and two processes may run
    it at the same moment. Supervisors are outbox targets ("telegram:<id>", "wechat:<openid>");
    with none configured, supervisor alerts go to the staff group.

    Args:
        escalate_minutes: ``conversation.handoff_escalate_minutes``.
        supervisors: ``access.supervisors``.

    Returns:
        How many escalations were made.
    """
    targets = tuple(supervisors)
    made = 0
    wait = dt.timedelta(minutes=escalate_minutes)
    waiting = (await session.scalars(select(Handoff).where(
        Handoff.status == RequestStatus.OPEN, Handoff.escalations < 2,
        Handoff.opened_at <= now - wait).order_by(Handoff.id))).all()
    for handoff in waiting:
        answer_from = handoff.context.get("answer_from")
        since = max(handoff.opened_at, dt.datetime.fromisoformat(answer_from)) \
            if answer_from else handoff.opened_at
        open_for = now - since
        if open_for >= 2 * wait and await _raise_level(
                session, Handoff, handoff.id, 2, Handoff.status == RequestStatus.OPEN):
            await _tell_supervisors(session, now, targets, kind="handoff_overdue",
                                    key=f"handoff:{handoff.id}:escalate2",
                                    payload={"handoff": handoff.id,
                                             "minutes": 2 * escalate_minutes})
            made += 1
        elif wait <= open_for < 2 * wait and await _raise_level(
                session, Handoff, handoff.id, 1, Handoff.status == RequestStatus.OPEN):
            await enqueue(session, kind="handoff_alert", now=now, target=STAFF_TARGET,
                          dedup_key=f"handoff:{handoff.id}:escalate1",
                          payload={"handoff": handoff.id, "again": escalate_minutes})
            made += 1
    # Complaints are confidential: their escalations go to the supervisors alone, never the
    # staff group (storage.complaints).
    complaints = (await session.scalars(select(Complaint).where(
        Complaint.status != RequestStatus.CLOSED, Complaint.escalations < 2,
        Complaint.first_answer_due <= now).order_by(Complaint.id))).all()
    for complaint in complaints:
        if complaint.answered_at is None and await _raise_level(
                session, Complaint, complaint.id, 1, Complaint.answered_at.is_(None)):
            await enqueue(session, kind="complaint_overdue", now=now, target=SUPERVISORS,
                          dedup_key=f"complaint:{complaint.id}:escalate1",
                          payload={"complaint": complaint.id, "due": "answer"})
            made += 1
        if complaint.resolution_due <= now and await _raise_level(
                session, Complaint, complaint.id, 2, Complaint.status != RequestStatus.CLOSED):
            await enqueue(session, kind="complaint_overdue", now=now, target=SUPERVISORS,
                          dedup_key=f"complaint:{complaint.id}:escalate2",
                          payload={"complaint": complaint.id, "due": "resolution"})
            made += 1
    requests = (await session.scalars(select(HomeVisitRequest.id).where(
        HomeVisitRequest.status == RequestStatus.OPEN, HomeVisitRequest.escalations < 1,
        HomeVisitRequest.due_at <= now).order_by(HomeVisitRequest.id))).all()
    for request_id in requests:
        if await _raise_level(session, HomeVisitRequest, request_id, 1,
                              HomeVisitRequest.status == RequestStatus.OPEN):
            await _tell_supervisors(session, now, targets, kind="home_visit_overdue",
                                    key=f"home:{request_id}:escalate1",
                                    payload={"request": request_id})
            made += 1
    return made
