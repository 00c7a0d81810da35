from __future__ import annotations

import datetime as dt
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from storage import migrate
from storage.accounts import visible_bookings
from storage.db import Database
from storage.models import AccountPerson, Base, Complaint, LinkMethod, Person, Relation
from tests.conftest import postgres_url


async def test_models_and_migrations_agree(database: Database) -> None:
    assert await migrate.current_revision(database) == migrate.head_revision()
    assert await migrate.schema_differences(database) == []


async def test_upgrade_twice_changes_nothing(database: Database) -> None:
    await migrate.upgrade(database)
    assert await migrate.schema_differences(database) == []


@pytest.fixture
async def empty_database(tmp_path: Path) -> AsyncIterator[Database]:
    """A database with no tables at all: a new SQLite file, or a new PostgreSQL database next
    to the test one (dropped afterwards)."""
    url = postgres_url()
    if not url:
        database = Database(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
        yield database
        await database.dispose()
        return
    name = f"yuyue_migration_{os.getpid()}"
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        database = Database(make_url(url).set(database=name).render_as_string(hide_password=False))
        try:
            yield database
        finally:
            await database.dispose()
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE "{name}"'))
    finally:
        await admin.dispose()


@pytest.mark.database        # empty_database makes its own database next to the test one
async def test_0003_keeps_everything_and_makes_each_binding_a_self_link(empty_database: Database) -> None:
    """A database made at revision 0002, with people, accounts bound to them, bookings and
    conversation state, upgrades with nothing lost."""
    database = empty_database
    await migrate.upgrade(database, "0002")
    at = dt.datetime(2026, 11, 20, 2, 0, tzinfo=dt.UTC)
    tables = Base.metadata.tables
    rows: dict[str, list[dict[str, Any]]] = {
        "department": [{"id": 1, "code": "town", "kind": "centre", "name_zh": "中心", "name_en": "Centre",
                        "definition": {}, "created_at": at, "updated_at": at}],
        "service": [{"id": 1, "code": "id_card", "department_id": 1, "name_zh": "身份证", "name_en": "ID",
                     "definition": {"k": 1}, "definition_hash": "h", "active": True, "slots_through": None,
                     "created_at": at, "updated_at": at}],
        "slot": [{"id": 1, "service_id": 1, "local_date": dt.date(2026, 11, 24), "starts_at": at,
                  "ends_at": at + dt.timedelta(minutes=20), "capacity": 6, "online_capacity": 3,
                  "booked": 2, "held": 0, "offline_booked": 0}],
        "person": [{"id": 1, "name": "张三", "mobile": "13812345678", "id_hash": "a" * 64,
                    "id_masked": "110***********002X", "created_at": at, "updated_at": at},
                   {"id": 2, "name": "李四", "mobile": "13900000000", "id_hash": None, "id_masked": None,
                    "created_at": at, "updated_at": at}],
        "channel_identity": [
            {"id": 1, "channel": "telegram", "platform_user_id": "1", "person_id": 1, "locale": "zh-CN",
             "created_at": at},
            {"id": 2, "channel": "wechat", "platform_user_id": "o-2", "person_id": 1, "locale": "en",
             "created_at": at},
            {"id": 3, "channel": "terminal", "platform_user_id": "me", "person_id": 2, "locale": "zh-CN",
             "created_at": at},
            {"id": 4, "channel": "telegram", "platform_user_id": "4", "person_id": None, "locale": "zh-CN",
             "created_at": at}],
        "appointment": [
            {"id": n, "code": code, "person_id": person, "service_id": 1, "slot_id": 1, "identity_id": identity,
             "local_date": dt.date(2026, 11, 24), "starts_at": at, "ends_at": at + dt.timedelta(minutes=20),
             "status": "booked", "channel": channel, "offline": False, "made_by": "x", "reschedules": 0,
             "created_at": at, "updated_at": at}
            for n, code, person, identity, channel in ((1, "AAAAAA", 1, 1, "telegram"),
                                                       (2, "BBBBBB", 2, None, "staff"))],
        "conversation": [{"channel": "telegram", "user_id": "1", "flow": "booking", "step": "summary",
                          "data": {"person": 1, "slot_id": 1}, "updated_at": at}],
        "block": [{"id": 1, "person_id": 1, "starts_at": at, "ends_at": at + dt.timedelta(days=90),
                   "strikes": 3, "created_at": at}],
    }
    async with database.engine.begin() as connection:
        for table, values in rows.items():
            await connection.execute(tables[table].insert(), values)
    await migrate.upgrade(database)
    assert await migrate.schema_differences(database) == []
    async with database.read() as session:
        for table, values in rows.items():
            columns = [tables[table].c[name] for name in values[0]]
            found = (await session.execute(select(*columns).order_by(*tables[table].primary_key.columns)))
            assert [dict(row._mapping) for row in found] == values, table
        links = (await session.scalars(select(AccountPerson).order_by(AccountPerson.identity_id))).all()
        # Person 1 was bound to two accounts: either may have typed the mobile on record.
        assert [(link.identity_id, link.person_id, link.relation, link.method, link.consent_version,
                 link.mobile) for link in links] == [
            (1, 1, Relation.SELF, LinkMethod.MIGRATED, None, None),
            (2, 1, Relation.SELF, LinkMethod.MIGRATED, None, None),
            (3, 2, Relation.SELF, LinkMethod.MIGRATED, None, "13900000000")]
        # Dated when the account was made: the migration reads no clock.
        assert [link.created_at for link in links] == [at, at, at]
        people = (await session.scalars(select(Person).order_by(Person.id))).all()
        assert [(p.id_tail_hash, p.erased_at) for p in people] == [(None, None), (None, None)]
        # Who sees what after the upgrade: each account what it made; the staff booking nobody.
        assert [g.person.person_id for g in await visible_bookings(session, account_id=1)] == [1]
        for account_id in (2, 3, 4):
            assert await visible_bookings(session, account_id=account_id) == []


@pytest.mark.database        # empty_database makes its own database next to the test one
async def test_0012_carries_over_the_complaints_low_ratings_opened(empty_database: Database) -> None:
    """A complaint opened by a low rating before revision 0012 becomes a complaint of category
    "other" about its appointment's service and person."""
    database = empty_database
    await migrate.upgrade(database, "0011")
    at = dt.datetime(2026, 11, 20, 2, 0, tzinfo=dt.UTC)
    statements = [
        "INSERT INTO department (id, code, kind, name_zh, name_en, definition, created_at, updated_at)"
        " VALUES (1, 'town', 'centre', '中心', 'Centre', '{}', :at, :at)",
        "INSERT INTO service (id, code, department_id, name_zh, name_en, definition, definition_hash,"
        " active, created_at, updated_at) VALUES (1, 'id_card', 1, '身份证', 'ID', '{}', 'h', true, :at, :at)",
        "INSERT INTO slot (id, service_id, local_date, starts_at, ends_at, capacity, online_capacity,"
        " booked, held, offline_booked) VALUES (1, 1, '2026-11-24', :at, :at, 6, 3, 1, 0, 0)",
        "INSERT INTO person (id, name, mobile, created_at, updated_at)"
        " VALUES (1, '张三', '13812345678', :at, :at)",
        "INSERT INTO channel_identity (id, channel, platform_user_id, person_id, locale, created_at)"
        " VALUES (1, 'telegram', '1', 1, 'zh-CN', :at)",
        "INSERT INTO appointment (id, code, person_id, service_id, slot_id, identity_id, local_date,"
        " starts_at, ends_at, status, channel, \"offline\", made_by, reschedules, created_at, updated_at)"
        " VALUES (1, 'AAAAAA', 1, 1, 1, 1, '2026-11-24', :at, :at, 'completed', 'telegram', false,"
        " 'x', 0, :at, :at)",
        "INSERT INTO complaint (id, identity_id, appointment_id, text, status, opened_at,"
        " first_answer_due, resolution_due, escalations)"
        " VALUES (1, 1, 1, '等了很久', 'open', :at, :at, :at, 0)",
        "INSERT INTO complaint (id, identity_id, text, status, opened_at, first_answer_due,"
        " resolution_due, escalations) VALUES (2, 1, '', 'closed', :at, :at, :at, 0)",
    ]
    async with database.engine.begin() as connection:
        for statement in statements:
            await connection.execute(text(statement), {"at": at})
    await migrate.upgrade(database)
    assert await migrate.schema_differences(database) == []
    async with database.read() as session:
        rows = (await session.scalars(select(Complaint).order_by(Complaint.id))).all()
        assert [(c.category, c.kind, c.service_id, c.person_id, c.priority, c.repeats, c.reopened,
                 c.complex, c.text) for c in rows] == [
            ("other", "complaint", 1, 1, 0, 0, 0, False, "等了很久"),
            ("other", "complaint", None, None, 0, 0, 0, False, "")]
