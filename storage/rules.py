"""The booking rules as plain functions of their inputs: no clock, no database, no chat.

Each takes ``now`` (or the instant in question), the policy (global rules with the service's
overrides applied) and, where working days matter, the calendar and the centre's time zone.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from storage.catalog import ServiceDef
from storage.settings import (
    AccountSettings,
    BlockTier,
    Cutoff,
    RuleSettings,
    parse_clock_time,
    rules_with_overrides,
)
from storage.workdays import WorkCalendar


@functools.lru_cache(maxsize=256)
def _policy(base: RuleSettings, overrides_json: str) -> RuleSettings:
    return rules_with_overrides(base, json.loads(overrides_json), "rules.")


def policy_for(service: ServiceDef, base: RuleSettings) -> RuleSettings:
    """The rules that apply to ``service``: the global ones with its own overrides on top."""
    if not service.rules:
        return base
    return _policy(base, json.dumps(service.rules, sort_keys=True))


def local(when: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    return when.astimezone(tz)


def at_local(day: dt.date, time: dt.time, tz: ZoneInfo) -> dt.datetime:
    """The instant of a local date and clock time, in UTC."""
    return dt.datetime.combine(day, time, tzinfo=tz).astimezone(dt.UTC)


# --- release and booking window ---------------------------------------------------------------


def release_at(day: dt.date, service: ServiceDef, tz: ZoneInfo) -> dt.datetime:
    """When slots of ``day`` become bookable: release time, ``horizon_days`` before (放号)."""
    return at_local(day - dt.timedelta(days=service.horizon_days),
                    parse_clock_time(service.release_time), tz)


def last_released_day(now: dt.datetime, service: ServiceDef, tz: ZoneInfo) -> dt.date:
    """The furthest day whose slots are already released at ``now``."""
    today = local(now, tz).date()
    released_today = local(now, tz).time() >= parse_clock_time(service.release_time)
    return today + dt.timedelta(days=service.horizon_days - (0 if released_today else 1))


def booking_stop_at(day: dt.date, policy: RuleSettings, calendar: WorkCalendar,
                    tz: ZoneInfo) -> dt.datetime | None:
    """When booking for ``day`` stops: the stop time on the previous working day (counted
    across holidays), or None when the service has no stop time."""
    if policy.booking_stop is None:
        return None
    return at_local(calendar.previous_working_day(day), policy.booking_stop, tz)


def booking_closes_at(day: dt.date, starts_at: dt.datetime, policy: RuleSettings,
                      calendar: WorkCalendar, tz: ZoneInfo,
                      stop: dt.datetime | None = None) -> dt.datetime:
    """The last instant a slot starting at ``starts_at`` on ``day`` can be booked.

    Whichever comes first: the minimum lead time before the start, or the daily stop time on
    the previous working day, when a stop time is set (``stop`` passes it in when the caller
    already knows it for that day).
    """
    closes = starts_at - dt.timedelta(minutes=policy.min_lead_minutes)
    stop = stop if stop is not None else booking_stop_at(day, policy, calendar, tz)
    return min(closes, stop) if stop is not None else closes


# --- accounts: limits across the people an account books for ---------------------------------


def account_at_cap(active_bookings: int, policy: AccountSettings) -> bool:
    """An account holding this many upcoming bookings, across all the people it books for,
    may book no more (the per-person caps apply besides)."""
    return active_bookings >= policy.active_bookings_per_account


def people_at_limit(people: int, policy: AccountSettings) -> bool:
    """An account acting for this many people may add no other."""
    return people >= policy.people_per_account


@dataclass(frozen=True)
class ProofTries:
    """Wrong answers an account gave to one kind of proof, and the lock they caused."""

    failures: int = 0
    first_failure_at: dt.datetime | None = None
    locked_until: dt.datetime | None = None


def proof_locked_until(tries: ProofTries, now: dt.datetime) -> dt.datetime | None:
    """Until when the account may not answer again, or None when it may."""
    if tries.locked_until is not None and now < tries.locked_until:
        return tries.locked_until
    return None


def after_wrong_proof(tries: ProofTries, now: dt.datetime, policy: AccountSettings) -> ProofTries:
    """Count one wrong answer. ``proof_tries`` wrong answers within ``proof_lock_minutes`` of
    the first of them lock the account for ``proof_lock_minutes`` from the last; after a lock,
    or once the first wrong answer is that old, counting starts again."""
    window = dt.timedelta(minutes=policy.proof_lock_minutes)
    if tries.first_failure_at is None or now - tries.first_failure_at >= window:
        tries = ProofTries(0, now, None)
    failures = tries.failures + 1
    if failures >= policy.proof_tries:
        return ProofTries(0, None, now + window)
    return ProofTries(failures, tries.first_failure_at, None)


# --- cancel and reschedule --------------------------------------------------------------------


@dataclass(frozen=True)
class ChangeDecision:
    """Whether a citizen may still cancel or reschedule, and the deadline that decides it."""

    allowed: bool
    late: bool               # past the deadline but allowed with a strike
    deadline: dt.datetime


def change_deadline(starts_at: dt.datetime, cutoff: Cutoff, calendar: WorkCalendar,
                    tz: ZoneInfo) -> dt.datetime:
    """Until when an appointment may be changed: N working days before at the same clock time,
    or a fixed duration before the start."""
    if cutoff.working_days:
        start = local(starts_at, tz)
        day = calendar.add_working_days(start.date(), -cutoff.working_days)
        return at_local(day, start.timetz().replace(tzinfo=None), tz)
    return starts_at - cutoff.delta


def can_change(starts_at: dt.datetime, now: dt.datetime, policy: RuleSettings,
               calendar: WorkCalendar, tz: ZoneInfo) -> ChangeDecision:
    """Cancel or reschedule allowed before the deadline; after it, refused or struck (setting)."""
    deadline = change_deadline(starts_at, policy.cancel_cutoff, calendar, tz)
    if now < deadline:
        return ChangeDecision(True, False, deadline)
    if policy.late_cancel == "strike" and now < starts_at:
        return ChangeDecision(True, True, deadline)
    return ChangeDecision(False, False, deadline)


# --- no-shows and the blacklist ---------------------------------------------------------------


def no_show_at(starts_at: dt.datetime, policy: RuleSettings) -> dt.datetime:
    """The instant an appointment not checked in becomes a no-show (视为主动放弃)."""
    return starts_at + dt.timedelta(minutes=policy.no_show_grace_minutes)


def strikes_in_window(strike_times: Sequence[dt.datetime], now: dt.datetime,
                      policy: RuleSettings) -> int:
    since = now - dt.timedelta(days=policy.strike_window_days)
    return sum(1 for at in strike_times if since < at <= now)


def strikes_to_block(count: int, policy: RuleSettings) -> BlockTier | None:
    """The block a strike count calls for, decided at the strike that reaches it.

    Reaching a tier's number blocks for its days; every strike beyond the last tier blocks again
    for the last tier's days. Counts between tiers only warn.
    """
    tiers = policy.block_tiers
    for tier in tiers:
        if count == tier.strikes:
            return tier
    if tiers and count > tiers[-1].strikes:
        return tiers[-1]
    return None


def next_threshold(count: int, policy: RuleSettings) -> BlockTier | None:
    """The next tier a citizen with ``count`` strikes would reach (for the warning)."""
    for tier in policy.block_tiers:
        if tier.strikes > count:
            return tier
    return policy.block_tiers[-1] if policy.block_tiers else None


def block_until(now: dt.datetime, tier: BlockTier) -> dt.datetime:
    return now + dt.timedelta(days=tier.days)


# --- closures, requests, complaints -----------------------------------------------------------


def closure_notice_is_late(starts_at: dt.datetime, now: dt.datetime, policy: RuleSettings) -> bool:
    """A closure notice is late when it reaches the citizen less than the notice period ahead."""
    return starts_at - now < dt.timedelta(hours=policy.closure_notice_hours)


def home_visit_eligible(age: int | None, disability: bool, service: ServiceDef,
                        policy: RuleSettings) -> str | None:
    """Why a citizen may ask for a home visit ("age" or "disability"), or None."""
    if not service.home_visit.offered:
        return None
    min_age = service.home_visit.min_age if service.home_visit.min_age is not None \
        else policy.home_visit_min_age
    if age is not None and age >= min_age:
        return "age"
    if disability and service.home_visit.disability:
        return "disability"
    return None


def working_days_later(now: dt.datetime, days: int, calendar: WorkCalendar, tz: ZoneInfo,
                       end_of_day: dt.time = dt.time(17, 0)) -> dt.datetime:
    """The end of the working day ``days`` working days after today (0 = today, if working)."""
    today = local(now, tz).date()
    day = calendar.next_working_day(today, include=True)
    if days:
        day = calendar.add_working_days(day, days)
    return at_local(day, end_of_day, tz)


def staff_back_at(now: dt.datetime, hours: tuple[dt.time, dt.time], calendar: WorkCalendar,
                  tz: ZoneInfo) -> dt.datetime | None:
    """None while staff are at work; otherwise when they are next back."""
    current = local(now, tz)
    opens, closes = hours
    if calendar.is_working_day(current.date()) and opens <= current.time() < closes:
        return None
    if calendar.is_working_day(current.date()) and current.time() < opens:
        return at_local(current.date(), opens, tz)
    return at_local(calendar.next_working_day(current.date()), opens, tz)
