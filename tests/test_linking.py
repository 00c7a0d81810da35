"""Linking accounts by a one-time code and attaching staff-made bookings by proof, with the
clock moved by hand (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from storage import booking
from storage.accounts import AccountRefusal, AccountRefused, linked_accounts, may_act_on
from storage.centre import Centre
from storage.clock import ManualClock
from storage.db import Database
from storage.linking import (
    Challenge,
    OneTimeCode,
    attach_staff_booking,
    link_with,
    unlink_accounts,
)
from storage.models import AccountLink, AuditLog, LinkCode, Outbox, OutboxStatus, Relation
from tests.helpers import make_centre
from tests.test_accounts import DAYS, HOLDER_ID, add, book, new_account, open_days, seen

MINUTE = dt.timedelta(minutes=1)


@pytest.fixture
def centre() -> Centre:
    return make_centre()


async def ask(database: Database, centre: Centre, clock: ManualClock, account_id: int) -> Challenge:
    async with database.session() as session:
        return await OneTimeCode(centre).challenge(session, clock.now(), account_id=account_id)


async def answer(database: Database, centre: Centre, clock: ManualClock, account_id: int,
                 code: str) -> AccountRefused | int:
    """The account linked to, or the refusal (the wrong try committed, as a handler does)."""
    async with database.session() as session:
        try:
            linked = await link_with(session, clock.now(), OneTimeCode(centre),
                                     account_id=account_id, answer=code)
        except AccountRefused as refused:
            return refused
        return linked.account_id


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10 ** 6:06d}"


async def test_a_code_links_two_accounts_once_and_is_kept_only_hashed(
        database: Database, centre: Centre, clock: ManualClock) -> None:
    wechat = await new_account(database, clock, "o-1", "wechat")
    telegram = await new_account(database, clock, "1")
    third = await new_account(database, clock, "3")
    challenge = await ask(database, centre, clock, wechat)
    assert challenge.code is not None and len(challenge.code) == 6 and challenge.code.isdigit()
    assert challenge.code not in repr(challenge) and challenge.expires_at == clock.now() + 10 * MINUTE
    async with database.read() as session:
        stored = (await session.scalars(select(LinkCode))).one()
        audits = (await session.scalars(select(AuditLog))).all()
    assert challenge.code not in stored.code_hash and len(stored.code_hash) == 64
    assert all(challenge.code not in str(a.detail) for a in audits)

    own = await answer(database, centre, clock, wechat, challenge.code)
    assert isinstance(own, AccountRefused) and own.reason == AccountRefusal.OWN_CODE
    assert await answer(database, centre, clock, telegram, f" {challenge.code[:3]} {challenge.code[3:]} ") == wechat
    again = await answer(database, centre, clock, third, challenge.code)       # single use
    assert isinstance(again, AccountRefused) and again.reason == AccountRefusal.WRONG_ANSWER
    async with database.read() as session:
        assert [a.account_id for a in await linked_accounts(session, account_id=wechat)] == [telegram]
        assert [(a.account_id, a.channel, a.user) for a in
                await linked_accounts(session, account_id=telegram)] == [(wechat, "wechat", "…o-1")]
        assert await linked_accounts(session, account_id=third) == []
        assert (await session.scalars(select(LinkCode))).all() == []


async def test_a_code_expires_and_a_new_one_replaces_the_old(
        database: Database, centre: Centre, clock: ManualClock) -> None:
    asking = await new_account(database, clock, "o-1", "wechat")
    typing = await new_account(database, clock, "1")
    old = await ask(database, centre, clock, asking)
    new = await ask(database, centre, clock, asking)
    assert old.code and new.code
    if old.code != new.code:
        refused = await answer(database, centre, clock, typing, old.code)
        assert isinstance(refused, AccountRefused) and refused.reason == AccountRefusal.WRONG_ANSWER
    clock.advance(10 * MINUTE)
    expired = await answer(database, centre, clock, typing, new.code)
    assert isinstance(expired, AccountRefused) and expired.reason == AccountRefusal.WRONG_ANSWER
    fresh = await ask(database, centre, clock, asking)
    assert fresh.code
    clock.advance(10 * MINUTE - dt.timedelta(seconds=1))
    assert await answer(database, centre, clock, typing, fresh.code) == asking


async def test_five_wrong_codes_lock_the_account_for_an_hour(
        database: Database, centre: Centre, clock: ManualClock) -> None:
    asking = await new_account(database, clock, "o-1", "wechat")
    typing = await new_account(database, clock, "1")
    challenge = await ask(database, centre, clock, asking)
    assert challenge.code
    left = []
    for _ in range(5):
        refused = await answer(database, centre, clock, typing, wrong(challenge.code))
        assert isinstance(refused, AccountRefused)
        left.append(refused.details.get("tries_left", refused.reason))
        clock.advance(MINUTE)
    assert left == [4, 3, 2, 1, AccountRefusal.LOCKED]
    locked_at = clock.now() - MINUTE
    refused = await answer(database, centre, clock, typing, challenge.code)   # even the right one
    assert isinstance(refused, AccountRefused) and refused.reason == AccountRefusal.LOCKED
    assert refused.details["until"] == locked_at + 60 * MINUTE
    clock.set(locked_at + 60 * MINUTE - dt.timedelta(seconds=1))
    challenge = await ask(database, centre, clock, asking)
    assert challenge.code
    refused = await answer(database, centre, clock, typing, challenge.code)
    assert isinstance(refused, AccountRefused) and refused.reason == AccountRefusal.LOCKED
    clock.set(locked_at + 60 * MINUTE)
    assert await answer(database, centre, clock, typing, challenge.code) == asking


async def test_linked_accounts_see_each_others_bookings_until_either_unlinks(
        database: Database, centre: Centre, clock: ManualClock) -> None:
    slots = await open_days(database, centre, clock)
    wechat = await new_account(database, clock, "o-1", "wechat")
    telegram = await new_account(database, clock, "1")
    terminal = await new_account(database, clock, "me", "terminal")
    me = await add(database, centre, clock, wechat, "张三", HOLDER_ID)
    assert await add(database, centre, clock, telegram, "张三", HOLDER_ID) == me
    on_wechat = await book(database, centre, clock, wechat, me, slots[DAYS[0]][0])
    on_telegram = await book(database, centre, clock, telegram, me, slots[DAYS[1]][0])
    assert await seen(database, wechat) == {me: {on_wechat.code}}

    for unlinking in (wechat, telegram):
        challenge = await ask(database, centre, clock, wechat)
        assert challenge.code and await answer(database, centre, clock, telegram, challenge.code) == wechat
        assert await seen(database, wechat) == await seen(database, telegram) == {
            me: {on_wechat.code, on_telegram.code}}
        async with database.read() as session:
            assert await may_act_on(session, account_id=telegram, appointment_id=on_wechat.id)
        challenge = await ask(database, centre, clock, telegram)   # a link is not passed on
        assert challenge.code and await answer(database, centre, clock, terminal, challenge.code) == telegram
        assert await seen(database, terminal) == {me: {on_telegram.code}}
        async with database.session() as session:
            await unlink_accounts(session, clock.now(), account_id=unlinking,
                                  other_id=telegram if unlinking == wechat else wechat)
            await unlink_accounts(session, clock.now(), account_id=terminal, other_id=telegram)
        assert await seen(database, wechat) == {me: {on_wechat.code}}
        assert await seen(database, telegram) == {me: {on_telegram.code}}
        async with database.read() as session:
            assert not await may_act_on(session, account_id=telegram, appointment_id=on_wechat.id)
    with pytest.raises(AccountRefused) as refused:
        async with database.session() as session:
            await unlink_accounts(session, clock.now(), account_id=wechat, other_id=telegram)
    assert refused.value.reason == AccountRefusal.NOT_LINKED
    async with database.read() as session:
        assert (await session.scalars(select(AccountLink))).all() == []


async def attach(database: Database, centre: Centre, clock: ManualClock, account_id: int, code: str,
                 tail: str) -> AccountRefused | int:
    async with database.session() as session:
        try:
            appointment = await attach_staff_booking(session, centre, clock.now(),
                                                     account_id=account_id, code=code, id_tail=tail)
        except AccountRefused as refused:
            return refused
        return appointment.id


async def test_a_staff_booking_is_attached_only_with_its_code_and_the_id_ending(
        database: Database, centre: Centre, clock: ManualClock) -> None:
    slots = await open_days(database, centre, clock)
    holder = await new_account(database, clock, "holder")
    stranger = await new_account(database, clock, "stranger")
    me = await add(database, centre, clock, holder, "张三", HOLDER_ID)
    at_window = await book(database, centre, clock, None, me, slots[DAYS[1]][0], staff=True)
    online = await book(database, centre, clock, holder, me, slots[DAYS[0]][0])
    assert await seen(database, holder) == {me: {online.code}}

    wrong_tail = HOLDER_ID[-6:-1] + ("0" if HOLDER_ID[-1] != "0" else "1")
    for code, tail in ((at_window.code, wrong_tail), (online.code, HOLDER_ID[-6:]),  # not a staff booking
                       ("ZZZZZZ", HOLDER_ID[-6:]), (at_window.code, "12")):
        refused = await attach(database, centre, clock, holder, code, tail)
        assert isinstance(refused, AccountRefused) and refused.reason == AccountRefusal.WRONG_ANSWER
    assert await attach(database, centre, clock, holder, at_window.code.lower(), HOLDER_ID[-6:].lower()) \
        == at_window.id
    assert await seen(database, holder) == {me: {online.code, at_window.code}}
    async with database.read() as session:
        reminders = (await session.scalars(select(Outbox).where(
            Outbox.appointment_id == at_window.id, Outbox.status == OutboxStatus.PENDING))).all()
    assert reminders and {r.identity_id for r in reminders} == {holder}
    # Attached once: the same proof from another account opens nothing.
    refused = await attach(database, centre, clock, stranger, at_window.code, HOLDER_ID[-6:])
    assert isinstance(refused, AccountRefused) and refused.reason == AccountRefusal.WRONG_ANSWER
    assert await seen(database, stranger) == {}
    assert await attach(database, centre, clock, holder, at_window.code, HOLDER_ID[-6:]) == at_window.id


async def test_attaching_is_rate_limited_and_ends_with_the_booking(
        database: Database, centre: Centre, clock: ManualClock) -> None:
    slots = await open_days(database, centre, clock)
    holder = await new_account(database, clock, "holder")
    guesser = await new_account(database, clock, "guesser")
    me = await add(database, centre, clock, holder, "张三", HOLDER_ID, Relation.SELF)
    at_window = await book(database, centre, clock, None, me, slots[DAYS[0]][0], staff=True)
    for n in range(5):
        refused = await attach(database, centre, clock, guesser, at_window.code, f"{n:06d}")
        assert isinstance(refused, AccountRefused)
    assert refused.reason == AccountRefusal.LOCKED
    refused = await attach(database, centre, clock, guesser, at_window.code, HOLDER_ID[-6:])
    assert isinstance(refused, AccountRefused) and refused.reason == AccountRefusal.LOCKED
    clock.set(at_window.starts_at)
    async with database.session() as session:
        await booking.cancel(session, centre, clock.now(), at_window.id, actor="staff:1", by_staff=True)
    refused = await attach(database, centre, clock, holder, at_window.code, HOLDER_ID[-6:])
    assert isinstance(refused, AccountRefused) and refused.reason == AccountRefusal.NOT_ATTACHABLE
    assert await seen(database, holder) == {}
