"""A small world for the case tests: the demo catalog, one citizen with a chat account, staff
and supervisors, an injected clock, and readers for the rows the operations write."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from storage import cases
from storage.cases import CaseRefusal, CaseRefused
from storage.centre import Centre
from storage.clock import ManualClock
from storage.db import Database
from storage.models import Case, CaseEvent, CaseKind, Outbox, Service
from tests.helpers import account, load_demo, make_centre, person, valid_id

STAFF = "telegram:100"
CLERK = "telegram:101"
BOSS = "telegram:900"
BOSS2 = "telegram:901"
SUPERVISORS = (BOSS, BOSS2)


@dataclass
class CaseWorld:
    database: Database
    centre: Centre
    clock: ManualClock
    services: dict[str, int]
    person_id: int
    identity_id: int
    other_identity_id: int

    def at(self, when: dt.datetime) -> None:
        self.clock.set(when)

    async def open(self, kind: CaseKind, service: str = "hukou_transfer", *,
                   with_account: bool = True, **kw: Any) -> Case:
        async with self.database.session() as session:
            return await cases.open_case(
                session, self.centre, self.clock.now(), actor=kw.pop("actor", STAFF), kind=kind,
                service_id=self.services[service], person_id=self.person_id,
                identity_id=self.identity_id if with_account else None, **kw)

    async def do(self, operation: Any, *args: Any, **kw: Any) -> Any:
        """Run one storage operation in its own transaction, as a handler would."""
        async with self.database.session() as session:
            return await operation(session, self.centre, self.clock.now(), *args, **kw)

    async def case(self, number: str) -> Case:
        async with self.database.read() as session:
            return await cases.find_case(session, number)

    async def actions(self, number: str) -> list[str]:
        async with self.database.read() as session:
            case = await cases.find_case(session, number)
            return list((await session.scalars(select(CaseEvent.action).where(
                CaseEvent.case_id == case.id).order_by(CaseEvent.id))).all())

    async def outbox(self) -> list[Outbox]:
        async with self.database.read() as session:
            return list((await session.scalars(select(Outbox).order_by(Outbox.id))).all())

    async def notices(self) -> list[tuple[str, str]]:
        """(kind, recipient) of every outbox row, in order; recipients are "citizen" or a target."""
        return [(row.kind, "citizen" if row.identity_id == self.identity_id else str(row.target))
                for row in await self.outbox()]


async def case_world(database: Database, clock: ManualClock, **rules: Any) -> CaseWorld:
    centre = make_centre(**rules)
    async with database.session() as session:
        services = await load_demo(session, clock.now())
        citizen = await person(session, centre, clock.now())
        mine = await account(session, clock.now(), user="1", person_id=citizen.id)
        other_person = await person(session, centre, clock.now(), name="李四", mobile="13900000000",
                                    id_number=valid_id("11010519800101001"))
        other = await account(session, clock.now(), user="2", person_id=other_person.id)
        ids = {code: service.id for code, service in services.items()}
        return CaseWorld(database, centre, clock, ids, citizen.id, mine.id, other.id)


async def service_row(database: Database, code: str) -> Service:
    async with database.read() as session:
        service = await session.scalar(select(Service).where(Service.code == code))
        assert service is not None
        return service


async def refused(reason: CaseRefusal, awaitable: Any) -> CaseRefused:
    """Await an operation that must be refused for ``reason``; the refusal, for its details."""
    with pytest.raises(CaseRefused) as caught:
        await awaitable
    assert caught.value.reason == reason, caught.value
    return caught.value
