"""What can go wrong with an update, and how it is logged without personal data."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable

from sqlalchemy import exc as sa_exc

log = logging.getLogger("yuyue.telegram")


class NotProcessed(Exception):
    """An update could not be processed for a passing reason (database down): do not ack it."""


# Failures that say nothing was done and a later try may work; anything else is a bug.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, ConnectionError,
    TimeoutError)


def log_failure(update_id: int, error: BaseException) -> None:
    """Log that handling an update failed: the error's type and where, never its message."""
    # The exception's message may quote SQL parameters or user input: only its type and
    # where it happened are logged.
    frames = "".join(traceback.format_tb(error.__traceback__))
    log.error("telegram update %s: handling failed with %s\n%s", update_id,
              type(error).__name__, frames.rstrip())


class QuietLog:
    """Logs a kind of event at most once per ``period`` seconds per key, counting the ones
    held back (a flood of refusals must not flood the log).

    ``now`` is injectable (a monotonic clock in seconds).
    """

    def __init__(self, logger: logging.Logger, *, period: float = 60.0,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.logger, self.period, self.now = logger, period, now
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def log(self, level: int, key: str, message: str, *args: object) -> bool:
        """Log ``message % args`` unless ``key`` was logged less than ``period`` ago; True
        when it was logged."""
        now = self.now()
        last = self._last.get(key)
        if last is not None and now - last < self.period:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        if len(self._last) > 10_000:   # keys are reasons, not people: this is a guard only
            self._last.clear()
            self._held.clear()
        held = self._held.pop(key, 0)
        self._last[key] = now
        suffix = f" ({held} more like it since the last report)" if held else ""
        self.logger.log(level, message + suffix, *args)
        return True
