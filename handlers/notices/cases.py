"""What a citizen is told about their case (办件) at every step, and what staff are told about
cases: the receipt (受理回执), the one written request for missing materials (一次性补正告知,
with a button to book a time to bring them), materials received, refusal with the reason, the
legal basis and how to appeal, an extension, the expected answer of a referred case, the result
ready (where, when, what to bring) or posted (the tracking number), a result not collected, the
回访; for staff: due soon, overdue, extension requests (with the supervisor's buttons) and
their decisions, a case the citizen withdrew, and the daily digest.

Each renderer reads the payload storage.cases wrote (docs/cases.md lists it) and gives WeChat
template messages their values (docs/cases.md, "WeChat template messages").
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from handlers.context import global_option
from handlers.core import Reply
from handlers.i18n import format_day
from handlers.notices.base import Note, Rendered, Renderer, rating_buttons
from handlers.payloads import ApproveExtension, RateCase, Rebook, RefuseExtension
from storage.case_rules import CLOCK_RUNNING, format_case_number
from storage.handoffs import staff_name
from storage.models import Case, CaseExtension, CaseKind, CaseState, ExtensionStatus, Service


def _text(note: Note, value: Any) -> str:
    """A ``{zh, en}`` text of the payload in the recipient's language ("" for none)."""
    if not isinstance(value, dict):
        return str(value or "")
    return str(value.get("en") if note.locale == "en" else value.get("zh")) or str(
        value.get("zh") or "")


def _day(note: Note, iso: str | None) -> str:
    if not iso:
        return "-"
    today = note.now.astimezone(note.centre.tz).date()
    return format_day(dt.date.fromisoformat(iso), note.locale, today)


def _common(note: Note) -> dict[str, str]:
    payload = note.row.payload
    return {"service": _text(note, (payload.get("service") or {}).get("name")),
            "number": format_case_number(str(payload["number"])),
            "kind": note.t(f"case.kind.{CaseKind(payload['kind']).value}"),
            "due": _day(note, payload.get("due_on"))}


def _contact(note: Note) -> str:
    phone = note.row.payload.get("phone")
    return note.t("case_notice.contact", phone=phone) if phone else ""


def _fields(note: Note, summary: str, place: Any = None) -> dict[str, str]:
    """WeChat template values: service, when (the due date in force; as ``starts_at`` too,
    so a ``date`` keyword shows it), place, code (the case number) and summary (a short
    line)."""
    common = _common(note)
    fields = {"service": common["service"], "when": common["due"],
              "place": _text(note, place) or "-", "code": common["number"], "summary": summary}
    if due_on := note.row.payload.get("due_on"):
        fields["starts_at"] = dt.datetime.combine(dt.date.fromisoformat(due_on), dt.time(0),
                                                  tzinfo=note.centre.tz).isoformat()
    return fields


async def _case(note: Note) -> Case | None:
    return await note.session.get(Case, int(note.row.payload["case"]))


async def _accepted(note: Note) -> Rendered:
    payload, common = note.row.payload, _common(note)
    place = payload.get("place")
    if payload["kind"] == CaseKind.REPORTED.value:
        expected = note.t("case_notice.expected_known", day=_day(note, payload["expected_on"])) \
            if payload.get("expected_on") else note.t("case_notice.expected_unknown")
        text = note.t("case_notice.accepted_reported", service=common["service"],
                      number=common["number"], expected=expected, place=_text(note, place),
                      contact=_contact(note))
    else:
        text = note.t("case_notice.accepted", service=common["service"], number=common["number"],
                      kind=common["kind"], days=payload.get("committed_days", "-"),
                      due=common["due"], place=_text(note, place),
                      contact=_contact(note))
        if payload.get("parts"):
            text += "\n" + note.t("case_notice.accepted_parts") + "".join(
                "\n" + note.t("case_notice.part_line", name=part["name"],
                              due=_day(note, part["due_on"])) for part in payload["parts"])
    summary = note.t("case_notice.summary_accepted", due=common["due"]) if payload.get("due_on") \
        else note.t("case.event.accept")
    return Rendered([Reply(text)], fields=_fields(note, summary, place))


async def _correction(note: Note) -> Rendered:
    payload, common = note.row.payload, _common(note)
    lines = [note.t("case_notice.correction_item", index=index, name=_text(note, item))
             for index, item in enumerate(payload.get("items") or [], start=1)]
    if payload.get("note"):
        lines.append(note.t("case_notice.correction_note", note=payload["note"]))
    deadline = _day(note, payload.get("deadline"))
    text = note.t("case_notice.correction", service=common["service"], number=common["number"],
                  items="\n".join(lines), deadline=deadline, place=_text(note, payload.get("place")),
                  contact=_contact(note))
    buttons: tuple[tuple[Any, ...], ...] = ()
    service = await _service(note)
    if service is not None and service.active:
        buttons = ((global_option(note.t("case_notice.book_correction"), Rebook(service.id)),),)
    return Rendered([Reply(text, buttons)], fields=_fields(
        note, note.t("case_notice.summary_correction", deadline=deadline), payload.get("place")))


async def _service(note: Note) -> Service | None:
    case = await _case(note)
    return await note.session.get(Service, case.service_id) if case is not None else None


async def _resubmitted(note: Note) -> Rendered:
    payload, common = note.row.payload, _common(note)
    text = note.t("case_notice.resubmitted", service=common["service"], number=common["number"],
                  paused=payload.get("paused_days", 0), due=common["due"])
    return Rendered([Reply(text)], fields=_fields(
        note, note.t("case_notice.summary_resubmitted", due=common["due"])))


async def _refused(note: Note) -> Rendered:
    payload, common = note.row.payload, _common(note)
    text = note.t("case_notice.refused", service=common["service"], number=common["number"],
                  reason=payload.get("reason") or "-", basis=payload.get("legal_basis") or "-",
                  contact=_contact(note))
    return Rendered([Reply(text)], fields=_fields(note, note.t("case_notice.summary_refused")))


async def _extended(note: Note) -> Rendered:
    payload, common = note.row.payload, _common(note)
    text = note.t("case_notice.extended", service=common["service"], number=common["number"],
                  reason=payload.get("reason") or "-", days=payload.get("days", "-"),
                  before=_day(note, payload.get("due_before")), due=common["due"])
    return Rendered([Reply(text)], fields=_fields(
        note, note.t("case_notice.summary_extended", due=common["due"])))


async def _expected(note: Note) -> Rendered:
    payload, common = note.row.payload, _common(note)
    day = _day(note, payload.get("expected_on"))
    text = note.t("case_notice.expected", service=common["service"], number=common["number"],
                  day=day)
    return Rendered([Reply(text)], fields=_fields(
        note, note.t("case_notice.summary_expected", day=day)))


def _pickup(note: Note) -> dict[str, str]:
    payload = note.row.payload
    return {"place": _text(note, payload.get("place")) or "-",
            "hours": _text(note, payload.get("hours")) or note.t("case_notice.hours_default"),
            "bring": _text(note, payload.get("bring")) or note.t("case_notice.bring_default")}


async def _ready(note: Note) -> Rendered:
    payload, common = note.row.payload, _common(note)
    if payload.get("delivery") == "mail":
        text = note.t("case_notice.ready_mail", service=common["service"],
                      number=common["number"], tracking=payload.get("tracking_number") or "-")
        return Rendered([Reply(text)], fields=_fields(note, note.t("case_notice.summary_mailed")))
    phone = await _phone(note)
    mail = note.t("case_notice.ready_mail_option", phone=phone) \
        if payload.get("mail") and phone else ""
    text = note.t("case_notice.ready_pickup", service=common["service"], number=common["number"],
                  mail=mail, **_pickup(note))
    return Rendered([Reply(text)], fields=_fields(note, note.t("case_notice.summary_ready"),
                                                  payload.get("place")))


async def _phone(note: Note) -> str:
    service = await _service(note)
    if service is None:
        return ""
    return str((service.definition or {}).get("phone") or "")


async def _uncollected(note: Note) -> Rendered:
    case = await _case(note)
    if case is None or case.state != CaseState.READY:
        return Rendered(drop="collected meanwhile")
    common = _common(note)
    text = note.t("case_notice.uncollected", service=common["service"], number=common["number"],
                  day=_day(note, note.row.payload.get("ready_on")), **_pickup(note))
    return Rendered([Reply(text)], fields=_fields(note, note.t("case_notice.summary_uncollected"),
                                                  note.row.payload.get("place")))


async def _followup(note: Note) -> Rendered:
    case = await _case(note)
    if case is None or case.followup_level is not None:
        return Rendered(drop="answered meanwhile")
    common = _common(note)
    text = note.t("case_notice.followup", service=common["service"], number=common["number"],
                  day=_day(note, note.row.payload.get("closed_on")))
    case_id = case.id
    return Rendered([Reply(text, rating_buttons(note, lambda level: RateCase(case_id, level)))],
                    fields=_fields(note, note.t("case_notice.summary_followup")))


# --- for staff ----------------------------------------------------------------------------------


def _state(note: Note) -> str:
    state = note.row.payload.get("state")
    return note.t(f"case.state.{CaseState(state).value}") if state else "-"


async def _due_soon(note: Note) -> Rendered:
    case = await _case(note)
    if case is None or case.state not in CLOCK_RUNNING:
        return Rendered(drop="no longer running")
    common = _common(note)
    return Rendered([Reply(note.t("case_staff.due_soon", number=common["number"],
                                  service=common["service"], state=_state(note),
                                  due=common["due"]))])


async def _overdue(note: Note) -> Rendered:
    case = await _case(note)
    if case is None or case.state not in CLOCK_RUNNING:
        return Rendered(drop="no longer running")
    common = _common(note)
    return Rendered([Reply(note.t("case_staff.overdue", number=common["number"],
                                  service=common["service"], state=_state(note),
                                  due=common["due"],
                                  owner=await staff_name(note.session, case.owner)))])


async def _extension_request(note: Note) -> Rendered:
    payload = note.row.payload
    extension = await note.session.get(CaseExtension, int(payload["extension"]))
    if extension is None or extension.status != ExtensionStatus.REQUESTED:
        return Rendered(drop="decided meanwhile")
    common = _common(note)
    text = note.t("case_staff.extension_alert", extension=extension.id, number=common["number"],
                  service=common["service"], days=extension.days, reason=extension.reason,
                  requested_by=await staff_name(note.session, extension.requested_by),
                  due=common["due"])
    return Rendered([Reply(text, ((global_option(note.t("case_staff.approve"),
                                                 ApproveExtension(extension.id)),
                                   global_option(note.t("case_staff.refuse"),
                                                 RefuseExtension(extension.id))),))])


async def _extension_decided(note: Note) -> Rendered:
    payload, common = note.row.payload, _common(note)
    by = await staff_name(note.session, payload.get("decided_by"))
    if payload.get("approved"):
        text = note.t("case_staff.extension_decided_yes", extension=payload["extension"],
                      number=common["number"], by=by, due=common["due"])
    else:
        text = note.t("case_staff.extension_decided_no", extension=payload["extension"],
                      number=common["number"], by=by, due=common["due"],
                      note=note.t("case_staff.decision_note", note=payload["note"])
                      if payload.get("note") else "")
    return Rendered([Reply(text)])


async def _withdrawn(note: Note) -> Rendered:
    """The owner of a case hears that it was withdrawn (撤回申请), from what state and why."""
    payload, common = note.row.payload, _common(note)
    who = note.t("case_withdraw.by_citizen" if payload.get("by_citizen")
                 else "case_withdraw.by_staff")
    reason = note.t("case_withdraw.reason", reason=payload["reason"]) if payload.get("reason") else ""
    return Rendered([Reply(note.t("case_withdraw.staff_alert", who=who, number=common["number"],
                                  service=common["service"], state=_state(note),
                                  reason=reason).strip())])


async def _digest(note: Note) -> Rendered:
    """The daily staff digest: tomorrow's bookings, requests waiting, failures, overdue cases."""
    payload = note.row.payload
    services = [note.t("case_staff.digest_service", name=en if note.locale == "en" else zh,
                       count=count) for zh, en, count in payload.get("services") or []]
    separator = ", " if note.locale == "en" else "，"
    text = note.t("case_staff.digest", day=_day(note, payload.get("day")),
                  services=separator.join(services) or note.t("case_staff.digest_no_bookings"),
                  home_visits=payload.get("home_visits", 0), failed=payload.get("failed", 0))
    overdue = payload.get("overdue_cases") or []
    if overdue:
        text += note.t("case_staff.digest_overdue", count=len(overdue))
        for line in overdue:
            text += note.t("case_staff.digest_overdue_line",
                           number=format_case_number(str(line["number"])),
                           service=_text(note, line.get("service")),
                           due=_day(note, line.get("due_on")), owner=line.get("owner") or "-")
    return Rendered([Reply(text)])


RENDERERS: dict[str, Renderer] = {
    "case_accepted": _accepted,
    "case_correction": _correction,
    "case_resubmitted": _resubmitted,
    "case_refused": _refused,
    "case_extended": _extended,
    "case_expected": _expected,
    "case_ready": _ready,
    "case_uncollected": _uncollected,
    "case_followup": _followup,
    "case_due_soon": _due_soon,
    "case_overdue": _overdue,
    "case_extension_request": _extension_request,
    "case_extension_decided": _extension_decided,
    "case_withdrawn": _withdrawn,
    "staff_digest": _digest,
}
