"""What every booking operation needs to know about the centre: its calendar, time zone,
rules, account limits and ID-hash key. Built once at start-up and passed in."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from storage.catalog import ServiceDef
from storage.identity import IdHasher
from storage.rules import policy_for
from storage.settings import (
    AccountSettings,
    CaseSettings,
    NotificationSettings,
    RuleSettings,
    SmsSettings,
)
from storage.workdays import WorkCalendar


@dataclass(frozen=True)
class Centre:
    calendar: WorkCalendar
    tz: ZoneInfo
    rules: RuleSettings
    hasher: IdHasher
    notifications: NotificationSettings = field(default_factory=NotificationSettings)
    accounts: AccountSettings = field(default_factory=AccountSettings)
    cases: CaseSettings = field(default_factory=CaseSettings)
    sms: SmsSettings = field(default_factory=SmsSettings)

    def policy(self, service: ServiceDef) -> RuleSettings:
        """The rules of one service: global rules with the catalog's overrides."""
        return policy_for(service, self.rules)

    def today(self, now: dt.datetime) -> dt.date:
        return now.astimezone(self.tz).date()
