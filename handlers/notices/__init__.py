"""Notices: turning an outbox row into the messages a citizen (or the staff group) sees.

The outbox stores the cause (kind, appointment, a few values); the text is made when it is
sent, in the recipient's language, so a reminder always shows the appointment as it is now.
A row that no longer makes sense (the appointment was cancelled, has started) is dropped.
By subject: ``appointments`` (a citizen's bookings), ``answers`` (what staff did for them),
``staff`` (alerts for staff), ``complaints`` (for supervisors, and the outcome), ``cases``
(办件, for citizens and staff); ``base`` holds what
they are made from.
"""

from __future__ import annotations

import datetime as dt

from handlers.notices import accounts, answers, appointments, cases, complaints, moves, resources, staff
from handlers.notices.accounts import for_whom
from handlers.notices.base import Note, Rendered, Renderer
from storage.catalog import ServiceDef
from storage.centre import Centre
from storage.db import Session
from storage.models import Appointment, ChannelIdentity, Outbox, Service
from storage.settings import Settings

RENDERERS: dict[str, Renderer] = {**appointments.RENDERERS, **answers.RENDERERS, **staff.RENDERERS,
                                  **cases.RENDERERS, **accounts.RENDERERS, **resources.RENDERERS,
                                  **moves.RENDERERS, **complaints.RENDERERS}


async def render(session: Session, centre: Centre, settings: Settings, row: Outbox,
                 identity: ChannelIdentity | None, now: dt.datetime) -> Rendered:
    """The messages for one outbox row, in the recipient's language."""
    locale = identity.locale if identity is not None else settings.general.locale
    note = Note(session, centre, settings, now, row, locale)
    if row.appointment_id is not None:
        note.appointment = await session.get(Appointment, row.appointment_id)
        if note.appointment is not None:
            service = await session.get(Service, note.appointment.service_id)
            note.service = ServiceDef.from_json(service.definition) if service else None
            note.booked_for = await for_whom(note)
    renderer = RENDERERS.get(row.kind)
    if renderer is None:
        return Rendered(drop=f"no renderer for {row.kind}")
    rendered = await renderer(note)
    if not rendered.fields:
        rendered.fields = note.fields()
    return rendered
