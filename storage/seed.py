"""A realistic booking history for benchmarks and demonstrations (``yuyue bench seed``).

It writes what months of a centre's work leave behind: slots on working days, citizens and
their chat accounts, appointments made on every channel and their outcomes (completed,
no-shows, cancellations of each kind, the coming week still booked), ratings, complaints from
bad ratings, hand-offs, blocks and notifications, some of them failed. Rows are generated here
and written in batches straight through the driver (COPY on PostgreSQL, executemany on SQLite:
no ORM objects, no per-row round trips), so a
million appointments take a few minutes at most. The counters stay consistent: a slot's
``booked``/``offline_booked`` equal its live appointments, which the figures check.

Ids are given explicitly (the next free ones), so rows can refer to each other without reading
anything back; PostgreSQL's sequences are moved past them at the end.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Boolean, Date, Enum, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.catalog import ServiceDef
from storage.centre import Centre
from storage.db import Database, UTCDateTime
from storage.identity import id_check_digit, mask_id
from storage.models import (
    Appointment,
    AppointmentStatus,
    Block,
    CancelKind,
    Channel,
    ChannelIdentity,
    Complaint,
    Handoff,
    Outbox,
    OutboxStatus,
    Person,
    Rating,
    RequestStatus,
    Service,
    Slot,
)
from storage.rosters import roster_of, roster_slot_times, sittings_on
from storage.rules import at_local
from storage.slots import slot_times

BATCH = 20_000
TARGET_FILL = 0.75          # share of a slot's seats taken, on average, before scaling seats up
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
_CODE_SPACE = len(CODE_ALPHABET) ** 6
_CODE_STEP = 387_420_489    # 9**9: coprime with 31**6, so index -> code is one-to-one
SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董"
            "袁潘于蒋蔡余杜叶程苏魏吕丁任沈")
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国玉兰志强晓东海燕红梅"


class SeedError(RuntimeError):
    """The database is not one a history can be seeded into (no services, appointments exist)."""


@dataclass(frozen=True)
class SeedReport:
    appointments: int
    persons: int
    slots: int
    first_day: dt.date
    last_day: dt.date
    seat_scale: int
    ratings: int
    complaints: int
    handoffs: int
    seconds: float

    def summary(self) -> str:
        return (f"{self.appointments} appointments of {self.persons} citizens on {self.slots} "
                f"slots, {self.first_day}..{self.last_day} (seats x{self.seat_scale}); "
                f"{self.ratings} ratings, {self.complaints} complaints, {self.handoffs} hand-offs;"
                f" {self.seconds:.1f} s")


def booking_code(index: int) -> str:
    """A distinct 6-character booking code for each index (a fixed permutation, not random:
    seeded codes only need to be unique)."""
    n = (index * _CODE_STEP + 12_345) % _CODE_SPACE
    chars = []
    for _ in range(6):
        n, digit = divmod(n, len(CODE_ALPHABET))
        chars.append(CODE_ALPHABET[digit])
    return "".join(chars)


@dataclass
class _Ids:
    """The next free id of each table the seed writes."""

    person: int
    identity: int
    slot: int
    appointment: int
    rating: int
    complaint: int
    handoff: int
    block: int
    outbox: int

    def take(self, table: str, count: int = 1) -> int:
        first: int = getattr(self, table)
        setattr(self, table, first + count)
        return first


_TABLES: dict[str, Any] = {"person": Person, "identity": ChannelIdentity, "slot": Slot, "appointment": Appointment,
           "rating": Rating, "complaint": Complaint, "handoff": Handoff, "block": Block,
           "outbox": Outbox}


async def _next_ids(session: AsyncSession) -> _Ids:
    values = {}
    for name, model in _TABLES.items():
        values[name] = int(await session.scalar(select(func.coalesce(func.max(model.id), 0)))) + 1
    return _Ids(**values)


async def _fix_sequences(session: AsyncSession) -> None:
    """PostgreSQL: move each id sequence past the ids given explicitly (SQLite needs nothing)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for model in _TABLES.values():
        table = model.__tablename__
        await session.execute(text(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            f"(SELECT COALESCE(MAX(id), 1) FROM {table}))"))


@dataclass
class _SlotPlan:
    id: int
    service_id: int
    day: dt.date
    starts_at: dt.datetime
    ends_at: dt.datetime
    capacity: int
    online_capacity: int
    existing: bool
    booked: int = 0
    offline_booked: int = 0
    resource_id: int | None = None


def _weight(day: dt.date, starts_at: dt.datetime, tz: Any) -> float:
    """How popular a slot is: Mondays and mornings are busier, Fridays and late afternoons not."""
    weekday = (1.25, 1.05, 1.0, 0.95, 0.85, 0.7, 0.7)[day.weekday()]
    hour = starts_at.astimezone(tz).hour
    return weekday * (1.15 if hour < 12 else 0.9 if hour < 15 else 0.75)


async def seed_history(database: Database, centre: Centre, now: dt.datetime, appointments: int,
                       seed: int, *, months: int = 12,
                       progress: Callable[[str], None] | None = None) -> SeedReport:
    """Write a realistic history of ``appointments`` appointments ending at ``now``.

    The history covers ``months`` months before today and the coming week (already booked in
    part). When the catalog's seats cannot hold that many appointments in that time at a
    realistic fill, every seeded slot gets a multiple of its catalog seats (a bigger hall),
    reported as ``seat_scale``.

    Args:
        database: a migrated database with the catalog loaded and no appointments yet.
        now: the end of the history; appointments after it are still booked (or cancelled).
        seed: the random seed: the same seed gives the same history.
        progress: called with a short line now and then (the CLI prints it).

    Returns:
        What was written.

    Raises:
        SeedError: no services, or the database already has appointments.
    """
    started = time.perf_counter()
    say = progress or (lambda _line: None)
    rng = random.Random(seed)
    tz = centre.tz
    async with database.session() as session:
        services = (await session.execute(
            select(Service.id, Service.department_id, Service.definition)
            .where(Service.active.is_(True)).order_by(Service.id))).all()
        if not services:
            raise SeedError("no services: load the catalog first (yuyue catalog load)")
        if await session.scalar(select(func.count()).select_from(Appointment)):
            raise SeedError("the database already has appointments: seed an empty one")
        ids = await _next_ids(session)

    today = centre.today(now)
    first_day = (today.replace(day=1) - dt.timedelta(days=30 * months)).replace(day=1)
    last_day = today + dt.timedelta(days=7)
    definitions = {sid: ServiceDef.from_json(definition) for sid, _, definition in services}
    days = [first_day + dt.timedelta(days=n) for n in range((last_day - first_day).days + 1)]
    days = [d for d in days if centre.calendar.is_working_day(d)]
    # A service with doctors or windows gets one slot per resource on its rosters' half-days.
    async with database.session() as session:
        rosters = {sid: await roster_of(session, sid, first_day, last_day) for sid in definitions}
    layout: dict[tuple[int, dt.date], list[tuple[int | None, dt.time, dt.time, int, int]]] = {}
    for sid, definition in definitions.items():
        roster = rosters[sid]
        for d in days:
            times = slot_times(definition, d)
            layout[(sid, d)] = [(None, a, b, definition.capacity, definition.online_capacity)
                                for a, b in times] if not roster.resource_ids else [
                (rid, a, b, sitting.seats, sitting.online) for rid in roster.resource_ids
                for a, b, sitting in roster_slot_times(
                    times, sittings_on(d, roster.patterns[rid], roster.exceptions[rid]))]
    seats = sum(entry[3] for entries in layout.values() for entry in entries)
    scale = max(1, math.ceil(appointments / max(1, seats * TARGET_FILL)))
    say(f"{len(days)} working days {first_day}..{last_day}, seats x{scale}")

    # --- slots: reuse the ones ensure_slots already made, add the rest -----------------------
    async with database.session() as session:
        found_slots = (await session.execute(select(
            Slot.id, Slot.service_id, Slot.resource_id, Slot.starts_at, Slot.capacity,
            Slot.online_capacity)
            .where(Slot.local_date >= first_day, Slot.local_date <= last_day))).all()
    existing = {(sid, rid, starts): (slot_id, capacity, online)
                for slot_id, sid, rid, starts, capacity, online in found_slots}
    plans: list[_SlotPlan] = []
    for (sid, day), entries in layout.items():
        for resource_id, start, end, capacity, online in entries:
            starts_at = at_local(day, start, tz)
            found = existing.get((sid, resource_id, starts_at))
            if found is not None:
                plans.append(_SlotPlan(found[0], sid, day, starts_at, at_local(day, end, tz),
                                       found[1], found[2], existing=True, resource_id=resource_id))
            else:
                plans.append(_SlotPlan(ids.take("slot"), sid, day, starts_at,
                                       at_local(day, end, tz), capacity * scale, online * scale,
                                       existing=False, resource_id=resource_id))
    plans.sort(key=lambda p: (p.starts_at, p.service_id))

    # --- how many appointments each slot gets: weights, scaled to the total exactly ---------
    horizon = now + dt.timedelta(days=7)
    weights = []
    for plan in plans:
        w = _weight(plan.day, plan.starts_at, tz) * rng.uniform(0.6, 1.4) * plan.capacity
        if plan.starts_at > now:  # the coming week is still filling up
            w *= max(0.15, 1 - (plan.starts_at - now) / (horizon - now))
        weights.append(w)
    total_weight = sum(weights)
    wanted = [appointments * w / total_weight for w in weights]
    counts = [int(x) for x in wanted]
    short = appointments - sum(counts)
    for index in sorted(range(len(plans)), key=lambda i: counts[i] - wanted[i])[:short]:
        counts[index] += 1

    # --- citizens ----------------------------------------------------------------------------
    person_count = max(20, appointments // 3)
    first_person = ids.take("person", person_count)
    first_identity = ids.take("identity", person_count)
    identity_channels = rng.choices([Channel.WECHAT, Channel.TELEGRAM, Channel.TERMINAL],
                                    weights=[72, 20, 8], k=person_count)
    async with database.session() as session:
        people, accounts = [], []
        created = at_local(first_day, dt.time(8), tz)
        for n in range(person_count):
            born = dt.date(1940, 1, 1) + dt.timedelta(days=n // 900)
            number = f"330110{born:%Y%m%d}{n % 900 + 100:03d}"
            number += id_check_digit(number)
            people.append({"id": first_person + n, "name": rng.choice(SURNAMES) + "".join(
                rng.choices(GIVEN, k=rng.choice((1, 2)))), "mobile": f"1{rng.choice('3578')}"
                f"{rng.randrange(10**9):09d}", "id_hash": centre.hasher.hash(number),
                "id_masked": mask_id(number), "created_at": created, "updated_at": created})
            accounts.append({"id": first_identity + n, "channel": identity_channels[n],
                             "platform_user_id": f"seed-{seed}-{n}", "person_id": first_person + n,
                             "locale": "zh-CN", "created_at": created})
            if len(people) >= BATCH:
                await _write(session, Person, people)
                await _write(session, ChannelIdentity, accounts)
        await _write(session, Person, people)
        await _write(session, ChannelIdentity, accounts)
    say(f"{person_count} citizens")

    # --- appointments, ratings, notifications: generated slot by slot, written in batches ----
    written = ratings_written = 0
    complaints: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    ratings: list[dict[str, Any]] = []
    notes: list[dict[str, Any]] = []
    minute = dt.timedelta(minutes=1)
    grace = dt.timedelta(minutes=centre.rules.no_show_grace_minutes)
    flushed = 0
    for position, (plan, count) in enumerate(zip(plans, counts, strict=True)):
        definition = definitions[plan.service_id]
        release = at_local(plan.day - dt.timedelta(days=definition.horizon_days),
                           dt.time(8), tz)
        for _ in range(count):
            index = ids.take("appointment")
            walk_in = (rng.random() < 0.22
                       and plan.starts_at - now < dt.timedelta(hours=3))  # not days ahead
            person_n = rng.randrange(person_count)
            if walk_in:
                channel, identity = Channel.STAFF, None
                created_at = plan.starts_at - rng.uniform(5, 180) * minute
            elif rng.random() < 0.05:  # a clerk booking online seats for a phone caller
                channel, identity = Channel.STAFF, None
                created_at = release + (plan.starts_at - release) * rng.random() ** 2
            else:
                channel, identity = identity_channels[person_n], first_identity + person_n
                created_at = release + (plan.starts_at - release) * rng.random() ** 2
            created_at = min(created_at, now)
            free = (plan.capacity - plan.online_capacity - plan.offline_booked if walk_in
                    else plan.online_capacity - plan.booked)
            row = {"id": index, "code": booking_code(index), "person_id": first_person + person_n,
                   "service_id": plan.service_id, "slot_id": plan.id, "identity_id": identity,
                   "resource_id": plan.resource_id,
                   "local_date": plan.day, "starts_at": plan.starts_at, "ends_at": plan.ends_at,
                   "channel": channel, "offline": walk_in,
                   "made_by": "staff:seed" if channel == Channel.STAFF else f"{channel}:seed",
                   "age_at_booking": None, "reschedules": 0, "checked_in_at": None,
                   "completed_at": None, "no_show_at": None, "cancelled_at": None,
                   "cancel_kind": None, "cancel_reason": None, "created_at": created_at,
                   "updated_at": created_at}
            cancel = rng.random() < 0.11 or free <= 0  # a full slot: this one gave up its seat
            if cancel:
                kind = rng.choices([CancelKind.CITIZEN, CancelKind.LATE, CancelKind.STAFF,
                                    CancelKind.CENTRE], weights=[70, 6, 12, 12])[0]
                at = created_at + (min(plan.starts_at, now) - created_at) * rng.random()
                row.update(status=AppointmentStatus.CANCELLED, cancel_kind=kind,
                           cancelled_at=max(at, created_at), updated_at=max(at, created_at))
            else:
                if walk_in:
                    plan.offline_booked += 1
                else:
                    plan.booked += 1
                if plan.starts_at + grace <= now:
                    if rng.random() < 0.08 and not walk_in:
                        row.update(status=AppointmentStatus.NO_SHOW,
                                   no_show_at=plan.starts_at + grace,
                                   updated_at=plan.starts_at + grace)
                    else:
                        served = plan.starts_at + rng.uniform(5, 25) * minute
                        row.update(status=AppointmentStatus.COMPLETED,
                                   checked_in_at=plan.starts_at - rng.uniform(0, 10) * minute,
                                   completed_at=min(served, now), updated_at=min(served, now))
                        if identity is not None and rng.random() < 0.35 and served < now:
                            rated = min(served + rng.uniform(2, 600) * minute, now)
                            level = rng.choices((1, 2, 3, 4, 5), weights=(2, 3, 8, 27, 60))[0]
                            rating_id = ids.take("rating")
                            ratings.append({"id": rating_id, "appointment_id": index,
                                            "handoff_id": None, "identity_id": identity,
                                            "level": level, "comment": None,
                                            "created_at": rated})
                            if level <= 2:
                                complaints.append(_complaint(
                                    rng, centre, now, ids.take("complaint"), identity, index,
                                    rating_id, rated))
                elif plan.starts_at <= now:
                    checked = rng.random() < 0.7
                    row.update(status=AppointmentStatus.CHECKED_IN if checked
                               else AppointmentStatus.BOOKED,
                               checked_in_at=plan.starts_at if checked else None)
                else:
                    row.update(status=AppointmentStatus.BOOKED)
            rows.append(row)
            if identity is not None and rng.random() < 0.1:
                status = rng.choices([OutboxStatus.SENT, OutboxStatus.FAILED,
                                      OutboxStatus.UNDELIVERABLE], weights=[95, 3, 2])[0]
                due = plan.starts_at - dt.timedelta(hours=2)
                if due <= now:
                    notes.append({"id": ids.take("outbox"), "kind": "reminder",
                                  "dedup_key": f"seed:{seed}:{index}", "identity_id": identity,
                                  "target": None, "appointment_id": index, "payload": {},
                                  "due_at": due, "expires_at": plan.starts_at,
                                  "status": status, "attempts": 1 if status == "sent" else 6,
                                  "last_error": None, "claimed_by": None,
                                  "claimed_until": None,
                                  "sent_at": due if status == "sent" else None,
                                  "created_at": created_at})
        if len(rows) >= BATCH:
            written += len(rows)
            ratings_written += len(ratings)
            await _flush(database, plans[flushed:position + 1], rows, ratings, notes)
            flushed = position + 1
            say(f"{written} appointments")
    written += len(rows)
    ratings_written += len(ratings)
    await _flush(database, plans[flushed:], rows, ratings, notes)
    complaint_count = len(complaints)
    async with database.session() as session:
        await _write(session, Complaint, complaints)

    # --- hand-offs and blocks ------------------------------------------------------------------
    handoffs: list[dict[str, Any]] = []
    async with database.session() as session:
        for day in days:
            opened_day = at_local(day, dt.time(9), tz)
            if opened_day > now:
                break
            for _ in range(max(1, int(rng.gauss(appointments / len(days) / 200, 2)))):
                opened = opened_day + rng.uniform(0, 8 * 60) * minute
                if opened > now:
                    continue
                wait = rng.lognormvariate(1.6, 0.8)
                claimed = opened + wait * minute if rng.random() > 0.04 else None
                if claimed is not None and claimed > now:
                    claimed = None
                handoffs.append({"id": ids.take("handoff"),
                                 "identity_id": first_identity + rng.randrange(person_count),
                                 "status": RequestStatus.CLOSED if claimed else RequestStatus.OPEN,
                                 "context": {}, "opened_at": opened, "claimed_at": claimed,
                                 "claimed_by": "staff:seed" if claimed else None,
                                 "first_reply_at": claimed, "closed_at": None, "summary": None,
                                 "escalations": 0, "alert_ref": None})
        handoff_count = len(handoffs)
        await _write(session, Handoff, handoffs)
        blocks = []
        for _ in range(max(1, person_count // 300)):
            starts = now - rng.uniform(0, 200) * dt.timedelta(days=1)
            blocks.append({"id": ids.take("block"),
                           "person_id": first_person + rng.randrange(person_count),
                           "starts_at": starts, "ends_at": starts + dt.timedelta(days=90),
                           "strikes": 3, "lifted_at": None, "lifted_by": None,
                           "lift_reason": None, "created_at": starts})
        await _write(session, Block, blocks)
        await _fix_sequences(session)
    async with database.engine.connect() as connection:  # fresh statistics for the planner
        await connection.execute(text("ANALYZE"))
        await connection.commit()
    return SeedReport(appointments=written, persons=person_count, slots=len(plans),
                      first_day=first_day, last_day=last_day, seat_scale=scale,
                      ratings=ratings_written, complaints=complaint_count,
                      handoffs=handoff_count, seconds=time.perf_counter() - started)


def _complaint(rng: random.Random, centre: Centre, now: dt.datetime, complaint_id: int,
               identity: int, appointment_id: int, rating_id: int,
               rated: dt.datetime) -> dict[str, Any]:
    """A complaint opened by a bad rating, answered on time mostly, late or not yet sometimes."""
    opened = rated
    due_day = centre.calendar.next_working_day(centre.today(opened))
    due = at_local(due_day, dt.time(17), centre.tz)
    roll = rng.random()
    answered: dt.datetime | None
    if roll < 0.85:
        answered = opened + (due - opened) * rng.uniform(0.05, 0.95)
    elif roll < 0.93:
        answered = due + dt.timedelta(hours=rng.uniform(1, 48))
    else:
        answered = None
    if answered is not None and answered > now:
        answered = None
    return {"id": complaint_id, "identity_id": identity, "appointment_id": appointment_id,
            "rating_id": rating_id, "text": "评价不满意", "opened_at": opened,
            "status": RequestStatus.ANSWERED if answered else RequestStatus.OPEN,
            "first_answer_due": due, "resolution_due": due + dt.timedelta(days=21),
            "claimed_by": None, "claimed_at": None, "answered_at": answered, "resolved_at": None,
            "outcome": None, "escalations": 0}


def _converter(column: Any, dialect: str) -> Callable[[Any], Any]:
    """How one column's Python value is handed to the driver without SQLAlchemy's per-value
    processing (too slow for millions of values): the same stored form SQLAlchemy writes."""
    kind = column.type
    if isinstance(kind, UTCDateTime):
        if dialect == "postgresql":
            return lambda v: v
        return lambda v: None if v is None else v.astimezone(dt.UTC).replace(
            tzinfo=None).isoformat(" ", "microseconds")
    if isinstance(kind, Date) and dialect != "postgresql":
        return lambda v: None if v is None else v.isoformat()
    if isinstance(kind, Boolean) and dialect != "postgresql":
        return lambda v: None if v is None else int(v)
    if isinstance(kind, Enum):
        return lambda v: None if v is None else str(v.value if isinstance(v, enum.Enum) else v)
    if column.name in ("definition", "payload", "context", "detail", "data", "response"):
        return lambda v: None if v is None else json.dumps(v, ensure_ascii=False)
    return lambda v: v


async def _write(session: AsyncSession, model: Any, rows: list[dict[str, Any]]) -> None:
    """Write rows straight through the driver: COPY on PostgreSQL, executemany on SQLite, in
    the session's transaction. The list is emptied."""
    if not rows:
        return
    table = model.__table__
    connection = await session.connection()
    dialect = connection.dialect.name
    names = list(rows[0])
    convert = [_converter(table.c[name], dialect) for name in names]
    records = [tuple(f(row[name]) for f, name in zip(convert, names, strict=True))
               for row in rows]
    driver = (await connection.get_raw_connection()).driver_connection
    assert driver is not None
    if dialect == "postgresql":
        await driver.copy_records_to_table(table.name, records=records, columns=names)
    else:
        # Random booking codes land all over the unique index: a big page cache keeps the
        # insert rate flat as the table grows.
        await driver.execute("PRAGMA cache_size = -524288")
        marks = ", ".join("?" * len(names))
        await driver.executemany(
            f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks})", records)
    rows.clear()


async def _flush(database: Database, plans: list[_SlotPlan], rows: list[dict[str, Any]],
                 ratings: list[dict[str, Any]], notes: list[dict[str, Any]]) -> None:
    """Write, in one transaction, the slots these appointments sit on, then the rows."""
    async with database.session() as session:
        await _write(session, Slot, [
            {"id": p.id, "service_id": p.service_id, "resource_id": p.resource_id, "local_date": p.day,
             "starts_at": p.starts_at, "ends_at": p.ends_at, "capacity": p.capacity,
             "online_capacity": p.online_capacity, "booked": p.booked, "held": 0,
             "offline_booked": p.offline_booked} for p in plans if not p.existing])
        for plan in plans:
            if plan.existing and (plan.booked or plan.offline_booked):
                await session.execute(update(Slot).where(Slot.id == plan.id).values(
                    booked=Slot.booked + plan.booked,
                    offline_booked=Slot.offline_booked + plan.offline_booked)
                    .execution_options(synchronize_session=False))
        await _write(session, Appointment, rows)
        await _write(session, Rating, ratings)
        await _write(session, Outbox, notes)
