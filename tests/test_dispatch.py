"""Notifications end to end: outbox rows written by the booking rules, the scheduler's jobs,
the dispatcher, and the real Telegram sender talking to the fake Bot API on 127.0.0.1."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event, func, select

from bot.dispatch import Dispatcher
from bot.scheduler import Jobs, build_scheduler
from bot.telegram import TelegramChannel, build_telegram
from bot.telegram.limiter import RateLimiter
from bot.wiring import App
from handlers.engine import Assistant
from storage import attendance, booking, outbox, waitlist
from storage.clock import ManualClock
from storage.db import Database
from storage.identity import identity_for
from storage.models import (
    Appointment,
    Channel,
    ChannelIdentity,
    Complaint,
    Outbox,
    OutboxStatus,
    Rating,
    Service,
    WaitKind,
)
from storage.settings import AccessSettings, Settings, TelegramSettings
from tests.dialog import Dialog
from tests.fakes import FakeTime
from tests.fakes.telegram_api import FakeTelegram, button_labels
from tests.helpers import TZ, local, person, slots_of, valid_id

STAFF_GROUP = -1001987654321
CITIZEN = 5111000001
SUPERVISOR = 5111000099


@pytest.fixture
async def api() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
def settings(api: FakeTelegram) -> Settings:
    return dataclasses.replace(Settings(), telegram=TelegramSettings(
        token=api.token, base_url=api.base_url, base_file_url=api.base_file_url,
        staff_chat_id=STAFF_GROUP), access=AccessSettings(supervisors=(f"telegram:{SUPERVISOR}",)))


@pytest.fixture
async def channel(app: App, api: FakeTelegram) -> AsyncIterator[TelegramChannel]:
    time = FakeTime()
    assistant = Assistant(database=app.database, centre=app.centre, clock=app.clock, settings=app.settings)
    channel = build_telegram(app, assistant, limiter=RateLimiter(now=time.now, sleep=time.sleep))
    await channel.start()
    try:
        yield channel
    finally:
        await channel.close()


@pytest.fixture
def dispatcher(app: App, channel: TelegramChannel) -> Dispatcher:
    return Dispatcher(database=app.database, centre=app.centre, settings=app.settings, clock=app.clock,
                      senders={"telegram": channel.sender}, staff_senders=[channel.sender])


async def citizen_books(app: App, day: dt.date, index: int = 0, service: str = "id_card",
                        user: int = CITIZEN) -> Appointment:
    async with app.database.session() as session:
        services = {s.code: s for s in (await session.scalars(select(Service))).all()}
        slot = (await slots_of(session, app.centre, services[service], app.clock.now(), day))[index]
        citizen = await person(session, app.centre, app.clock.now(), mobile=f"13{user % 10**9:09d}",
                               id_number=valid_id(f"1101051950010{user % 10000:04d}"))
        identity = await identity_for(session, "telegram", str(user), "zh-CN", app.clock.now())
        identity.person_id = citizen.id
        return await booking.book(session, app.centre, app.clock.now(), person_id=citizen.id,
                                  slot_id=slot.id, identity_id=identity.id, channel=Channel.TELEGRAM,
                                  made_by=f"telegram:{user}", confirm=False)


def texts(api: FakeTelegram, chat: int) -> list[str]:
    return [c.params.get("text", "") for c in api.sent_to(chat)]


async def test_reminders_go_out_on_time_across_a_holiday(app: App, api: FakeTelegram,
                                                        dispatcher: Dispatcher, clock: ManualClock) -> None:
    clock.set(local(2026, 10, 5, 9))                     # National Day holiday; 12 Oct is released
    appointment = await citizen_books(app, dt.date(2026, 10, 12), index=6)   # Monday 11:00
    clock.set(local(2026, 10, 10, 17, 59))               # Saturday 10 Oct is a make-up working day
    assert (await dispatcher.drain()).sent == 0
    clock.set(local(2026, 10, 10, 18, 0))                # the evening of the previous working day
    assert (await dispatcher.drain()).sent == 1
    [evening] = texts(api, CITIZEN)
    assert "预约提醒" in evening and appointment.code in evening and "居民户口簿" in evening
    assert "提前5分钟" in evening
    clock.set(local(2026, 10, 12, 9, 0))                 # two hours before
    assert (await dispatcher.drain()).sent == 1
    assert len(texts(api, CITIZEN)) == 2
    assert (await dispatcher.drain()).claimed == 0       # nothing twice


async def test_reminder_offers_changes_only_before_the_cutoff(app: App, api: FakeTelegram,
                                                              dispatcher: Dispatcher, clock: ManualClock) -> None:
    await citizen_books(app, dt.date(2026, 11, 25), index=6)                     # ID card: 1 working day
    dental = await citizen_books(app, dt.date(2026, 11, 25), index=2, service="dental",
                                 user=CITIZEN + 1)                                # dental: 2 hours
    clock.set(local(2026, 11, 24, 18))
    await dispatcher.drain()
    id_card = api.chat_messages(CITIZEN)[-1]
    assert not id_card.get("reply_markup", {}).get("inline_keyboard")       # its cutoff has passed
    reminder = api.chat_messages(CITIZEN + 1)[-1]
    assert button_labels(reminder) == ["取消预约", "改约"]
    dialog = Dialog(Assistant(database=app.database, centre=app.centre, clock=clock, settings=app.settings),
                    user=str(CITIZEN + 1), channel="telegram")
    cancel = reminder["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    await dialog.send(choice=cancel)
    assert f"确定取消预约 {dental.code}" in dialog.text


async def test_a_cancelled_booking_gets_no_reminder(app: App, api: FakeTelegram,
                                                    dispatcher: Dispatcher, clock: ManualClock) -> None:
    appointment = await citizen_books(app, dt.date(2026, 11, 25), index=6)
    async with app.database.session() as session:
        await booking.cancel(session, app.centre, clock.now(), appointment.id, actor="telegram:x")
    clock.set(local(2026, 11, 25, 10))
    assert (await dispatcher.drain()).claimed == 0
    assert texts(api, CITIZEN) == []


async def test_a_reminder_whose_appointment_started_is_dropped_not_sent_late(
        app: App, api: FakeTelegram, dispatcher: Dispatcher, clock: ManualClock) -> None:
    appointment = await citizen_books(app, dt.date(2026, 11, 24), index=6)
    clock.set(appointment.starts_at + dt.timedelta(minutes=1))    # the process was down all along
    report = await dispatcher.drain()
    assert report.dropped == 2 and report.sent == 0
    assert texts(api, CITIZEN) == []


async def test_no_show_strike_and_block_notices(app: App, api: FakeTelegram, dispatcher: Dispatcher,
                                                clock: ManualClock) -> None:
    jobs = Jobs(app, dispatcher)
    for number, day in enumerate((dt.date(2026, 11, 24), dt.date(2026, 11, 25), dt.date(2026, 11, 26)), 1):
        clock.set(local(2026, 11, 23, 9) if number == 1 else local(day.year, day.month, day.day - 1, 9))
        appointment = await citizen_books(app, day, index=0)
        clock.set(appointment.starts_at + dt.timedelta(minutes=30))
        await jobs.sweep()
        await dispatcher.drain()
        notice, consequence = texts(api, CITIZEN)[-2:]         # in this order
        assert "视为主动放弃" in notice and appointment.code in notice
        if number < 3:
            assert f"已有{number}次失约记录" in consequence and "累计3次将暂停预约90天" in consequence
        else:
            # 90 days from the third no-show (Thursday 26 November 09:00, plus 30 minutes of
            # grace): in another year, so the year is said
            assert "预约资格暂停至2027年2月24日 周三 09:30" in consequence


async def test_rating_request_a_bad_rating_and_the_supervisor_alert(app: App, api: FakeTelegram,
                                                               dispatcher: Dispatcher, clock: ManualClock) -> None:
    appointment = await citizen_books(app, dt.date(2026, 11, 24), index=6)
    clock.set(appointment.starts_at)
    async with app.database.session() as session:
        await attendance.check_in(session, app.centre, clock.now(), appointment.code, actor="staff:1")
        await attendance.complete(session, app.centre, clock.now(), appointment.code, actor="staff:1")
    await dispatcher.drain()
    request = api.chat_messages(CITIZEN)[-1]
    assert "请为本次服务评价" in request["text"]
    assert button_labels(request) == ["非常满意", "满意", "基本满意", "不满意", "非常不满意"]
    clock.advance(dt.timedelta(days=3))                  # a reply days later still counts
    dialog = Dialog(Assistant(database=app.database, centre=app.centre, clock=clock, settings=app.settings),
                    user=str(CITIZEN), channel="telegram")
    data = next(b["callback_data"] for row in request["reply_markup"]["inline_keyboard"] for b in row
                if b["text"] == "不满意")
    await dialog.send(choice=data)
    assert "已转为投诉" in dialog.text
    await dialog.say("窗口等了很久")
    await dialog.send(choice=data)
    assert "已经评价过" in dialog.text                   # one rating per appointment
    async with app.database.read() as session:
        assert await session.scalar(select(func.count()).select_from(Rating)) == 1
        complaint = await session.scalar(select(Complaint))
        assert complaint is not None and complaint.text == "窗口等了很久"
        assert complaint.first_answer_due == local(2026, 11, 30, 17)   # rated Friday: next working day
    await dispatcher.drain()
    # Complaints are confidential: the supervisor is told in private, the staff group is not.
    told = texts(api, SUPERVISOR)
    assert any("投诉 #1" in t for t in told) and any("窗口等了很久" in t for t in told)
    assert not any("投诉" in t for t in texts(api, STAFF_GROUP))


async def test_release_notification(app: App, api: FakeTelegram, dispatcher: Dispatcher,
                                    clock: ManualClock) -> None:
    async with app.database.session() as session:
        service = await session.scalar(select(Service).where(Service.code == "id_card"))
        identity = ChannelIdentity(channel=Channel.TELEGRAM, platform_user_id=str(CITIZEN), locale="en",
                                   created_at=clock.now())
        session.add(identity)
        await session.flush()
        assert service is not None
        await waitlist.join_waitlist(session, app.centre, clock.now(), identity_id=identity.id,
                                    service_id=service.id, day=dt.date(2026, 12, 1), kind=WaitKind.RELEASE)
    jobs = Jobs(app, dispatcher)
    clock.set(local(2026, 11, 24, 7, 59))
    await jobs.sweep()
    assert (await dispatcher.drain()).sent == 0
    clock.set(local(2026, 11, 24, 8, 0))
    await jobs.sweep()
    await dispatcher.drain()
    [message] = texts(api, CITIZEN)
    assert "open for booking" in message and "Tue 1 Dec" in message


async def test_failures_retry_with_backoff_then_park_and_tell_staff_once(
        app: App, api: FakeTelegram, dispatcher: Dispatcher, clock: ManualClock) -> None:
    await citizen_books(app, dt.date(2026, 11, 25), index=6)
    api.fail("sendMessage", status=500, description="Internal Server Error", chat_id=CITIZEN, times=100)
    clock.set(local(2026, 11, 24, 18))
    waits = []
    for _ in range(Settings().notifications.max_attempts):
        await dispatcher.drain()
        async with app.database.read() as session:
            row = await session.scalar(select(Outbox).where(Outbox.kind == "reminder").order_by(Outbox.due_at))
            assert row is not None
        if row.status == OutboxStatus.PENDING:
            waits.append((row.due_at - clock.now()).total_seconds())
            clock.set(row.due_at)
    assert waits == [30, 60, 120, 240, 480]
    assert row.status == OutboxStatus.FAILED and row.attempts == 6
    await dispatcher.drain()
    await dispatcher.drain()
    alerts = [t for t in texts(api, STAFF_GROUP) if "通知发送失败" in t]
    assert len(alerts) == 1


async def test_a_user_who_blocked_the_bot_gets_nothing_more(app: App, api: FakeTelegram,
                                                             dispatcher: Dispatcher, clock: ManualClock) -> None:
    await citizen_books(app, dt.date(2026, 11, 25), index=6)
    api.block(CITIZEN)
    clock.set(local(2026, 11, 24, 18))
    assert (await dispatcher.drain()).undeliverable == 1
    calls = len(api.calls)
    clock.set(local(2026, 11, 25, 9))
    assert (await dispatcher.drain()).undeliverable == 1
    assert len(api.calls) == calls                      # not even tried
    async with app.database.read() as session:
        identity = await session.scalar(select(ChannelIdentity))
        assert identity is not None and identity.unreachable_at is not None


async def test_two_dispatchers_send_each_reminder_once(app: App, api: FakeTelegram, channel: TelegramChannel,
                                                       database_url: str, clock: ManualClock) -> None:
    for n in range(30):
        await citizen_books(app, dt.date(2026, 11, 25), index=n % 15, user=CITIZEN + n)
    clock.set(local(2026, 11, 24, 18))
    others = [Database(database_url, pool_size=4) for _ in range(2)]
    try:
        dispatchers = [Dispatcher(database=db, centre=app.centre, settings=app.settings, clock=clock,
                                  senders={"telegram": channel.sender}, owner=f"process-{i}")
                       for i, db in enumerate(others)]
        reports = await asyncio.gather(*(d.drain() for d in dispatchers))
    finally:
        for db in others:
            await db.dispose()
    assert sum(r.sent for r in reports) == 30
    assert sorted(c.chat_id for c in api.calls_to("sendMessage") if c.ok) == \
        sorted(CITIZEN + n for n in range(30))


async def test_a_claim_left_by_a_killed_process_is_picked_up(app: App, api: FakeTelegram,
                                                            dispatcher: Dispatcher, clock: ManualClock) -> None:
    await citizen_books(app, dt.date(2026, 11, 25), index=6)
    clock.set(local(2026, 11, 24, 18))
    dead = Dispatcher(database=app.database, centre=app.centre, settings=app.settings, clock=clock,
                      senders={}, owner="killed")
    assert (await dead._claim(clock.now())).ids != []          # claimed, then the process died
    assert (await dispatcher.drain()).claimed == 0       # still leased to the dead process
    clock.advance(minutes=3)
    assert (await dispatcher.drain()).sent == 1


async def test_scheduler_jobs_catch_up_missed_runs(app: App, dispatcher: Dispatcher) -> None:
    scheduler = build_scheduler(app, Jobs(app, dispatcher))
    scheduler.start(paused=True)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    scheduler.shutdown(wait=False)
    assert set(jobs) == {"dispatch", "sweep", "digest"}
    for job in jobs.values():
        assert job.misfire_grace_time is None and job.coalesce and job.max_instances == 1
    assert str(jobs["digest"].trigger.timezone) == "Asia/Shanghai"
    assert TZ.key == "Asia/Shanghai"


async def three_reminders_due(app: App, clock: ManualClock) -> None:
    for n in range(3):
        await citizen_books(app, dt.date(2026, 11, 25), index=n, user=CITIZEN + n)
    clock.set(local(2026, 11, 24, 18))


def stalling(app: App, channel: TelegramChannel) -> Dispatcher:
    """A dispatcher sending one row at a time, so a stall in one send holds back the others."""
    return Dispatcher(database=app.database, centre=app.centre, settings=app.settings,
                      clock=app.clock, senders={"telegram": channel.sender}, owner="stalled",
                      concurrency=1)


async def test_a_dispatcher_stalled_past_its_lease_sends_nothing_more(
        app: App, api: FakeTelegram, channel: TelegramChannel, database_url: str,
        clock: ManualClock) -> None:
    await three_reminders_due(app, clock)
    stalled = stalling(app, channel)
    gate = api.hold("sendMessage", once=True)
    first = asyncio.create_task(stalled.run_once())
    async with asyncio.timeout(20):                    # a guard, not a wait for time to pass
        await gate.reached.wait()
    clock.advance(stalled.policy.lease + dt.timedelta(seconds=1))   # the stall outlasts the lease
    gate.release()
    report = await first
    # The one in flight went out and is recorded; the two whose turn came after the lease ran
    # out are not sent by the process that no longer holds them...
    assert (report.sent, report.lost) == (1, 2)
    assert len(api.calls_to("sendMessage")) == 1
    other = Database(database_url, pool_size=4)
    try:
        second = Dispatcher(database=other, centre=app.centre, settings=app.settings, clock=clock,
                            senders={"telegram": channel.sender}, owner="other")
        assert (await second.drain()).sent == 2        # ...but by the next one to claim them
    finally:
        await other.dispose()
    assert sorted(c.chat_id for c in api.calls_to("sendMessage") if c.ok) == \
        [CITIZEN, CITIZEN + 1, CITIZEN + 2]
    async with app.database.read() as session:
        due = select(Outbox.status).where(Outbox.due_at <= clock.now())
        assert set((await session.scalars(due)).all()) == {OutboxStatus.SENT}


async def test_rows_claimed_by_another_while_a_dispatcher_stalled_are_sent_by_that_one_only(
        app: App, api: FakeTelegram, channel: TelegramChannel, database_url: str,
        clock: ManualClock) -> None:
    await three_reminders_due(app, clock)
    stalled = stalling(app, channel)
    gate = api.hold("sendMessage", once=True)
    first = asyncio.create_task(stalled.run_once())
    async with asyncio.timeout(20):
        await gate.reached.wait()
    clock.advance(stalled.policy.lease + dt.timedelta(seconds=1))
    other = Database(database_url, pool_size=4)
    try:
        second = Dispatcher(database=other, centre=app.centre, settings=app.settings, clock=clock,
                            senders={"telegram": channel.sender}, owner="other")
        assert (await second.drain()).sent == 3         # the lease ran out: all three are its own
    finally:
        await other.dispose()
    gate.release()
    report = await first
    assert (report.sent, report.lost) == (0, 3)         # nothing sent after resuming
    sent = [c.chat_id for c in api.calls_to("sendMessage") if c.ok]
    # The message that was in flight when the stall began arrives twice (the documented limit:
    # a send cannot be fenced once it has started); every other one exactly once.
    assert sorted(sent) == [CITIZEN, CITIZEN, CITIZEN + 1, CITIZEN + 2]


# --- few round trips per message, the same guarantees --------------------------------------------


def statements_of(database: Database) -> list[str]:
    """Every SQL statement ``database`` runs from now on."""
    seen: list[str] = []

    @event.listens_for(database.engine.sync_engine, "before_cursor_execute")
    def _record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(" ".join(statement.split()))

    return seen


async def test_a_storm_is_read_by_the_chunk_and_fenced_without_a_write_per_message(
        app: App, api: FakeTelegram, dispatcher: Dispatcher, clock: ManualClock) -> None:
    for n in range(30):
        await citizen_books(app, dt.date(2026, 11, 25), index=n % 15, user=CITIZEN + n)
    clock.set(local(2026, 11, 24, 18))
    statements = statements_of(app.database)
    report = await dispatcher.drain()
    assert (report.sent, report.lost) == (30, 0)
    assert len({c.chat_id for c in api.calls_to("sendMessage") if c.ok}) == 30
    # The appointments are read once per chunk of rows rendered together, not once per message.
    chunks = -(-30 // max(dispatcher.concurrency, 8))
    assert sum(s.startswith("SELECT appointment.") for s in statements) == chunks
    assert sum(s.startswith("SELECT account_person.") for s in statements) <= chunks
    # The claim still holds every row (the clock did not move): no send renews the lease first.
    assert not [s for s in statements if s.startswith("UPDATE outbox SET claimed_until")]


async def test_a_send_long_after_the_claim_renews_the_lease_first(
        app: App, api: FakeTelegram, channel: TelegramChannel, clock: ManualClock) -> None:
    await three_reminders_due(app, clock)
    slow = stalling(app, channel)
    gate = api.hold("sendMessage", once=True)
    first = asyncio.create_task(slow.run_once())
    async with asyncio.timeout(20):                    # a guard, not a wait for time to pass
        await gate.reached.wait()
    statements = statements_of(app.database)
    # Less than the lease, more than half of it: the next sends are fenced by a renewal.
    clock.advance(slow.policy.lease * 0.6)
    gate.release()
    report = await first
    assert (report.sent, report.lost) == (3, 0)
    assert sum(s.startswith("UPDATE outbox SET claimed_until") for s in statements) >= 1
    assert sorted(c.chat_id for c in api.calls_to("sendMessage") if c.ok) == \
        [CITIZEN, CITIZEN + 1, CITIZEN + 2]


async def test_a_round_ends_only_once_its_claims_renewal_gave_its_connection_back(
        app: App, api: FakeTelegram, channel: TelegramChannel, clock: ManualClock) -> None:
    """A renewal of the claims under way when the round's sends are done finishes before the
    round ends: cancelled mid-statement instead, its connection was closed while cancelled
    (a traceback at shutdown, or still checked out when the database was disposed)."""
    await three_reminders_due(app, clock)
    slow = stalling(app, channel)
    slow.renew_every = 0                        # the heartbeat renews as soon as the round starts
    renewing, last_recorded, renewals = asyncio.Event(), asyncio.Event(), []
    renew, record = slow._renew, slow._record

    async def held_renewal(lease: Any) -> None:
        slow.renew_every = 3600                 # one renewal: it waits for the sends to be recorded
        renewing.set()
        await last_recorded.wait()
        await renew(lease)                      # a real statement, under way as the round ends
        renewals.append("done")

    async def recording(lease: Any, outcomes: Any) -> list[bool]:
        recorded = await record(lease, outcomes)
        if len(api.calls_to("sendMessage")) == 3:
            last_recorded.set()
        return recorded

    slow._renew, slow._record = held_renewal, recording   # type: ignore[method-assign]
    gate = api.hold("sendMessage", once=True)
    first = asyncio.create_task(slow.run_once())
    async with asyncio.timeout(20):                    # a guard, not a wait for time to pass
        await gate.reached.wait()
        await renewing.wait()
    gate.release()
    report = await first
    assert (report.sent, report.lost) == (3, 0)
    assert renewals == ["done"]
    assert app.database.engine.pool.checkedout() == 0   # type: ignore[attr-defined]


async def test_concurrent_claims_never_hand_one_row_to_two_dispatchers(
        app: App, database_url: str, clock: ManualClock) -> None:
    async with app.database.session() as session:
        for n in range(90):
            await outbox.enqueue(session, kind="delivery_failed", dedup_key=f"claim-race:{n}",
                                 now=clock.now(), target="staff", payload={"n": n})
    policy = outbox.DeliveryPolicy(batch_size=7)
    databases = [Database(database_url, pool_size=2) for _ in range(6)]

    async def claims(database: Database, owner: str) -> list[list[int]]:
        taken: list[list[int]] = []
        while True:
            async with database.session() as session:
                claim = await outbox.claim_due(session, clock.now(), owner, policy)
            if not claim.ids:
                return taken
            taken.append(claim.ids)

    try:
        results = await asyncio.gather(*(claims(db, f"process-{i}")
                                         for i, db in enumerate(databases)))
    finally:
        for database in databases:
            await database.dispose()
    ids = [row_id for taken in results for batch in taken for row_id in batch]
    assert len(ids) == len(set(ids)) == 90              # every row once, none twice
    assert all(len(batch) <= 7 for taken in results for batch in taken)
    async with app.database.read() as session:
        owners = (await session.execute(select(Outbox.id, Outbox.claimed_by))).all()
    by_owner = {row_id: owner for row_id, owner in owners}
    for index, taken in enumerate(results):
        assert all(by_owner[row_id] == f"process-{index}" for batch in taken for row_id in batch)


async def test_outcomes_recorded_together_skip_a_row_another_claim_took(
        app: App, clock: ManualClock) -> None:
    async with app.database.session() as session:
        for n in range(3):
            await outbox.enqueue(session, kind="delivery_failed", dedup_key=f"together:{n}",
                                 now=clock.now(), target="staff", payload={"n": n})
    policy = outbox.DeliveryPolicy(batch_size=3)
    async with app.database.session() as session:
        first = await outbox.claim_due(session, clock.now(), "a", policy)
    clock.advance(policy.lease + dt.timedelta(seconds=1))          # "a" stalled past its lease
    async with app.database.session() as session:
        second = await outbox.claim_due(session, clock.now(), "b",
                                        dataclasses.replace(policy, batch_size=1))
    assert second.ids == first.ids[:1]
    async with app.database.session() as session:
        recorded = await outbox.record_outcomes(
            session, first.token, [(row_id, outbox.Outcome(OutboxStatus.SENT))
                                   for row_id in first.ids], clock.now(), policy)
    # The row "b" claims since is "b"'s to record; the two nobody took are what "a" did.
    assert recorded == [False, True, True]
    async with app.database.read() as session:
        states = dict((await session.execute(select(Outbox.id, Outbox.status))).all())
    assert [states[row_id] for row_id in first.ids] == \
        [OutboxStatus.SENDING, OutboxStatus.SENT, OutboxStatus.SENT]
