"""The service catalog: a TOML file describing departments and services, checked and loaded.

``check_catalog`` reports every problem at once, each with its key path; ``load_catalog`` is
idempotent and never touches existing appointments.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
import secrets
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Appointment, Department, Service, Slot
from storage.settings import RuleSettings, SettingsError, parse_clock_time, rules_with_overrides

# The shared value (storage.shared) a catalog load stamps anew.
CATALOG_STAMP = "catalog"

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEPARTMENT_KINDS = ("service_centre", "hospital")
MATERIAL_FORMS = ("original", "copy", "original_and_copy", "electronic")
_CODE = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
_CHINESE = re.compile(r"[\u3400-\u9fff]")
_RANGE = re.compile(r"^(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})$")


class CatalogError(ValueError):
    """The catalog file has problems; ``problems`` lists every one with its key path."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Text:
    """A text in both languages of the product."""

    zh: str
    en: str

    def get(self, locale: str) -> str:
        return self.en if locale.startswith("en") else self.zh


@dataclass(frozen=True)
class Material:
    name: Text
    form: str = "original"
    copies: int = 1
    issuer: Text | None = None
    notes: Text | None = None


@dataclass(frozen=True)
class HomeVisit:
    offered: bool = False
    min_age: int | None = None      # None: the global rule
    disability: bool = True         # self-declared disability also qualifies
    note: Text | None = None


CASE_KINDS = ("immediate", "promised", "joint", "reported")  # the kinds a service may default to


@dataclass(frozen=True)
class CaseDef:
    """What happens after the visit (办件): the default kind and how the result is handed over.

    The committed working days are the service's ``processing_days``.
    """

    kind: str = "immediate"
    pickup_place: Text | None = None    # None: the service's place
    pickup_hours: Text | None = None    # None: the service's opening hours
    bring: Text | None = None           # what to bring to collect the result
    mail: bool = False                  # the result can be posted (邮寄)


@dataclass(frozen=True)
class DepartmentDef:
    code: str
    kind: str
    name: Text
    address: Text
    phone: str = ""
    keywords: tuple[str, ...] = ()      # other names people use for it ("医院", "卫生院")


@dataclass(frozen=True)
class ServiceDef:
    code: str
    department: str
    name: Text
    place: Text
    description: Text = Text("", "")
    keywords: tuple[str, ...] = ()      # synonyms and phrasings people type ("看牙", "补卡")
    doctors: tuple[str, ...] = ()       # names of the doctors or clerks who serve it
    phone: str = ""
    fees: Text = Text("免费", "Free")
    legal_basis: Text | None = None
    materials: tuple[Material, ...] = ()
    eligibility: Text | None = None
    slot_minutes: int = 30
    capacity: int = 4
    online_share: float = 0.5
    hours: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    horizon_days: int = 7
    release_time: str = "08:00"
    id_required: bool = True
    home_visit: HomeVisit = HomeVisit()
    processing_days: int = 0        # 0: 即办 (done on the spot)
    rules: dict[str, Any] = field(default_factory=dict)
    case: CaseDef = CaseDef()
    procedure: tuple[Text, ...] = ()    # 办理程序: the steps, in order

    @property
    def notice_version(self) -> str:
        """A short digest of everything the one-time notice (一次性告知) says: two bookings
        with the same version were shown the same notice."""
        shown = {key: getattr(self, key) for key in _NOTICE_FIELDS}
        return _digest(json.loads(json.dumps(shown, default=_plain)))[:12]

    @property
    def online_capacity(self) -> int:
        return max(0, min(self.capacity, round(self.capacity * self.online_share)))

    def hours_on(self, day: dt.date) -> tuple[tuple[dt.time, dt.time], ...]:
        """Opening periods on ``day`` (its weekday's, else the default ones)."""
        periods = self.hours.get(WEEKDAYS[day.weekday()], self.hours.get("default", ()))
        return tuple((parse_clock_time(a), parse_clock_time(b)) for a, b in periods)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServiceDef:
        return _service_from_dict(data)


RESOURCE_KINDS = ("doctor", "window")
TITLES = ("chief", "associate_chief", "attending", "resident")   # 主任/副主任/主治/住院医师
HALVES = ("am", "pm")
NOON = dt.time(12, 0)   # an opening period that starts before noon is the morning (上午)


@dataclass(frozen=True)
class RosterDef:
    """A resource's weekly pattern for one service: the half-days it works and its seats."""

    service: str
    sessions: tuple[tuple[int, str], ...]     # (weekday 0 = Monday, "am" or "pm")
    seats: int
    online_share: float | None = None         # None: the service's


@dataclass(frozen=True)
class RosterExceptionDef:
    """A dated change: a half-day (or the whole day) off, or worked with other seats."""

    service: str
    day: dt.date
    half: str                                 # "am", "pm" or "day"
    seats: int = 0
    note: str = ""


@dataclass(frozen=True)
class ResourceDef:
    """A doctor (name, title, specialty, introduction, photo) or a window/clerk."""

    code: str
    kind: str
    name: Text
    title: str | None = None
    specialty: Text | None = None
    intro: Text | None = None
    photo: str = ""
    services: tuple[str, ...] = ()
    roster: tuple[RosterDef, ...] = ()
    exceptions: tuple[RosterExceptionDef, ...] = ()


@dataclass(frozen=True)
class Catalog:
    departments: tuple[DepartmentDef, ...]
    services: tuple[ServiceDef, ...]
    resources: tuple[ResourceDef, ...] = ()
    # Not errors, but what an English-speaking citizen would see untranslated: a text given
    # in Chinese only (one Chinese string, or a table without "en"), each with its key path.
    warnings: tuple[str, ...] = ()


# --- checking ---------------------------------------------------------------------------------


class _Checker:
    """Collects every problem, each with its key path, instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def table(self, path: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(path, f"must be a table, got {value!r}")
            return {}
        return value

    def unknown(self, path: str, data: dict[str, Any], known: Iterator[str] | tuple[str, ...]) -> None:
        allowed = set(known)
        for key in data:
            if key not in allowed:
                self.fail(f"{path}.{key}", "unknown key (known: " + ", ".join(sorted(allowed)) + ")")

    def text(self, path: str, value: Any, *, required: bool = True) -> Text | None:
        if value is None:
            if required:
                self.fail(path, 'is required (a string, or {zh = "...", en = "..."})')
            return None
        if isinstance(value, str):
            if required and not value.strip():
                self.fail(path, "must not be empty")
            if _CHINESE.search(value):
                self.warnings.append(f'{path}: no English text (en); English chats would show '
                                     f'{value!r}: write {{zh = "...", en = "..."}}')
            return Text(value, value)
        if isinstance(value, dict):
            self.unknown(path, value, ("zh", "en"))
            zh, en = value.get("zh"), value.get("en")
            if not isinstance(zh, str) or not zh.strip():
                self.fail(f"{path}.zh", f"must be a non-empty string, got {zh!r}")
                return None
            if en is not None and not isinstance(en, str):
                self.fail(f"{path}.en", f"must be a string, got {en!r}")
                return None
            if not en or not en.strip():
                self.warnings.append(f"{path}.en: missing; English chats would show the Chinese text")
            return Text(zh, en or zh)
        self.fail(path, f'must be a string or {{zh = "...", en = "..."}}, got {value!r}')
        return None

    def integer(self, path: str, value: Any, default: int, *, minimum: int = 1,
                maximum: int | None = None) -> int:
        if value is None:
            return default
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum or (
                maximum is not None and value > maximum):
            what = "a positive integer" if minimum == 1 else f"an integer of at least {minimum}"
            if maximum is not None:
                what += f" and at most {maximum}"
            self.fail(path, f"must be {what}, got {value!r}")
            return default
        return value

    def boolean(self, path: str, value: Any, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(path, f"must be true or false, got {value!r}")
            return default
        return value

    def string(self, path: str, value: Any, default: str = "") -> str:
        if value is None:
            return default
        if not isinstance(value, str):
            self.fail(path, f"must be a string, got {value!r}")
            return default
        return value

    def strings(self, path: str, value: Any) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            self.fail(path, f"must be a list of non-empty strings, got {value!r}")
            return ()
        return tuple(value)

    def choice(self, path: str, value: Any, allowed: tuple[str, ...], default: str) -> str:
        if value is None:
            return default
        if value not in allowed:
            self.fail(path, "must be one of " + ", ".join(allowed) + f", got {value!r}")
            return default
        return str(value)

    def clock(self, path: str, value: Any, default: str) -> str:
        if value is None:
            return default
        try:
            parsed = parse_clock_time(value)
        except ValueError:
            self.fail(path, f'must be a time of day like "08:00", got {value!r}')
            return default
        return parsed.strftime("%H:%M")


_SERVICE_KEYS = (*tuple(f.name for f in dataclasses.fields(ServiceDef) if f.name != "code"), "processing")


def _department(check: _Checker, code: str, raw: Any) -> DepartmentDef | None:
    path = f"departments.{code}"
    data = check.table(path, raw)
    check.unknown(path, data, ("kind", "name", "address", "phone", "keywords"))
    if not _CODE.match(code):
        check.fail(path, "code must be 2-40 lowercase letters, digits or _, starting with a letter")
    kind = check.choice(f"{path}.kind", data.get("kind"), DEPARTMENT_KINDS, "service_centre")
    name = check.text(f"{path}.name", data.get("name"))
    address = check.text(f"{path}.address", data.get("address"))
    phone = check.string(f"{path}.phone", data.get("phone"))
    keywords = check.strings(f"{path}.keywords", data.get("keywords"))
    if name is None or address is None:
        return None
    return DepartmentDef(code, kind, name, address, phone, keywords)


def _materials(check: _Checker, path: str, raw: Any) -> tuple[Material, ...]:
    if raw is None:
        check.fail(path, "is required: the full list of materials to bring (一次性告知)")
        return ()
    if not isinstance(raw, list) or not raw:
        check.fail(path, "must be a non-empty list of materials")
        return ()
    materials = []
    for index, item in enumerate(raw):
        item_path = f"{path}[{index}]"
        data = check.table(item_path, item)
        check.unknown(item_path, data, ("name", "form", "copies", "issuer", "notes"))
        name = check.text(f"{item_path}.name", data.get("name"))
        form = check.choice(f"{item_path}.form", data.get("form"), MATERIAL_FORMS, "original")
        copies = check.integer(f"{item_path}.copies", data.get("copies"), 1)
        issuer = check.text(f"{item_path}.issuer", data.get("issuer"), required=False)
        notes = check.text(f"{item_path}.notes", data.get("notes"), required=False)
        if name is not None:
            materials.append(Material(name, form, copies, issuer, notes))
    return tuple(materials)


def _hours(check: _Checker, path: str, raw: Any) -> dict[str, tuple[tuple[str, str], ...]]:
    data = check.table(path, raw if raw is not None else None)
    if raw is None:
        return {}
    check.unknown(path, data, ("default", *WEEKDAYS))
    hours: dict[str, tuple[tuple[str, str], ...]] = {}
    for key, periods in data.items():
        if key not in ("default", *WEEKDAYS):
            continue
        if not isinstance(periods, list):
            check.fail(f"{path}.{key}", f'must be a list like ["09:00-12:00"], got {periods!r}')
            continue
        parsed: list[tuple[str, str]] = []
        for index, period in enumerate(periods):
            match = _RANGE.match(period) if isinstance(period, str) else None
            try:
                start, end = (parse_clock_time(match.group(1)), parse_clock_time(match.group(2))) \
                    if match else (None, None)
            except ValueError:
                start = end = None
            if start is None or end is None or start >= end:
                check.fail(f"{path}.{key}[{index}]",
                           f'must be a period like "09:00-12:00" that ends after it starts, got {period!r}')
                continue
            if parsed and parse_clock_time(parsed[-1][1]) > start:
                check.fail(f"{path}.{key}[{index}]", "overlaps or comes before the previous period")
                continue
            parsed.append((start.strftime("%H:%M"), end.strftime("%H:%M")))
        hours[key] = tuple(parsed)
    if not any(hours.values()):
        check.fail(path, "must give at least one opening period (default or per weekday)")
    return hours


def _service(check: _Checker, code: str, raw: Any, departments: set[str],
             base_rules: RuleSettings) -> ServiceDef | None:
    path = f"services.{code}"
    data = check.table(path, raw)
    check.unknown(path, data, _SERVICE_KEYS)
    if not _CODE.match(code):
        check.fail(path, "code must be 2-40 lowercase letters, digits or _, starting with a letter")
    department = check.string(f"{path}.department", data.get("department"))
    if department not in departments:
        check.fail(f"{path}.department", f"must name a department of this file, got {department!r}")
    name = check.text(f"{path}.name", data.get("name"))
    place = check.text(f"{path}.place", data.get("place"))
    description = check.text(f"{path}.description", data.get("description"), required=False)
    keywords_raw = check.strings(f"{path}.keywords", data.get("keywords"))
    doctors = check.strings(f"{path}.doctors", data.get("doctors"))
    procedure = _procedure(check, f"{path}.procedure", data.get("procedure"))
    fees = check.text(f"{path}.fees", data.get("fees"), required=False)
    legal = check.text(f"{path}.legal_basis", data.get("legal_basis"), required=False)
    eligibility = check.text(f"{path}.eligibility", data.get("eligibility"), required=False)
    materials = _materials(check, f"{path}.materials", data.get("materials"))
    slot_minutes = check.integer(f"{path}.slot_minutes", data.get("slot_minutes"), 30, maximum=480)
    capacity = check.integer(f"{path}.capacity", data.get("capacity"), 4)
    share = data.get("online_share", 0.5)
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
        check.fail(f"{path}.online_share", f"must be a number above 0 and at most 1, got {share!r}")
        share = 0.5
    hours = _hours(check, f"{path}.hours", data.get("hours"))
    if data.get("hours") is None:
        check.fail(f"{path}.hours", 'is required, e.g. {default = ["09:00-12:00", "13:30-17:00"]}')
    horizon = check.integer(f"{path}.horizon_days", data.get("horizon_days"), 7, maximum=90)
    release = check.clock(f"{path}.release_time", data.get("release_time"), "08:00")
    id_required = check.boolean(f"{path}.id_required", data.get("id_required"), True)
    home_visit = _home_visit(check, f"{path}.home_visit", data.get("home_visit"))
    processing = _processing(check, f"{path}.processing", data.get("processing"))
    case = _case(check, f"{path}.case", data.get("case"), processing)
    rules = check.table(f"{path}.rules", data.get("rules", {}))
    for key, value in rules.items():
        try:
            rules_with_overrides(base_rules, {key: value}, f"{path}.rules.")
        except SettingsError as exc:
            check.problems.append(str(exc))
    if name is None or place is None:
        return None
    if capacity and round(capacity * share) < 1:
        check.fail(f"{path}.online_share", f"leaves no online seat of a capacity of {capacity}")
    return ServiceDef(
        code=code, department=department, name=name, place=place,
        description=description or Text("", ""), keywords=keywords_raw, doctors=doctors,
        procedure=procedure, phone=check.string(f"{path}.phone", data.get("phone")),
        fees=fees or Text("免费", "Free"), legal_basis=legal, materials=materials,
        eligibility=eligibility, slot_minutes=slot_minutes, capacity=capacity,
        online_share=float(share), hours=hours, horizon_days=horizon, release_time=release,
        id_required=id_required, home_visit=home_visit, processing_days=processing, rules=rules,
        case=case)


def _procedure(check: _Checker, path: str, raw: Any) -> tuple[Text, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        check.fail(path, f'must be a list of steps, each a string or {{zh = "...", en = "..."}}, got {raw!r}')
        return ()
    steps = [check.text(f"{path}[{index}]", step) for index, step in enumerate(raw)]
    return tuple(step for step in steps if step is not None)


def _home_visit(check: _Checker, path: str, raw: Any) -> HomeVisit:
    if raw is None:
        return HomeVisit()
    data = check.table(path, raw)
    check.unknown(path, data, ("offered", "min_age", "disability", "note"))
    min_age = data.get("min_age")
    return HomeVisit(
        offered=check.boolean(f"{path}.offered", data.get("offered"), False),
        min_age=None if min_age is None else check.integer(f"{path}.min_age", min_age, 70,
                                                           minimum=0, maximum=150),
        disability=check.boolean(f"{path}.disability", data.get("disability"), True),
        note=check.text(f"{path}.note", data.get("note"), required=False))


def _case(check: _Checker, path: str, raw: Any, processing_days: int) -> CaseDef:
    default_kind = "promised" if processing_days else "immediate"
    if raw is None:
        return CaseDef(kind=default_kind)
    data = check.table(path, raw)
    check.unknown(path, data, ("kind", "pickup_place", "pickup_hours", "bring", "mail"))
    kind = check.choice(f"{path}.kind", data.get("kind"), CASE_KINDS, default_kind)
    if kind == "immediate" and processing_days:
        check.fail(f"{path}.kind", f'is "immediate" but processing is {processing_days} working days')
    if kind == "promised" and not processing_days:
        check.fail(f"{path}.kind", '"promised" needs processing = the committed working days')
    return CaseDef(
        kind=kind,
        pickup_place=check.text(f"{path}.pickup_place", data.get("pickup_place"), required=False),
        pickup_hours=check.text(f"{path}.pickup_hours", data.get("pickup_hours"), required=False),
        bring=check.text(f"{path}.bring", data.get("bring"), required=False),
        mail=check.boolean(f"{path}.mail", data.get("mail"), False))


def _processing(check: _Checker, path: str, raw: Any) -> int:
    if raw is None or raw == "immediate":
        return 0
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw <= 365:
        return raw
    check.fail(path, f'must be "immediate" (即办) or a number of working days, got {raw!r}')
    return 0


_SESSION = re.compile(r"^(mon|tue|wed|thu|fri|sat|sun)_(am|pm)$")


def _resource(check: _Checker, code: str, raw: Any, services: dict[str, ServiceDef]) -> ResourceDef | None:
    path = f"resources.{code}"
    data = check.table(path, raw)
    check.unknown(path, data, ("kind", "name", "title", "specialty", "intro", "photo", "services",
                               "roster", "exceptions"))
    if not _CODE.match(code):
        check.fail(path, "code must be 2-40 lowercase letters, digits or _, starting with a letter")
    kind = check.choice(f"{path}.kind", data.get("kind"), RESOURCE_KINDS, "doctor")
    name = check.text(f"{path}.name", data.get("name"))
    title = data.get("title")
    if title is not None:
        title = check.choice(f"{path}.title", title, TITLES, "attending")
    elif kind == "doctor":
        check.fail(f"{path}.title", "a doctor needs a title: " + ", ".join(TITLES))
    specialty = check.text(f"{path}.specialty", data.get("specialty"), required=kind == "doctor")
    intro = check.text(f"{path}.intro", data.get("intro"), required=False)
    photo = check.string(f"{path}.photo", data.get("photo"))
    served = data.get("services", [])
    if not isinstance(served, list) or not served or not all(isinstance(x, str) for x in served):
        check.fail(f"{path}.services", f"must be a non-empty list of service codes, got {served!r}")
        served = []
    for service in served:
        if service not in services:
            check.fail(f"{path}.services", f"must name services of this file, got {service!r}")
    roster: list[RosterDef] = []
    raw_roster = data.get("roster", [])
    if not isinstance(raw_roster, list):
        check.fail(f"{path}.roster", "must be a list of tables")
        raw_roster = []
    for index, item in enumerate(raw_roster):
        item_path = f"{path}.roster[{index}]"
        entry = check.table(item_path, item)
        check.unknown(item_path, entry, ("service", "days", "seats", "online_share"))
        service = check.string(f"{item_path}.service", entry.get("service"))
        if service not in served:
            check.fail(f"{item_path}.service", f"must be one of this resource's services, got {service!r}")
        days = entry.get("days")
        sessions: list[tuple[int, str]] = []
        if not isinstance(days, list) or not days:
            check.fail(f"{item_path}.days", f'must be a list like ["mon_am", "wed_pm"], got {days!r}')
            days = []
        for day in days:
            match = _SESSION.match(day) if isinstance(day, str) else None
            if match is None:
                check.fail(f"{item_path}.days", f'must be weekday_half like "mon_am", got {day!r}')
                continue
            sessions.append((WEEKDAYS.index(match.group(1)), match.group(2)))
        seats = check.integer(f"{item_path}.seats", entry.get("seats"), 1, maximum=100)
        share = entry.get("online_share")
        if share is not None and (isinstance(share, bool) or not isinstance(share, (int, float))
                                  or not 0 < share <= 1):
            check.fail(f"{item_path}.online_share", f"must be a number above 0 and at most 1, got {share!r}")
            share = None
        roster.append(RosterDef(service, tuple(sessions), seats,
                                None if share is None else float(share)))
    exceptions: list[RosterExceptionDef] = []
    raw_exceptions = data.get("exceptions", [])
    if not isinstance(raw_exceptions, list):
        check.fail(f"{path}.exceptions", "must be a list of tables")
        raw_exceptions = []
    for index, item in enumerate(raw_exceptions):
        item_path = f"{path}.exceptions[{index}]"
        entry = check.table(item_path, item)
        check.unknown(item_path, entry, ("service", "date", "half", "seats", "note"))
        service = check.string(f"{item_path}.service", entry.get("service"))
        if service not in served:
            check.fail(f"{item_path}.service", f"must be one of this resource's services, got {service!r}")
        day = entry.get("date")
        if not isinstance(day, dt.date) or isinstance(day, dt.datetime):
            check.fail(f"{item_path}.date", f"must be a date like 2026-02-16, got {day!r}")
            continue
        half = check.choice(f"{item_path}.half", entry.get("half"), (*HALVES, "day"), "day")
        exceptions.append(RosterExceptionDef(
            service, day, half, check.integer(f"{item_path}.seats", entry.get("seats"), 0,
                                              minimum=0, maximum=100),
            check.string(f"{item_path}.note", entry.get("note"))))
    if name is None:
        return None
    return ResourceDef(code, kind, name, title, specialty, intro, photo, tuple(served),
                       tuple(roster), tuple(exceptions))


def parse_catalog(text: str, base_rules: RuleSettings | None = None) -> Catalog:
    """Parse and check a catalog; raise CatalogError listing every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError([f"(file): not valid TOML: {exc}"]) from None
    check = _Checker()
    check.unknown("(top level)", data, ("departments", "services", "resources"))
    base_rules = base_rules or RuleSettings()
    raw_departments = check.table("departments", data.get("departments", {}))
    raw_services = check.table("services", data.get("services", {}))
    if not raw_departments:
        check.fail("departments", "the catalog needs at least one department")
    if not raw_services:
        check.fail("services", "the catalog needs at least one service")
    departments = [d for code, raw in raw_departments.items()
                   if (d := _department(check, code, raw)) is not None]
    codes = set(raw_departments)
    services = [s for code, raw in raw_services.items()
                if (s := _service(check, code, raw, codes, base_rules)) is not None]
    raw_resources = check.table("resources", data.get("resources", {}))
    by_code = {s.code: s for s in services}
    resources = [r for code, raw in raw_resources.items()
                 if (r := _resource(check, code, raw, by_code)) is not None]
    if check.problems:
        raise CatalogError(check.problems)
    return Catalog(tuple(departments), tuple(services), tuple(resources), tuple(check.warnings))


def read_catalog(path: Path, base_rules: RuleSettings | None = None) -> Catalog:
    """Read and check a catalog file; raise CatalogError listing every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError([f"{path}: cannot be read ({exc})"]) from None
    return parse_catalog(text, base_rules)


def _stored_text(value: Any) -> Text | None:
    return None if value is None else Text(value["zh"], value["en"])


def _service_from_dict(data: dict[str, Any]) -> ServiceDef:
    text = _stored_text
    home = data["home_visit"]
    return ServiceDef(
        code=data["code"], department=data["department"], name=Text(**data["name"]),
        place=Text(**data["place"]), description=Text(**data["description"]),
        keywords=tuple(data["keywords"]), doctors=tuple(data.get("doctors", ())),
        procedure=tuple(Text(**step) for step in data.get("procedure", ())),
        phone=data["phone"], fees=Text(**data["fees"]),
        legal_basis=text(data["legal_basis"]),
        materials=tuple(Material(Text(**m["name"]), m["form"], m["copies"], text(m["issuer"]),
                                 text(m["notes"])) for m in data["materials"]),
        eligibility=text(data["eligibility"]), slot_minutes=data["slot_minutes"],
        capacity=data["capacity"], online_share=data["online_share"],
        hours={k: tuple((a, b) for a, b in v) for k, v in data["hours"].items()},
        horizon_days=data["horizon_days"], release_time=data["release_time"],
        id_required=data["id_required"],
        home_visit=HomeVisit(home["offered"], home["min_age"], home["disability"],
                             text(home["note"])),
        processing_days=data["processing_days"], rules=data["rules"],
        case=_case_from_dict(data.get("case"), data["processing_days"]))


def _case_from_dict(data: dict[str, Any] | None, processing_days: int) -> CaseDef:
    """A stored case table (definitions stored before cases existed have none)."""
    if data is None:
        return CaseDef(kind="promised" if processing_days else "immediate")
    return CaseDef(kind=data["kind"], pickup_place=_stored_text(data["pickup_place"]),
                   pickup_hours=_stored_text(data["pickup_hours"]),
                   bring=_stored_text(data["bring"]), mail=data["mail"])


# --- loading ----------------------------------------------------------------------------------


@dataclass
class LoadReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deactivated: list[str] = field(default_factory=list)
    resources_changed: list[str] = field(default_factory=list)     # created or updated
    resources_deactivated: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{len(self.created)} created", f"{len(self.updated)} updated",
                 f"{len(self.unchanged)} unchanged"]
        if self.deactivated:
            parts.append(f"{len(self.deactivated)} no longer in the file (deactivated)")
        if self.resources_changed:
            parts.append(f"{len(self.resources_changed)} doctors/windows with new rosters")
        if self.resources_deactivated:
            parts.append(f"{len(self.resources_deactivated)} doctors/windows deactivated")
        return ", ".join(parts)


_NOTICE_FIELDS = ("name", "materials", "eligibility", "procedure", "place", "hours", "fees",
                  "processing_days", "legal_basis", "phone")


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


_SLOT_SHAPE = ("hours", "slot_minutes")
_SLOT_SEATS = ("capacity", "online_share")


async def load_catalog(session: AsyncSession, catalog: Catalog, now: dt.datetime) -> LoadReport:
    """Create or update departments and services from a checked catalog.

    Loading the same catalog twice changes nothing. A changed service keeps every appointment:
    future slots nobody ever booked are regenerated when the opening hours or slot length
    change; seat numbers of future slots change but never drop below the seats already taken.

    Returns:
        What was created, updated, left unchanged and deactivated.
    """
    report = LoadReport()
    departments = {d.code: d for d in (await session.scalars(select(Department))).all()}
    for department_def in catalog.departments:
        data = dataclasses.asdict(department_def)
        department_row = departments.get(department_def.code)
        if department_row is None:
            department_row = Department(code=department_def.code, kind=department_def.kind,
                                        name_zh=department_def.name.zh, name_en=department_def.name.en,
                                        definition=data, created_at=now, updated_at=now)
            session.add(department_row)
            departments[department_def.code] = department_row
        elif department_row.definition != data:
            department_row.kind = department_def.kind
            department_row.name_zh, department_row.name_en = department_def.name.zh, department_def.name.en
            department_row.definition, department_row.updated_at = data, now
    await session.flush()

    services = {s.code: s for s in (await session.scalars(select(Service))).all()}
    for definition in catalog.services:
        data = definition.to_json()
        digest = _digest(data)
        row = services.pop(definition.code, None)
        if row is None:
            session.add(Service(code=definition.code, department_id=departments[definition.department].id,
                                name_zh=definition.name.zh, name_en=definition.name.en,
                                definition=data, definition_hash=digest, active=True,
                                created_at=now, updated_at=now))
            report.created.append(definition.code)
            continue
        if row.definition_hash == digest and row.active:
            report.unchanged.append(definition.code)
            continue
        old = row.definition
        row.department_id = departments[definition.department].id
        row.name_zh, row.name_en = definition.name.zh, definition.name.en
        row.definition, row.definition_hash, row.active, row.updated_at = data, digest, True, now
        await _refit_future_slots(session, row, old, definition, now)
        report.updated.append(definition.code)
    for code, row in services.items():
        if row.active:
            row.active, row.updated_at = False, now
            report.deactivated.append(code)
    await session.flush()
    # Imported here: storage.resources reads this module's definitions.
    from storage.resources import load_resources
    await load_resources(session, catalog, now, report)
    # A new stamp at every load: every process's menus (storage.services) read it at the next
    # message and drop what they kept of the catalog before.
    from storage.shared import write_value
    await write_value(session, CATALOG_STAMP, secrets.token_hex(8), now)
    return report


async def _refit_future_slots(session: AsyncSession, service: Service, old: dict[str, Any],
                              new: ServiceDef, now: dt.datetime) -> None:
    def changed(keys: tuple[str, ...]) -> bool:
        return any(old.get(key) != _jsonish(getattr(new, key)) for key in keys)

    future = (Slot.service_id == service.id) & (Slot.starts_at > now)
    if changed(_SLOT_SHAPE):
        never_booked = ~exists().where(Appointment.slot_id == Slot.id)
        await session.execute(delete(Slot).where(future, never_booked, Slot.held == 0)
                              .execution_options(synchronize_session=False))
        service.slots_through = None
    if changed(_SLOT_SEATS):
        online = new.online_capacity
        slots = (await session.scalars(select(Slot).where(future))).all()
        for slot in slots:
            slot.online_capacity = max(online, slot.booked + slot.held)
            slot.capacity = max(new.capacity, slot.online_capacity + slot.offline_booked)


def _jsonish(value: Any) -> Any:
    return json.loads(json.dumps(value))
