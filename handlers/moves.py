"""The citizen's answer to a staff offer to move their booking (/move): accept (the booking
moves onto the seat held for it) or decline (it stays exactly as it was). The offer arrives as a
notification with two self-contained buttons; the answer replaces it. Rules: storage.control."""

from __future__ import annotations

from handlers.context import Ctx
from handlers.core import Reply
from handlers.flow import Flow
from handlers.i18n import format_day, format_time
from handlers.menu import main_menu
from handlers.payloads import AcceptMove, DeclineMove
from storage import control
from storage.catalog import ServiceDef
from storage.control import ControlRefused
from storage.models import Appointment, MoveStatus, Service


async def _summary(ctx: Ctx, appointment: Appointment) -> str:
    service = await ctx.session.get(Service, appointment.service_id)
    assert service is not None  # foreign key
    definition = ServiceDef.from_json(service.definition)
    start = ctx.local(appointment.starts_at)
    return ctx.t("notice.appointment_line", service=definition.name.get(ctx.locale),
                 day=format_day(start.date(), ctx.locale), time=format_time(start),
                 place=definition.place.get(ctx.locale), code=appointment.code)


async def _answer(ctx: Ctx, offer_id: int, accept: bool) -> list[Reply]:
    try:
        offer = await control.answer_move(ctx.session, ctx.centre, ctx.now, offer_id,
                                          accept=accept, identity_id=ctx.identity.id,
                                          actor=ctx.actor)
    except ControlRefused as refused:
        status = refused.details.get("status")
        key = "move.gone_lapsed" if status == MoveStatus.LAPSED else "move.gone"
        return [ctx.reply(key), main_menu(ctx)]
    appointment = await ctx.session.get(Appointment, offer.appointment_id)
    assert appointment is not None  # foreign key
    key = "move.accepted" if offer.status == MoveStatus.ACCEPTED else "move.declined"
    return [Reply(ctx.t(key) + "\n" + await _summary(ctx, appointment), edit=True)]


async def accept(ctx: Ctx, payload: AcceptMove) -> list[Reply]:
    """Move the booking onto the seat held for the offer."""
    return await _answer(ctx, payload.offer, True)


async def decline(ctx: Ctx, payload: DeclineMove) -> list[Reply]:
    """Keep the booking as it is and give the held seat back."""
    return await _answer(ctx, payload.offer, False)


FLOW = Flow("move", actions={AcceptMove: accept, DeclineMove: decline})

