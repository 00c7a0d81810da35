"""Text messages (短信) at the window: staff record that a citizen wants no more texts, or wants
them again, with the reason they gave (`/sms optout MOBILE REASON`, `/sms optin MOBILE REASON`),
and see the opt-out list (`/sms optouts`). A reply of 退订/TD to a text is recorded by the
provider's callback (bot/sms.py); this is for a citizen who asks at the window or by phone.

Numbers are shown masked ("138****5678") in every answer; each change is audited.
"""

from __future__ import annotations

from handlers.context import Ctx
from handlers.core import Reply
from handlers.i18n import format_day
from storage import sms as sms_store
from storage.identity import InvalidValue, mask_mobile, validate_mobile

LIST_LIMIT = 20
_OUT = {"optout", "opt-out", "out", "退订", "td"}
_IN = {"optin", "opt-in", "in", "恢复"}
_LIST = {"optouts", "list", "名单", "退订名单"}


async def sms_command(ctx: Ctx, args: str) -> list[Reply]:
    """/sms optout MOBILE REASON, /sms optin MOBILE REASON, /sms optouts."""
    words = args.split()
    action = words[0].casefold() if words else ""
    if action in _LIST:
        return [await _list(ctx)]
    if action not in _OUT | _IN or len(words) < 2:
        return [ctx.reply("sms_staff.usage")]
    try:
        mobile = validate_mobile(words[1])
    except InvalidValue:
        return [ctx.reply("sms_staff.bad_mobile")]
    reason = " ".join(words[2:]).strip()
    if not reason:
        return [ctx.reply("sms_staff.reason_required", mobile=mask_mobile(mobile))]
    masked = mask_mobile(mobile)
    if action in _OUT:
        changed = await sms_store.opt_out(ctx.session, ctx.centre, ctx.now, mobile,
                                          source="staff", reason=reason, actor=ctx.actor)
        return [ctx.reply("sms_staff.opted_out" if changed else "sms_staff.already_out",
                          mobile=masked, reason=reason[:200])]
    changed = await sms_store.opt_in(ctx.session, ctx.centre, mobile, now=ctx.now,
                                     reason=reason, actor=ctx.actor)
    return [ctx.reply("sms_staff.opted_in" if changed else "sms_staff.not_out", mobile=masked)]


async def _list(ctx: Ctx) -> Reply:
    total, latest = await sms_store.opt_outs(ctx.session, limit=LIST_LIMIT)
    if not total:
        return ctx.reply("sms_staff.list_none")
    lines = [ctx.t("sms_staff.list_line", mobile=row.masked or ctx.t("sms_staff.unknown_number"),
                   day=format_day(ctx.local(row.created_at).date(), ctx.locale, ctx.today),
                   source=ctx.t(f"sms_staff.source_{row.source}")
                   if row.source in ("reply", "staff") else row.source,
                   reason=ctx.t("sms_staff.list_reason", reason=row.reason) if row.reason else "")
             for row in latest]
    more = [ctx.t("sms_staff.list_more", count=total - len(latest))] if total > len(latest) else []
    return Reply("\n".join([ctx.t("sms_staff.list_head", count=total), *lines, *more]))
