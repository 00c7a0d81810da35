"""The case rules as pure functions: due dates on China's working-day calendar, the stopped
clock during 补正, extensions, the instants the jobs act at, case numbers and the states."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.case_rules import (
    CaseAction,
    case_number,
    clock_working_days,
    correction_deadline,
    damm_digit,
    due_date,
    due_reminder_at,
    extended_due_date,
    followup_at,
    format_case_number,
    is_overdue,
    joint_due_date,
    last_overdue_due_date,
    looks_like_case_number,
    next_state,
    on_time,
    overdue_at,
    parse_case_number,
    paused_working_days,
    resumed_due_date,
    uncollected_reminder_at,
)
from storage.models import CaseState
from storage.settings import CaseSettings
from storage.workdays import WorkCalendar
from tests.helpers import TZ, local

D = dt.date
calendar = WorkCalendar()
settings = CaseSettings()


# --- due dates --------------------------------------------------------------------------------


def test_the_national_day_example() -> None:
    # Wed 30 Sep, 5 working days: 10-08, 10-09, the make-up Saturday 10-10, 10-12, 10-13.
    assert due_date(D(2026, 9, 30), 5, calendar) == D(2026, 10, 13)


@pytest.mark.parametrize(("opened", "days", "due"), [
    (D(2026, 9, 30), 0, D(2026, 9, 30)),      # 即办: the day itself
    (D(2026, 9, 30), 1, D(2026, 10, 8)),      # the whole holiday week does not count
    (D(2026, 9, 30), 3, D(2026, 10, 10)),     # the make-up Saturday is the third day
    (D(2026, 9, 18), 1, D(2026, 9, 20)),      # Fri: the next working day is make-up Sunday 9-20
    (D(2026, 9, 18), 3, D(2026, 9, 22)),
    (D(2026, 10, 3), 1, D(2026, 10, 8)),      # accepted on a holiday: counting starts 10-08
    # 2026 Spring Festival: Sat 2-14 worked, 2-15..2-23 off, Sat 2-28 worked.
    (D(2026, 2, 12), 5, D(2026, 2, 26)),      # 2-13, 2-14, 2-24, 2-25, 2-26
    (D(2026, 2, 13), 1, D(2026, 2, 14)),      # Friday's next working day is make-up Saturday
    (D(2026, 2, 14), 1, D(2026, 2, 24)),
    (D(2026, 2, 18), 1, D(2026, 2, 24)),
    (D(2026, 2, 24), 4, D(2026, 2, 28)),      # 2-25, 2-26, 2-27, make-up Saturday 2-28
    # The demo ID card: 20 working days from Mon 2-9 (2-10..2-14, 2-24..2-28, 3-2..3-6, 3-9..3-13).
    (D(2026, 2, 9), 20, D(2026, 3, 13)),
])
def test_due_dates_count_working_days_from_the_next_one(opened: dt.date, days: int,
                                                         due: dt.date) -> None:
    assert due_date(opened, days, calendar) == due


def test_the_centres_own_closures_do_not_count() -> None:
    closed = WorkCalendar(closed=[D(2026, 10, 9)])
    assert due_date(D(2026, 9, 30), 5, closed) == D(2026, 10, 14)


def test_a_joint_case_is_due_when_its_slowest_department_is() -> None:
    assert joint_due_date(D(2026, 9, 30), [1, 5, 3], calendar) == D(2026, 10, 13)


# --- the stopped clock (补正) ------------------------------------------------------------------


def test_the_clock_stops_while_materials_are_missing() -> None:
    # Accepted Mon 2-9 for 5 days: due Sat 2-14 (make-up). Three days ran (2-10, 2-11, 2-12),
    # then the 补正 notice on Thu 2-12; the materials came on Wed 2-25: 2-13, 2-14, 2-24, 2-25
    # were spent waiting, so the two days left are 2-26 and 2-27.
    due = due_date(D(2026, 2, 9), 5, calendar)
    assert due == D(2026, 2, 14)
    assert paused_working_days(D(2026, 2, 12), D(2026, 2, 25), calendar) == 4
    assert resumed_due_date(due, D(2026, 2, 12), D(2026, 2, 25), calendar) == D(2026, 2, 27)
    assert clock_working_days(D(2026, 2, 9), D(2026, 2, 26), 4, calendar) == 4


@pytest.mark.parametrize(("paused", "resumed", "days"), [
    (D(2026, 11, 24), D(2026, 11, 24), 0),     # back the same day: nothing lost
    (D(2026, 11, 24), D(2026, 11, 25), 1),
    (D(2026, 11, 27), D(2026, 11, 30), 1),     # Fri to Mon: the weekend does not count
    (D(2026, 9, 30), D(2026, 10, 8), 1),       # across the National Day week
    (D(2026, 11, 25), D(2026, 11, 24), 0),     # never negative
])
def test_paused_working_days(paused: dt.date, resumed: dt.date, days: int) -> None:
    assert paused_working_days(paused, resumed, calendar) == days


def test_correction_deadline_and_extension_count_working_days() -> None:
    # 10 working days after Thu 2-12: 2-13, 2-14, 2-24..2-28, 3-2, 3-3, 3-4.
    assert correction_deadline(D(2026, 2, 12), settings, calendar) == D(2026, 3, 4)
    assert extended_due_date(D(2026, 9, 30), 2, calendar) == D(2026, 10, 9)
    assert on_time(D(2026, 10, 13), D(2026, 10, 13)) and not on_time(D(2026, 10, 14), D(2026, 10, 13))


# --- when the jobs act ------------------------------------------------------------------------


@pytest.mark.parametrize(("due", "reminded"), [
    (D(2026, 10, 13), local(2026, 10, 12, 9)),
    (D(2026, 10, 12), local(2026, 10, 10, 9)),     # the make-up Saturday before
    (D(2026, 10, 8), local(2026, 9, 30, 9)),       # one working day before, across the holiday
])
def test_owner_is_reminded_one_working_day_before(due: dt.date, reminded: dt.datetime) -> None:
    assert due_reminder_at(due, settings, calendar, TZ) == reminded


def test_overdue_at_the_due_date() -> None:
    due = D(2026, 10, 13)
    assert overdue_at(due, settings, TZ) == local(2026, 10, 13, 17)
    assert not is_overdue(due, local(2026, 10, 13, 16, 59), settings, TZ)
    assert is_overdue(due, local(2026, 10, 13, 17), settings, TZ)
    assert not is_overdue(None, local(2027, 1, 1), settings, TZ)
    assert last_overdue_due_date(local(2026, 10, 13, 16, 59), settings, TZ) == D(2026, 10, 12)
    assert last_overdue_due_date(local(2026, 10, 13, 17), settings, TZ) == D(2026, 10, 13)
    later = dataclasses.replace(settings, overdue_time=dt.time(23, 0))
    assert not is_overdue(due, local(2026, 10, 13, 22), later, TZ)


def test_uncollected_reminder_and_followup() -> None:
    # Ready Wed 9-30, 5 working days later: 10-08, 10-09, 10-10, 10-12, 10-13.
    assert uncollected_reminder_at(D(2026, 9, 30), settings, calendar, TZ) == local(2026, 10, 13, 9)
    assert followup_at(D(2026, 9, 30), settings, calendar, TZ) == local(2026, 10, 8, 9)


# --- case numbers -----------------------------------------------------------------------------


def test_case_numbers_carry_a_damm_check_digit() -> None:
    assert damm_digit("572") == "4"                  # the textbook example
    number = case_number(1234567)
    assert len(number) == 8 and number.startswith("1234567")
    assert damm_digit(number) == "0"
    assert format_case_number(number) == f"1234 567{number[-1]}"
    with pytest.raises(ValueError):
        case_number(123456)


def test_typed_case_numbers_are_read_leniently() -> None:
    number = case_number(1034567)
    spaced = f"{number[:4]} {number[4:]}"
    assert parse_case_number(spaced) == number
    assert parse_case_number(f"{number[:4]}-{number[4:]}") == number
    assert parse_case_number(spaced.translate(str.maketrans("0123456789", "０１２３４５６７８９"))) == number
    assert parse_case_number(number.replace("0", "O").replace("1", "l")) == number
    assert parse_case_number("0" + number[1:]) is None
    assert parse_case_number(number + "1") is None
    assert parse_case_number("进度") is None


@given(st.integers(1_000_000, 9_999_999), st.integers(0, 7), st.integers(1, 9))
def test_a_wrong_digit_or_a_swap_is_caught(body: int, position: int, shift: int) -> None:
    number = case_number(body)
    wrong = number[:position] + str((int(number[position]) + shift) % 10) + number[position + 1:]
    assert parse_case_number(wrong) is None
    assert looks_like_case_number(wrong)
    if position < 7 and number[position] != number[position + 1]:
        swapped = number[:position] + number[position + 1] + number[position] + number[position + 2:]
        assert parse_case_number(swapped) is None


# --- states -----------------------------------------------------------------------------------


S = CaseState


@pytest.mark.parametrize(("state", "action", "after"), [
    (None, CaseAction.ACCEPT, S.ACCEPTED),
    (None, CaseAction.REFUSE, S.REFUSED),              # 退回件: refused at the window
    (S.ACCEPTED, CaseAction.CORRECTION, S.CORRECTION),
    (S.IN_PROGRESS, CaseAction.CORRECTION, S.CORRECTION),
    (S.CORRECTION, CaseAction.RESUBMIT, S.IN_PROGRESS),
    (S.ACCEPTED, CaseAction.READY, S.READY),
    (S.READY, CaseAction.COLLECT, S.COLLECTED),
    (S.READY, CaseAction.MAIL, S.MAILED),
    (S.COLLECTED, CaseAction.CLOSE, S.CLOSED),
    (S.CORRECTION, CaseAction.WITHDRAW, S.WITHDRAWN),
    (S.CORRECTION, CaseAction.EXTENSION_APPROVED, S.CORRECTION),
    (S.CLOSED, CaseAction.FOLLOWUP, S.CLOSED),
    (S.CORRECTION, CaseAction.READY, None),            # nothing is ready while materials miss
    (S.CORRECTION, CaseAction.CORRECTION, None),
    (S.READY, CaseAction.WITHDRAW, None),
    (S.CLOSED, CaseAction.REFUSE, None),
    (S.REFUSED, CaseAction.ACCEPT, None),
    (S.READY, CaseAction.CLOSE, None),                 # collected or mailed first
    (S.ACCEPTED, CaseAction.FOLLOWUP, None),
])
def test_transitions(state: CaseState | None, action: CaseAction, after: CaseState | None) -> None:
    assert next_state(state, action) == after
