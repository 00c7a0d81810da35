"""Staff and the accounts model: who booked (the booking account's channel, masked, and for
whom) in /find, and /person, the audited correction of a person's name or mobile with a reason
(after checking their papers at the window)."""

from __future__ import annotations

from handlers.context import Ctx
from handlers.core import Reply
from storage import accounts
from storage.accounts import AccountRefusal, AccountRefused
from storage.identity import InvalidValue
from storage.models import Appointment

_FIELDS = {"name": "name", "姓名": "name", "mobile": "mobile", "手机": "mobile", "手机号": "mobile"}


async def booked_by_text(ctx: Ctx, appointment: Appointment) -> str:
    """" · 微信 …1234 代约（父母）": the account that made or attached the booking, masked, and
    the relation of the person to it when it booked for someone else; "" for none."""
    found = await accounts.booked_by(ctx.session, appointment)
    if found is None:
        return ""
    channel, user, relation = found
    text = ctx.t("staff_people.booked_by", channel=ctx.t(f"people.channel_{channel}"), user=user)
    if relation is not None:
        text += ctx.t("staff_people.for_other", relation=ctx.t(f"people.relation_{relation.value}"))
    return text


async def correct(ctx: Ctx, args: str) -> list[Reply]:
    """Correct the name or mobile of the person of a booking: /person CODE name|mobile VALUE
    REASON (audited with the reason; the old and new values are not written to the audit)."""
    words = args.split()
    if len(words) < 4 or words[1].lower() not in _FIELDS:
        return [ctx.reply("staff_people.usage")]
    code, field, value, reason = words[0].upper(), _FIELDS[words[1].lower()], words[2], " ".join(words[3:])
    appointment = await ctx.session.scalar(
        accounts.select_appointment_by_code(code))
    if appointment is None:
        return [ctx.reply("staff.refused_unknown_code", code=code)]
    try:
        view = await accounts.correct_person(
            ctx.session, ctx.now, person_id=appointment.person_id, actor=ctx.actor, reason=reason,
            **{field: value})
    except InvalidValue as bad:
        return [ctx.reply(f"invalid.{bad.code}")]
    except AccountRefused as refused:
        key = {AccountRefusal.NOTHING_TO_CORRECT: "staff_people.nothing",
               AccountRefusal.REASON_REQUIRED: "staff_people.usage"}.get(refused.reason,
                                                                           "staff_people.unknown")
        return [ctx.reply(key)]
    return [ctx.reply("staff_people.corrected", code=code, name=view.name, mobile=view.mobile,
                      field=ctx.t(f"staff_people.field_{field}"))]
