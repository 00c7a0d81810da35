"""A doctor's 停诊 with 替诊 (accepted, declined, unanswered), 换诊 (chosen, unanswered) and a
plain cancel, on the injected clock; late notices counted per resource."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from storage import booking
from storage.centre import Centre
from storage.clock import ManualClock
from storage.db import Database
from storage.models import (
    Appointment,
    AppointmentStatus,
    CancelKind,
    Channel,
    Closure,
    ClosureOffer,
    Outbox,
    Resource,
    Slot,
    Strike,
)
from storage.resource_closures import (
    Decision,
    OfferGone,
    Way,
    answer_move,
    answer_substitute,
    apply_resource_closure,
    plan_resource_closure,
    settle_offers,
    upcoming_closures,
)
from tests.helpers import account, load_demo, local, person, slots_of, valid_id

WEDNESDAY = dt.date(2026, 11, 25)


async def doctors(database: Database) -> dict[str, int]:
    async with database.read() as session:
        return {r.code: r.id for r in (await session.scalars(select(Resource))).all()}


async def book_chen(database: Database, centre: Centre, clock: ManualClock, count: int,
                    day: dt.date = WEDNESDAY, doctor: str = "dr_chen_jianguo") -> list[Appointment]:
    """``count`` patients on the doctor's first slots of ``day``, each with a chat account."""
    now = clock.now()
    async with database.session() as session:
        services = await load_demo(session, now)
        await slots_of(session, centre, services["internal_medicine"], now)
        ids = {r.code: r.id for r in (await session.scalars(select(Resource))).all()}
        slots = list((await session.scalars(select(Slot).where(
            Slot.resource_id == ids[doctor], Slot.local_date == day).order_by(Slot.starts_at))).all())
        booked = []
        for n in range(count):
            p = await person(session, centre, now, mobile=f"1381234{n:04d}",
                             id_number=valid_id(f"11010519800101{n:03d}"))
            a = await account(session, now, user=f"p{n}", person_id=p.id)
            booked.append(await booking.book(session, centre, now, person_id=p.id, slot_id=slots[n].id,
                                             identity_id=a.id, channel=Channel.TELEGRAM,
                                             made_by=f"telegram:p{n}"))
        return booked


async def test_a_doctors_closure_with_every_way_on_the_clock(database: Database, centre: Centre,
                                                             clock: ManualClock) -> None:
    a, b, c, d, e, f = await book_chen(database, centre, clock, 6)
    ids = await doctors(database)
    start, end = local(2026, 11, 25, 0, 0), local(2026, 11, 25, 12, 0)
    async with database.session() as session:
        plan = await plan_resource_closure(session, centre, clock.now(), resource_id=ids["dr_chen_jianguo"],
                                           starts_at=start, ends_at=end)
        assert [x.appointment.id for x in plan.affected] == [a.id, b.id, c.id, d.id, e.id, f.id]
        assert plan.late == 0
        # the same specialty (心血管内科) may substitute; 李华 (内分泌科) may not
        assert set(plan.affected[0].substitutes) == {ids["dr_zhou_min"], ids["dr_wu_lei"]}
        zhou, wu = ids["dr_zhou_min"], ids["dr_wu_lei"]
        closure = await apply_resource_closure(
            session, centre, clock.now(), resource_id=ids["dr_chen_jianguo"], starts_at=start,
            ends_at=end, reason="外出会诊", actor="staff:1",
            decisions={a.id: Decision(Way.SUBSTITUTE, zhou), b.id: Decision(Way.SUBSTITUTE, zhou),
                       c.id: Decision(Way.SUBSTITUTE, wu), d.id: Decision(Way.MOVE),
                       e.id: Decision(Way.MOVE), f.id: Decision(Way.CANCEL)})
        assert (closure.affected, closure.late_notices) == (6, 0)
        kinds = dict((await session.execute(select(Outbox.appointment_id, Outbox.kind).where(
            Outbox.kind.like("closure%")))).all())
        assert kinds == {a.id: "closure_substitute", b.id: "closure_substitute",
                         c.id: "closure_substitute", d.id: "closure_move", e.id: "closure_move",
                         f.id: "closure_cancelled"}
        offers = {o.appointment_id: o for o in (await session.scalars(select(ClosureOffer))).all()}
        assert offers[a.id].deadline == clock.now() + dt.timedelta(hours=24)
        # 换诊 offers the doctor's own soonest free times first: this morning from 10:15 (more than an
        # hour ahead), not the closed Wednesday
        moved_to = await session.get(Slot, offers[d.id].slot_ids[0])
        assert moved_to is not None and moved_to.resource_id == ids["dr_chen_jianguo"]
        assert moved_to.starts_at == local(2026, 11, 23, 10, 15)

    def account_of(appointment: Appointment) -> int:
        assert appointment.identity_id is not None
        return appointment.identity_id

    clock.advance(hours=1)
    async with database.session() as session:   # 替诊 accepted
        await answer_substitute(session, centre, clock.now(), offer_id=offers[a.id].id,
                                account_id=account_of(a), accept=True, actor="telegram:p0")
    async with database.session() as session:   # 替诊 declined: cancelled, no strike
        await answer_substitute(session, centre, clock.now(), offer_id=offers[b.id].id,
                                account_id=account_of(b), accept=False, actor="telegram:p1")
    async with database.session() as session:   # someone else's offer is not theirs to answer
        with pytest.raises(OfferGone):
            await answer_substitute(session, centre, clock.now(), offer_id=offers[c.id].id,
                                    account_id=account_of(a), accept=False, actor="telegram:p0")
    async with database.session() as session:   # 换诊 chosen
        await answer_move(session, centre, clock.now(), offer_id=offers[d.id].id,
                          account_id=account_of(d), slot_id=offers[d.id].slot_ids[0], actor="telegram:p3")

    clock.advance(hours=23)                      # the deadline: C and E never answered
    async with database.session() as session:
        assert await settle_offers(session, centre, clock.now()) == 2
        assert await settle_offers(session, centre, clock.now()) == 0
    async with database.session() as session:
        with pytest.raises(OfferGone):           # too late to answer now
            await answer_substitute(session, centre, clock.now(), offer_id=offers[c.id].id,
                                    account_id=account_of(c), accept=False, actor="telegram:p2")

    async with database.read() as session:
        rows = {x.id: x for x in (await session.scalars(select(Appointment))).all()}
        assert (rows[a.id].status, rows[a.id].resource_id) == (AppointmentStatus.BOOKED, zhou)
        assert (rows[b.id].status, rows[b.id].cancel_kind) == (AppointmentStatus.CANCELLED, CancelKind.CENTRE)
        assert (rows[c.id].status, rows[c.id].resource_id) == (AppointmentStatus.BOOKED, wu)
        assert rows[d.id].status == AppointmentStatus.BOOKED and rows[d.id].slot_id == moved_to.id
        assert rows[d.id].starts_at == moved_to.starts_at
        assert rows[d.id].resource_id == ids["dr_chen_jianguo"]
        assert (rows[e.id].status, rows[e.id].cancel_kind) == (AppointmentStatus.CANCELLED, CancelKind.CENTRE)
        assert rows[f.id].status == AppointmentStatus.CANCELLED
        assert await session.scalar(select(func.count()).select_from(Strike)) == 0
        statuses = {o.appointment_id: o.status for o in (await session.scalars(select(ClosureOffer))).all()}
        assert statuses == {a.id: "accepted", b.id: "declined", c.id: "defaulted", d.id: "moved",
                            e.id: "defaulted"}
        # seats: the cancelled ones and the moved one gave theirs back, the moved one took one
        for appointment, taken in ((a, 1), (b, 0), (c, 1), (d, 0), (e, 0), (f, 0)):
            slot = await session.get(Slot, appointment.slot_id)
            assert slot is not None and slot.booked == taken, appointment.code
        new = await session.get(Slot, moved_to.id)
        assert new is not None and new.booked == 1
        # E, unanswered, is told of the cancellation with an apology and a way to rebook
        told = (await session.scalars(select(Outbox.kind).where(Outbox.appointment_id == e.id))).all()
        assert "closure_cancelled" in told


async def test_late_notices_are_counted_and_closures_listed_for_the_doctor(
        database: Database, centre: Centre, clock: ManualClock) -> None:
    clock.set(local(2026, 11, 23, 12, 0))
    monday = dt.date(2026, 11, 23)
    booked = await book_chen(database, centre, clock, 2, day=monday, doctor="dr_zhou_min")
    ids = await doctors(database)
    async with database.session() as session:
        closure = await apply_resource_closure(
            session, centre, clock.now(), resource_id=ids["dr_zhou_min"],
            starts_at=local(2026, 11, 23, 12, 0), ends_at=local(2026, 11, 23, 18, 0),
            reason="急诊手术", actor="staff:1", decisions={})
        # 13:30 and 13:45, 1.5 h and 1.75 h away: less than the 2 hours' notice
        assert (closure.affected, closure.late_notices) == (2, 2)
        assert [c.id for c in await upcoming_closures(session, clock.now(), ids["dr_zhou_min"])] == [closure.id]
        assert await upcoming_closures(session, clock.now(), ids["dr_chen_jianguo"]) == []
    async with database.read() as session:
        statuses = (await session.scalars(select(Appointment.status).where(
            Appointment.id.in_([b.id for b in booked])))).all()
        assert set(statuses) == {AppointmentStatus.CANCELLED}
        assert await session.scalar(select(func.count()).select_from(Closure)) == 1
