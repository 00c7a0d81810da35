"""The rules of cases (办件) as plain functions of their inputs: no clock, no database, no chat.

Working days come from the centre's calendar (storage.workdays): statutory holidays and
weekends do not count, make-up working days (调休) do. Every count starts on the next working
day: a 5-working-day case accepted on Wed 2026-09-30 is due on Tue 2026-10-13 (10-08, 10-09,
the make-up Saturday 10-10, 10-12, 10-13). docs/cases.md writes the rules down.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import unicodedata
from collections.abc import Iterable
from zoneinfo import ZoneInfo

from storage.models import CaseState
from storage.rules import at_local, local
from storage.settings import CaseSettings
from storage.workdays import WorkCalendar

# --- case numbers -----------------------------------------------------------------------------

CASE_NUMBER_DIGITS = 8
# Damm's quasigroup: one check digit that catches every single wrong digit and every swap of
# two neighbouring digits, the two mistakes people make reading a number over the phone.
_DAMM = (
    (0, 3, 1, 7, 5, 9, 8, 6, 4, 2),
    (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
    (4, 2, 0, 6, 8, 7, 1, 3, 5, 9),
    (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
    (6, 1, 2, 3, 0, 4, 5, 9, 7, 8),
    (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
    (5, 8, 6, 9, 7, 2, 0, 1, 3, 4),
    (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
    (9, 4, 3, 8, 6, 1, 7, 2, 0, 5),
    (2, 5, 8, 1, 4, 3, 6, 7, 9, 0),
)
# Letters typed for the digits they look like; spaces and dashes people put between groups.
_LOOK_ALIKES = str.maketrans({"O": "0", "o": "0", "I": "1", "i": "1", "l": "1", " ": None,
                              "-": None, "\u3000": None})
_DIGITS = re.compile(rf"^[0-9]{{{CASE_NUMBER_DIGITS}}}$")


def damm_digit(digits: str) -> str:
    """The Damm check digit of a string of ASCII digits."""
    interim = 0
    for digit in digits:
        interim = _DAMM[interim][int(digit)]
    return str(interim)


def case_number(body: int) -> str:
    """The case number made of seven digits ``body`` (1000000-9999999) and a check digit."""
    if not 1_000_000 <= body <= 9_999_999:
        raise ValueError("a case number body has seven digits and does not start with 0")
    return f"{body}{damm_digit(str(body))}"


def _normalised(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip().translate(_LOOK_ALIKES)


def looks_like_case_number(text: str) -> bool:
    """Eight digits, once spaces, full-width forms and look-alike letters are set aside (a typed
    number worth checking, even if its check digit is wrong)."""
    return bool(_DIGITS.match(_normalised(text)))


def parse_case_number(text: str) -> str | None:
    """The case number a citizen or staff member typed ("1234 5678", "１２３４５６７８",
    "1234-5678", "l234 567O"), or None when it is not eight digits with a valid check digit."""
    cleaned = _normalised(text)
    if not _DIGITS.match(cleaned) or cleaned[0] == "0" or damm_digit(cleaned) != "0":
        return None
    return cleaned


def format_case_number(number: str) -> str:
    """Two groups of four, as it is printed and read out: "1234 5678"."""
    return f"{number[:4]} {number[4:]}"


# --- states -----------------------------------------------------------------------------------


class CaseAction(enum.StrEnum):
    """What happened to a case, as its history records it."""

    ACCEPT = "accept"
    CORRECTION = "correction"              # 补正 notice given, the clock stops
    RESUBMIT = "resubmit"                  # the missing materials arrived, the clock runs again
    START = "start"
    PART_DONE = "part_done"                # one department's part of a joint case is done
    READY = "ready"                        # 办结
    COLLECT = "collect"
    MAIL = "mail"
    CLOSE = "close"
    REFUSE = "refuse"
    WITHDRAW = "withdraw"
    EXTENSION_REQUESTED = "extension_requested"
    EXTENSION_APPROVED = "extension_approved"
    EXTENSION_REFUSED = "extension_refused"
    EXPECTED = "expected"                  # 上报件: the expected answer date was set
    FOLLOWUP = "followup"                  # 回访 answered


S = CaseState
OPEN_STATES = frozenset({S.ACCEPTED, S.CORRECTION, S.IN_PROGRESS})
CLOCK_RUNNING = frozenset({S.ACCEPTED, S.IN_PROGRESS})
SAME = None  # the action leaves the state as it is

# action -> (states it may start from, the state it leads to or SAME); None stands for "no
# case yet" (opening).
TRANSITIONS: dict[CaseAction, tuple[frozenset[CaseState | None], CaseState | None]] = {
    CaseAction.ACCEPT: (frozenset({None}), S.ACCEPTED),
    CaseAction.CORRECTION: (frozenset(CLOCK_RUNNING), S.CORRECTION),
    CaseAction.RESUBMIT: (frozenset({S.CORRECTION}), S.IN_PROGRESS),
    CaseAction.START: (frozenset({S.ACCEPTED}), S.IN_PROGRESS),
    CaseAction.PART_DONE: (frozenset(CLOCK_RUNNING), S.IN_PROGRESS),
    CaseAction.READY: (frozenset(CLOCK_RUNNING), S.READY),
    CaseAction.COLLECT: (frozenset({S.READY}), S.COLLECTED),
    CaseAction.MAIL: (frozenset({S.READY}), S.MAILED),
    CaseAction.CLOSE: (frozenset({S.COLLECTED, S.MAILED}), S.CLOSED),
    CaseAction.REFUSE: (frozenset({None, *OPEN_STATES}), S.REFUSED),
    CaseAction.WITHDRAW: (frozenset(OPEN_STATES), S.WITHDRAWN),
    CaseAction.EXTENSION_REQUESTED: (frozenset(OPEN_STATES), SAME),
    CaseAction.EXTENSION_APPROVED: (frozenset(OPEN_STATES), SAME),
    CaseAction.EXTENSION_REFUSED: (frozenset({*OPEN_STATES, S.READY, S.CLOSED, S.REFUSED,
                                              S.WITHDRAWN}), SAME),
    CaseAction.EXPECTED: (frozenset(OPEN_STATES), SAME),
    CaseAction.FOLLOWUP: (frozenset({S.CLOSED}), SAME),
}


def next_state(state: CaseState | None, action: CaseAction) -> CaseState | None:
    """The state ``action`` leads to from ``state``, or None when the action is not allowed."""
    allowed, after = TRANSITIONS[action]
    if state not in allowed:
        return None
    return state if after is SAME else after


# --- dates ------------------------------------------------------------------------------------


def due_date(opened_on: dt.date, working_days: int, calendar: WorkCalendar) -> dt.date:
    """The committed date (限时办结): ``working_days`` working days after the day of acceptance,
    counting from the next working day (0: the day itself)."""
    return calendar.add_working_days(opened_on, working_days)


def joint_due_date(opened_on: dt.date, part_days: Iterable[int], calendar: WorkCalendar) -> dt.date:
    """A joint case (联办件) is due when its slowest department is."""
    return max(due_date(opened_on, days, calendar) for days in part_days)


def paused_working_days(paused_on: dt.date, resumed_on: dt.date, calendar: WorkCalendar) -> int:
    """Working days the clock stood still while the citizen gathered missing materials (补正).

    The day of the notice still counts on the clock; every working day after it, up to and
    including the day the materials arrive, is added to the due date. Materials brought back
    the same day cost nothing.
    """
    if resumed_on <= paused_on:
        return 0
    return calendar.working_days_between(paused_on + dt.timedelta(days=1),
                                         resumed_on + dt.timedelta(days=1))


def resumed_due_date(due_on: dt.date, paused_on: dt.date, resumed_on: dt.date,
                     calendar: WorkCalendar) -> dt.date:
    """The due date once the clock runs again: moved by the working days spent waiting."""
    return calendar.add_working_days(due_on, paused_working_days(paused_on, resumed_on, calendar))


def extended_due_date(due_on: dt.date, days: int, calendar: WorkCalendar) -> dt.date:
    """The due date after an approved extension (延期) of ``days`` working days."""
    return calendar.add_working_days(due_on, days)


def correction_deadline(noticed_on: dt.date, settings: CaseSettings,
                        calendar: WorkCalendar) -> dt.date:
    """By when the citizen should bring what is missing (written in the 补正 notice)."""
    return calendar.add_working_days(noticed_on, settings.correction_working_days)


def clock_working_days(opened_on: dt.date, ready_on: dt.date, paused_days: int,
                       calendar: WorkCalendar) -> int:
    """Working days a case spent on the clock: from acceptance to 办结, pauses left out."""
    return max(0, calendar.working_days_between(opened_on + dt.timedelta(days=1),
                                                ready_on + dt.timedelta(days=1)) - paused_days)


def on_time(ready_on: dt.date, due_on: dt.date) -> bool:
    """办结 within the committed days: ready on or before the due date in force."""
    return ready_on <= due_on


# --- instants the jobs act at -----------------------------------------------------------------


def due_reminder_at(due_on: dt.date, settings: CaseSettings, calendar: WorkCalendar,
                    tz: ZoneInfo) -> dt.datetime:
    """When the owner is reminded: ``due_reminder_working_days`` working days before the due
    date, at the notice time."""
    day = calendar.add_working_days(due_on, -settings.due_reminder_working_days) \
        if settings.due_reminder_working_days else due_on
    return at_local(day, settings.notice_time, tz)


def overdue_at(due_on: dt.date, settings: CaseSettings, tz: ZoneInfo) -> dt.datetime:
    """The instant an open case becomes overdue: the overdue time on its due date."""
    return at_local(due_on, settings.overdue_time, tz)


def is_overdue(due_on: dt.date | None, now: dt.datetime, settings: CaseSettings,
               tz: ZoneInfo) -> bool:
    return due_on is not None and now >= overdue_at(due_on, settings, tz)


def last_overdue_due_date(now: dt.datetime, settings: CaseSettings, tz: ZoneInfo) -> dt.date:
    """The latest due date that is overdue at ``now`` (a case due on or before it is overdue):
    what a query compares ``due_on`` with."""
    current = local(now, tz)
    if current.time() >= settings.overdue_time:
        return current.date()
    return current.date() - dt.timedelta(days=1)


def uncollected_reminder_at(ready_on: dt.date, settings: CaseSettings, calendar: WorkCalendar,
                            tz: ZoneInfo) -> dt.datetime:
    """When a citizen who has not collected a ready result is reminded."""
    return at_local(calendar.add_working_days(ready_on, settings.uncollected_working_days),
                    settings.notice_time, tz)


def followup_at(closed_on: dt.date, settings: CaseSettings, calendar: WorkCalendar,
                tz: ZoneInfo) -> dt.datetime:
    """When the citizen is asked about a closed case (回访)."""
    return at_local(calendar.add_working_days(closed_on, settings.followup_working_days),
                    settings.notice_time, tz)
