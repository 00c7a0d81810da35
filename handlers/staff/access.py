"""Who is staff: whoever writes in the staff group (``telegram.staff_chat_id``, followed through
a supergroup upgrade) and the accounts allow-listed in ``access.staff``/``supervisors``/
``managers``. Anyone else is politely refused and the attempt is logged (what was tried and the
channel, never who: their account id is personal data)."""

from __future__ import annotations

import logging

from handlers.context import Ctx
from handlers.core import Reply
from storage.models import Channel
from storage.reach import staff_chat_id

log = logging.getLogger("yuyue.staff")


async def in_staff_group(ctx: Ctx) -> bool:
    """The message came from the configured staff group (or the supergroup it became)."""
    incoming = ctx.incoming
    configured = ctx.settings.telegram.staff_chat_id
    if not (incoming.is_group and incoming.channel == Channel.TELEGRAM.value and configured):
        return False
    try:
        chat = int(incoming.chat_id)
    except ValueError:
        return False
    return chat == await staff_chat_id(ctx.session, configured)


async def is_staff(ctx: Ctx) -> bool:
    """Staff group members, and allow-listed staff, supervisors and managers anywhere."""
    access = ctx.settings.access
    if ctx.actor in (*access.staff, *access.supervisors, *access.managers):
        return True
    return await in_staff_group(ctx)


async def guard(ctx: Ctx, what: str) -> list[Reply] | None:
    """The refusal for someone who is not staff trying ``what`` ("/today", "button claim"),
    or None for staff."""
    if await is_staff(ctx):
        return None
    log.warning("staff %s refused: not staff (%s, %s chat)", what, ctx.incoming.channel,
                "group" if ctx.incoming.is_group else "private")
    # "/start" is Telegram's word; elsewhere (WeChat) the citizen sends "菜单".
    return [ctx.reply("staff.not_allowed" if ctx.incoming.channel == "telegram"
                      else "words.refusal.staff_only")]
