"""替诊, 换诊 and a staff /move for citizens with no chat account: offered by SMS (through the
real Tencent Cloud SDK and the fake SMS API), answered by replying to the text (the provider's
reply callback), and the silence at the deadline meaning what it means in the chat; and, for a
WeChat follower whose chat window is closed, the offer as a template message, answered in
“我的预约” where its buttons are."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy import text as sql

from bot.dispatch import Dispatcher
from bot.sms import build_sms, sms_routes
from bot.web import build_web_app
from bot.wechat.sender import WechatSender
from bot.wiring import App
from handlers.engine import Assistant
from storage import booking, control
from storage.centre import Centre
from storage.clock import ManualClock
from storage.identity import identity_for
from storage.models import (
    Appointment,
    AppointmentStatus,
    AuditLog,
    CancelKind,
    Channel,
    ClosureOffer,
    Hold,
    MoveOffer,
    MoveStatus,
    Outbox,
    OutboxStatus,
    Resource,
    Service,
    Slot,
    SmsOptOut,
    Strike,
)
from storage.resource_closures import (
    Decision,
    TimeGone,
    Way,
    answer_move,
    apply_resource_closure,
    settle_offers,
)
from storage.settings import Settings, SmsSettings
from tests.conftest import postgres_url
from tests.dialog import Dialog
from tests.fakes.tencent_sms import TEMPLATES, FakeTencentSms
from tests.fakes.wechat_api import FakeWechatApi
from tests.helpers import local, make_centre, person, slots_of, valid_id
from tests.staff_support import STAFF_A, Staff, staff_settings
from tests.test_wechat_sender import sender_for, wechat_settings

MOBILE = "13912345678"
STRANGER = "13700000000"
OPENID = "oOfferTest_12AbCdEfGhIjKlMnOp"
WEDNESDAY = dt.date(2026, 11, 25)
NOTICE_TEMPLATE = "NoticeTpl-offer-1"


@pytest.fixture
def sms_settings(sms_api: FakeTencentSms) -> SmsSettings:
    # Several texts to one number within a minute here: the offer, then the answer's.
    return sms_api.settings(per_minute=10)


@pytest.fixture
def centre(sms_settings: SmsSettings) -> Centre:
    return dataclasses.replace(make_centre(), sms=sms_settings)


@pytest.fixture
def settings(sms_settings: SmsSettings, wechat_api: FakeWechatApi) -> Settings:
    return dataclasses.replace(Settings(), sms=sms_settings, wechat=wechat_settings(
        wechat_api, notice_template_id=NOTICE_TEMPLATE))


@pytest.fixture
async def wechat(app: App, http: httpx.AsyncClient) -> WechatSender:
    return sender_for(app.settings.wechat, app.database, app.clock, http)


@pytest.fixture
def dispatcher(app: App, wechat: WechatSender) -> Dispatcher:
    return Dispatcher(database=app.database, centre=app.centre, settings=app.settings,
                      clock=app.clock, senders={"wechat": wechat}, sms=build_sms(app.settings.sms))


async def doctors(app: App) -> dict[str, int]:
    async with app.database.read() as session:
        return {r.code: r.id for r in (await session.scalars(select(Resource))).all()}


async def chen_slots(app: App) -> list[Slot]:
    async with app.database.session() as session:
        service = await session.scalar(select(Service).where(Service.code == "internal_medicine"))
        assert service is not None
        await slots_of(session, app.centre, service, app.clock.now())
        chen = (await doctors(app))["dr_chen_jianguo"]
        return list((await session.scalars(select(Slot).where(
            Slot.resource_id == chen, Slot.local_date == WEDNESDAY).order_by(Slot.starts_at))).all())


async def window_booking(app: App, slot_id: int, mobile: str = MOBILE) -> Appointment:
    """A booking staff made at the window (or by phone) for a patient with no chat account."""
    async with app.database.session() as session:
        patient = await person(session, app.centre, app.clock.now(), name="李四", mobile=mobile,
                               id_number=valid_id("1101051960" + mobile[-7:]))
        return await booking.book(session, app.centre, app.clock.now(), person_id=patient.id,
                                  slot_id=slot_id, identity_id=None, channel=Channel.STAFF,
                                  made_by="telegram:staff", offline=True)


async def close_chen(app: App, appointment: Appointment, decision: Decision) -> ClosureOffer:
    """Close 陈建国 on Wednesday morning, deciding ``decision`` for ``appointment``."""
    async with app.database.session() as session:
        await apply_resource_closure(
            session, app.centre, app.clock.now(), resource_id=(await doctors(app))["dr_chen_jianguo"],
            starts_at=local(2026, 11, 25, 0), ends_at=local(2026, 11, 25, 12), reason="外出会诊",
            actor="telegram:staff", decisions={appointment.id: decision})
        offer = await session.scalar(select(ClosureOffer).where(
            ClosureOffer.appointment_id == appointment.id))
        assert offer is not None
        return offer


async def chen_closed(app: App, decision: Decision) -> tuple[Slot, Appointment, ClosureOffer]:
    """A window booking of 陈建国's first Wednesday slot, and his closure deciding ``decision``
    for it: the slot, the booking and its offer."""
    slot = (await chen_slots(app))[0]
    appointment = await window_booking(app, slot.id)
    return slot, appointment, await close_chen(app, appointment, decision)


async def offer_status(app: App, offer_id: int) -> str:
    """The 替诊/换诊 offer's status as the database has it now."""
    async with app.database.read() as session:
        offer = await session.get(ClosureOffer, offer_id)
        assert offer is not None
        return offer.status


REPLY_TIMES = itertools.count(1795000000)


async def reply(app: App, mobile: str, text: str, centre: Centre | None = None, *,
                at: int | None = None) -> None:
    """The provider posts the citizen's reply (上行短信) to the callback; ``at`` is the
    provider's time of the reply (each call a new reply unless it is given: a redelivery)."""
    web = build_web_app(sms_routes(app.database, centre or app.centre, app.clock, app.settings.sms))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=web),
                                 base_url="http://yuyue.test") as client:
        answer = await client.post("/sms/tencent", json=[{
            "extend": "", "mobile": mobile, "nationcode": "86", "sign": "某某市政务服务中心",
            "text": text, "time": next(REPLY_TIMES) if at is None else at}])
    assert answer.json() == {"result": 0, "errmsg": "OK"}


def texts_of(sms_api: FakeTencentSms, kind: str) -> list[list[str]]:
    return [t.params for t in sms_api.texts if t.template_id == TEMPLATES[kind].template_id]


async def strikes(app: App) -> int:
    async with app.database.read() as session:
        return int(await session.scalar(select(func.count()).select_from(Strike)) or 0)


async def test_a_substitute_by_sms_stands_when_unanswered(
        app: App, sms_api: FakeTencentSms, dispatcher: Dispatcher, clock: ManualClock) -> None:
    slot = (await chen_slots(app))[0]
    appointment = await window_booking(app, slot.id)
    zhou = (await doctors(app))["dr_zhou_min"]
    offer = await close_chen(app, appointment, Decision(Way.SUBSTITUTE, zhou))
    await dispatcher.drain()
    # The text names the new doctor with the title, the unchanged time and the deadline.
    [params] = texts_of(sms_api, "closure_substitute")
    assert params[2] == "周敏 副主任医师"
    assert "11月25日" in params[1] and "08:00" in params[1]
    assert "09:00" in params[3]                           # 24 hours from Monday 09:00
    clock.advance(hours=24)                               # nobody answered
    async with app.database.session() as session:
        assert await settle_offers(session, app.centre, clock.now()) == 1
    async with app.database.read() as session:
        kept = await session.get(Appointment, appointment.id)
        settled = await session.get(ClosureOffer, offer.id)
        assert kept is not None and settled is not None
        assert (kept.status, kept.resource_id, kept.starts_at) == (
            AppointmentStatus.BOOKED, zhou, slot.starts_at)
        assert settled.status == "defaulted"
    await reply(app, MOBILE, "2")                         # too late: nothing changes
    async with app.database.read() as session:
        late = await session.get(Appointment, appointment.id)
        assert late is not None and late.status == AppointmentStatus.BOOKED
        assert await session.scalar(select(func.count()).select_from(SmsOptOut)) == 0
    assert await strikes(app) == 0


async def test_a_substitute_declined_by_reply_cancels_without_a_strike(
        app: App, sms_api: FakeTencentSms, dispatcher: Dispatcher, clock: ManualClock) -> None:
    slot, appointment, offer = await chen_closed(app, Decision(Way.SUBSTITUTE, (await doctors(app))["dr_wu_lei"]))
    await dispatcher.drain()
    assert texts_of(sms_api, "closure_substitute")
    clock.advance(hours=1)
    await reply(app, MOBILE, "取消")      # declines the offer; not an opt-out while one waits
    async with app.database.read() as session:
        cancelled = await session.get(Appointment, appointment.id)
        answered = await session.get(ClosureOffer, offer.id)
        seat = await session.get(Slot, slot.id)
        assert cancelled is not None and answered is not None and seat is not None
        assert (cancelled.status, cancelled.cancel_kind) == (AppointmentStatus.CANCELLED, CancelKind.CENTRE)
        assert answered.status == "declined"
        assert seat.offline_booked == 0 and seat.booked == 0
        assert await session.scalar(select(func.count()).select_from(SmsOptOut)) == 0
        actors = set((await session.scalars(select(AuditLog.actor).where(
            AuditLog.entity_id == appointment.id, AuditLog.action.in_(
                ["cancel", "substitute_declined"])))).all())
        assert actors == {f"sms:{cancelled.person_id}"}
        # The audit row names the person, never the number.
        assert not any(MOBILE in str(row.detail) for row in (await session.scalars(select(AuditLog))).all())
    assert await strikes(app) == 0
    await dispatcher.drain()
    [confirmed] = texts_of(sms_api, "offer_answered")
    assert confirmed[0] == "已取消预约，不计失约" and confirmed[3] == appointment.code


async def test_a_move_by_sms_holds_the_nearest_time_and_a_reply_of_1_takes_it(
        app: App, sms_api: FakeTencentSms, dispatcher: Dispatcher, clock: ManualClock) -> None:
    slot, appointment, offer = await chen_closed(app, Decision(Way.MOVE))
    async with app.database.read() as session:
        [hold] = (await session.scalars(select(Hold))).all()
        assert hold.owner == f"closure:{offer.id}" and hold.expires_at == offer.deadline
        held = await session.get(Slot, hold.slot_id)
        assert held is not None and held.held == 1 and held.booked == 0
        assert offer.slot_ids[0] == held.id
    await dispatcher.drain()
    [params] = texts_of(sms_api, "closure_move")
    assert params[2].endswith(f"{held.starts_at.astimezone(app.centre.tz):%H:%M}")
    assert params[3] == "陈建国 主任医师"         # the doctor's own nearest time, this morning
    clock.advance(hours=2)
    await reply(app, MOBILE, "1")
    async with app.database.read() as session:
        moved = await session.get(Appointment, appointment.id)
        old, new = await session.get(Slot, slot.id), await session.get(Slot, held.id)
        answered = await session.get(ClosureOffer, offer.id)
        assert moved is not None and old is not None and new is not None and answered is not None
        assert (moved.status, moved.slot_id, moved.starts_at) == (
            AppointmentStatus.BOOKED, held.id, held.starts_at)
        assert answered.status == "moved"
        # Seats: the window seat of the closed time is back, the held seat became the booking.
        assert (old.offline_booked, old.booked, old.held) == (0, 0, 0)
        assert (new.booked, new.held) == (1, 0)
        assert await session.scalar(select(func.count()).select_from(Hold)) == 0
    assert await strikes(app) == 0
    await dispatcher.drain()
    [confirmed] = texts_of(sms_api, "offer_answered")
    assert confirmed[0] == "已换诊到新时间"


async def test_a_move_by_sms_declined_gives_the_held_seat_back(
        app: App, sms_api: FakeTencentSms, dispatcher: Dispatcher, clock: ManualClock) -> None:
    _slot, appointment, offer = await chen_closed(app, Decision(Way.MOVE))
    await dispatcher.drain()
    await reply(app, MOBILE, "N")
    async with app.database.read() as session:
        cancelled = await session.get(Appointment, appointment.id)
        held = await session.get(Slot, offer.slot_ids[0])
        answered = await session.get(ClosureOffer, offer.id)
        assert cancelled is not None and held is not None and answered is not None
        assert (cancelled.status, cancelled.cancel_kind) == (AppointmentStatus.CANCELLED, CancelKind.CENTRE)
        assert answered.status == "cancelled" and held.held == 0 and held.booked == 0
        assert await session.scalar(select(func.count()).select_from(SmsOptOut)) == 0
    assert await strikes(app) == 0


async def test_a_move_by_sms_unanswered_is_cancelled_with_the_closure_text(
        app: App, sms_api: FakeTencentSms, dispatcher: Dispatcher, clock: ManualClock) -> None:
    _slot, appointment, offer = await chen_closed(app, Decision(Way.MOVE))
    await dispatcher.drain()
    clock.advance(hours=24)
    async with app.database.session() as session:
        assert await settle_offers(session, app.centre, clock.now()) == 1
    await dispatcher.drain()
    async with app.database.read() as session:
        cancelled = await session.get(Appointment, appointment.id)
        held = await session.get(Slot, offer.slot_ids[0])
        assert cancelled is not None and held is not None
        assert cancelled.status == AppointmentStatus.CANCELLED and held.held == 0
    [told] = texts_of(sms_api, "closure_cancelled")     # with an apology and the reason
    assert told[2] == "外出会诊"


async def test_a_reply_from_a_number_with_no_offer_changes_nothing(
        app: App, sms_api: FakeTencentSms, dispatcher: Dispatcher, clock: ManualClock) -> None:
    _slot, appointment, offer = await chen_closed(app, Decision(Way.MOVE))
    await dispatcher.drain()
    sent = len(sms_api.texts)
    for text in ("1", "2", "接受", "你好"):
        await reply(app, STRANGER, text)
    await reply(app, MOBILE, "你好")                      # not an answer either
    async with app.database.read() as session:
        still = await session.get(ClosureOffer, offer.id)
        kept = await session.get(Appointment, appointment.id)
        assert still is not None and kept is not None
        assert still.status == "pending" and kept.status == AppointmentStatus.BOOKED
        assert await session.scalar(select(func.count()).select_from(SmsOptOut)) == 0
    await dispatcher.drain()
    assert len(sms_api.texts) == sent                     # and nobody was answered


async def test_a_late_reply_is_told_so_only_when_the_policy_says(
        app: App, sms_api: FakeTencentSms, dispatcher: Dispatcher, clock: ManualClock) -> None:
    appointment = await window_booking(app, (await chen_slots(app))[0].id)
    await close_chen(app, appointment, Decision(Way.SUBSTITUTE, (await doctors(app))["dr_zhou_min"]))
    await dispatcher.drain()
    clock.advance(hours=25)                               # past the deadline
    await reply(app, MOBILE, "2")                         # policy "never" (the default): silence
    await dispatcher.drain()
    assert texts_of(sms_api, "offer_unmatched") == []
    telling = dataclasses.replace(app.centre, sms=dataclasses.replace(
        app.centre.sms, policy={**app.centre.sms.policy, "offer_unmatched": "fallback"}))
    await reply(app, MOBILE, "2", telling)
    await reply(app, MOBILE, "1", telling)                # at most one a day
    await reply(app, STRANGER, "1", telling)              # never to a number we did not text
    await dispatcher.drain()
    assert len(texts_of(sms_api, "offer_unmatched")) == 1
    assert all(t.mobile.endswith(MOBILE) for t in sms_api.texts)
    async with app.database.read() as session:
        kept = await session.get(Appointment, appointment.id)
        assert kept is not None and kept.status == AppointmentStatus.BOOKED


async def test_staff_move_a_window_booking_by_sms_and_the_citizen_accepts(
        app: App, sms_api: FakeTencentSms, dispatcher: Dispatcher, clock: ManualClock) -> None:
    async with app.database.session() as session:
        service = await session.scalar(select(Service).where(Service.code == "id_card"))
        assert service is not None
        slots = await slots_of(session, app.centre, service, clock.now(), WEDNESDAY)
    appointment = await window_booking(app, slots[6].id)
    async with app.database.session() as session:
        offer = await control.offer_move(session, app.centre, clock.now(), appointment.code,
                                         slots[8].id, actor="telegram:staff")
    await dispatcher.drain()
    [params] = texts_of(sms_api, "move_offer")
    assert params[2].endswith(f"{slots[8].starts_at.astimezone(app.centre.tz):%H:%M}")
    clock.advance(minutes=30)
    await reply(app, MOBILE, "Y")
    async with app.database.read() as session:
        moved = await session.get(Appointment, appointment.id)
        answered = await session.get(MoveOffer, offer.id)
        old, new = await session.get(Slot, slots[6].id), await session.get(Slot, slots[8].id)
        assert moved is not None and answered is not None and old is not None and new is not None
        assert answered.status == MoveStatus.ACCEPTED and moved.slot_id == slots[8].id
        assert (old.offline_booked, new.booked, new.held) == (0, 1, 0)
        told = (await session.scalars(select(Outbox.kind).where(Outbox.target == "staff"))).all()
        assert "move_answered" in told
    assert await strikes(app) == 0


async def test_staff_move_without_sms_is_still_refused_for_no_chat(
        app: App, clock: ManualClock) -> None:
    async with app.database.session() as session:
        service = await session.scalar(select(Service).where(Service.code == "id_card"))
        assert service is not None
        slots = await slots_of(session, app.centre, service, clock.now(), WEDNESDAY)
    appointment = await window_booking(app, slots[6].id)
    off = dataclasses.replace(app.centre, sms=SmsSettings())
    async with app.database.session() as session:
        with pytest.raises(control.ControlRefused) as refused:
            await control.offer_move(session, off, clock.now(), appointment.code, slots[8].id,
                                     actor="telegram:staff")
    assert refused.value.reason == control.ControlRefusal.NO_CHAT


async def wechat_patient(app: App, slot: Slot, last_wrote: dt.datetime) -> Appointment:
    async with app.database.session() as session:
        patient = await person(session, app.centre, app.clock.now(), name="王五", mobile=MOBILE,
                               id_number=valid_id("11010519700101123"))
        identity = await identity_for(session, "wechat", OPENID, "zh-CN", app.clock.now())
        identity.last_inbound_at = last_wrote
        return await booking.book(session, app.centre, app.clock.now(), person_id=patient.id,
                                  slot_id=slot.id, identity_id=identity.id, channel=Channel.WECHAT,
                                  made_by=f"wechat:{OPENID}", confirm=False)


async def test_a_substitute_outside_the_wechat_window_goes_as_a_template_and_is_answered_in_my_bookings(
        app: App, wechat_api: FakeWechatApi, sms_api: FakeTencentSms, dispatcher: Dispatcher,
        clock: ManualClock) -> None:
    slot = (await chen_slots(app))[0]
    appointment = await wechat_patient(app, slot, last_wrote=clock.now() - dt.timedelta(days=3))
    offer = await close_chen(app, appointment, Decision(Way.SUBSTITUTE, (await doctors(app))["dr_zhou_min"]))
    report = await dispatcher.drain()
    assert report.sent >= 1 and report.undeliverable == 0
    [template] = [c.body for c in wechat_api.calls if c.path == "message/template/send"]
    assert template["touser"] == OPENID and template["template_id"] == NOTICE_TEMPLATE
    data = {key: value["value"] for key, value in template["data"].items()}
    assert data["thing5"] == "改由周敏替诊，请到“我的预约”答复"     # what is asked, and where
    assert data["character_string4"] == appointment.code and data["time2"] == "2026年11月25日 08:00"
    assert texts_of(sms_api, "closure_substitute") == []          # the chat took it: no SMS
    # “我的预约” in the chat shows the offer with its buttons; declining there cancels.
    assistant = Assistant(database=app.database, centre=app.centre, clock=clock,
                          settings=app.settings)
    dialog = Dialog(assistant, user=OPENID, channel="wechat")
    await dialog.command("my")
    assert "您有一个待答复的停诊通知" in dialog.text and "周敏 副主任医师" in dialog.text
    await dialog.press("不接受")
    assert "已为您取消预约" in dialog.text
    assert await offer_status(app, offer.id) == "declined"


async def test_a_substitute_outside_the_wechat_window_with_no_template_falls_back_to_sms(
        app: App, wechat: WechatSender, sms_api: FakeTencentSms, clock: ManualClock) -> None:
    settings = dataclasses.replace(app.settings, wechat=dataclasses.replace(
        app.settings.wechat, notice_template_id=""))
    dispatcher = Dispatcher(database=app.database, centre=app.centre, settings=settings,
                            clock=clock, senders={"wechat": sender_for(
                                settings.wechat, app.database, clock, wechat.tokens.http)},
                            sms=build_sms(settings.sms))
    slot = (await chen_slots(app))[0]
    appointment = await wechat_patient(app, slot, last_wrote=clock.now() - dt.timedelta(days=3))
    await close_chen(app, appointment, Decision(Way.SUBSTITUTE, (await doctors(app))["dr_zhou_min"]))
    assert (await dispatcher.drain()).undeliverable == 1     # the chat cannot take it ...
    assert (await dispatcher.drain()).sent == 1              # ... so its twin goes by SMS
    [params] = texts_of(sms_api, "closure_substitute")
    assert params[2] == "周敏 副主任医师"
    async with app.database.read() as session:
        chat = await session.scalar(select(Outbox).where(Outbox.kind == "closure_substitute",
                                                         Outbox.identity_id.is_not(None)))
        assert chat is not None and chat.status == OutboxStatus.UNDELIVERABLE
    await reply(app, MOBILE, "1")
    async with app.database.read() as session:
        accepted = await session.scalar(select(ClosureOffer.status))
        assert accepted == "accepted"


async def test_staff_see_that_the_offers_go_by_sms(
        app: App, sms_api: FakeTencentSms, dispatcher: Dispatcher, clock: ManualClock,
        settings: Settings) -> None:
    assistant = Assistant(database=app.database, centre=app.centre, clock=clock,
                          settings=staff_settings(settings))
    wang = Staff(assistant, STAFF_A, "王芳")
    chen_first = (await chen_slots(app))[0]
    await window_booking(app, chen_first.id)
    plan = await wang.command("closure", "陈建国 11-25 am 外出会诊")
    assert "以短信征求同意，市民回复1接受、回复2取消" in plan
    await wang.press_label("取消并致歉")
    await wang.press_label("确认停诊")
    walk_in = await window_booking(app, (await id_card_slots(app))[6].id, mobile="13911112222")
    await wang.command("move", walk_in.code)
    await wang.press_label("11月25日")
    offered = await wang.press_label("14:10-")
    assert "已通过短信发出改约邀请" in offered and "回复1同意" in offered
    await dispatcher.drain()
    await reply(app, "13911112222", "2")
    async with app.database.read() as session:
        told = await session.scalar(select(Outbox).where(Outbox.kind == "move_answered"))
        assert told is not None and told.payload["by_sms"] is True
        kept = await session.get(Appointment, walk_in.id)
        assert kept is not None and kept.slot_id == (await id_card_slots(app))[6].id


async def id_card_slots(app: App) -> list[Slot]:
    async with app.database.session() as session:
        service = await session.scalar(select(Service).where(Service.code == "id_card"))
        assert service is not None
        return await slots_of(session, app.centre, service, app.clock.now(), WEDNESDAY)


async def family_booking(app: App, slot_id: int, name: str, id_tail: str,
                         mobile: str = MOBILE) -> Appointment:
    """A window booking for one of a family who share a mobile."""
    async with app.database.session() as session:
        patient = await person(session, app.centre, app.clock.now(), name=name, mobile=mobile,
                               id_number=valid_id("110105" + id_tail))
        return await booking.book(session, app.centre, app.clock.now(), person_id=patient.id,
                                  slot_id=slot_id, identity_id=None, channel=Channel.STAFF,
                                  made_by="telegram:staff", offline=True)


@pytest.mark.parametrize("cancelled", ["dad", "mum"])
async def test_a_reply_never_answers_an_older_offer_on_a_shared_mobile(
        app: App, sms_api: FakeTencentSms, dispatcher: Dispatcher, clock: ManualClock,
        cancelled: str) -> None:
    # Mum and dad share a mobile: each is offered a 替诊 by text (the two texts go at the same
    # moment, in either order); then staff cancel one of the bookings. A "2" cannot say whose
    # offer it answers, so nothing changes (never one's booking cancelled in the other's
    # place), and they are asked to call. Both ways round, whichever text went last.
    chen = await chen_slots(app)
    mum = await family_booking(app, chen[0].id, "李母", "19600101222")
    dad = await family_booking(app, chen[1].id, "李父", "19580101333")
    async with app.database.session() as session:
        await apply_resource_closure(
            session, app.centre, clock.now(), resource_id=(await doctors(app))["dr_chen_jianguo"],
            starts_at=local(2026, 11, 25, 0), ends_at=local(2026, 11, 25, 12), reason="外出会诊",
            actor="telegram:staff", decisions={
                mum.id: Decision(Way.SUBSTITUTE, (await doctors(app))["dr_zhou_min"]),
                dad.id: Decision(Way.SUBSTITUTE, (await doctors(app))["dr_zhou_min"])})
    await dispatcher.drain()
    assert len(texts_of(sms_api, "closure_substitute")) == 2
    async with app.database.session() as session:
        gone, other = (dad, mum) if cancelled == "dad" else (mum, dad)
        await control.staff_cancel(session, app.centre, clock.now(), gone.code,
                                   actor="telegram:staff", reason="本人来电取消")
    clock.advance(hours=1)
    await reply(app, MOBILE, "2")
    async with app.database.read() as session:
        kept = await session.get(Appointment, other.id)
        assert kept is not None and kept.status == AppointmentStatus.BOOKED
        others = await session.scalar(select(ClosureOffer).where(
            ClosureOffer.appointment_id == other.id))
        assert others is not None and others.status == "pending"
        assert await session.scalar(select(func.count()).select_from(SmsOptOut)) == 0
    await dispatcher.drain()
    assert texts_of(sms_api, "offer_answered") == []
    assert len(texts_of(sms_api, "offer_ambiguous")) == 1


async def test_two_offers_waiting_for_one_mobile_change_nothing(
        app: App, sms_api: FakeTencentSms, dispatcher: Dispatcher, clock: ManualClock) -> None:
    chen = await chen_slots(app)
    mum = await family_booking(app, chen[0].id, "李母", "19600101222")
    dad = await family_booking(app, chen[1].id, "李父", "19580101333")
    zhou = (await doctors(app))["dr_zhou_min"]
    async with app.database.session() as session:
        await apply_resource_closure(
            session, app.centre, clock.now(), resource_id=(await doctors(app))["dr_chen_jianguo"],
            starts_at=local(2026, 11, 25, 0), ends_at=local(2026, 11, 25, 12), reason="外出会诊",
            actor="telegram:staff", decisions={mum.id: Decision(Way.SUBSTITUTE, zhou),
                                               dad.id: Decision(Way.MOVE)})
    await dispatcher.drain()
    for text in ("1", "2", "1"):
        await reply(app, MOBILE, f"{text}")
    async with app.database.read() as session:
        for appointment in (mum, dad):
            kept = await session.get(Appointment, appointment.id)
            assert kept is not None and kept.status == AppointmentStatus.BOOKED
            assert kept.slot_id == appointment.slot_id
        assert set((await session.scalars(select(ClosureOffer.status))).all()) == {"pending"}
    await dispatcher.drain()
    assert len(texts_of(sms_api, "offer_ambiguous")) == 1     # at most once a day
    assert texts_of(sms_api, "offer_answered") == []


async def test_a_redelivered_reply_is_acted_on_once(
        app: App, sms_api: FakeTencentSms, dispatcher: Dispatcher, clock: ManualClock) -> None:
    # A "Y" accepts a /move; staff then offer another move, and the provider delivers the
    # same "Y" (same time) again: it must not accept the new offer. A new "Y" does.
    slots = await id_card_slots(app)
    appointment = await window_booking(app, slots[6].id)
    async with app.database.session() as session:
        first = await control.offer_move(session, app.centre, clock.now(), appointment.code,
                                         slots[8].id, actor="telegram:staff")
    await dispatcher.drain()
    await reply(app, MOBILE, "Y", at=1795000100)
    async with app.database.session() as session:
        answered = await session.get(MoveOffer, first.id)
        assert answered is not None and answered.status == MoveStatus.ACCEPTED
        second = await control.offer_move(session, app.centre, clock.now(), appointment.code,
                                          slots[10].id, actor="telegram:staff")
    await dispatcher.drain()
    await reply(app, MOBILE, "Y", at=1795000100)           # the provider's retry
    async with app.database.read() as session:
        waiting = await session.get(MoveOffer, second.id)
        kept = await session.get(Appointment, appointment.id)
        assert waiting is not None and waiting.status == MoveStatus.OFFERED
        assert kept is not None and kept.slot_id == slots[8].id
    await reply(app, MOBILE, "Y", at=1795000400)           # the citizen's new answer
    async with app.database.read() as session:
        moved = await session.get(Appointment, appointment.id)
        assert moved is not None and moved.slot_id == slots[10].id


async def test_a_repeated_decline_after_the_answer_is_not_an_opt_out(
        app: App, sms_api: FakeTencentSms, dispatcher: Dispatcher, clock: ManualClock) -> None:
    _slot, appointment, _ = await chen_closed(app, Decision(Way.SUBSTITUTE, (await doctors(app))["dr_wu_lei"]))
    await dispatcher.drain()
    await reply(app, MOBILE, "取消", at=1795000100)
    await reply(app, MOBILE, "取消", at=1795000100)         # delivered again
    clock.advance(hours=2)
    for text in ("取消", "N", "2"):                         # said again, after the answer
        await reply(app, MOBILE, text)
    async with app.database.read() as session:
        cancelled = await session.get(Appointment, appointment.id)
        assert cancelled is not None and cancelled.status == AppointmentStatus.CANCELLED
        assert await session.scalar(select(func.count()).select_from(SmsOptOut)) == 0
    await reply(app, MOBILE, "TD")                         # a clear opt-out always counts
    async with app.database.read() as session:
        assert await session.scalar(select(func.count()).select_from(SmsOptOut)) == 1


async def test_n_is_an_opt_out_again_once_no_offer_is_recent(
        app: App, sms_api: FakeTencentSms, dispatcher: Dispatcher, clock: ManualClock) -> None:
    _slot, _appointment, _ = await chen_closed(app, Decision(Way.SUBSTITUTE, (await doctors(app))["dr_wu_lei"]))
    await dispatcher.drain()
    clock.advance(hours=app.centre.rules.closure_answer_hours + 23)
    await reply(app, MOBILE, "N")                          # within the offer's life and a day
    async with app.database.read() as session:
        assert await session.scalar(select(func.count()).select_from(SmsOptOut)) == 0
    clock.advance(hours=2)
    await reply(app, MOBILE, "N")
    async with app.database.read() as session:
        assert await session.scalar(select(func.count()).select_from(SmsOptOut)) == 1


async def close_slot_time(app: App, slot: Slot) -> None:
    """Staff close the slot's doctor for just that slot's time (a second 停诊)."""
    async with app.database.session() as session:
        assert slot.resource_id is not None
        await apply_resource_closure(
            session, app.centre, app.clock.now(), resource_id=slot.resource_id,
            starts_at=slot.starts_at, ends_at=slot.ends_at, reason="临时手术",
            actor="telegram:staff", decisions={})


async def test_a_move_accepted_by_sms_after_its_held_time_closed_changes_nothing(
        app: App, sms_api: FakeTencentSms, dispatcher: Dispatcher, clock: ManualClock) -> None:
    slot, appointment, offer = await chen_closed(app, Decision(Way.MOVE))
    await dispatcher.drain()
    async with app.database.read() as session:
        [hold] = (await session.scalars(select(Hold))).all()
        held = await session.get(Slot, hold.slot_id)
        assert held is not None
    await close_slot_time(app, held)                       # the held time is closed too
    clock.advance(hours=1)
    await reply(app, MOBILE, "1")
    async with app.database.read() as session:
        kept = await session.get(Appointment, appointment.id)
        closed = await session.get(Slot, held.id)
        waiting = await session.get(ClosureOffer, offer.id)
        assert kept is not None and closed is not None and waiting is not None
        assert (kept.status, kept.slot_id) == (AppointmentStatus.BOOKED, slot.id)
        assert (closed.booked, closed.held) == (0, 0)
        assert waiting.status == "pending"                 # the deadline rule still applies
    await dispatcher.drain()
    [told] = texts_of(sms_api, "offer_answered")
    assert told[0] == "保留的时间已不可用，未换诊"
    await reply(app, MOBILE, "2")                          # and "2" still cancels, no strike
    async with app.database.read() as session:
        cancelled = await session.get(Appointment, appointment.id)
        assert cancelled is not None and cancelled.status == AppointmentStatus.CANCELLED
    assert await strikes(app) == 0


async def test_a_move_in_the_chat_refuses_a_time_closed_since_it_was_offered(
        app: App, clock: ManualClock) -> None:
    slot = (await chen_slots(app))[0]
    appointment = await wechat_patient(app, slot, last_wrote=clock.now())
    offer = await close_chen(app, appointment, Decision(Way.MOVE))
    async with app.database.read() as session:
        choice = await session.get(Slot, offer.slot_ids[0])
        assert choice is not None
    await close_slot_time(app, choice)
    async with app.database.session() as session:
        with pytest.raises(TimeGone):
            await answer_move(session, app.centre, clock.now(), offer_id=offer.id,
                              account_id=appointment.identity_id, slot_id=choice.id,
                              actor="wechat:patient")
    async with app.database.read() as session:
        kept = await session.get(Appointment, appointment.id)
        closed = await session.get(Slot, choice.id)
        assert kept is not None and closed is not None
        assert (kept.status, kept.slot_id, closed.booked) == (AppointmentStatus.BOOKED, slot.id, 0)


async def test_a_move_in_the_chat_to_a_full_time_keeps_the_held_seat(
        app: App, clock: ManualClock) -> None:
    # The centre texts 换诊 offers always: a chat patient's offer holds a seat too. Picking in
    # the chat a time just filled must not give that held seat away.
    centre = dataclasses.replace(app.centre, sms=dataclasses.replace(
        app.centre.sms, policy={**app.centre.sms.policy, "closure_move": "always"}))
    slot = (await chen_slots(app))[0]
    appointment = await wechat_patient(app, slot, last_wrote=clock.now())
    async with app.database.session() as session:
        await apply_resource_closure(
            session, centre, clock.now(), resource_id=(await doctors(app))["dr_chen_jianguo"],
            starts_at=local(2026, 11, 25, 0), ends_at=local(2026, 11, 25, 12), reason="外出会诊",
            actor="telegram:staff", decisions={appointment.id: Decision(Way.MOVE)})
    async with app.database.read() as session:
        offer = await session.scalar(select(ClosureOffer))
        [hold] = (await session.scalars(select(Hold))).all()
        assert offer is not None
        full = next(s for s in offer.slot_ids if s != hold.slot_id)
    async with app.database.session() as session:
        taken = await session.get(Slot, full)
        assert taken is not None
        taken.booked = taken.online_capacity - taken.held          # just filled up
    async with app.database.session() as session:              # the chat's answer, committed
        with pytest.raises(TimeGone):
            await answer_move(session, centre, clock.now(), offer_id=offer.id,
                              account_id=appointment.identity_id, slot_id=full, actor="wechat:p")
    async with app.database.read() as session:
        held = await session.get(Slot, hold.slot_id)
        assert held is not None and held.held == 1
        assert await session.scalar(select(func.count()).select_from(Hold)) == 1
    async with app.database.session() as session:              # the held time is still theirs
        await answer_move(session, centre, clock.now(), offer_id=offer.id,
                          account_id=appointment.identity_id, slot_id=hold.slot_id,
                          actor="wechat:p")
    async with app.database.read() as session:
        moved = await session.get(Appointment, appointment.id)
        held = await session.get(Slot, hold.slot_id)
        assert moved is not None and held is not None
        assert (moved.slot_id, held.booked, held.held) == (hold.slot_id, 1, 0)
        assert await session.scalar(select(func.count()).select_from(Hold)) == 0


@pytest.mark.skipif(not postgres_url(), reason="row locks between two sessions: PostgreSQL")
async def test_an_answer_at_the_deadline_and_the_sweep_one_wins(
        app: App, dispatcher: Dispatcher, clock: ManualClock) -> None:
    # The reply comes a second before the deadline and its transaction is still open when
    # the sweep runs at the deadline: the sweep leaves the offer it holds alone (it neither
    # cancels the booking just moved nor overwrites the answer).
    _slot, appointment, offer = await chen_closed(app, Decision(Way.MOVE))
    async with app.database.read() as session:
        [hold] = (await session.scalars(select(Hold))).all()

    async def sweep() -> int:
        async with app.database.session() as session:
            # Only a guard should the sweep wait on the answer's rows (the defect): it fails
            # then instead of hanging.
            await session.execute(sql("SET LOCAL lock_timeout = '5s'"))
            return await settle_offers(session, app.centre, offer.deadline)

    async with app.database.session() as answering:
        person_id = appointment.person_id
        await answer_move(answering, app.centre, offer.deadline - dt.timedelta(seconds=1),
                          offer_id=offer.id, account_id=None, person_id=person_id,
                          slot_id=hold.slot_id, actor=f"sms:{person_id}")
        assert await sweep() == 0                       # run while the answer is not committed
    assert await sweep() == 0                           # and after: it is answered
    async with app.database.read() as session:
        moved = await session.get(Appointment, appointment.id)
        answered = await session.get(ClosureOffer, offer.id)
        assert moved is not None and answered is not None
        assert (moved.status, moved.slot_id) == (AppointmentStatus.BOOKED, hold.slot_id)
        assert answered.status == "moved"


async def test_cancelling_a_booking_withdraws_its_move_offer_and_gives_the_held_seat_back(
        app: App, sms_api: FakeTencentSms, dispatcher: Dispatcher, clock: ManualClock) -> None:
    _slot, appointment, offer = await chen_closed(app, Decision(Way.MOVE))
    await dispatcher.drain()
    async with app.database.read() as session:
        [hold] = (await session.scalars(select(Hold))).all()
    async with app.database.session() as session:
        await control.staff_cancel(session, app.centre, clock.now(), appointment.code,
                                   actor="telegram:staff", reason="本人来电取消")
    async with app.database.read() as session:
        withdrawn = await session.get(ClosureOffer, offer.id)
        held = await session.get(Slot, hold.slot_id)
        assert withdrawn is not None and held is not None
        assert withdrawn.status == "withdrawn" and (held.held, held.booked) == (0, 0)
        assert await session.scalar(select(func.count()).select_from(Hold)) == 0
    await reply(app, MOBILE, "1")                          # the old text answered: nothing
    async with app.database.read() as session:
        cancelled = await session.get(Appointment, appointment.id)
        held = await session.get(Slot, hold.slot_id)
        assert cancelled is not None and held is not None
        assert cancelled.status == AppointmentStatus.CANCELLED and held.booked == 0
    async with app.database.session() as session:         # and the sweep has nothing to do
        assert await settle_offers(session, app.centre, clock.now() + dt.timedelta(days=2)) == 0


async def test_rescheduling_a_booking_withdraws_its_substitute_offer(
        app: App, clock: ManualClock) -> None:
    chen = await chen_slots(app)
    appointment = await wechat_patient(app, chen[0], last_wrote=clock.now())
    offer = await close_chen(app, appointment, Decision(Way.SUBSTITUTE, (await doctors(app))["dr_zhou_min"]))
    async with app.database.session() as session:
        service = await session.scalar(select(Service).where(Service.code == "internal_medicine"))
        assert service is not None
        thursday = await slots_of(session, app.centre, service, clock.now(), dt.date(2026, 11, 26))
        await booking.reschedule(session, app.centre, clock.now(), appointment.id, thursday[0].id,
                                 actor=f"wechat:{OPENID}")
    assert await offer_status(app, offer.id) == "withdrawn"


async def test_a_move_by_sms_holds_a_time_after_the_deadline_however_many_come_before(
        app: App, sms_api: FakeTencentSms, dispatcher: Dispatcher, clock: ManualClock) -> None:
    # A long answer time: the deadline is the booking's own start, a week on, and the
    # doctor's free times until then (more than three days of them) come first in the ranking;
    # that whole day of his is closed, so the held time is a colleague's, after the deadline.
    centre = dataclasses.replace(app.centre, rules=dataclasses.replace(
        app.centre.rules, closure_answer_hours=24 * 14))
    chen_id = (await doctors(app))["dr_chen_jianguo"]
    async with app.database.session() as session:
        service = await session.scalar(select(Service).where(Service.code == "internal_medicine"))
        assert service is not None
        for day in range(9):
            await slots_of(session, app.centre, service, clock.now(), WEDNESDAY + dt.timedelta(days=day - 2))
        monday = (await session.scalars(select(Slot).where(
            Slot.resource_id == chen_id, Slot.local_date == dt.date(2026, 11, 30))
            .order_by(Slot.starts_at))).first()
        assert monday is not None
    appointment = await window_booking(app, monday.id)
    async with app.database.session() as session:
        await apply_resource_closure(
            session, centre, clock.now(), resource_id=chen_id, starts_at=local(2026, 11, 30, 0),
            ends_at=local(2026, 12, 1, 0), reason="外出会诊", actor="telegram:staff",
            decisions={appointment.id: Decision(Way.MOVE)})
    async with app.database.read() as session:
        offer = await session.scalar(select(ClosureOffer))
        kept = await session.get(Appointment, appointment.id)
        assert offer is not None and offer.deadline == monday.starts_at
        assert kept is not None and kept.status == AppointmentStatus.BOOKED
        [hold] = (await session.scalars(select(Hold))).all()
        held = await session.get(Slot, hold.slot_id)
        assert held is not None and held.starts_at > offer.deadline
