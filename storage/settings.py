"""Settings: one frozen object loaded once from settings.toml and the environment.

Every key has a default here and a one-line comment in settings.toml. An environment variable
``YUYUE_<SECTION>__<KEY>`` overrides any key (secrets come only from there). Loading validates
everything and reports the first problem as one line naming the key, the value and what is
expected, so a bad file stops start-up without a traceback.

Why not pydantic-settings: a port (frozen pydantic models, ``Field(ge=..., le=...)``, ``Literal``,
the parsers below as validators, pydantic's first error turned into our one line) passed every
error-message case of tests/test_settings.py but saved 15 of 483 lines (29 of 377 code lines).
Its own sources went unused: its environment source reads lists as JSON and scalars as strings,
so "12" needs lax validation, which would also take ``echo = "yes"`` or ``port = "8080"`` from
the file; it ignores a misspelt section (``YUYUE_TELEGRAMM__TOKEN``); and a bare ``Settings()``
would read the environment, where tests and wiring build all-default settings. What stayed was
our TOML reading, our typed environment reading and a 30-line translation of pydantic's errors,
plus two dependencies (about 0.2 s of import) and 18 ``dataclasses.replace``/``fields`` uses in 11 files
to rewrite as ``model_copy``. So the dataclasses stay.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import tomllib
import typing
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "YUYUE_"
SETTINGS_ENV = "YUYUE_SETTINGS"
DEFAULT_SETTINGS_FILE = "settings.toml"


class SettingsError(ValueError):
    """A setting is missing, unknown, or has an impossible value."""


# --- value types that need parsing ------------------------------------------------------------


@dataclass(frozen=True)
class Cutoff:
    """How long before an appointment a change is still allowed: working days or a duration."""

    working_days: int = 0
    delta: dt.timedelta = dt.timedelta(0)

    def __str__(self) -> str:
        if self.working_days:
            return f"{self.working_days}wd"
        return format_duration(self.delta)


@dataclass(frozen=True)
class BlockTier:
    """``strikes`` strikes inside the window block the citizen for ``days`` days."""

    strikes: int
    days: int


_DURATION = re.compile(r"^\s*(\d+)\s*(wd|d|h|m)\s*$")


def parse_duration(text: str) -> dt.timedelta:
    """Parse "90m", "2h" or "3d" into a timedelta."""
    match = _DURATION.match(str(text))
    if not match or match.group(2) == "wd":
        raise ValueError('a duration like "30m", "2h" or "1d"')
    amount, unit = int(match.group(1)), match.group(2)
    return {"m": dt.timedelta(minutes=amount), "h": dt.timedelta(hours=amount),
            "d": dt.timedelta(days=amount)}[unit]


def format_duration(delta: dt.timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes % (24 * 60) == 0 and minutes:
        return f"{minutes // (24 * 60)}d"
    if minutes % 60 == 0 and minutes:
        return f"{minutes // 60}h"
    return f"{minutes}m"


def parse_cutoff(text: str) -> Cutoff:
    """Parse "1wd" (working days, same clock time) or a duration like "24h"."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError('working days like "1wd" or a duration like "24h"')
    if match.group(2) == "wd":
        return Cutoff(working_days=int(match.group(1)))
    return Cutoff(delta=parse_duration(text))


def parse_clock_time(text: str) -> dt.time:
    """Parse "HH:MM" into a time of day."""
    try:
        hours, minutes = str(text).split(":")
        return dt.time(int(hours), int(minutes))
    except ValueError:
        raise ValueError('a time of day like "08:00"') from None


def parse_optional_clock_time(text: str) -> dt.time | None:
    """Parse "HH:MM", or "" for "not used"."""
    return None if text == "" else parse_clock_time(text)


def parse_timezone(text: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(str(text))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError('an IANA time zone like "Asia/Shanghai"') from None


def parse_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(text))
    except ValueError:
        raise ValueError('a date like "2026-10-01"') from None


def parse_block_tiers(value: Any) -> tuple[BlockTier, ...]:
    expected = 'a list like [{strikes = 3, days = 90}, {strikes = 6, days = 180}]'
    if not isinstance(value, list):
        raise ValueError(expected)
    tiers = []
    for item in value:
        if not isinstance(item, dict) or set(item) != {"strikes", "days"}:
            raise ValueError(expected)
        strikes, days = item["strikes"], item["days"]
        if not (_is_int(strikes) and _is_int(days) and strikes > 0 and days > 0):
            raise ValueError(expected + " with positive whole numbers")
        tiers.append(BlockTier(strikes, days))
    if [t.strikes for t in tiers] != sorted({t.strikes for t in tiers}):
        raise ValueError(expected + ", strikes increasing")
    return tuple(tiers)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _one_of(*allowed: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError("one of " + ", ".join(f'"{a}"' for a in allowed))
        return value

    return check


def _setting(default: Any, *, parse: Callable[[Any], Any] | None = None, minimum: float | None = None,
             maximum: float | None = None, secret: bool = False) -> Any:
    """A settings field: its default and how its raw value is checked."""
    meta = {"parse": parse, "min": minimum, "max": maximum, "secret": secret}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: parse(default) if parse else type(default)(default),
                     metadata=meta)
    if parse is not None and isinstance(default, str):
        default = parse(default)
    return field(default=default, metadata=meta)


# --- the sections -----------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneralSettings:
    timezone: zoneinfo.ZoneInfo = _setting("Asia/Shanghai", parse=parse_timezone)
    locale: str = _setting("zh-CN", parse=_one_of("zh-CN", "en"))
    catalog: str = "catalog/demo.toml"
    data_dir: str = "var"
    log_level: str = _setting("INFO", parse=_one_of("DEBUG", "INFO", "WARNING", "ERROR"))


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = "sqlite+aiosqlite:///var/yuyue.db"
    echo: bool = False
    pool_size: int = _setting(10, minimum=1, maximum=200)
    sqlite_busy_timeout_ms: int = _setting(30000, minimum=0)


@dataclass(frozen=True)
class PrivacySettings:
    id_hash_key: str = _setting("", secret=True)


@dataclass(frozen=True)
class RuleSettings:
    """Booking rules. Every key may be overridden per service in the catalog's [rules] table."""

    hold_minutes: int = _setting(10, minimum=1, maximum=120)
    min_lead_minutes: int = _setting(30, minimum=0)
    booking_stop: dt.time | None = _setting("15:00", parse=parse_optional_clock_time)
    cancel_cutoff: Cutoff = _setting("1wd", parse=parse_cutoff)
    late_cancel: str = _setting("refuse", parse=_one_of("refuse", "strike"))
    no_show_grace_minutes: int = _setting(30, minimum=0, maximum=24 * 60)
    strike_window_days: int = _setting(365, minimum=1)
    block_tiers: tuple[BlockTier, ...] = _setting(
        [{"strikes": 3, "days": 90}, {"strikes": 6, "days": 180}], parse=parse_block_tiers)
    strike_cancellations_per_month: int = _setting(0, minimum=0)
    max_active_bookings: int = _setting(3, minimum=1)
    max_bookings_per_week: int = _setting(5, minimum=0)
    max_bookings_per_month: int = _setting(10, minimum=0)
    closure_notice_hours: int = _setting(2, minimum=0)
    # A doctor's 停诊: how long a patient has to answer a 替诊 (no answer: accepted) or a 换诊
    # (no answer: cancelled without a strike); never later than the appointment's start.
    closure_answer_hours: int = _setting(24, minimum=1, maximum=24 * 14)
    home_visit_min_age: int = _setting(70, minimum=0, maximum=150)
    waitlist_size: int = _setting(50, minimum=0)
    move_answer_hours: int = _setting(24, minimum=1)


@dataclass(frozen=True)
class AccountSettings:
    """Accounts and the people they act for (docs/accounts.md): limits and proofs."""

    people_per_account: int = _setting(5, minimum=1, maximum=50)
    active_bookings_per_account: int = _setting(6, minimum=1)
    link_code_minutes: int = _setting(10, minimum=1, maximum=60)
    proof_tries: int = _setting(5, minimum=1, maximum=20)
    proof_lock_minutes: int = _setting(60, minimum=1)


@dataclass(frozen=True)
class CalendarSettings:
    closed_dates: tuple[dt.date, ...] = _setting([], parse=lambda v: _dates(v))
    extra_working_dates: tuple[dt.date, ...] = _setting([], parse=lambda v: _dates(v))


def _dates(value: Any) -> tuple[dt.date, ...]:
    if not isinstance(value, list):
        raise ValueError('a list of dates like ["2026-12-31"]')
    return tuple(v if isinstance(v, dt.date) else parse_date(v) for v in value)


def parse_hours(text: str) -> tuple[dt.time, dt.time]:
    """Parse "09:00-17:00" into (opens, closes)."""
    try:
        opens, closes = (parse_clock_time(part.strip()) for part in str(text).split("-"))
    except ValueError:
        raise ValueError('opening hours like "09:00-17:00"') from None
    if opens >= closes:
        raise ValueError('opening hours like "09:00-17:00" that end after they start')
    return opens, closes


@dataclass(frozen=True)
class ConversationSettings:
    idle_minutes: int = _setting(30, minimum=1)
    misunderstandings_before_handoff: int = _setting(2, minimum=1)
    attachments_dir: str = "var/attachments"
    staff_hours: tuple[dt.time, dt.time] = _setting("09:00-17:00", parse=parse_hours)
    handoff_escalate_minutes: int = _setting(10, minimum=1)
    complaint_answer_working_days: int = _setting(1, minimum=0)
    complaint_resolution_working_days: int = _setting(15, minimum=1)
    elder_age: int = _setting(65, minimum=0, maximum=150)     # 长辈 mode offered from this age


@dataclass(frozen=True)
class NotificationSettings:
    reminder_evening: dt.time | None = _setting("18:00", parse=parse_optional_clock_time)
    reminder_offsets: tuple[dt.timedelta, ...] = _setting(
        ["2h"], parse=lambda v: tuple(parse_duration(x) for x in _strings(v)))
    rating_delay_minutes: int = _setting(60, minimum=0)
    max_attempts: int = _setting(6, minimum=1)
    retry_base_seconds: int = _setting(30, minimum=1)
    dispatch_interval_seconds: int = _setting(5, minimum=1)
    batch_size: int = _setting(100, minimum=1)
    claim_lease_seconds: int = _setting(120, minimum=1)
    staff_digest: dt.time | None = _setting("17:00", parse=parse_optional_clock_time)


@dataclass(frozen=True)
class CaseSettings:
    """Cases after the visit (办件): 补正, reminders, extensions and 回访."""

    correction_working_days: int = _setting(10, minimum=1, maximum=60)
    corrections_without_approval: int = _setting(1, minimum=0, maximum=10)
    max_extension_working_days: int = _setting(30, minimum=1, maximum=365)
    due_reminder_working_days: int = _setting(1, minimum=0, maximum=30)
    uncollected_working_days: int = _setting(5, minimum=1, maximum=365)
    followup_working_days: int = _setting(1, minimum=0, maximum=30)
    notice_time: dt.time = _setting("09:00", parse=parse_clock_time)
    overdue_time: dt.time = _setting("17:00", parse=parse_clock_time)


@dataclass(frozen=True)
class ComplaintSettings:
    """Complaints and suggestions (投诉/建议): merging repeats, the complex answer time, 回访."""

    merge_days: int = _setting(30, minimum=0, maximum=365)
    complex_working_days: int = _setting(5, minimum=1, maximum=30)
    followup_sample: int = _setting(5, minimum=0, maximum=1000)


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError('a list of strings like ["2h"]')
    return value


@dataclass(frozen=True)
class TelegramSettings:
    token: str = _setting("", secret=True)
    mode: str = _setting("polling", parse=_one_of("polling", "webhook"))
    webhook_url: str = ""
    secret_token: str = _setting("", secret=True)
    base_url: str = ""
    base_file_url: str = ""
    staff_chat_id: int = 0


def _public_url(value: str) -> str:
    """Where citizens' browsers reach this server (the consent page WeChat redirects to)."""
    if value and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
        raise ValueError("an http(s) address like https://yuyue.example.gov.cn, or empty")
    return value.rstrip("/")


@dataclass(frozen=True)
class WechatSettings:
    app_id: str = ""
    app_secret: str = _setting("", secret=True)
    token: str = _setting("", secret=True)
    encoding_aes_key: str = _setting("", secret=True)
    path: str = "/wechat"
    api_base_url: str = "https://api.weixin.qq.com"
    replay_window_seconds: int = _setting(300, minimum=10)
    reply_deadline_ms: int = _setting(4000, minimum=100, maximum=4800)
    reminder_template_id: str = ""
    reminder_template_fields: tuple[str, ...] = _setting(
        ["thing1=service", "time2=when", "thing3=place", "character_string4=code"],
        parse=lambda v: _template_fields(v))
    notice_template_id: str = ""
    notice_template_fields: tuple[str, ...] = _setting(
        ["thing1=service", "time2=when", "thing3=place", "character_string4=code",
         "thing5=reason"], parse=lambda v: _template_fields(v))
    subscribe_template_id: str = ""
    public_url: str = _setting("", parse=_public_url)


TEMPLATE_SOURCES = ("service", "when", "place", "code", "reason", "summary", "sent", "person")
TIMED_SOURCES = ("when", "sent")        # what a template's time or date keyword can show


def _template_fields(value: Any) -> tuple[str, ...]:
    """Template keyword = where its value comes from, e.g. "thing1=service"."""
    expected = ('a list like ["thing1=service", "time2=when"] (sources: '
                + ", ".join(TEMPLATE_SOURCES) + ")")
    items = _strings(value) if isinstance(value, list) else None
    if items is None:
        raise ValueError(expected)
    for item in items:
        key, _, source = item.partition("=")
        if not re.fullmatch(r"[a-z_]+[0-9]*", key) or source not in TEMPLATE_SOURCES:
            raise ValueError(expected)
        if re.sub(r"[0-9]+$", "", key) in ("time", "date") and source not in TIMED_SOURCES:
            raise ValueError(f"{item}: a time or date keyword takes "
                             + " or ".join(TIMED_SOURCES))
    return tuple(items)


def _staff_names(value: Any) -> tuple[str, ...]:
    """WeCom user id = the name staff know them by, e.g. "zhangsan=张三"."""
    expected = 'a list like ["zhangsan=张三"]'
    items = _strings(value) if isinstance(value, list) else None
    if items is None or not all(re.fullmatch(r"[\w.@-]{1,64}=\S.{0,29}", item) for item in items):
        raise ValueError(expected)
    return tuple(items)


SMS_POLICIES = ("never", "fallback", "always")
SMS_PARAM_SOURCES = ("service", "when", "place", "code", "summary", "reason", "number", "minutes",
                     # the offers answered by reply (替诊, 换诊, /move): docs/sms.md
                     "doctor", "deadline", "new_when")
DEFAULT_SMS_POLICY = {
    "booking_confirmed": "fallback", "reminder": "fallback", "closure_cancelled": "always",
    "cancelled": "fallback", "case_accepted": "fallback", "case_correction": "fallback",
    "case_ready": "fallback", "case_refused": "fallback", "case_extended": "fallback",
    "case_expected": "fallback", "case_uncollected": "fallback",
    # Offers the citizen answers (替诊, 换诊, a staff /move), and the answer to a reply by SMS.
    "closure_substitute": "fallback", "closure_move": "fallback", "move_offer": "fallback",
    "offer_answered": "fallback",
    # Several offers wait for the number that replied: none is answered, they are asked to call.
    "offer_ambiguous": "fallback",
}


@dataclass(frozen=True)
class SmsTemplate:
    """An approved SMS template (模板): its id and, in order, where each parameter comes from."""

    template_id: str
    params: tuple[str, ...]


def _sms_policy(value: Any) -> dict[str, str]:
    expected = ('a table like {reminder = "fallback", closure_cancelled = "always"} '
                '(each "never", "fallback" or "always")')
    if not isinstance(value, dict):
        raise ValueError(expected)
    merged = dict(DEFAULT_SMS_POLICY)
    for kind, policy in value.items():
        if not re.fullmatch(r"[a-z_]{1,40}", str(kind)) or policy not in SMS_POLICIES:
            raise ValueError(expected)
        merged[kind] = policy
    return merged


def _sms_templates(value: Any) -> dict[str, SmsTemplate]:
    expected = ('a table of notice kind = {id = "1234567", params = ["service", "when"]} '
                "(params from: " + ", ".join(SMS_PARAM_SOURCES) + ")")
    if not isinstance(value, dict):
        raise ValueError(expected)
    templates: dict[str, SmsTemplate] = {}
    for kind, spec in value.items():
        if not isinstance(spec, dict) or set(spec) - {"id", "params"}:
            raise ValueError(expected)
        template_id, params = spec.get("id"), spec.get("params", [])
        if not isinstance(template_id, str) or not re.fullmatch(r"[0-9A-Za-z_]{1,40}", template_id):
            raise ValueError(expected)
        if not isinstance(params, list) or any(p not in SMS_PARAM_SOURCES for p in params):
            raise ValueError(expected)
        templates[str(kind)] = SmsTemplate(template_id, tuple(params))
    return templates


def _mobile_list(value: Any) -> tuple[str, ...]:
    return tuple(_strings(value))


@dataclass(frozen=True)
class SmsSettings:
    """Text messages (短信) to the mobile on file: docs/sms.md."""

    provider: str = _setting("none", parse=_one_of("none", "tencent"))
    secret_id: str = _setting("", secret=True)
    secret_key: str = _setting("", secret=True)
    region: str = "ap-guangzhou"
    sdk_app_id: str = ""
    sign_name: str = ""
    endpoint: str = ""                  # host[:port] override (tests, private endpoints)
    protocol: str = _setting("https", parse=_one_of("https", "http"))
    timeout_seconds: int = _setting(10, minimum=1, maximum=60)
    price_fen: int = _setting(5, minimum=0)    # what one billed message costs, in fen (分)
    policy: dict[str, str] = _setting({}, parse=_sms_policy)
    templates: dict[str, SmsTemplate] = _setting({}, parse=_sms_templates)
    per_minute: int = _setting(1, minimum=1)
    per_hour: int = _setting(5, minimum=1)
    per_day: int = _setting(10, minimum=1)
    quiet_from: dt.time = _setting("21:00", parse=parse_clock_time)
    quiet_until: dt.time = _setting("08:00", parse=parse_clock_time)
    urgent_until: dt.time = _setting("12:00", parse=parse_clock_time)
    code_minutes: int = _setting(5, minimum=1, maximum=30)
    codes_per_hour: int = _setting(5, minimum=1, maximum=50)
    callback_path: str = "/sms/tencent"
    callback_token: str = _setting("", secret=True)

    @property
    def enabled(self) -> bool:
        return self.provider != "none"

    def policy_for(self, kind: str) -> str:
        """How a notice kind goes by SMS: "never", "fallback" or "always"."""
        return self.policy.get(kind, "never")


@dataclass(frozen=True)
class WecomSettings:
    """WeCom (企业微信): the self-built app staff work in, and the optional notify-only robot."""

    robot_webhook: str = _setting("", secret=True)
    corp_id: str = ""
    agent_id: int = _setting(0, minimum=0)
    secret: str = _setting("", secret=True)
    token: str = _setting("", secret=True)
    encoding_aes_key: str = _setting("", secret=True)
    path: str = "/wecom"
    api_base: str = "https://qyapi.weixin.qq.com"
    app_chat_id: str = ""
    on_duty: tuple[str, ...] = _setting([], parse=lambda v: tuple(_strings(v)))
    staff_names: tuple[str, ...] = _setting([], parse=lambda v: _staff_names(v))
    replay_window_seconds: int = _setting(300, minimum=10)
    reply_deadline_ms: int = _setting(4000, minimum=100, maximum=4800)

    @property
    def app_enabled(self) -> bool:
        """The self-built app is configured (its callback Token set)."""
        return bool(self.token)


@dataclass(frozen=True)
class WebSettings:
    host: str = "127.0.0.1"
    port: int = _setting(8080, minimum=1, maximum=65535)


@dataclass(frozen=True)
class AccessSettings:
    """Who may use staff and manager commands: "telegram:<user id>", "wechat:<openid>" or
    "wecom:<WeCom user id>"."""

    staff: tuple[str, ...] = _setting([], parse=lambda v: tuple(_strings(v)))
    supervisors: tuple[str, ...] = _setting([], parse=lambda v: tuple(_strings(v)))
    managers: tuple[str, ...] = _setting([], parse=lambda v: tuple(_strings(v)))


@dataclass(frozen=True)
class Settings:
    general: GeneralSettings = field(default_factory=GeneralSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)
    rules: RuleSettings = field(default_factory=RuleSettings)
    accounts: AccountSettings = field(default_factory=AccountSettings)
    calendar: CalendarSettings = field(default_factory=CalendarSettings)
    conversation: ConversationSettings = field(default_factory=ConversationSettings)
    notifications: NotificationSettings = field(default_factory=NotificationSettings)
    cases: CaseSettings = field(default_factory=CaseSettings)
    complaints: ComplaintSettings = field(default_factory=ComplaintSettings)
    telegram: TelegramSettings = field(default_factory=TelegramSettings)
    wechat: WechatSettings = field(default_factory=WechatSettings)
    wecom: WecomSettings = field(default_factory=WecomSettings)
    web: WebSettings = field(default_factory=WebSettings)
    access: AccessSettings = field(default_factory=AccessSettings)
    sms: SmsSettings = field(default_factory=SmsSettings)
    base_dir: Path = field(default=Path("."), compare=False)

    def path(self, relative: str) -> Path:
        """Resolve a path setting against the directory of the settings file."""
        candidate = Path(relative)
        return candidate if candidate.is_absolute() else self.base_dir / candidate


# --- loading ----------------------------------------------------------------------------------


def _describe(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _check_value(key: str, raw: Any, spec: dataclasses.Field[Any], hint: Any) -> Any:
    """Turn a raw TOML value into the field's value or raise SettingsError naming ``key``."""
    shown = "(hidden)" if spec.metadata.get("secret") else _describe(raw)
    parse = spec.metadata.get("parse")
    if parse is not None:
        try:
            return parse(raw)
        except (ValueError, TypeError) as exc:
            raise SettingsError(f"{key}: expected {exc}, got {shown}") from None
    expected = {bool: "true or false", int: "a whole number", str: "a string",
                float: "a number"}.get(hint, str(hint))
    ok = (isinstance(raw, bool) if hint is bool else
          _is_int(raw) if hint is int else
          isinstance(raw, (int, float)) and not isinstance(raw, bool) if hint is float else
          isinstance(raw, str) if hint is str else True)
    if not ok:
        raise SettingsError(f"{key}: expected {expected}, got {shown}")
    low, high = spec.metadata.get("min"), spec.metadata.get("max")
    if low is not None and raw < low:
        raise SettingsError(f"{key}: expected a number of at least {low}, got {shown}")
    if high is not None and raw > high:
        raise SettingsError(f"{key}: expected a number of at most {high}, got {shown}")
    return raw


def build_section(cls: type[Any], raw: Mapping[str, Any], prefix: str) -> Any:
    """Build one settings section from a mapping, rejecting unknown keys.

    Raises:
        SettingsError: naming the first bad key.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise SettingsError(f"{prefix}{key}: unknown setting (known here: {known})")
    values = {name: _check_value(prefix + name, raw[name], fields[name], hints[name])
              for name in raw}
    return cls(**values)


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    sections = {f.name: f for f in dataclasses.fields(Settings) if f.name != "base_dir"}
    found: dict[str, dict[str, Any]] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX):].lower().partition("__")
        if section not in sections:
            raise SettingsError(f"{name}: unknown settings section [{section}]")
        cls = typing.get_type_hints(Settings)[section]
        hint = typing.get_type_hints(cls).get(key)
        found.setdefault(section, {})[key] = _env_value(raw, hint)
    return found


def _env_value(raw: str, hint: Any) -> Any:
    """Read an environment string as the type the key expects (TOML syntax for non-strings)."""
    if hint is str or hint is None:
        return raw
    if hint is bool:
        return {"true": True, "1": True, "yes": True, "false": False, "0": False,
                "no": False}.get(raw.strip().lower(), raw)
    origin = typing.get_origin(hint)
    if hint in (int, float) or origin in (tuple, list):
        try:
            return tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            return raw
    return raw


def load_settings(path: str | os.PathLike[str] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Load and validate settings from a TOML file and ``YUYUE_*`` environment variables.

    Args:
        path: the settings file; default ``$YUYUE_SETTINGS`` or ./settings.toml. A missing
            default file means "all defaults".
        environ: the environment to read overrides from (default ``os.environ``).

    Raises:
        SettingsError: one line naming the bad key, its value and what is expected.
    """
    environ = os.environ if environ is None else environ
    explicit = path is not None or SETTINGS_ENV in environ
    file = Path(path if path is not None else environ.get(SETTINGS_ENV, DEFAULT_SETTINGS_FILE))
    data: dict[str, Any] = {}
    if file.exists():
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{file}: not valid TOML ({exc})") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"{file}: cannot be read ({exc})") from None
    elif explicit:
        raise SettingsError(f"{file}: settings file not found")
    section_types = typing.get_type_hints(Settings)
    for name, value in data.items():
        if name not in section_types or name == "base_dir":
            known = ", ".join(f.name for f in dataclasses.fields(Settings) if f.name != "base_dir")
            raise SettingsError(f"[{name}]: unknown settings section (known: {known})")
        if not isinstance(value, dict):
            raise SettingsError(f"{name}: expected a [{name}] table, got {_describe(value)}")
    for section, values in _env_overrides(environ).items():
        data.setdefault(section, {}).update(values)
    sections = {name: build_section(section_types[name], data.get(name, {}), f"{name}.")
                for name in section_types if name != "base_dir"}
    return Settings(**sections, base_dir=file.resolve().parent)


def rules_with_overrides(base: RuleSettings, overrides: Mapping[str, Any], prefix: str) -> RuleSettings:
    """Apply a service's [rules] table on top of the global rules.

    Raises:
        SettingsError: naming the first bad key (``prefix`` + key).
    """
    checked = build_section(RuleSettings, overrides, prefix)
    return dataclasses.replace(base, **{k: getattr(checked, k) for k in overrides})
