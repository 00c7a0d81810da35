"""`yuyue run`: the configured chat channels, their web server, the outbox dispatcher and the
scheduler, started together and stopped cleanly on SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import signal
from collections.abc import Generator
from typing import Any

import uvicorn

from bot.channels import Sender
from bot.dispatch import Dispatcher
from bot.scheduler import Jobs, build_scheduler, stop_scheduler
from bot.sms import build_sms, sms_routes
from bot.telegram import build_telegram
from bot.web import build_web_app
from bot.wechat import build_wechat
from bot.wecom import build_wecom, build_wecom_sender
from bot.wiring import App, build_assistant
from handlers.core import Incoming, Reply
from handlers.engine import Assistant
from storage.handoffs import escalate_overdue

log = logging.getLogger("yuyue.run")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: `yuyue run` owns SIGTERM and SIGINT; and
    ``listening`` is set once its socket accepts connections."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.listening.set()


class _Kicking:
    """The conversation engine, nudging the dispatcher after each message (relays and alerts
    go out at once instead of at the next tick)."""

    def __init__(self, assistant: Assistant, kick: Any) -> None:
        self._assistant = assistant
        self._kick = kick

    async def handle(self, incoming: Incoming, *, admit: Any = None) -> list[Reply]:
        replies = await self._assistant.handle(incoming, admit=admit)
        self._kick()
        return replies


async def run_channels(app: App, stop: asyncio.Event | None = None) -> int:
    """Serve until stopped; returns the exit code."""
    settings = app.settings
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)

    senders: dict[str, Sender] = {}
    staff_senders: list[Sender] = []
    started: dict[str, Any] = {}

    def kick() -> None:
        """Dispatch now: a conversation may just have queued a relay or an alert."""
        job = started["scheduler"].get_job("dispatch") if "scheduler" in started else None
        if job is not None:
            job.modify(next_run_time=dt.datetime.now(settings.general.timezone))

    assistant = build_assistant(app)
    conversation = _Kicking(assistant, kick)
    routes: list[Any] = []
    tasks: list[asyncio.Task[Any]] = []
    closers: list[Any] = []
    if settings.telegram.token:
        telegram = build_telegram(app, conversation)
        await telegram.start()
        closers.append(telegram.close)
        senders["telegram"] = telegram.sender
        if settings.telegram.staff_chat_id:
            staff_senders.append(telegram.sender)
        if settings.telegram.mode == "webhook":
            routes += telegram.webhook_routes()
            await telegram.set_webhook()
        else:
            tasks.append(asyncio.create_task(telegram.run_polling(stop), name="telegram-polling"))
    if settings.wechat.token:
        wechat = build_wechat(app, conversation)
        closers.append(wechat.close)
        senders["wechat"] = wechat.sender
        routes += wechat.webhook_routes()
    if settings.wecom.app_enabled:
        wecom = build_wecom(app, conversation)
        closers.append(wecom.close)
        senders["wecom"] = wecom.sender          # supervisors' "wecom:<user id>" targets
        staff_senders.append(wecom.sender)
        routes += wecom.webhook_routes()
    if not staff_senders:
        # Nobody could answer a hand-off: citizens asking for a person are told how to call.
        assistant.staff_reachable = False
        if senders:
            log.error("no staff channel that can answer is configured (telegram.staff_chat_id or "
                      "the WeCom app): citizens asking for a person are given the centre's phone "
                      "instead")
    if settings.wecom.robot_webhook:
        robot = build_wecom_sender(app)
        closers.append(robot.close)
        staff_senders.append(robot)
    sms = build_sms(settings.sms)
    if sms is not None:
        routes += sms_routes(app.database, app.centre, app.clock, settings.sms)
    dispatcher = Dispatcher(database=app.database, centre=app.centre, settings=settings,
                            clock=app.clock, senders=senders, staff_senders=staff_senders, sms=sms)
    job_set = Jobs(app, dispatcher, escalate=escalate_overdue)
    scheduler = started["scheduler"] = build_scheduler(app, job_set)
    server = None
    if routes:
        server = _Server(uvicorn.Config(build_web_app(routes), host=settings.web.host,
                                        port=settings.web.port, log_level="warning",
                                        lifespan="off", access_log=False))
        tasks.append(asyncio.create_task(server.serve(), name="web"))
        # "running" is said when it is true: webhooks can be answered (or the server failed).
        listening = asyncio.create_task(server.listening.wait())
        await asyncio.wait([listening, tasks[-1]], return_when=asyncio.FIRST_COMPLETED)
        listening.cancel()
    scheduler.start()
    # A read-only database is logged (once) by the probe itself; the start line says so too.
    read_only = await app.database.write_problem()
    log.info("running: channels %s, web server %s%s",
             ", ".join([*senders, *(["sms"] if sms is not None else [])]) or "none",
             f"listening on {settings.web.host}:{settings.web.port}" if server else "off",
             f"; DATABASE READ-ONLY ({read_only}): nothing is stored until it is writable"
             if read_only else "")
    try:
        stopped = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopped and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        stop.set()
        if server is not None:
            server.should_exit = True
        # In-flight updates finish: polling returns after its batch, the server after its requests.
        await asyncio.gather(*tasks, return_exceptions=True)
        # The job runs in hand end (bounded) before run_channels returns and the database is
        # disposed (App.close, still inside the event loop).
        await stop_scheduler(scheduler, job_set)
        for close in closers:
            await close()
    return 0
