"""A period's appointments, one row each and masked, for the manager's spreadsheets."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, fields

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.centre import Centre
from storage.identity import mask_mobile, mask_name
from storage.models import Appointment, Person, Rating, Resource, Service
from storage.stats.counting import in_scope
from storage.stats.periods import Period, Scope


@dataclass(frozen=True)
class AppointmentRow:
    """One appointment for an export, personal data masked. Times are local to the centre."""

    code: str
    service_code: str
    service_name: str
    local_date: dt.date
    starts_at: dt.datetime
    status: str
    channel: str
    offline: bool
    name: str            # masked: 张*
    mobile: str          # masked: 138****5678
    id_number: str       # the stored masked form (110***********1234), or ""
    created_at: dt.datetime
    checked_in_at: dt.datetime | None
    completed_at: dt.datetime | None
    cancelled_at: dt.datetime | None
    cancel_kind: str
    rating: int | None
    doctor: str = ""     # the doctor or window who serves it (the substitute after a 替诊)


EXPORT_COLUMNS = tuple(f.name for f in fields(AppointmentRow))


async def appointment_rows(session: AsyncSession, centre: Centre, period: Period,
                           scope: Scope | None = None, *,
                           locale: str = "zh-CN") -> AsyncIterator[AppointmentRow]:
    """Yield the period's appointments one by one (streamed), in start order, masked.

    Names and mobiles are masked here, ID numbers exist only in their stored masked form, so no
    export can carry them in full.

    Args:
        locale: picks the service name's language ("zh..." or anything else for English).

    Yields:
        One row per appointment scheduled in the period, cancelled ones included.
    """
    chinese = locale.lower().startswith("zh")
    name_column = Service.name_zh if chinese else Service.name_en
    doctor_column = Resource.name_zh if chinese else Resource.name_en
    query = (select(Appointment.code, Service.code, name_column, Appointment.local_date,
                    Appointment.starts_at, Appointment.status, Appointment.channel,
                    Appointment.offline, Person.name, Person.mobile, Person.id_masked,
                    Appointment.created_at, Appointment.checked_in_at, Appointment.completed_at,
                    Appointment.cancelled_at, Appointment.cancel_kind, Rating.level, doctor_column)
             .join(Service, Service.id == Appointment.service_id)
             .join(Person, Person.id == Appointment.person_id)
             .outerjoin(Rating, Rating.appointment_id == Appointment.id)
             .outerjoin(Resource, Resource.id == Appointment.resource_id)
             .where(Appointment.local_date >= period.first, Appointment.local_date <= period.last,
                    in_scope(Appointment.service_id, scope))
             .order_by(Appointment.starts_at, Appointment.id))
    tz = centre.tz

    def local(value: dt.datetime | None) -> dt.datetime | None:
        return value.astimezone(tz) if value is not None else None

    result = await session.stream(query.execution_options(yield_per=1000))
    async for (code, service_code, service_name, day, starts_at, status, channel, offline, name,
               mobile, id_masked, created_at, checked_in_at, completed_at, cancelled_at,
               cancel_kind, level, doctor) in result:
        yield AppointmentRow(
            code=code, service_code=service_code, service_name=service_name, local_date=day,
            starts_at=starts_at.astimezone(tz), status=str(status), channel=str(channel),
            offline=bool(offline), name=mask_name(name), mobile=mask_mobile(mobile),
            id_number=id_masked or "", created_at=created_at.astimezone(tz),
            checked_in_at=local(checked_in_at), completed_at=local(completed_at),
            cancelled_at=local(cancelled_at), cancel_kind=str(cancel_kind) if cancel_kind else "",
            rating=level, doctor=doctor or "")
