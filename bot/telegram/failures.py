"""What can go wrong with an update, and how it is logged without personal data."""

from __future__ import annotations

import logging
import traceback

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
