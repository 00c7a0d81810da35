"""Who can be reached where: accounts that blocked the bot, a staff chat that moved, WeChat's
48-hour window for free-form messages, and the permissions some channels need before each later
message (WeChat's one-time subscriptions).

Channels call these when a platform tells them (Telegram's 403 "bot was blocked by the user",
its ``my_chat_member`` updates, a group upgraded to a supergroup); the dispatcher and the
figures read ``ChannelIdentity.unreachable_at``. Nothing here commits.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import case, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ChannelIdentity, NotificationConsent, SharedValue
from storage.outbox import insert_ignoring_duplicates

TELEGRAM_STAFF_CHAT = "telegram.staff_chat_id"

# WeChat lets an account write to a citizen with customer-service messages only within 48 hours
# of the citizen's last message; a few minutes are kept in hand for the send itself.
WECHAT_CS_WINDOW = dt.timedelta(hours=48)
WECHAT_CS_MARGIN = dt.timedelta(minutes=10)


def in_wechat_window(last_inbound_at: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether a WeChat citizen who last wrote at ``last_inbound_at`` can still be written to
    with customer-service messages at ``now`` (outside it: template or subscription messages)."""
    return last_inbound_at is not None and now - last_inbound_at < WECHAT_CS_WINDOW - WECHAT_CS_MARGIN


async def mark_unreachable(session: AsyncSession, channel: str, platform_user_id: str,
                           reason: str, now: dt.datetime) -> bool:
    """Record that an account cannot be reached any more (kept from the first time it happened).

    Args:
        reason: a short technical reason ("blocked"), never message content.

    Returns:
        True when the account was reachable until now.
    """
    result = await session.execute(
        update(ChannelIdentity)
        .where(ChannelIdentity.channel == channel,
               ChannelIdentity.platform_user_id == platform_user_id,
               ChannelIdentity.unreachable_at.is_(None))
        .values(unreachable_at=now, unreachable_reason=reason[:200])
        .execution_options(synchronize_session=False))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def mark_reachable(session: AsyncSession, channel: str, platform_user_id: str) -> bool:
    """Clear the unreachable mark (the user unblocked the bot or wrote again).

    Returns:
        True when the account had been marked unreachable.
    """
    result = await session.execute(
        update(ChannelIdentity)
        .where(ChannelIdentity.channel == channel,
               ChannelIdentity.platform_user_id == platform_user_id,
               ChannelIdentity.unreachable_at.is_not(None))
        .values(unreachable_at=None, unreachable_reason=None)
        .execution_options(synchronize_session=False))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def staff_chat_id(session: AsyncSession, configured: int) -> int:
    """The staff group's chat id: the one it migrated to, if it did, else the configured one."""
    stored = await session.scalar(select(SharedValue.value)
                                  .where(SharedValue.key == TELEGRAM_STAFF_CHAT))
    if stored is None:
        return configured
    old, _, new = stored.partition(">")
    # The stored move only counts for the group it was recorded for: a changed setting wins.
    return int(new) if configured in (0, int(old)) else configured


async def record_chat_migration(session: AsyncSession, configured: int, old: int, new: int,
                                now: dt.datetime) -> bool:
    """Remember that the staff group ``old`` became the supergroup ``new``.

    Args:
        configured: ``telegram.staff_chat_id`` from the settings, the group the chain starts at.

    Returns:
        True when ``old`` was the staff group (other groups' moves are not ours to follow).
    """
    if old != await staff_chat_id(session, configured):
        return False
    value = f"{configured}>{new}"
    await session.execute(insert_ignoring_duplicates(session, SharedValue, ["key"]).values(
        key=TELEGRAM_STAFF_CHAT, value=value, updated_at=now))
    await session.execute(update(SharedValue).where(SharedValue.key == TELEGRAM_STAFF_CHAT)
                          .values(value=value, updated_at=now)
                          .execution_options(synchronize_session=False))
    return True


# --- permissions to send one later message --------------------------------------------------


async def grant_consent(session: AsyncSession, channel: str, platform_user_id: str,
                        template_id: str, scene: int, appointment_id: int | None,
                        now: dt.datetime) -> None:
    """Record that the citizen allowed one later message in ``scene``.

    Granting the same scene again while the first is unused still allows one message (WeChat
    does not add them up), now for the latest appointment; once used, a new grant allows one
    more.
    """
    key = (NotificationConsent.channel == channel,
           NotificationConsent.platform_user_id == platform_user_id,
           NotificationConsent.template_id == template_id, NotificationConsent.scene == scene)
    await session.execute(
        insert_ignoring_duplicates(session, NotificationConsent,
                                   ["channel", "platform_user_id", "template_id", "scene"])
        .values(channel=channel, platform_user_id=platform_user_id, template_id=template_id,
                scene=scene, appointment_id=appointment_id, created_at=now))
    await session.execute(
        update(NotificationConsent).where(*key)
        .values(used_at=None, appointment_id=appointment_id, created_at=now)
        .execution_options(synchronize_session=False))


async def take_consent(session: AsyncSession, channel: str, platform_user_id: str,
                       template_id: str, now: dt.datetime, *,
                       appointment_id: int | None = None, scenes: range | None = None,
                       preferred: range | None = None) -> tuple[int, int] | None:
    """Claim an unused permission, so that no other sender uses it too: one in the
    ``preferred`` scenes first, then the one given for ``appointment_id``, else the oldest.

    Args:
        scenes: only permissions given in these scenes (a reminder does not take the one the
            citizen gave for a closure notice).

    Returns:
        (consent id, scene), or None when the citizen has none left.
    """
    first = []
    if preferred is not None:
        first.append(case((NotificationConsent.scene.between(preferred.start, preferred.stop - 1),
                           0), else_=1))
    if appointment_id is not None:
        first.append(case((NotificationConsent.appointment_id == appointment_id, 0), else_=1))
    unused = select(NotificationConsent.id, NotificationConsent.scene).where(
        NotificationConsent.channel == channel,
        NotificationConsent.platform_user_id == platform_user_id,
        NotificationConsent.template_id == template_id,
        NotificationConsent.used_at.is_(None))
    if scenes is not None:
        unused = unused.where(NotificationConsent.scene.between(scenes.start, scenes.stop - 1))
    order = (NotificationConsent.created_at, NotificationConsent.id)
    while True:     # another sender may take the same one first: then try the next one
        candidate = (await session.execute(
            unused.order_by(*first, *order).limit(1))).first()
        if candidate is None:
            return None
        taken = await session.execute(
            update(NotificationConsent)
            .where(NotificationConsent.id == candidate.id, NotificationConsent.used_at.is_(None))
            .values(used_at=now).execution_options(synchronize_session=False))
        if taken.rowcount:  # type: ignore[attr-defined]
            return candidate.id, candidate.scene


async def return_consent(session: AsyncSession, consent_id: int) -> None:
    """Give back a permission taken for a message that never reached the platform."""
    await session.execute(update(NotificationConsent)
                          .where(NotificationConsent.id == consent_id)
                          .values(used_at=None).execution_options(synchronize_session=False))
