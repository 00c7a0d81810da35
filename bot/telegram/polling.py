"""Long polling (``telegram.mode = "polling"``): one process fetches updates with getUpdates.

Each batch is processed (chats in parallel, each chat in order) before it is acknowledged, so
a crash or a passing failure loses nothing: Telegram returns an unacknowledged batch again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence

from telegram import Bot, Update
from telegram.error import Conflict, NetworkError, TelegramError

from bot.telegram.failures import NotProcessed, log_failure
from bot.telegram.parse import ALLOWED_UPDATES

log = logging.getLogger("yuyue.telegram")


class PollingConflict(RuntimeError):
    """Telegram answered 409 Conflict to getUpdates: another process polls with this token."""


class Polling:
    """Fetches updates and hands each to ``process`` until told to stop."""

    def __init__(self, bot: Bot, process: Callable[[Update], Awaitable[None]], *,
                 poll_timeout: int = 25) -> None:
        self.bot = bot
        self.process = process
        self.poll_timeout = poll_timeout

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch and process updates until ``stop`` is set; ack each batch once processed.

        Raises:
            PollingConflict: another process polls with this token.
        """
        # A webhook left over from webhook mode would make every getUpdates fail.
        await self.bot.delete_webhook(drop_pending_updates=False)
        offset: int | None = None
        failures = 0
        while not stop.is_set():
            updates = await self._fetch(offset, stop)
            if updates is None:
                break
            if isinstance(updates, Exception):
                failures += 1
                await _wait_or_stop(stop, min(60.0, 2.0 ** failures))
                continue
            failures = 0
            if not updates:
                continue
            if await self._process_batch(updates):
                # Not acked: getUpdates returns the batch again; what was done is not redone.
                failures += 1
                await _wait_or_stop(stop, min(60.0, 2.0 ** failures))
                continue
            offset = updates[-1].update_id + 1
        if offset is not None:
            with contextlib.suppress(TelegramError):
                # getUpdates with a newer offset is how Telegram learns what we have done.
                await self.bot.get_updates(offset=offset, timeout=0, limit=1,
                                           allowed_updates=ALLOWED_UPDATES)
        log.info("telegram polling stopped")

    async def _fetch(self, offset: int | None,
                     stop: asyncio.Event) -> Sequence[Update] | Exception | None:
        """The next updates, an error to back off from, or None when stopping."""
        fetch = asyncio.ensure_future(self.bot.get_updates(
            offset=offset, timeout=self.poll_timeout, allowed_updates=ALLOWED_UPDATES))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not fetch.done():
            # Nothing fetched is lost: unacknowledged updates come again on the next start.
            fetch.cancel()
            with contextlib.suppress(asyncio.CancelledError, TelegramError):
                await fetch
            return None
        try:
            return fetch.result()
        except Conflict:
            message = ("another process is already polling Telegram with this bot token "
                       "(409 Conflict): Telegram allows one poller. Stop the other `yuyue "
                       "run`, or use telegram.mode = \"webhook\" to run several processes.")
            log.error(message)
            raise PollingConflict(message) from None
        except NetworkError as error:
            log.warning("getUpdates failed (%s); trying again", type(error).__name__)
            return error

    async def _process_batch(self, updates: Sequence[Update]) -> bool:
        """Process a batch, chats in parallel, each chat in order; True if any must come again."""
        by_chat: dict[str, list[Update]] = defaultdict(list)
        for update in updates:
            chat = update.effective_chat
            by_chat[str(chat.id) if chat else f"u{update.update_id}"].append(update)

        async def one_chat(chat_updates: list[Update]) -> bool:
            for update in chat_updates:
                try:
                    await self.process(update)
                except NotProcessed:
                    return True
                except Exception as error:
                    # A bug on one update must not stop the bot or block the queue behind it.
                    log_failure(update.update_id, error)
            return False

        results = await asyncio.gather(*(one_chat(u) for u in by_chat.values()))
        return any(results)


async def _wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
