"""What a citizen who asks for a person (人工服务) is told when no staff channel is configured:
nobody can answer in the chat, so no hand-off is opened; the centre's phones and staff hours
instead."""

from __future__ import annotations

from handlers.context import Ctx
from handlers.core import Reply
from handlers.menu import department_name, main_menu
from storage import services


async def no_staff(ctx: Ctx) -> list[Reply]:
    """Tell the citizen that no one can answer here, and how to reach a person instead."""
    opens, closes = ctx.settings.conversation.staff_hours
    hours = f"{opens:%H:%M}-{closes:%H:%M}"
    colon = ": " if ctx.locale == "en" else "："
    phones = [f"{department_name(ctx, department)}{colon}{department.definition.get('phone')}"
              for department in await services.departments(ctx.session)
              if department.definition.get("phone")]
    ctx.end()
    if phones:
        reply = ctx.reply("handoff.no_staff", hours=hours, phones="\n".join(phones))
    else:
        reply = ctx.reply("handoff.no_staff_no_phone", hours=hours)
    return [reply, main_menu(ctx)]
