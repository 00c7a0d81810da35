"""Every rule at its boundary, with no database and no bot."""

import dataclasses
import datetime as dt

import pytest

from storage.catalog import ServiceDef, Text
from storage.rules import (
    ProofTries,
    account_at_cap,
    after_wrong_proof,
    booking_closes_at,
    can_change,
    closure_notice_is_late,
    home_visit_eligible,
    last_released_day,
    next_threshold,
    no_show_at,
    people_at_limit,
    policy_for,
    proof_locked_until,
    release_at,
    strikes_in_window,
    strikes_to_block,
)
from storage.settings import AccountSettings, BlockTier, Cutoff, RuleSettings
from storage.workdays import WorkCalendar
from tests.helpers import TZ, local

CAL = WorkCalendar()
RULES = RuleSettings()
MINUTE = dt.timedelta(minutes=1)
SERVICE = ServiceDef(code="s", department="d", name=Text("事", "S"), place=Text("窗", "W"),
                     horizon_days=7, release_time="08:00", hours={"default": (("09:00", "12:00"),)})


def test_cancel_cutoff_one_working_day_before_same_time() -> None:
    start = local(2026, 11, 24, 10)               # Tuesday
    deadline = local(2026, 11, 23, 10)            # Monday, same clock time
    assert can_change(start, deadline - MINUTE, RULES, CAL, TZ).allowed
    refused = can_change(start, deadline, RULES, CAL, TZ)
    assert not refused.allowed and refused.deadline == deadline
    assert not can_change(start, deadline + MINUTE, RULES, CAL, TZ).allowed


def test_cancel_cutoff_counts_working_days_across_the_spring_festival() -> None:
    start = local(2026, 2, 24, 9, 30)             # first working day after the holiday
    deadline = local(2026, 2, 14, 9, 30)          # the make-up Saturday before it
    assert can_change(start, deadline - MINUTE, RULES, CAL, TZ).allowed
    assert not can_change(start, deadline + MINUTE, RULES, CAL, TZ).allowed


def test_cutoff_as_a_duration_and_late_cancel_with_a_strike() -> None:
    rules = dataclasses.replace(RULES, cancel_cutoff=Cutoff(delta=dt.timedelta(hours=24)),
                                late_cancel="strike")
    start = local(2026, 11, 24, 10)
    on_time = can_change(start, start - dt.timedelta(hours=24) - MINUTE, rules, CAL, TZ)
    assert on_time.allowed and not on_time.late
    late = can_change(start, start - dt.timedelta(hours=24) + MINUTE, rules, CAL, TZ)
    assert late.allowed and late.late
    assert not can_change(start, start, rules, CAL, TZ).allowed


def test_no_show_grace() -> None:
    start = local(2026, 11, 24, 10)
    assert no_show_at(start, RULES) == start + 30 * MINUTE


@pytest.mark.parametrize(("count", "tier"), [
    (1, None), (2, None), (3, BlockTier(3, 90)), (4, None), (5, None), (6, BlockTier(6, 180)),
    (7, BlockTier(6, 180)),
])
def test_strike_tiers(count: int, tier: BlockTier | None) -> None:
    assert strikes_to_block(count, RULES) == tier


def test_next_threshold_for_the_warning() -> None:
    assert next_threshold(1, RULES) == BlockTier(3, 90)
    assert next_threshold(3, RULES) == BlockTier(6, 180)
    assert next_threshold(9, RULES) == BlockTier(6, 180)


def test_strike_window_boundary() -> None:
    now = local(2026, 11, 23, 9)
    old = now - dt.timedelta(days=365)
    assert strikes_in_window([old, old + MINUTE, now], now, RULES) == 2


def test_booking_stop_on_the_previous_working_day() -> None:
    start = local(2026, 11, 24, 9)
    assert booking_closes_at(start.date(), start, RULES, CAL, TZ) == local(2026, 11, 23, 15)
    after_holiday = local(2026, 2, 24, 9)
    assert booking_closes_at(after_holiday.date(), after_holiday, RULES, CAL, TZ) == local(2026, 2, 14, 15)
    lead_only = dataclasses.replace(RULES, booking_stop=None, min_lead_minutes=60)
    assert booking_closes_at(start.date(), start, lead_only, CAL, TZ) == local(2026, 11, 24, 8)


def test_release_seven_days_ahead_at_eight() -> None:
    day = dt.date(2026, 12, 1)
    assert release_at(day, SERVICE, TZ) == local(2026, 11, 24, 8)
    assert last_released_day(local(2026, 11, 24, 7, 59), SERVICE, TZ) == dt.date(2026, 11, 30)
    assert last_released_day(local(2026, 11, 24, 8, 0), SERVICE, TZ) == dt.date(2026, 12, 1)


def test_closure_notice_period_boundary() -> None:
    start = local(2026, 11, 24, 10)
    assert not closure_notice_is_late(start, start - dt.timedelta(hours=2), RULES)
    assert closure_notice_is_late(start, start - dt.timedelta(hours=2) + MINUTE, RULES)


def test_home_visit_eligibility() -> None:
    offered = dataclasses.replace(SERVICE, home_visit=dataclasses.replace(SERVICE.home_visit, offered=True))
    assert home_visit_eligible(70, False, offered, RULES) == "age"
    assert home_visit_eligible(69, False, offered, RULES) is None
    assert home_visit_eligible(30, True, offered, RULES) == "disability"
    assert home_visit_eligible(90, True, SERVICE, RULES) is None


def test_service_overrides_apply_on_top_of_global_rules() -> None:
    special = dataclasses.replace(SERVICE, rules={"cancel_cutoff": "2h", "hold_minutes": 5})
    policy = policy_for(special, RULES)
    assert policy.cancel_cutoff == Cutoff(delta=dt.timedelta(hours=2)) and policy.hold_minutes == 5
    assert policy.no_show_grace_minutes == RULES.no_show_grace_minutes
    assert policy_for(SERVICE, RULES) is RULES


def test_account_limits_at_their_boundary() -> None:
    policy = AccountSettings()
    assert (policy.people_per_account, policy.active_bookings_per_account) == (5, 6)
    assert not account_at_cap(5, policy) and account_at_cap(6, policy) and account_at_cap(7, policy)
    assert not people_at_limit(4, policy) and people_at_limit(5, policy)
    tighter = dataclasses.replace(policy, active_bookings_per_account=1, people_per_account=1)
    assert account_at_cap(1, tighter) and not account_at_cap(0, tighter) and people_at_limit(1, tighter)


def four_wrong_proofs(start: dt.datetime, policy: AccountSettings) -> ProofTries:
    """Four wrong answers a minute apart: counted, not locked."""
    tries = ProofTries()
    for n in range(4):
        tries = after_wrong_proof(tries, start + n * MINUTE, policy)
        assert proof_locked_until(tries, start + n * MINUTE) is None and tries.failures == n + 1
    return tries


def test_wrong_proofs_lock_at_the_fifth_within_the_hour_for_an_hour() -> None:
    policy = AccountSettings()
    start = local(2026, 11, 23, 9)
    tries = four_wrong_proofs(start, policy)
    fifth = start + 59 * MINUTE
    tries = after_wrong_proof(tries, fifth, policy)
    assert tries.locked_until == fifth + 60 * MINUTE
    assert proof_locked_until(tries, fifth + 60 * MINUTE - MINUTE) == fifth + 60 * MINUTE
    assert proof_locked_until(tries, fifth + 60 * MINUTE) is None
    after = after_wrong_proof(tries, fifth + 60 * MINUTE, policy)   # a lock served starts afresh
    assert (after.failures, after.locked_until) == (1, None)


def test_wrong_proofs_older_than_the_window_are_forgotten() -> None:
    policy = AccountSettings()
    start = local(2026, 11, 23, 9)
    # The fifth comes an hour after the first: the count starts again.
    tries = after_wrong_proof(four_wrong_proofs(start, policy), start + 60 * MINUTE, policy)
    assert (tries.failures, tries.first_failure_at, tries.locked_until) == (1, start + 60 * MINUTE, None)
