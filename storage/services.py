"""The departments and services the catalog loaded, as the conversations and staff look them up."""

from __future__ import annotations

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.catalog import ServiceDef
from storage.models import Department, Service


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
    return service, ServiceDef.from_json(service.definition)


async def service_or_department(session: AsyncSession, word: str) -> Service | Department | None:
    """The service or else the department a staff member named by code or name ("id_card",
    "居民身份证办理", "dental clinic")."""
    service = await session.scalar(select(Service).where(
        or_(Service.code == word, Service.name_zh == word,
            func.lower(Service.name_en) == word.lower())))
    if service is not None:
        return service
    return await session.scalar(select(Department).where(
        or_(Department.code == word, Department.name_zh == word)))
