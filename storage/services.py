"""The departments and services the catalog loaded, as the conversations and staff look them up."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import matching
from storage.catalog import CATALOG_STAMP, ServiceDef
from storage.db import fetch_rows
from storage.models import Department, Service, SharedValue


async def departments(session: AsyncSession) -> list[Department]:
    """Every department, in catalog order."""
    return list((await session.scalars(select(Department).order_by(Department.id))).all())


async def active_services(session: AsyncSession, department_id: int | None = None) -> list[Service]:
    """The services open for booking, in catalog order, of one department or of all."""
    query = select(Service).where(Service.active.is_(True)).order_by(Service.id)
    if department_id is not None:
        query = query.where(Service.department_id == department_id)
    return list((await session.scalars(query)).all())


async def active_service(session: AsyncSession,
                         service_id: int | None) -> tuple[Service, ServiceDef] | None:
    """A service open for booking with its definition, or None (unknown or withdrawn)."""
    service = await session.get(Service, service_id) if service_id is not None else None
    if service is None or not service.active:
        return None
    # The one per-process cache of parsed definitions, keyed by the definition's digest.
    from storage.seats import service_definition
    return service, await service_definition(session, service.id, service.definition_hash)


# --- the booking menus, kept per process until the next catalog load ---------------------------


@dataclass(frozen=True)
class MenuEntry:
    """A department or an open service as the booking menus list it (plain values)."""

    id: int
    code: str
    name_zh: str
    name_en: str
    department_id: int | None = None   # a service's department; None for a department


_D, _V = Department.__table__.c, Service.__table__.c
_STAMP = select(SharedValue.__table__.c.value).where(SharedValue.__table__.c.key == CATALOG_STAMP)
_MENU_DEPARTMENTS = select(_D.id, _D.code, _D.name_zh, _D.name_en).order_by(_D.id)
_MENU_SERVICES = (select(_V.id, _V.code, _V.name_zh, _V.name_en, _V.department_id)
                  .where(_V.active.is_(True)).order_by(_V.id))
# (stamp, departments, services): the menus as the catalog load stamped ``stamp`` left them.
_menus: tuple[str, tuple[MenuEntry, ...], tuple[MenuEntry, ...]] | None = None


async def _menu_rows(session: AsyncSession) -> tuple[tuple[MenuEntry, ...], tuple[MenuEntry, ...]]:
    """The departments and open services, from this process's copy while the catalog's stamp
    is the one it was read under (one primary-key read a message instead of the catalog's
    rows and their JSON); read again after any catalog load, by every process."""
    global _menus
    stamp = next(iter(await fetch_rows(session, _STAMP, {})), (None,))[0]
    if _menus is not None and stamp is not None and _menus[0] == stamp:
        return _menus[1], _menus[2]
    found = (tuple(MenuEntry(*row) for row in await session.execute(_MENU_DEPARTMENTS)),
             tuple(MenuEntry(*row) for row in await session.execute(_MENU_SERVICES)))
    if stamp is not None:   # never loaded through load_catalog: nothing to key a copy on
        _menus = (stamp, *found)
    return found


async def menu_departments(session: AsyncSession) -> list[MenuEntry]:
    """Every department, in catalog order."""
    return list((await _menu_rows(session))[0])


async def menu_services(session: AsyncSession, department_id: int | None = None) -> list[MenuEntry]:
    """The services open for booking, in catalog order, of one department or of all."""
    found = (await _menu_rows(session))[1]
    return [row for row in found if department_id is None or row.department_id == department_id]


# --- naming a service, as staff and managers type it ------------------------------------------


@dataclass(frozen=True)
class Matched:
    """What a typed name matched: one service or department (``found``), several that fit
    (``candidates``, to list), or nothing (``found`` None, no candidates: list ``known``)."""

    text: str
    found: Service | Department | None = None
    candidates: tuple[Service | Department, ...] = ()
    known: tuple[Service | Department, ...] = ()
    # Found only by the synonyms, pinyin and typo tolerance, not by a code or a name.
    fuzzy: bool = False

    @property
    def ambiguous(self) -> bool:
        return bool(self.candidates)


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip().casefold()


def _names(row: Service | Department) -> tuple[str, ...]:
    return tuple(_fold(n) for n in (row.code, row.name_zh, row.name_en) if n)


async def match_service(session: AsyncSession, text: str, *,
                        departments: bool = True) -> Matched:
    """The one matcher every staff and manager command uses to name a service (or, where it
    makes sense, a department): its code, its name in either language, or an unambiguous part
    of either ("dental", "口腔科门诊", "Dental clinic", "口腔", "身份证"). Case, width and
    surrounding spaces do not matter. An exact code or name wins over a part; a service wins
    over a department.

    Returns:
        ``Matched``: ``found``; or ``candidates`` when a part fits several; or neither, with
        every service (and department) as ``known``.
    """
    wanted = _fold(text)
    all_services: list[Service | Department] = list(
        (await session.scalars(select(Service).order_by(Service.id))).all())
    all_departments: list[Service | Department] = list(
        (await session.scalars(select(Department).order_by(Department.id))).all()) \
        if departments else []
    if not wanted:
        return Matched(text, known=(*all_services, *all_departments))
    for rows in (all_services, all_departments):
        exact = [row for row in rows if wanted in _names(row)]
        if len(exact) == 1:
            return Matched(text, found=exact[0])
        if exact:
            return Matched(text, candidates=tuple(exact))
    partial = [row for row in (*all_services, *all_departments)
               if any(wanted in name for name in _names(row))]
    if len(partial) == 1:
        return Matched(text, found=partial[0])
    if partial:
        return Matched(text, candidates=tuple(partial))
    # Last: the synonyms, pinyin and typo tolerance citizens get ("看牙", "shebaoka").
    fuzzy = [entry.key for entry in matching.best(text, [
        *(_entry(row) for row in all_services), *(_entry(row) for row in all_departments)])]
    if len(fuzzy) == 1:
        return Matched(text, found=fuzzy[0], fuzzy=True)  # type: ignore[arg-type]
    if fuzzy:
        return Matched(text, candidates=tuple(fuzzy), fuzzy=True)  # type: ignore[arg-type]
    return Matched(text, known=(*all_services, *all_departments))


def _entry(row: Service | Department) -> matching.Entry:
    """Every term naming a service (names, synonyms and phrasings, doctors) or a department."""
    definition = row.definition or {}
    return matching.Entry(row, (row.name_zh, row.name_en, *definition.get("keywords", ()),
                                *definition.get("doctors", ())))


async def find_services(session: AsyncSession, text: str) -> list[Service]:
    """The services open for booking that what a citizen typed names: a service's name, one
    of its synonyms or phrasings ("看牙", "补卡"), a doctor, or a department (all of its
    services), with toneless pinyin and typo tolerance (storage/matching.py). The best
    matches only; a service wins over a department that fits as well."""
    if len(matching.bare(text)) < 2 or text.strip().isdigit():
        return []
    open_services = await active_services(session)
    entries = [_entry(row) for row in open_services]
    entries += [_entry(row) for row in await departments(session)]
    found = matching.best(text, entries)
    if any(isinstance(entry.key, Service) for entry in found):
        return [entry.key for entry in found if isinstance(entry.key, Service)]
    department_ids = {entry.key.id for entry in found}  # type: ignore[attr-defined]
    return [row for row in open_services if row.department_id in department_ids]


async def service_ids_of(session: AsyncSession, found: Service | Department) -> tuple[int, ...]:
    """The service itself, or every service of the department (withdrawn ones included)."""
    if isinstance(found, Service):
        return (found.id,)
    return tuple((await session.scalars(select(Service.id).where(
        Service.department_id == found.id).order_by(Service.id))).all())
