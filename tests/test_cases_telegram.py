"""A whole case of each kind over real HTTP: staff in the Telegram group mark the visit served
and open the case with the buttons, the outbox dispatcher sends every notice to the citizen's
Telegram chat on the fake Bot API, the scheduler asks for the 回访, the citizen answers it and
follows the case with 进度."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.dispatch import Dispatcher
from bot.scheduler import Jobs
from bot.telegram import TelegramChannel
from bot.wiring import App
from storage import booking
from storage.models import Appointment, Case, CaseState, Channel, Service
from storage.settings import Settings
from tests.fakes.telegram_api import FakeTelegram, button_labels
from tests.helpers import account, feed, local, person, slots_of, texts
from tests.staff_support import STAFF_A, STAFF_GROUP

CITIZEN = 5111000002


@pytest.fixture
def settings(telegram_staff_settings: Settings) -> Settings:
    return telegram_staff_settings


async def booked(app: App) -> Appointment:
    """The citizen's booking for this morning, made from their Telegram account."""
    async with app.database.session() as session:
        service = await session.scalar(select(Service).where(Service.code == "hukou_transfer"))
        assert service is not None
        now = app.clock.now()
        slot = (await slots_of(session, app.centre, service, now, now.date()))[0]
        citizen = await person(session, app.centre, now)
        identity = await account(session, now, user=str(CITIZEN), person_id=citizen.id)
        return await booking.book(session, app.centre, now, person_id=citizen.id,
                                  slot_id=slot.id, identity_id=identity.id,
                                  channel=Channel.TELEGRAM, made_by=f"telegram:{CITIZEN}",
                                  offline=True, confirm=False)


async def staff(channel: TelegramChannel, api: FakeTelegram, text: str) -> str:
    """A staff member types in the group (a command, or a reply to the bot's last message)."""
    reply_to = None if text.startswith("/") else api.chat_messages(STAFF_GROUP)[-1]
    await feed(channel, api.text_update(STAFF_A, text, chat_id=STAFF_GROUP, reply_to=reply_to))
    return texts(api, STAFF_GROUP)[-1]


async def press(channel: TelegramChannel, api: FakeTelegram, user: int, chat: int,
                label: str) -> None:
    await feed(channel, api.press_update(user, api.last_menu(chat), label))


@pytest.mark.parametrize("kind", ["即办件", "承诺件", "补办件", "退回件", "联办件", "上报件"])
async def test_a_case_of_each_kind_from_the_window_to_the_citizens_chat(
        kind: str, app: App, telegram_api: FakeTelegram, telegram_channel: TelegramChannel,
        telegram_dispatcher: Dispatcher) -> None:
    appointment = await booked(app)
    await staff(telegram_channel, telegram_api, f"/checkin {appointment.code}")
    await staff(telegram_channel, telegram_api, f"/done {appointment.code}")
    menu = telegram_api.last_menu(STAFF_GROUP)
    assert button_labels(menu) == ["即办件", "承诺件", "补办件", "退回件", "联办件", "上报件", "不立案"]
    await press(telegram_channel, telegram_api, STAFF_A, STAFF_GROUP, kind)
    if kind == "补办件":
        await press(telegram_channel, telegram_api, STAFF_A, STAFF_GROUP, "☐ 居民身份证")
        await press(telegram_channel, telegram_api, STAFF_A, STAFF_GROUP, "完成")
    elif kind == "退回件":
        await staff(telegram_channel, telegram_api, "不属于本镇户籍")
        await press(telegram_channel, telegram_api, STAFF_A, STAFF_GROUP, "依据")
    elif kind == "联办件":
        await staff(telegram_channel, telegram_api, "公安局 3、民政局 5")
    opened = "\n".join(texts(telegram_api, STAFF_GROUP)[-2:])
    async with app.database.read() as session:
        case = await session.scalar(select(Case).where(Case.appointment_id == appointment.id))
    assert case is not None, opened
    number = f"{case.number[:4]} {case.number[4:]}"
    assert number in opened
    await telegram_dispatcher.drain()
    first = {"即办件": None, "承诺件": "受理回执", "补办件": "一次性补正告知", "退回件": "不予受理告知",
             "联办件": "受理回执", "上报件": "受理回执"}[kind]
    citizen_texts = [t for t in texts(telegram_api, CITIZEN) if number in t]
    if first is None:
        assert citizen_texts == []                       # done at the window: the 回访 later
    else:
        assert first in citizen_texts[0]
    # The rest of the way, as the kind goes.
    if kind == "补办件":
        app.clock.set(local(2026, 11, 24, 10))           # type: ignore[attr-defined]
        await staff(telegram_channel, telegram_api, f"/resubmit {number}")
    if kind == "联办件":
        await staff(telegram_channel, telegram_api, f"/partdone {number} 公安局")
        await staff(telegram_channel, telegram_api, f"/partdone {number} 民政局")
    if kind == "上报件":
        assert "已记录" in await staff(telegram_channel, telegram_api, f"/expect {number} 12-18")
    if kind not in ("即办件", "退回件"):
        assert "已办结" in await staff(telegram_channel, telegram_api, f"/ready {number}")
        assert "已领取并结案" in await staff(telegram_channel, telegram_api, f"/collected {number}")
    await telegram_dispatcher.drain()
    told = "\n".join(texts(telegram_api, CITIZEN))
    if kind not in ("即办件", "退回件"):
        assert "办结通知" in told and "领取地点" in told
    if kind == "补办件":
        assert "补正材料已收到" in told
    if kind == "上报件":
        assert "预计12月18日 周五前答复" in told
    # The 回访 a working day after closing; a refused case gets none.
    app.clock.set(local(2026, 11, 26, 9, 5))             # type: ignore[attr-defined]
    await Jobs(app, telegram_dispatcher).sweep()
    await telegram_dispatcher.drain()
    if kind == "退回件":
        assert "回访" not in "\n".join(texts(telegram_api, CITIZEN))
    else:
        followup = telegram_api.last_menu(CITIZEN)
        assert "回访" in followup["text"] and number in followup["text"]
        await press(telegram_channel, telegram_api, CITIZEN, CITIZEN, "满意")
        assert "感谢您的评价" in "\n".join(texts(telegram_api, CITIZEN))
    await feed(telegram_channel, telegram_api.text_update(CITIZEN, "进度"))
    progress = texts(telegram_api, CITIZEN)[-2]                   # the cases, then the main menu
    assert f"【{number}】" in progress
    async with app.database.read() as session:
        final = await session.get(Case, case.id)
    assert final is not None and final.state == (
        CaseState.REFUSED if kind == "退回件" else CaseState.CLOSED)
    assert final.followup_level in ((None,) if kind == "退回件" else (4,))

