"""Why a booking operation was refused: the rule's name and the facts a message needs."""

from __future__ import annotations

import enum
from typing import Any


class Refusal(enum.StrEnum):
    UNKNOWN_SLOT = "unknown_slot"
    SERVICE_INACTIVE = "service_inactive"
    NOT_RELEASED = "not_released"
    TOO_LATE = "too_late"
    SUSPENDED = "suspended"
    FULL = "full"
    BLOCKED = "blocked"
    DUPLICATE = "duplicate"
    CAP_ACTIVE = "cap_active"
    CAP_WEEK = "cap_week"
    CAP_MONTH = "cap_month"
    CAP_ACCOUNT = "cap_account"
    CUTOFF_PASSED = "cutoff_passed"
    NOT_CHANGEABLE = "not_changeable"
    SAME_SLOT = "same_slot"
    OTHER_SERVICE = "other_service"
    UNKNOWN_CODE = "unknown_code"
    WRONG_DAY = "wrong_day"
    ID_MISMATCH = "id_mismatch"
    NOTHING_TO_UNDO = "nothing_to_undo"
    NOT_CHECKED_IN = "not_checked_in"
    NO_SHOW_TOO_EARLY = "no_show_too_early"
    NOT_BLOCKED = "not_blocked"
    REASON_REQUIRED = "reason_required"
    WAITLIST_FULL = "waitlist_full"
    BAD_RANGE = "bad_range"


class BookingRefused(Exception):
    """An operation the rules do not allow; ``reason`` names the rule, ``details`` the facts
    the message needs (until when, the deadline, alternatives...)."""

    def __init__(self, reason: Refusal, **details: Any) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.details = details
