"""The ``yuyue`` command line. Every failure ends in one clear message and an exit code, never
a traceback: 2 for bad settings or arguments, 1 for anything else that went wrong."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from telegram.error import TelegramError

from bot.channels import TryLater, Unreachable
from bot.reports import FileReports
from bot.runner import run_channels
from bot.telegram import PollingConflict, TelegramConfigError
from bot.terminal import run_terminal
from bot.wechat import WechatApiError, create_menu
from bot.wechat.api import TOKEN_FIXES, AccessTokens, TokenRefused
from bot.wechat.menu import MenuError
from bot.wecom import WecomApiError
from bot.wecom.channel import build_tokens
from bot.wecom.channel import check_settings as check_wecom
from bot.wecom.setup import create_group
from bot.wecom.setup import create_menu as create_wecom_menu
from bot.wiring import (
    App,
    build_app,
    build_assistant,
    citizen_channels,
    load_calendar,
    staff_channels,
)
from handlers.i18n import Speaker
from handlers.stats import error_text, render_figures
from storage import migrate
from storage.catalog import CatalogError, load_catalog, read_catalog
from storage.clock import ManualClock
from storage.complaints import complaint_handlers
from storage.db import Database
from storage.models import Service
from storage.seed import SeedError, seed_history
from storage.settings import Settings, SettingsError, SmsSettings, WechatSettings, load_settings
from storage.stats.exports import appointment_rows
from storage.stats.figures import figures
from storage.stats.periods import StatsError, parse_period, resolve_scope
from storage.stats.series import daily_series
from storage.workdays import published_through

log = logging.getLogger("yuyue")

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class CommandError(Exception):
    """A failure the user can act on; its message is printed as it is."""


def _print(message: str = "") -> None:
    print(message, flush=True)


# --- commands ---------------------------------------------------------------------------------


async def cmd_db_upgrade(app: App, args: argparse.Namespace) -> int:
    """Create or update the database schema to the newest migration."""
    before = await migrate.current_revision(app.database)
    await migrate.upgrade(app.database)
    after = await migrate.current_revision(app.database)
    _print(f"database schema: {before or 'empty'} -> {after}" if before != after
           else f"database schema already up to date ({after})")
    return EXIT_OK


async def cmd_catalog_check(app: App, args: argparse.Namespace) -> int:
    """Check a catalog file and report every problem."""
    catalog = read_catalog(Path(args.file), app.settings.rules)
    _print(f"{args.file}: OK ({len(catalog.departments)} departments, "
           f"{len(catalog.services)} services)")
    for warning in catalog.warnings:
        _print(f"warning: {warning}")
    return EXIT_OK


async def cmd_catalog_load(app: App, args: argparse.Namespace) -> int:
    """Load a catalog file into the database (idempotent)."""
    path = Path(args.file) if args.file else app.settings.path(app.settings.general.catalog)
    catalog = read_catalog(path, app.settings.rules)
    await _require_schema(app)
    async with app.database.session() as session:
        report = await load_catalog(session, catalog, app.clock.now())
    _print(f"{path}: {report.summary()}")
    return EXIT_OK


async def cmd_calendar(app: App, args: argparse.Namespace) -> int:
    """Say whether each date is a working day, and why."""
    try:
        first = dt.date.fromisoformat(args.start)
        last = dt.date.fromisoformat(args.end) if args.end else first
    except ValueError:
        raise CommandError("dates must look like 2026-10-01") from None
    if last < first:
        raise CommandError(f"the second date ({last}) is before the first ({first})")
    if (last - first).days > 366:
        raise CommandError("give a range of at most one year")
    calendar = app.centre.calendar
    if await migrate.current_revision(app.database) is not None:
        calendar = await load_calendar(app.settings, app.database)
    day = first
    while day <= last:
        _print(f"{day} {day.strftime('%a')}  {calendar.info(day).describe()}")
        day += dt.timedelta(days=1)
    return EXIT_OK


async def cmd_doctor(app: App, args: argparse.Namespace) -> int:
    """Check settings, database, migrations, catalog and calendar; say how to fix problems."""
    problems = 0

    def report(ok: bool, what: str, fix: str = "") -> None:
        nonlocal problems
        _print(("  ok    " if ok else "  FIX   ") + what + ("" if ok or not fix else f"\n        -> {fix}"))
        problems += not ok

    def note(what: str) -> None:
        _print("  note  " + what)

    settings = app.settings
    _print("Yuyue doctor")
    report(True, f"settings loaded from {settings.base_dir / 'settings.toml'}")
    try:
        async with app.database.read() as session:
            await session.execute(text("SELECT 1"))
        report(True, f"database reachable ({app.database.dialect})")
    except (OSError, SQLAlchemyError) as exc:
        report(False, f"database not reachable: {_first_line(exc)}",
               "check database.url (or YUYUE_DATABASE__URL) and that the server is running")
        return EXIT_FAIL
    read_only = await app.database.write_problem()
    if app.database.is_sqlite:
        report(read_only is None, "database writable" if read_only is None else
               f"database read-only: {read_only}",
               "let the user that runs yuyue write the database file and its folder (chown/"
               "chmod u+w both; lsattr/chattr -i for an immutable file; remount read-write); a "
               "running yuyue recovers by itself, with no restart")
    current, head = await migrate.current_revision(app.database), migrate.head_revision()
    report(current == head, f"database schema at {current or 'nothing'} (newest: {head})",
           "run: yuyue db upgrade")
    catalog_path = settings.path(settings.general.catalog)
    try:
        catalog = read_catalog(catalog_path, settings.rules)
        report(True, f"catalog {catalog_path}: {len(catalog.services)} services")
    except SeedError as exc:
        print(f"yuyue: cannot seed: {exc}", file=sys.stderr)
    except CatalogError as exc:
        report(False, f"catalog {catalog_path} has {len(exc.problems)} problem(s): "
               + exc.problems[0], f"run: yuyue catalog check {catalog_path}")
    if current == head:
        async with app.database.read() as session:
            loaded = await session.scalar(select(func.count()).select_from(Service)
                                          .where(Service.active.is_(True)))
        report(bool(loaded), f"{loaded} active services in the database",
               f"run: yuyue catalog load {catalog_path}")
    today = app.clock.now().astimezone(settings.general.timezone).date()
    last = published_through()
    if today.year >= last or (today + dt.timedelta(days=90)).year > last:
        note(f"the official holiday calendar is known through {last}; dates after it are "
             "provisional (statutory days only, no make-up working days) until the package is "
             "updated (pip install -U holidays) or the centre sets calendar.closed_dates / "
             "calendar.extra_working_dates")
    else:
        report(True, f"official holiday calendar known through {last}")
    if not settings.privacy.id_hash_key:
        note("privacy.id_hash_key is not set: a local key file under the data folder is used; "
             "set YUYUE_PRIVACY__ID_HASH_KEY in production and keep it secret")
    if settings.wechat.token:
        if not settings.wechat.encoding_aes_key:
            note("WARNING: WeChat is in plain mode (no wechat.encoding_aes_key): the signature "
                 "covers only the timestamp and nonce in the URL, not the message, so anyone who "
                 "sees one webhook URL (a proxy's access log) can post as any user for "
                 f"{settings.wechat.replay_window_seconds} s; set YUYUE_WECHAT__ENCODING_AES_KEY "
                 "and choose 安全模式 (docs/wechat.md)")
        _doctor_wechat_reminders(settings.wechat, report, note)
        await _doctor_wechat_token(app, report)
    if settings.wecom.app_enabled:
        _doctor_wecom(settings, report)
    channels = citizen_channels(settings)
    _doctor_sms(settings.sms, report, note)
    note("chat channels configured: " + (", ".join(channels) if channels else
                                          "none (yuyue run starts the terminal chat)"))
    if channels:
        staff = staff_channels(settings)
        report(bool(staff), "staff channel that can answer hand-offs (人工服务): "
               + (", ".join(staff) if staff else
                  "none: citizens can ask for a person but nobody could answer (they are given "
                  "the centre's phone instead)"
                  + (", and the WeCom group robot only tells" if settings.wecom.robot_webhook
                     else " and staff alerts are undeliverable")),
               "set telegram.staff_chat_id (a group the bot is in) or the WeCom app (wecom.corp_id, "
               "agent_id, token: docs/wecom.md)")
        if settings.wecom.robot_webhook:
            note("the WeCom group robot also gets staff alerts (it only tells; nobody can answer there)")
        if not complaint_handlers(settings.access):
            note("WARNING: no access.supervisors (nor managers): complaints are kept but nobody is "
                 "told of them (they never go to the staff group); set access.supervisors "
                 "(docs/staff.md)")
    _print("all good" if not problems else f"{problems} thing(s) to fix")
    return EXIT_OK if not problems else EXIT_FAIL


def _doctor_wecom(settings: Settings, report: Callable[[bool, str, str], None]) -> None:
    try:
        check_wecom(settings.wecom)
        report(True, "WeCom app settings complete", "")
    except ValueError as error:
        report(False, str(error), "see docs/wecom.md")
    staff = [e for e in settings.access.staff if e.startswith("wecom:")]
    report(bool(staff or settings.wecom.on_duty or settings.wecom.app_chat_id),
           f"{len(staff)} WeCom staff in access.staff",
           'add them as "wecom:<user id>" to access.staff, or alerts reach nobody in WeCom')


async def _doctor_wechat_token(app: App, report: Callable[[bool, str, str], None]) -> None:
    """Fetch an access token: proves the AppID, the AppSecret and the IP allow-list (without
    them no reminder, relay or menu reaches WeChat, while chatting still works)."""
    wechat = app.settings.wechat
    if not (wechat.app_id and wechat.app_secret):
        report(False, "WeChat app_id / AppSecret not set: reminders, staff answers and the menu "
               "cannot be sent", "set wechat.app_id and YUYUE_WECHAT__APP_SECRET (docs/wechat.md)")
        return
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0)) as http:
        try:
            seconds = await AccessTokens(wechat, app.database, app.clock, http).check()
        except TokenRefused as refused:
            report(False, f"WeChat refused the access token: {refused}",
                   TOKEN_FIXES.get(refused.errcode, "check wechat.app_id, "
                                   "YUYUE_WECHAT__APP_SECRET and the IP allow-list (IP白名单)"))
            return
        except (TryLater, Unreachable) as error:
            report(False, f"WeChat access token not fetched: {error}",
                   f"check that this server reaches {wechat.api_base_url}")
            return
    report(True, f"WeChat access token fetched (AppID, AppSecret and IP allow-list accepted; "
                 f"valid {seconds} s)", "")


def _doctor_wechat_reminders(wechat: WechatSettings, report: Callable[[bool, str, str], None],
                             note: Callable[[str], None]) -> None:
    """How WeChat reminders reach citizens outside the 48-hour customer-service window."""
    if wechat.reminder_template_id:
        report(True, "WeChat reminders outside the 48-hour window: template messages", "")
    elif wechat.subscribe_template_id:
        report(bool(wechat.public_url and wechat.app_id),
               "WeChat reminders outside the 48-hour window: one-time subscription messages, "
               f"consent page {wechat.public_url or '?'}{wechat.path.rstrip('/')}/consent",
               "set wechat.public_url (this server's https address in the account's 业务域名) "
               "and wechat.app_id, or nobody is asked for consent")
    else:
        note("WeChat reminders outside the 48-hour window will be undeliverable: set "
             "wechat.reminder_template_id or wechat.subscribe_template_id (docs/wechat.md)")


def _doctor_sms(sms: SmsSettings, report: Callable[[bool, str, str], None],
                note: Callable[[str], None]) -> None:
    """Texts: the provider's account, the signature, a template for every kind that may go by
    SMS (docs/sms.md)."""
    if not sms.enabled:
        note("SMS is off (sms.provider = \"none\"): walk-in and phone bookings get no "
             "confirmation or reminder, and chat notices that cannot be delivered stay so")
        return
    report(bool(sms.secret_id and sms.secret_key), f"SMS provider {sms.provider}: API key set",
           "set YUYUE_SMS__SECRET_ID and YUYUE_SMS__SECRET_KEY in the environment")
    report(bool(sms.sdk_app_id and sms.sign_name),
           f"SMS application {sms.sdk_app_id or '?'} with signature 【{sms.sign_name or '?'}】",
           "set sms.sdk_app_id and sms.sign_name (the approved 签名, without 【】)")
    wanted = sorted(kind for kind, policy in sms.policy.items() if policy != "never")
    missing = [kind for kind in wanted if kind not in sms.templates]
    report(not missing, f"SMS templates for {len(wanted) - len(missing)} of {len(wanted)} notice "
           "kinds that may go by SMS" + (f" (missing: {', '.join(missing)})" if missing else ""),
           "add [sms.templates] entries with the approved template ids, or set those kinds "
           "to \"never\" in [sms.policy]")
    if "sms_code" not in sms.templates:
        note("no sms.templates.sms_code: verification codes by SMS cannot be sent")
    if sms.protocol == "http" and not sms.endpoint:
        report(False, "SMS over plain http to the public endpoint",
               "use sms.protocol = \"https\" (http is for a local test endpoint)")
    if not sms.callback_token:
        note(f"sms.callback_token is not set: anyone who finds {sms.callback_path} can post "
             "receipts and opt-outs to it")


async def cmd_sms_opt_out(app: App, args: argparse.Namespace) -> int:
    """Record that a number wants no more texts (the citizen asked at the window or by phone)."""
    return await _sms_list(app, args.mobile, out=True)


async def cmd_sms_opt_in(app: App, args: argparse.Namespace) -> int:
    """Take a number off the opt-out list (the citizen asked for texts again)."""
    return await _sms_list(app, args.mobile, out=False)


async def _sms_list(app: App, mobile: str, *, out: bool) -> int:
    from storage import sms as sms_store
    from storage.identity import InvalidValue, mask_mobile, validate_mobile

    await _require_schema(app)
    try:
        number = validate_mobile(mobile)
    except InvalidValue:
        raise CommandError("not a mainland mobile number (11 digits starting 13-19)") from None
    async with app.database.session() as session:
        if out:
            changed = await sms_store.opt_out(session, app.centre, app.clock.now(), number,
                                              source="staff", actor="cli")
        else:
            changed = await sms_store.opt_in(session, app.centre, number, now=app.clock.now(),
                                             actor="cli")
    state = "opted out of texts" if out else "receives texts"
    _print(f"{mask_mobile(number)} {state}" + ("" if changed else " (already so)"))
    return EXIT_OK


async def cmd_chat(app: App, args: argparse.Namespace) -> int:
    """Chat with the assistant in the terminal (the demo when no chat tokens are set)."""
    await _require_schema(app)
    await _require_catalog(app)
    if args.clock:
        try:
            start = dt.datetime.fromisoformat(args.clock)
        except ValueError:
            raise CommandError("--clock must look like 2026-11-23T09:00+08:00") from None
        if start.tzinfo is None:
            start = start.replace(tzinfo=app.settings.general.timezone)
        app.clock = ManualClock(start)
    assistant = build_assistant(app)
    scripted = args.script or not sys.stdin.isatty()
    if not scripted:
        _print("Yuyue terminal chat. Type a number to choose, /quit to leave, /lang to switch "
               "language.\n")
    return await run_terminal(assistant, user=args.user, locale=args.lang, source=sys.stdin,
                              out=sys.stdout, scripted=scripted,
                              attachments_dir=app.settings.path(app.settings.conversation.attachments_dir))


async def cmd_run(app: App, args: argparse.Namespace) -> int:
    """Run the configured chat channels, or the terminal chat when none is configured."""
    settings = app.settings
    if not settings.telegram.token and not settings.wechat.token and not settings.wecom.app_enabled:
        _print("No chat channel is configured (see README): starting the terminal chat.\n")
        return await cmd_chat(app, args)
    if args.clock:
        # A pretend time with real chats would send real citizens reminders, no-show strikes
        # and released days at the wrong moment: it is for the terminal demo only.
        raise CommandError(
            "--clock only works with the terminal chat: a chat token is set, so `yuyue run` "
            "would serve real citizens and staff, and a pretend time would send them reminders, "
            "mark no-shows and release days at the wrong moment. For a demo with a pretend time "
            "use `yuyue chat --clock ...` (or unset the chat tokens).")
    await _require_schema(app)
    await _require_catalog(app)
    try:
        return await run_channels(app)
    except (TelegramConfigError, ValueError) as error:
        raise CommandError(f"cannot start: {error}") from None
    except PollingConflict as error:
        raise CommandError(str(error)) from None


async def cmd_wechat_menu(app: App, args: argparse.Namespace) -> int:
    """Create the WeChat custom menu (预约: 预约办事 · 我的预约 · 办件进度 · 我的办事人 / 办事指南 / 人工服务)."""
    if not app.settings.wechat.app_id or not app.settings.wechat.app_secret:
        raise CommandError("set wechat.app_id and YUYUE_WECHAT__APP_SECRET first")
    await _require_schema(app)              # the access token is shared through the database
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0)) as http:
        try:
            created = await create_menu(AccessTokens(app.settings.wechat, app.database,
                                                     app.clock, http),
                                        locale=app.settings.general.locale)
        except MenuError as error:
            raise CommandError(f"the menu breaks WeChat's limits, nothing sent: {error}") from None
        except TokenRefused as refused:
            raise CommandError(f"WeChat refused the access token ({refused}): "
                               + TOKEN_FIXES.get(refused.errcode, "run `yuyue doctor`")) from None
        except TryLater as error:
            raise CommandError(f"WeChat did not answer ({error}): try again later") from None
        except Unreachable as error:
            raise CommandError(str(error)) from None
    _print("WeChat menu created: " + created)
    return EXIT_OK


def _wecom_ready(app: App) -> None:
    wecom = app.settings.wecom
    if not (wecom.corp_id and wecom.agent_id and wecom.secret):
        raise CommandError("set wecom.corp_id, wecom.agent_id and YUYUE_WECOM__SECRET first "
                           "(docs/wecom.md)")


async def cmd_wecom_menu(app: App, args: argparse.Namespace) -> int:
    """Create the WeCom app's menu (今日预约 / 待处理 / 统计)."""
    _wecom_ready(app)
    await _require_schema(app)              # the access token is shared through the database
    async with httpx.AsyncClient(timeout=10) as http:
        try:
            labels = await create_wecom_menu(build_tokens(app, http),
                                             locale=app.settings.general.locale)
        except (TryLater, Unreachable) as error:
            raise CommandError(f"WeCom did not answer ({error}): try again later") from None
    _print("WeCom app menu created: " + " / ".join(labels))
    return EXIT_OK


async def cmd_wecom_group(app: App, args: argparse.Namespace) -> int:
    """Create the WeCom app group chat that gets a copy of every staff alert."""
    _wecom_ready(app)
    await _require_schema(app)
    async with httpx.AsyncClient(timeout=10) as http:
        try:
            chat_id = await create_group(build_tokens(app, http), args.name, args.users)
        except ValueError as error:
            raise CommandError(str(error)) from None
        except (TryLater, Unreachable) as error:
            raise CommandError(f"WeCom did not answer ({error}): try again later") from None
    _print(f"WeCom group chat created: {chat_id}\n"
           f'Set wecom.app_chat_id = "{chat_id}" in the settings to copy staff alerts there.')
    return EXIT_OK


async def cmd_bench(app: App, args: argparse.Namespace) -> int:
    """Run a benchmark on a throwaway database (never the configured one)."""
    from bot import bench  # only here: the other commands need not load the benchmark code

    url = args.database_url or bench.temporary_sqlite_url()
    if url == app.database.url:
        raise CommandError("give a scratch database: the benchmark empties the one it runs on")
    catalog = app.settings.path(app.settings.general.catalog)
    if args.bench_command == "booking":
        # As many at once as a `yuyue run` process works on: its WeChat webhook admits
        # ``database.pool_size`` messages at a time.
        concurrency = args.concurrency if args.concurrency is not None else app.settings.database.pool_size
        for option, value, most in (("--users", args.users, bench.MAX_USERS),
                                    ("--seats", args.seats, bench.MAX_USERS),
                                    ("--processes", args.processes, bench.MAX_PROCESSES),
                                    ("--concurrency", concurrency, bench.MAX_CONCURRENCY)):
            if not 1 <= value <= most:
                raise CommandError(f"{option} must be between 1 and {most}")
        if not 0 <= args.pgbench <= bench.MAX_PGBENCH_SECONDS:
            raise CommandError(f"--pgbench must be between 0 and {bench.MAX_PGBENCH_SECONDS} seconds")
        result = await bench.booking_rush(url, app.centre, users=args.users, seats=args.seats,
                                          concurrency=concurrency, processes=args.processes)
        _print(f"| {result.dialect} | {args.processes} process(es) x {concurrency} at once | "
               f"{result.users} users | {result.seats} seats | "
               f"{result.booked} booked | {result.full} full | {result.errors} errors | "
               f"{result.per_second:.0f} attempts/s | p50 {result.latency['median_ms']:.1f} ms | "
               f"p99 {result.latency['p99_ms']:.1f} ms | client CPU {result.client_cpu_ms:.1f} ms/attempt | "
               f"overbooked: {'YES' if result.overbooked else 'no'} |")
        if not result.overbooked and args.pgbench and result.dialect == "postgresql":
            tps = await asyncio.to_thread(bench.pgbench_tps, url, args.pgbench)
            if tps:
                _print(f"| pgbench TPC-B-like | {tps:.0f} tps | booking/pgbench = "
                       f"{result.per_second / tps:.2f} |")
        return EXIT_FAIL if result.overbooked or result.errors else EXIT_OK
    if args.bench_command == "rush-chat":
        return await _bench_rush_chat(url, args)
    if args.bench_command == "seed":
        database = await bench.fresh_database(url) if not args.keep else Database(url)
        try:
            if not args.keep:
                async with database.session() as session:
                    await load_catalog(session, read_catalog(catalog, app.settings.rules), app.clock.now())
            report = await seed_history(database, app.centre, app.clock.now(), args.appointments,
                                        args.seed, progress=_print)
        finally:
            await database.dispose()
        _print(report.summary())
        return EXIT_OK
    if args.bench_command == "availability":
        figures = await bench.availability_bench(url, app.centre, catalog, rounds=args.rounds)
    else:
        figures = await bench.message_bench(url, app.centre, catalog, app.settings,
                                            journeys=args.journeys)
    _print(f"| {args.bench_command} | {make_url(url).get_backend_name()} | n={figures['n']} | "
           f"median {figures['median_ms']:.2f} ms | p99 {figures['p99_ms']:.2f} ms |")
    return EXIT_OK


async def _bench_rush_chat(url: str, args: argparse.Namespace) -> int:
    from bot import bench_chat

    if not 1 <= args.citizens <= bench_chat.MAX_CITIZENS:
        raise CommandError(f"--citizens must be between 1 and {bench_chat.MAX_CITIZENS}")
    try:
        result = await bench_chat.chat_rush(url, citizens=args.citizens, seats=args.seats_chat,
                                            time_limit=args.time_limit)
    except (TimeoutError, RuntimeError) as problem:
        raise CommandError(f"the rush did not finish: {problem or 'time limit reached'}") from None
    _print(f"| {make_url(url).get_backend_name()} | {result.citizens} citizens | {result.seats} seats | "
           f"{result.ready} at the confirm step | {result.confirmed} confirmed | {result.late} late | "
           f"{result.failed} failed | {result.per_second:.0f} confirms/s | "
           f"p50 {result.percentile_ms(0.5):.0f} ms | p99 {result.percentile_ms(0.99):.0f} ms | "
           f"over {bench_chat.LATE_SECONDS:.0f} s: {result.over_limit} | seats taken {result.seats_taken} | "
           f"overbooked: {'YES' if result.overbooked else 'no'} |")
    bad = result.overbooked or result.failed or result.over_limit or result.ready < result.citizens
    return EXIT_FAIL if bad else EXIT_OK


async def cmd_stats(app: App, args: argparse.Namespace) -> int:
    """Print the manager figures for a period (and draw the chart with --chart FILE)."""
    await _require_schema(app)
    speaker = Speaker(_cli_locale(app, args))
    async with app.database.read() as session:
        period, scope = await _period_scope(app, session, args)
        result = await figures(session, app.centre, app.clock.now(), period, scope)
        _print(render_figures(speaker, result))
        if args.chart:
            series = await daily_series(session, app.centre, period, scope)
            picture = FileReports().chart(
                series, speaker.t("stats.chart_title", period=period.label,
                                  scope=scope.code if scope else speaker.t("stats.whole_centre")),
                speaker.locale)
            await asyncio.to_thread(Path(args.chart).write_bytes, picture)
            _print(f"chart: {args.chart}")
    return EXIT_OK


async def cmd_export(app: App, args: argparse.Namespace) -> int:
    """Write a period's appointments (masked) and summary as CSV and XLSX files."""
    await _require_schema(app)
    locale = _cli_locale(app, args)
    out = Path(args.out)
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    async with app.database.read() as session:
        period, scope = await _period_scope(app, session, args)
        summary = await figures(session, app.centre, app.clock.now(), period, scope)
        rows = [row async for row in appointment_rows(session, app.centre, period, scope,
                                                      locale=locale)]
    stem = out / f"yuyue-{period.first.isoformat()}-{period.last.isoformat()}"
    reports = FileReports()
    stem.with_suffix(".csv").write_bytes(reports.csv(rows, summary, locale))
    stem.with_suffix(".xlsx").write_bytes(reports.xlsx(rows, summary, locale))
    _print(f"appointments: {len(rows)}; files: {stem}.csv, {stem}.xlsx")
    return EXIT_OK


def _cli_locale(app: App, args: argparse.Namespace) -> str:
    return "en" if args.lang == "en" else "zh-CN" if args.lang == "zh" else app.settings.general.locale


async def _period_scope(app: App, session: Any, args: argparse.Namespace) -> tuple[Any, Any]:
    try:
        period = parse_period(args.period, app.clock.now(), app.centre.tz)
        return period, await resolve_scope(session, args.scope)
    except StatsError as error:
        raise CommandError(error_text(Speaker(_cli_locale(app, args)), error)) from None


async def _require_catalog(app: App) -> None:
    async with app.database.read() as session:
        if not await session.scalar(select(func.count()).select_from(Service)):
            raise CommandError("no services loaded: run `yuyue catalog load` first")


async def _require_schema(app: App) -> None:
    if await migrate.current_revision(app.database) != migrate.head_revision():
        raise CommandError("the database schema is not up to date: run `yuyue db upgrade` first")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


# --- parsing and running ----------------------------------------------------------------------

Handler = Callable[[App, argparse.Namespace], Awaitable[int]]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="yuyue", description="Yuyue (预约): appointment booking for service centres and "
        "hospital outpatient desks, on WeChat, Telegram and the terminal.")
    parser.add_argument("--settings", metavar="FILE",
                        help="settings file (default: $YUYUE_SETTINGS or ./settings.toml)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    db = commands.add_parser("db", help="database schema").add_subparsers(
        dest="db_command", metavar="ACTION", required=True)
    db.add_parser("upgrade", help=cmd_db_upgrade.__doc__).set_defaults(handler=cmd_db_upgrade)

    catalog = commands.add_parser("catalog", help="service catalog").add_subparsers(
        dest="catalog_command", metavar="ACTION", required=True)
    check = catalog.add_parser("check", help=cmd_catalog_check.__doc__)
    check.add_argument("file")
    check.set_defaults(handler=cmd_catalog_check)
    load = catalog.add_parser("load", help=cmd_catalog_load.__doc__)
    load.add_argument("file", nargs="?", help="default: general.catalog from the settings")
    load.set_defaults(handler=cmd_catalog_load)

    calendar = commands.add_parser("calendar", help=cmd_calendar.__doc__)
    calendar.add_argument("start", metavar="DATE")
    calendar.add_argument("end", metavar="DATE", nargs="?", help="last date of a range")
    calendar.set_defaults(handler=cmd_calendar)

    commands.add_parser("doctor", help=cmd_doctor.__doc__).set_defaults(handler=cmd_doctor)

    for name, handler in (("stats", cmd_stats), ("export", cmd_export)):
        command = commands.add_parser(name, help=handler.__doc__)
        command.add_argument("period", nargs="?", default="today",
                             help="today, week, month, YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD")
        command.add_argument("scope", nargs="?", help="a service or department code")
        command.add_argument("--lang", choices=("zh", "en"))
        if name == "stats":
            command.add_argument("--chart", metavar="FILE.png", help="also draw the daily chart")
        else:
            command.add_argument("--out", default=".", help="folder for the files (default: here)")
        command.set_defaults(handler=handler)

    wechat = commands.add_parser("wechat", help="WeChat Official Account set-up").add_subparsers(
        dest="wechat_command", metavar="ACTION", required=True)
    wechat.add_parser("menu", help=cmd_wechat_menu.__doc__).set_defaults(handler=cmd_wechat_menu)

    wecom = commands.add_parser("wecom", help="WeCom (企业微信) app set-up").add_subparsers(
        dest="wecom_command", metavar="ACTION", required=True)
    wecom.add_parser("menu", help=cmd_wecom_menu.__doc__).set_defaults(handler=cmd_wecom_menu)
    group = wecom.add_parser("group", help="the app group chat").add_subparsers(
        dest="wecom_group_command", metavar="ACTION", required=True)
    create = group.add_parser("create", help=cmd_wecom_group.__doc__)
    create.add_argument("name", help="the chat's name, e.g. 窗口工作群")
    create.add_argument("users", nargs="+", metavar="USER",
                        help="WeCom user ids (at least two; the first owns the chat)")
    create.set_defaults(handler=cmd_wecom_group)
    sms = commands.add_parser("sms", help="text messages (短信)").add_subparsers(
        dest="sms_command", metavar="ACTION", required=True)
    for name, handler in (("opt-out", cmd_sms_opt_out), ("opt-in", cmd_sms_opt_in)):
        command = sms.add_parser(name, help=handler.__doc__)
        command.add_argument("mobile")
        command.set_defaults(handler=handler)

    benches = commands.add_parser("bench", help=cmd_bench.__doc__).add_subparsers(
        dest="bench_command", metavar="BENCHMARK", required=True)
    for name, helptext in (("booking", "the 08:00 release rush: throughput, latency, overbooking"),
                           ("availability", "the 7-day availability menu of a service"),
                           ("messages", "one chat message end to end, over whole journeys"),
                           ("seed", "a realistic history for the manager figures"),
                           ("rush-chat", "citizens confirming at the same second through the WeChat webhook")):
        command = benches.add_parser(name, help=helptext)
        command.add_argument("--database-url", help="scratch database (default: a temporary SQLite file)")
        command.add_argument("--users", type=int, default=2000)
        command.add_argument("--seats", type=int, default=200)
        command.add_argument("--concurrency", type=int, default=None,
                             help="booking: attempts at once per process (default: database.pool_size, "
                                  "the messages a `yuyue run` process works on at once)")
        command.add_argument("--processes", type=int, default=1, help="booking processes (like several `yuyue run`)")
        command.add_argument("--pgbench", type=int, default=10, metavar="SECONDS",
                             help="also run pgbench this long on the same server (0 = skip)")
        command.add_argument("--rounds", type=int, default=200)
        command.add_argument("--journeys", type=int, default=20)
        command.add_argument("--appointments", type=int, default=100_000)
        command.add_argument("--seed", type=int, default=1)
        command.add_argument("--keep", action="store_true",
                             help="seed into the database as it is (must have no appointments)")
        command.add_argument("--citizens", type=int, default=200,
                             help="rush-chat: citizens who confirm at once (at most 2000)")
        command.add_argument("--seats-chat", type=int, default=None, metavar="SEATS",
                             help="rush-chat: online seats (default: one per citizen)")
        command.add_argument("--time-limit", type=float, default=300.0, metavar="SECONDS",
                             help="rush-chat: give up after this long")
        command.set_defaults(handler=cmd_bench)

    for name, handler in (("chat", cmd_chat), ("run", cmd_run)):
        command = commands.add_parser(name, help=handler.__doc__)
        command.add_argument("--user", default="local", help="terminal user id (default: local)")
        command.add_argument("--lang", choices=("zh", "en"), help="language (default: settings)")
        command.add_argument("--script", action="store_true",
                             help="read lines from standard input and print the transcript")
        command.add_argument("--clock", metavar="ISO-TIME",
                             help="pretend it is this time, e.g. 2026-11-23T09:00+08:00 "
                                  "(the terminal chat only; refused with a chat token set)")
        command.set_defaults(handler=handler)
    return parser


async def _run(handler: Handler, settings: Settings, args: argparse.Namespace) -> int:
    app = await build_app(settings)
    try:
        return await handler(app, args)
    finally:
        await app.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(args.settings)
    except SettingsError as exc:
        print(f"yuyue: bad setting: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logging.getLogger().setLevel(settings.general.log_level)
    for noisy in ("alembic", "httpx", "telegram"):
        # INFO from these would log every request (URLs, message parameters) or migration step.
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    # "Skipped: maximum number of running instances" is how a long dispatch round looks.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    try:
        return asyncio.run(_run(args.handler, settings, args))
    except CommandError as exc:
        print(f"yuyue: {exc}", file=sys.stderr)
    except SeedError as exc:
        print(f"yuyue: cannot seed: {exc}", file=sys.stderr)
    except CatalogError as exc:
        print(f"yuyue: the catalog has {len(exc.problems)} problem(s):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
    except TelegramError as exc:
        print(f"yuyue: Telegram: {type(exc).__name__}: {_first_line(exc)}\n"
              "  check telegram.token and telegram.base_url, and the network", file=sys.stderr)
    except WechatApiError as exc:
        print(f"yuyue: WeChat said no: {exc}", file=sys.stderr)
    except WecomApiError as exc:
        print(f"yuyue: WeCom said no: {exc}", file=sys.stderr)
    except httpx.HTTPError as exc:
        print(f"yuyue: could not reach the chat platform: {type(exc).__name__}", file=sys.stderr)
    except OperationalError as exc:
        print(f"yuyue: database error: {_first_line(exc.orig or exc)}\n"
              "  check database.url and run `yuyue doctor`", file=sys.stderr)
    except KeyboardInterrupt:
        print("yuyue: interrupted", file=sys.stderr)
        return 130
    return EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
