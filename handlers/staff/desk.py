"""The staff desk: a chat where only staff write (the WeCom app's 1:1 chat). There every
command is a staff command (as in the staff group), and text that is not a command answers a
hand-off's citizen: "#12 text" that hand-off, plain text the current one (the last claimed, or
picked with ``/use 12``), or the only one the staff member owns. Who may do it is the same
allow-list as everywhere (``access.staff``/``supervisors``/``managers``, as "wecom:<user id>").

``card_label`` says what an alert card shows in place of its buttons once it was acted on.
"""

from __future__ import annotations

import re

from handlers.context import GLOBAL_PREFIX, Ctx
from handlers.core import ChannelName, Incoming, Reply
from handlers.i18n import translate
from handlers.payloads import ClaimComplaint, ClaimHandoff
from handlers.staff import requests
from handlers.staff.access import guard
from handlers.staff.replies import request_refusal
from storage import handoffs
from storage.db import Session
from storage.handoffs import StaffRefused
from storage.models import Complaint, Handoff, RequestStatus

DESK_CHANNELS = frozenset({ChannelName.WECOM.value})
CURRENT = "_handoff"        # the conversation key of the current hand-off (kept across flows)
_EXPLICIT = re.compile(r"^#(\d{1,9})\s+(.+)$", re.S)
_NUMBER = re.compile(r"^#?(\d{1,9})$")


def is_desk(incoming: Incoming) -> bool:
    """The message came from a staff-only chat (the WeCom app)."""
    return incoming.channel in DESK_CHANNELS


def note_current(ctx: Ctx, number: int) -> list[Reply]:
    """Make hand-off ``number`` the one plain text answers; on the desk, say how to answer."""
    ctx.remember(**{CURRENT: number})
    return [ctx.reply("staff.desk_how", number=number)] if is_desk(ctx.incoming) else []


async def _now_current(ctx: Ctx, number: int | None, replies: list[Reply]) -> list[Reply]:
    found = await ctx.session.get(Handoff, number) if number is not None else None
    if found is not None and found.claimed_by == ctx.actor \
            and found.status == RequestStatus.CLAIMED:
        return replies + note_current(ctx, found.id)
    return replies


async def claim_button(ctx: Ctx, payload: ClaimHandoff) -> list[Reply]:
    """The claim button on a hand-off alert; the claimed hand-off becomes the current one."""
    return await _now_current(ctx, payload.handoff, await requests.claim_button(ctx, payload))


async def claim(ctx: Ctx, args: str) -> list[Reply]:
    """Claim a hand-off by number: /claim N; it becomes the current one."""
    match = _NUMBER.match(args.strip().partition(" ")[0])
    return await _now_current(ctx, int(match.group(1)) if match else None,
                              await requests.claim(ctx, args))


async def use(ctx: Ctx, args: str) -> list[Reply]:
    """Pick the hand-off plain text answers: /use N (claiming it if nobody has)."""
    match = _NUMBER.match(args.strip())
    if match is None:
        return [ctx.reply("staff.usage_use")]
    number = int(match.group(1))
    try:
        await handoffs.claim(ctx.session, ctx.now, Handoff, number, actor=ctx.actor,
                             name=ctx.incoming.user_name)
    except StaffRefused as refused:
        return [request_refusal(ctx, refused, "handoff")]
    ctx.remember(**{CURRENT: number})
    return [ctx.reply("staff.use_set", number=number)]


async def desk_text(ctx: Ctx, text: str) -> list[Reply]:
    """Text on the desk that is not a command: an answer for a hand-off's citizen."""
    refused = await guard(ctx, "text")
    if refused is not None:
        return refused
    explicit = _EXPLICIT.match(text)
    if explicit:
        return await requests.reply(ctx, f"{explicit.group(1)} {explicit.group(2)}")
    owned = await handoffs.owned_handoffs(ctx.session, ctx.actor)
    current = ctx.data.get(CURRENT)
    chosen = next((h.id for h in owned if h.id == current), None)
    if chosen is None and len(owned) == 1:
        chosen = owned[0].id
    if chosen is not None:
        ctx.remember(**{CURRENT: chosen})
        return await requests.reply(ctx, f"{chosen} {text}")
    if not owned:
        return [ctx.reply("staff.reply_which")]
    # Guessing between two citizens could send one's answer to the other: ask instead.
    return [ctx.reply("staff.desk_ambiguous", numbers=", ".join(f"#{h.id}" for h in owned))]


async def card_label(session: Session, locale: str, token: str) -> str | None:
    """What an alert card's buttons become after a click: that the hand-off or complaint is
    closed, or who claimed it ("已由 张三 认领"); None while it is still open."""
    payload = token.removeprefix(GLOBAL_PREFIX)
    found: Handoff | Complaint | None = None
    if (handoff := ClaimHandoff.read(payload)) is not None:
        found = await session.get(Handoff, handoff.handoff)
    elif (complaint := ClaimComplaint.read(payload)) is not None:
        found = await session.get(Complaint, complaint.complaint)
    if found is None:
        return None
    await session.refresh(found)
    if found.status == RequestStatus.CLOSED:
        return translate(locale, "staff.card_closed")
    if found.claimed_by:
        return translate(locale, "staff.card_claimed",
                         owner=await handoffs.staff_name(session, found.claimed_by))
    return None
