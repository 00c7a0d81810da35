"""Resources: the doctors and windows that serve services, loaded from the catalog, and the
questions the conversation asks about them (who serves a service, who is like whom).

A service without resources works as before: one slot per start, the catalog's seats.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.catalog import TITLES, Catalog, LoadReport, ResourceDef, ServiceDef, Text
from storage.models import (
    Appointment,
    Resource,
    RosterException,
    RosterPattern,
    Service,
    ServiceResource,
    Slot,
)
from storage.rosters import online_seats


@dataclass(frozen=True)
class ResourceInfo:
    """What citizens and staff see of a resource."""

    id: int
    code: str
    kind: str
    name: Text
    title: str | None
    specialty: Text | None
    intro: Text | None
    photo: str

    @classmethod
    def of(cls, row: Resource) -> ResourceInfo:
        definition = row.definition or {}
        intro = definition.get("intro")
        return cls(row.id, row.code, row.kind, Text(row.name_zh, row.name_en), row.title,
                   Text(row.specialty_zh, row.specialty_en or row.specialty_zh)
                   if row.specialty_zh else None,
                   Text(intro["zh"], intro["en"]) if intro else None, definition.get("photo", ""))


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False,
                                     default=str).encode()).hexdigest()


async def load_resources(session: AsyncSession, catalog: Catalog, now: dt.datetime,
                         report: LoadReport) -> None:
    """Create or update the catalog's resources, their services and rosters.

    A resource whose definition changed gets the catalog's roster again (a change made with
    ``/roster`` since is replaced) and its future slots nobody booked are made again; one that
    did not change keeps what staff set. A resource no longer in the file is deactivated.
    """
    services = {s.code: s for s in (await session.scalars(select(Service))).all()}
    rows = {r.code: r for r in (await session.scalars(select(Resource))).all()}
    definitions = {s.code: s for s in catalog.services}
    for resource in catalog.resources:
        data = dataclasses.asdict(resource)
        digest = _digest(data)
        row = rows.pop(resource.code, None)
        if row is not None and row.definition_hash == digest and row.active:
            continue
        stored = {"intro": dataclasses.asdict(resource.intro) if resource.intro else None,
                  "photo": resource.photo}
        fields = dict(kind=resource.kind, name_zh=resource.name.zh, name_en=resource.name.en,
                      title=resource.title,
                      specialty_zh=resource.specialty.zh if resource.specialty else None,
                      specialty_en=resource.specialty.en if resource.specialty else None,
                      definition=stored, definition_hash=digest, active=True, updated_at=now)
        if row is None:
            row = Resource(code=resource.code, created_at=now, **fields)
            session.add(row)
            await session.flush()
            report.resources_changed.append(resource.code)
        else:
            for key, value in fields.items():
                setattr(row, key, value)
            report.resources_changed.append(resource.code)
        await _replace_roster(session, row, resource, services, definitions, now)
    for code, row in rows.items():
        if row.active:
            row.active, row.updated_at = False, now
            report.resources_deactivated.append(code)
            for (service_id,) in (await session.execute(select(ServiceResource.service_id).where(
                    ServiceResource.resource_id == row.id))).all():
                await refit_resource_slots(session, service_id, row.id, now)
    await session.flush()


async def _replace_roster(session: AsyncSession, row: Resource, resource: ResourceDef,
                          services: dict[str, Service], definitions: dict[str, ServiceDef],
                          now: dt.datetime) -> None:
    old_services = set((await session.scalars(select(ServiceResource.service_id).where(
        ServiceResource.resource_id == row.id))).all())
    await session.execute(delete(ServiceResource).where(ServiceResource.resource_id == row.id))
    await session.execute(delete(RosterPattern).where(RosterPattern.resource_id == row.id))
    await session.execute(delete(RosterException).where(RosterException.resource_id == row.id,
                                                        RosterException.created_by == "catalog"))
    for code in resource.services:
        session.add(ServiceResource(service_id=services[code].id, resource_id=row.id))
    for entry in resource.roster:
        share = entry.online_share if entry.online_share is not None else definitions[entry.service].online_share
        for weekday, half in sorted(set(entry.sessions)):
            session.add(RosterPattern(resource_id=row.id, service_id=services[entry.service].id,
                                      weekday=weekday, half=half, seats=entry.seats,
                                      online_seats=online_seats(entry.seats, share),
                                      source="catalog", updated_at=now))
    for exception in resource.exceptions:
        share = definitions[exception.service].online_share
        await session.execute(delete(RosterException).where(
            RosterException.resource_id == row.id,
            RosterException.service_id == services[exception.service].id,
            RosterException.day == exception.day, RosterException.half == exception.half))
        session.add(RosterException(resource_id=row.id, service_id=services[exception.service].id,
                                    day=exception.day, half=exception.half, seats=exception.seats,
                                    online_seats=online_seats(exception.seats, share),
                                    note=exception.note, created_by="catalog", created_at=now))
    await session.flush()
    for service_id in old_services | {services[code].id for code in resource.services}:
        await refit_resource_slots(session, service_id, row.id, now)


async def refit_resource_slots(session: AsyncSession, service_id: int, resource_id: int,
                               now: dt.datetime) -> None:
    """Make a service's future slots again after a roster change: the ones nobody booked or
    holds, of this resource (and the service's plain slots, once it has resources) go, and
    ensure_slots makes them from the roster. Booked slots stay as they are."""
    never_booked = ~exists().where(Appointment.slot_id == Slot.id)
    await session.execute(delete(Slot).where(
        Slot.service_id == service_id, Slot.starts_at > now, never_booked, Slot.held == 0,
        (Slot.resource_id == resource_id) | Slot.resource_id.is_(None))
        .execution_options(synchronize_session=False))
    service = await session.get(Service, service_id)
    if service is not None:
        service.slots_through = None


# --- questions about resources ----------------------------------------------------------------


async def resources_of(session: AsyncSession, service_id: int) -> list[ResourceInfo]:
    """The active resources serving a service, doctors by title (主任 first), then name."""
    rows = (await session.scalars(
        select(Resource).join(ServiceResource, ServiceResource.resource_id == Resource.id)
        .where(ServiceResource.service_id == service_id, Resource.active.is_(True))
        .order_by(Resource.id))).all()
    return sorted((ResourceInfo.of(r) for r in rows), key=title_rank)


def title_rank(resource: ResourceInfo) -> tuple[int, str]:
    rank = TITLES.index(resource.title) if resource.title in TITLES else len(TITLES)
    return rank, resource.name.zh


async def resource_info(session: AsyncSession, resource_id: int) -> ResourceInfo | None:
    row = await session.get(Resource, resource_id)
    return None if row is None else ResourceInfo.of(row)


async def find_resources(session: AsyncSession, words: str) -> list[ResourceInfo]:
    """Active resources whose code or name (either language) matches ``words``: an exact
    match alone when there is one, else those containing it."""
    needle = words.strip().casefold()
    if not needle:
        return []
    rows = [ResourceInfo.of(r) for r in (await session.scalars(
        select(Resource).where(Resource.active.is_(True)).order_by(Resource.id))).all()]
    exact = [r for r in rows if needle in (r.code, r.name.zh.casefold(), r.name.en.casefold())]
    if exact:
        return exact
    return [r for r in rows if needle in r.name.zh.casefold() or needle in r.name.en.casefold()
            or needle in r.code]


def likeness(candidate: ResourceInfo | None, wanted: ResourceInfo | None) -> int:
    """How near another resource is to the one a citizen wanted: 0 the same one, 1 same
    specialty and title, 2 same specialty, 3 another of the service's."""
    if wanted is None or candidate is None:
        return 3
    if candidate.id == wanted.id:
        return 0
    same_specialty = (candidate.specialty is not None and wanted.specialty is not None
                      and candidate.specialty.zh == wanted.specialty.zh)
    if same_specialty and candidate.title == wanted.title:
        return 1
    return 2 if same_specialty else 3


async def all_resources(session: AsyncSession) -> list[ResourceInfo]:
    """Every active resource, doctors by title then name."""
    rows = (await session.scalars(select(Resource).where(Resource.active.is_(True))
                                  .order_by(Resource.id))).all()
    return sorted((ResourceInfo.of(r) for r in rows), key=title_rank)


async def services_of_resource(session: AsyncSession, resource_id: int) -> list[Service]:
    """The services a resource serves."""
    return list((await session.scalars(select(Service).join(
        ServiceResource, ServiceResource.service_id == Service.id)
        .where(ServiceResource.resource_id == resource_id).order_by(Service.id))).all())
