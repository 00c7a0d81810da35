"""Long polling (``telegram.mode = "polling"``): one process fetches updates with getUpdates.

Each chat has a queue of its own, worked through in order by a task of its own, so one chat
never holds up another: a chat flooding the bot, or whose messages Telegram makes wait, delays
only itself. Updates are acknowledged once processed: the offset given to getUpdates is the
oldest update still in hand, so a crash loses nothing (Telegram returns what was not
acknowledged; what was done is not redone, see storage.conversations).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from telegram import Bot, Update
from telegram.error import Conflict, NetworkError, TelegramError

from bot.telegram.failures import NotProcessed, log_failure
from bot.telegram.parse import ALLOWED_UPDATES

log = logging.getLogger("yuyue.telegram")


class PollingConflict(RuntimeError):
    """Telegram answered 409 Conflict to getUpdates: another process polls with this token."""


class Polling:
    """Fetches updates and hands each to ``process`` until told to stop.

    ``repoll_seconds``: while updates are in hand, getUpdates answers at once with them (they
    are not acknowledged yet), so the next call waits until one of them is done, or this long
    at most, to pick up other chats' new updates.
    """

    def __init__(self, bot: Bot, process: Callable[[Update], Awaitable[None]], *,
                 poll_timeout: int = 25, repoll_seconds: float = 1.0) -> None:
        self.bot = bot
        self.process = process
        self.poll_timeout = poll_timeout
        self.repoll_seconds = repoll_seconds
        self._queues: dict[str, deque[Update]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._in_hand: set[int] = set()          # handed to a chat's queue, not yet processed
        self._newest: int | None = None          # the newest update id handed out
        self._progress = asyncio.Event()

    def _offset(self) -> int | None:
        """What getUpdates acknowledges: everything before the oldest update in hand."""
        if self._in_hand:
            return min(self._in_hand)
        return None if self._newest is None else self._newest + 1

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch and process updates until ``stop`` is set; ack each once processed.

        Raises:
            PollingConflict: another process polls with this token.
        """
        # A webhook left over from webhook mode would make every getUpdates fail.
        await self.bot.delete_webhook(drop_pending_updates=False)
        failures = 0
        try:
            while not stop.is_set():
                self._progress.clear()
                updates = await self._fetch(self._offset(), stop)
                if updates is None:
                    break
                if isinstance(updates, Exception):
                    failures += 1
                    await _wait_or_stop(stop, min(60.0, 2.0 ** failures))
                    continue
                failures = 0
                fresh = [u for u in updates if self._newest is None or u.update_id > self._newest]
                for update in fresh:
                    self._hand_out(update, stop)
                if self._in_hand and not fresh:
                    # Only updates in hand came back: wait for one to be done (or a while),
                    # rather than asking again at once.
                    await _first_of(stop, self._progress, self.repoll_seconds)
        finally:
            # The update each chat has in flight is finished; the ones queued behind it are
            # not acknowledged and come again at the next start.
            if self._workers:
                await asyncio.gather(*self._workers.values(), return_exceptions=True)
        offset = self._offset()
        if offset is not None:
            with contextlib.suppress(TelegramError):
                # getUpdates with a newer offset is how Telegram learns what we have done.
                await self.bot.get_updates(offset=offset, timeout=0, limit=1,
                                           allowed_updates=ALLOWED_UPDATES)
        log.info("telegram polling stopped")

    def _hand_out(self, update: Update, stop: asyncio.Event) -> None:
        """Queue an update for its chat, starting the chat's worker if it has none."""
        chat = update.effective_chat
        key = str(chat.id) if chat else f"u{update.update_id}"
        self._newest = update.update_id
        self._in_hand.add(update.update_id)
        self._queues.setdefault(key, deque()).append(update)
        if key not in self._workers:
            self._workers[key] = asyncio.create_task(self._work(key, stop))

    async def _work(self, key: str, stop: asyncio.Event) -> None:
        """Process one chat's queued updates in order, each until done (or stopping)."""
        queue = self._queues[key]
        try:
            while queue and not stop.is_set():
                update = queue[0]
                if not await self._process_one(update, stop):
                    return          # stopping with it undone: it comes again next start
                queue.popleft()
                self._in_hand.discard(update.update_id)
                self._progress.set()
        finally:
            if not queue:
                self._queues.pop(key, None)
            self._workers.pop(key, None)

    async def _process_one(self, update: Update, stop: asyncio.Event) -> bool:
        """Process an update; a passing failure (database down) is tried again after a
        back-off. False when stopping before it could be done."""
        failures = 0
        while True:
            try:
                await self.process(update)
                return True
            except NotProcessed:
                failures += 1
                await _wait_or_stop(stop, min(60.0, 2.0 ** failures))
                if stop.is_set():
                    return False
            except Exception as error:
                # A bug on one update must not stop the bot or block the queue behind it.
                log_failure(update.update_id, error)
                return True

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


async def _first_of(stop: asyncio.Event, progress: asyncio.Event, seconds: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(progress.wait())]
    await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    for waiter in waiters:
        waiter.cancel()


async def _wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
