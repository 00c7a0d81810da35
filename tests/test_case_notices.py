"""Every case notice and staff alert the storage layer queues is rendered, in both languages:
no placeholder or catalog key left, no Chinese in the English text, the WeChat template values
given, and the buttons where the notice has them."""

from __future__ import annotations

import datetime as dt
import re
from types import SimpleNamespace

from handlers.notices import render
from storage import case_jobs, cases, jobs
from storage.cases import PartSpec
from storage.clock import ManualClock
from storage.db import Database
from storage.models import CaseKind
from storage.settings import Settings
from tests.case_support import BOSS, STAFF, SUPERVISORS, case_world
from tests.helpers import local

CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")
LEFTOVER = re.compile(r"\{\w+\}|\bcase(?:_notice|_staff|_followup)?\.[a-z_]+\.?[a-z_]*\b")
CITIZEN_KINDS = {"case_accepted", "case_correction", "case_resubmitted", "case_refused",
                 "case_extended", "case_expected", "case_ready", "case_uncollected",
                 "case_followup"}
STAFF_KINDS = {"case_due_soon", "case_overdue", "case_extension_request",
               "case_extension_decided", "case_withdrawn", "staff_digest"}


async def test_every_case_notice_renders_in_both_languages(database: Database,
                                                           clock: ManualClock) -> None:
    world = await case_world(database, clock)
    # Texts staff type are shown as typed: English here, so the English notices hold none.
    running = await world.open(CaseKind.PROMISED)                          # due Mon 30 Nov
    await world.do(cases.request_extension, running.number, actor=STAFF, days=2,
                   reason="Records from another province", supervisors=SUPERVISORS)
    await world.open(CaseKind.JOINT, parts=(PartSpec("Police", 3), PartSpec("Civil affairs", 5)))
    reported = await world.open(CaseKind.REPORTED)
    await world.do(cases.set_expected_answer, reported.number, actor=STAFF,
                   expected_on=dt.date(2026, 12, 18))
    corrected = await world.open(CaseKind.CORRECTION, missing=(0, 2), missing_note="Signed consent")
    world.at(local(2026, 11, 25, 10))
    await world.do(cases.resubmit, corrected.number, actor=STAFF)
    await world.open(CaseKind.RETURNED, reason="Not registered here", legal_basis="Article 10")
    extended = await world.open(CaseKind.PROMISED)
    approve = await world.do(cases.request_extension, extended.number, actor=STAFF, days=3,
                             reason="Waiting for a record", supervisors=SUPERVISORS)
    await world.do(cases.decide_extension, approve.id, actor=BOSS, approve=True,
                   supervisors=SUPERVISORS)
    refuse = await world.do(cases.request_extension, extended.number, actor=STAFF, days=1,
                            reason="More time", supervisors=SUPERVISORS)
    await world.do(cases.decide_extension, refuse.id, actor=BOSS, approve=False,
                   supervisors=SUPERVISORS, note="Not justified")
    waiting = await world.open(CaseKind.PROMISED, "id_card")
    await world.do(cases.mark_ready, waiting.number, actor=STAFF)
    posted = await world.open(CaseKind.PROMISED, "id_card")
    await world.do(cases.mail_result, posted.number, actor=STAFF, tracking_number="SF1234567890")
    await world.open(CaseKind.IMMEDIATE)
    withdrawn = await world.open(CaseKind.PROMISED)
    await world.do(cases.withdraw, withdrawn.number, actor=f"identity:{world.identity_id}",
                   identity_ids=[world.identity_id], reason="Moved away")
    world.at(local(2026, 11, 27, 9, 5))
    async with database.session() as session:
        assert await case_jobs.remind_due_cases(session, world.centre, clock.now()) >= 1
    world.at(local(2026, 12, 2, 17, 5))
    async with database.session() as session:
        now = clock.now()
        assert await case_jobs.escalate_overdue_cases(session, world.centre, now,
                                                      supervisors=SUPERVISORS) >= 1
        assert await case_jobs.remind_uncollected(session, world.centre, now) == 1
        assert await case_jobs.request_followups(session, world.centre, now) >= 1
        assert await jobs.staff_digest(session, world.centre, now)

    rendered: dict[tuple[str, str], int] = {}
    settings = Settings()
    async with database.read() as session:
        for row in await world.outbox():
            if row.kind not in CITIZEN_KINDS | STAFF_KINDS:
                continue
            for locale in ("zh-CN", "en"):
                who = SimpleNamespace(locale=locale)
                out = await render(session, world.centre, settings, row, who,  # type: ignore[arg-type]
                                   clock.now())
                if out.drop:
                    continue
                text = "\n".join(r.text for r in out.replies)
                labels = [c.label for r in out.replies for c in r.flat_choices]
                assert text and not LEFTOVER.search(text), (row.kind, locale, text)
                if locale == "en":
                    assert not CJK.search(text + "".join(labels)), (row.kind, text, labels)
                else:
                    assert CJK.search(text), (row.kind, text)
                if row.kind in CITIZEN_KINDS:
                    assert out.fields["code"] and out.fields["service"] and out.fields["summary"]
                    assert CJK.search(out.fields["summary"]) if locale == "zh-CN" \
                        else not CJK.search(out.fields["summary"])
                if row.kind == "case_followup":
                    assert len(labels) == 5
                if row.kind == "case_extension_request":
                    assert len(labels) == 2
                if row.kind == "case_correction":
                    assert labels and ("Signed consent" in text)
                rendered[(row.kind, locale)] = rendered.get((row.kind, locale), 0) + 1
    missing = {(kind, locale) for kind in CITIZEN_KINDS | STAFF_KINDS
               for locale in ("zh-CN", "en")} - set(rendered)
    assert not missing, sorted(missing)


async def test_outside_the_48_hours_a_case_notice_is_a_template_message_as_documented(
        database: Database, clock: ManualClock, http: object) -> None:
    from bot.dispatch import Dispatcher
    from bot.wechat.sender import WechatSender
    from storage.settings import WechatSettings
    from tests.fakes.wechat_api import APP_ID, APP_SECRET, FakeWechatApi
    from tests.helpers import account

    world = await case_world(database, clock)
    async with database.session() as session:
        follower = await account(session, clock.now() - dt.timedelta(hours=49),
                                 user="oCase-openid", channel="wechat", person_id=world.person_id)
        follower.last_inbound_at = clock.now() - dt.timedelta(hours=49)
        follower_id = follower.id
    async with FakeWechatApi() as api:
        wechat = WechatSettings(
            app_id=APP_ID, app_secret=APP_SECRET, token="t", api_base_url=api.url,
            notice_template_id="TPL-CASE",
            notice_template_fields=("thing1=service", "character_string2=code",
                                    "thing3=summary", "date4=when"))
        from bot.wechat.api import AccessTokens
        tokens = AccessTokens(wechat, database, clock, http, owner="p1")  # type: ignore[arg-type]
        sender = WechatSender(wechat, database, clock, tokens)
        async with database.session() as session:
            case = await cases.open_case(session, world.centre, clock.now(), actor=STAFF,
                                         kind=CaseKind.PROMISED,
                                         service_id=world.services["hukou_transfer"],
                                         person_id=world.person_id, identity_id=follower_id)
        dispatcher = Dispatcher(database=database, centre=world.centre, settings=Settings(),
                                clock=clock, senders={"wechat": sender})
        report = await dispatcher.drain()
        assert report.sent == 1, report.outcomes
        [template] = api.sent("message/template/send")
    assert template["template_id"] == "TPL-CASE" and template["touser"] == "oCase-openid"
    assert template["data"] == {"thing1": {"value": "户口迁移（迁入/迁出）"},
                                "character_string2": {"value": case.number},  # no space in the type
                                "thing3": {"value": "已受理，11月30日 周一前办结"},
                                "date4": {"value": "2026年11月30日"}}
