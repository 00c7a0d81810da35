"""The SMS rules as plain functions of their inputs: whether a notice goes by SMS, and when a
text may go to a number (opt-out, quiet hours, per-number limits). No clock, no database.

docs/sms.md explains the policy; storage.sms applies it to the outbox.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from storage.rules import at_local
from storage.settings import SmsSettings

NEVER, FALLBACK, ALWAYS = "never", "fallback", "always"
CODE_KIND = "sms_code"          # a verification code: asked for just now, so no quiet hours
URGENT_KINDS = frozenset({"closure_cancelled", "closure_substitute", "closure_move"})


def sms_wanted(policy: str, *, chat_can_deliver: bool) -> bool:
    """Whether a notice of this policy goes by SMS.

    Args:
        policy: the kind's ``sms.policy`` ("never", "fallback", "always").
        chat_can_deliver: False when the citizen has no chat account (walk-in and phone
            bookings) or their chat could not take it (blocked the bot, WeChat window closed
            with no template or consent).
    """
    return policy == ALWAYS or (policy == FALLBACK and not chat_can_deliver)


def quiet_until(now: dt.datetime, tz: ZoneInfo, settings: SmsSettings, *, kind: str,
                appointment_start: dt.datetime | None = None) -> dt.datetime | None:
    """When a text that is due ``now`` may go, if ``now`` is in the quiet hours; None: now.

    A closure (停诊, and the 替诊/换诊 it offers) for an appointment on the morning the quiet
    hours end, before ``urgent_until``, goes at once: waiting until 08:00 could be too late to
    spare the trip.
    A verification code was asked for a moment ago and goes at once too.
    """
    if kind == CODE_KIND:
        return None
    local = now.astimezone(tz)
    start, end = settings.quiet_from, settings.quiet_until
    clock = local.time()
    quiet = (clock >= start or clock < end) if start > end else (start <= clock < end)
    if not quiet:
        return None
    end_day = local.date() if clock < end else local.date() + dt.timedelta(days=1)
    resume = at_local(end_day, end, tz)
    if kind in URGENT_KINDS and appointment_start is not None \
            and appointment_start < at_local(end_day, settings.urgent_until, tz):
        return None
    return resume


def rate_limited_until(now: dt.datetime, tz: ZoneInfo, settings: SmsSettings,
                       sent: Sequence[dt.datetime]) -> dt.datetime | None:
    """When the next text to a number may go, given when the earlier ones went; None: now.

    At most ``per_minute`` in any 60 seconds, ``per_hour`` in any hour and ``per_day`` in one
    local calendar day (the operators' limits are per natural day).
    """
    candidates: list[dt.datetime] = []
    for window, limit in ((dt.timedelta(minutes=1), settings.per_minute),
                          (dt.timedelta(hours=1), settings.per_hour)):
        within = sorted(at for at in sent if now - window < at <= now)
        if len(within) >= limit:
            candidates.append(within[len(within) - limit] + window)
    today = now.astimezone(tz).date()
    if sum(at.astimezone(tz).date() == today and at <= now for at in sent) >= settings.per_day:
        candidates.append(at_local(today + dt.timedelta(days=1), dt.time(0), tz))
    return max(candidates) if candidates else None


@dataclass(frozen=True)
class SmsGate:
    """Whether a text goes now, later (``defer_until``) or not at all (``refused``, why)."""

    defer_until: dt.datetime | None = None
    refused: str | None = None

    @property
    def send_now(self) -> bool:
        return self.defer_until is None and self.refused is None


def sms_gate(now: dt.datetime, tz: ZoneInfo, settings: SmsSettings, *, kind: str,
             opted_out: bool, sent: Sequence[dt.datetime],
             appointment_start: dt.datetime | None = None) -> SmsGate:
    """Whether a text to a number may go at ``now``.

    An opted-out number (回复TD退订) gets nothing but the codes it asks for itself; in the
    quiet hours a text waits until they end (``quiet_until``); over a limit, until the limit
    allows it (and then the quiet hours are looked at again).
    """
    if opted_out and kind != CODE_KIND:
        return SmsGate(refused="sms opted out")
    later = quiet_until(now, tz, settings, kind=kind, appointment_start=appointment_start)
    if later is not None:
        return SmsGate(defer_until=later)
    limited = rate_limited_until(now, tz, settings, sent)
    if limited is not None:
        later = quiet_until(limited, tz, settings, kind=kind, appointment_start=appointment_start)
        return SmsGate(defer_until=later or limited)
    return SmsGate()
