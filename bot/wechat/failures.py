"""Failures the channel must not keep quiet about, logged once per reason and period.

A refused webhook (bad or stale signature, a replayed query, a downgrade attempt) and a call
WeChat refused (a wrong AppSecret, a missing IP allow-list entry, a template field it does not
take) are each logged with their reason, but a flood of them is one line per reason every
``every`` (with how many were not logged since), so a scan cannot fill the disk. No line carries
an OpenID, a name or what a citizen wrote: only the reason.

``FailureLog(logger, clock, every=...)``: ``warn(reason, message)`` logs or counts.
"""

from __future__ import annotations

import datetime as dt
import logging

from storage.clock import Clock

EVERY = dt.timedelta(minutes=10)


class FailureLog:
    """One warning per reason per ``every``, measured on the injected clock."""

    def __init__(self, logger: logging.Logger, clock: Clock, every: dt.timedelta = EVERY) -> None:
        self.logger, self.clock, self.every = logger, clock, every
        self._last: dict[str, dt.datetime] = {}
        self._quiet: dict[str, int] = {}

    def warn(self, reason: str, message: str) -> bool:
        """Log ``message`` unless ``reason`` was logged within ``every``; True when logged."""
        now = self.clock.now()
        last = self._last.get(reason)
        if last is not None and now - last < self.every:
            self._quiet[reason] = self._quiet.get(reason, 0) + 1
            return False
        if len(self._last) > 1000:      # reasons are few; never let odd ones grow without end
            self._last.clear()
            self._quiet.clear()
        quiet = self._quiet.pop(reason, 0)
        self._last[reason] = now
        self.logger.warning("%s%s", message,
                            f" (and {quiet} more like it since the last line)" if quiet else "")
        return True
