"""Privacy through the conversation: an ID number is not a password, free text is masked before
it is stored, relayed or shown, and numbers from a client are bounded."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select

from bot.dispatch import Dispatcher
from handlers.context import GLOBAL_PREFIX
from handlers.core import Reply
from handlers.engine import Assistant
from handlers.payloads import CancelBooking, Rate, RateHelp, RescheduleBooking
from storage.clock import ManualClock
from storage.db import Database
from storage.models import (
    Appointment,
    AppointmentStatus,
    Base,
    ChannelIdentity,
    Handoff,
    Person,
    RequestStatus,
)
from storage.privacy import mask_text
from storage.settings import Settings
from tests.dialog import Dialog, verify_dialog
from tests.staff_support import (
    STAFF_A,
    SUPERVISOR,
    Recorder,
    Staff,
    staff_dispatcher,
    staff_settings,
)
from tests.test_flows import ID_NUMBER, book_id_card


def wire(payload: CancelBooking | RescheduleBooking | Rate) -> str:
    return GLOBAL_PREFIX + payload.encode()


async def stranger_books_with(stranger: Dialog, name: str, mobile: str = "13900000000") -> None:
    """The stranger books the social-security card for the victim's ID number."""
    await verify_dialog(stranger, [
        ("/book", "青溪镇便民服务中心"), ("社会保障卡", "社会保障卡"), ("[社会保障卡]", "一次性告知"),
        ("[材料已备齐]", "11月24日"), ("[11月24日]", "上午"), ("[上午]", "09:15"), ("[09:15-09:30]", "保留"),
        ("[同意并继续]", "真实姓名"), (name, "手机号"), (mobile, "身份证号"),
    ])
    await stranger.say(ID_NUMBER)


async def test_a_known_id_number_opens_nothing_of_its_owner_through_the_chat(
        assistant: Assistant, database: Database, clock: ManualClock) -> None:
    holder = Dialog(assistant, user="holder")
    code = await book_id_card(holder)
    async with database.read() as session:
        victim = await session.scalar(select(Appointment).where(Appointment.code == code))
        assert victim is not None
        victim_id = victim.id

    # With a wrong name: refused politely, nothing bound, nothing renamed.
    wrong = Dialog(assistant, user="wrong", channel="telegram")
    await stranger_books_with(wrong, "李四")
    assert "姓名与证件号码不一致，请到窗口核实" in wrong.text
    await wrong.command("my")
    assert code not in wrong.text and "您还没有预约记录" in wrong.text

    # With the right name and another mobile: the stranger may book for that person (the caps
    # follow the person), but sees and changes only what they made.
    stranger = Dialog(assistant, user="stranger", channel="telegram")
    await stranger_books_with(stranger, "张三")
    assert "请确认预约信息" in stranger.text
    assert "139****0000" in stranger.text and "138****5678" not in stranger.text
    await stranger.press("确认预约")
    assert "预约成功" in stranger.text
    own = re.search(r"预约码：([A-Z0-9]{6})", stranger.text).group(1)  # type: ignore[union-attr]

    await stranger.command("my")
    assert "社会保障卡" in stranger.text + "".join(stranger.labels)
    assert not any("居民身份证" in label for label in stranger.labels)
    assert code not in stranger.text

    # The person already has an ID-card booking that day, made by the holder: the stranger is
    # told so without its code.
    await verify_dialog(stranger, [("/book", "便民服务中心"), ("身份证", "居民身份证办理"),
                                   ("[居民身份证]", "一次性告知"), ("[材料已备齐]", "为谁预约"),
                                   ("[张*]", "11月24日"), ("[11月24日]", "上午"), ("[上午]", "09:40"),
                                   ("[09:40-10:00]", "当天已有该事项的预约")])
    assert code not in stranger.text

    # The saved details offered next time are the stranger's own, masked.
    await verify_dialog(stranger, [("/book", "便民服务中心"), ("社会保障卡", "社会保障卡"),
                                   ("[社会保障卡]", "一次性告知"), ("[材料已备齐]", "为谁预约"),
                                   ("[张*]", "11月25日"), ("[11月25日]", "上午"), ("[上午]", "09:00"),
                                   ("[09:00-09:15]", "张*")])
    assert "139****0000" in stranger.text and "138****5678" not in stranger.text
    await stranger.command("cancel")

    # Buttons of the victim's notifications, forged: nothing happens to the victim's booking.
    for dialog in (stranger, wrong):
        await dialog.send(choice=wire(CancelBooking(code)))
        assert "确定取消" not in dialog.text and code not in dialog.text
        await dialog.send(choice=wire(RescheduleBooking(code)))
        assert "选择新的时间" not in dialog.text and code not in dialog.text
        await dialog.send(choice=wire(Rate(victim_id, 1)))
        assert "不是您的" in dialog.text

    # The stranger's own booking stays theirs: the holder does not see it either.
    await holder.command("my")
    assert own not in holder.text
    assert not any("社会保障卡" in label for label in holder.labels)

    async with database.read() as session:
        victim = await session.get(Appointment, victim_id)
        assert victim is not None and victim.status == AppointmentStatus.BOOKED
        people = (await session.scalars(select(Person))).all()
        assert [(p.name, p.mobile) for p in people] == [("张三", "13812345678")]
        bound = (await session.scalars(select(ChannelIdentity.person_id).where(
            ChannelIdentity.platform_user_id.in_(["stranger", "wrong"])))).all()
        assert bound == [None, None]


async def test_the_holder_still_sees_and_acts_on_their_own_booking(assistant: Assistant) -> None:
    holder = Dialog(assistant, user="holder")
    code = await book_id_card(holder)
    await holder.command("my")
    await holder.press("居民身份证")
    assert code in holder.text
    # Tuesday's booking is past Monday 09:00's cutoff: the rule answers, not "not yours".
    await verify_dialog(holder, [("[取消预约]", "已超过改约/取消截止时间")])
    await holder.send(choice=wire(CancelBooking(code)))
    assert "已超过改约/取消截止时间" in holder.text


# --- free text is masked before it is stored, relayed or shown -----------------------------------

SPACED = "110105 19491231 002X"          # the same ID number, as people paste it
CARD = "6222 0212 3456 7890 123"
MOBILE = "13912345678"


@pytest.fixture
def settings() -> Settings:
    return staff_settings()


@pytest.fixture
def telegram() -> Recorder:
    return Recorder("telegram")


@pytest.fixture
def dispatcher(assistant: Assistant, settings: Settings, group: Recorder,
               telegram: Recorder) -> Dispatcher:
    return staff_dispatcher(assistant, settings, group, telegram=telegram, terminal=telegram)


class Said(Dialog):
    """A dialog that keeps every answer it was given."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.heard: list[str] = []

    async def send(self, **fields: object) -> list[Reply]:
        replies = await super().send(**fields)
        self.heard += [reply.text for reply in replies]
        self.heard += [label for reply in replies for label in
                       (choice.label for choice in reply.flat_choices)]
        return replies


def leaks(text: str) -> list[str]:
    """The forms of the full numbers found in ``text`` (digits compared without separators)."""
    plain = re.sub(r"[\s\-]", "", text).upper()
    return [name for name, number in (("id", ID_NUMBER), ("card", CARD.replace(" ", "")))
            if number in plain]


async def database_dump(database: Database) -> str:
    """Every value of every row of every table, as text."""
    parts = []
    async with database.read() as session:
        for table in Base.metadata.sorted_tables:
            for row in (await session.execute(select(table))).all():
                parts += [json.dumps(value, ensure_ascii=False, default=str)
                          if isinstance(value, dict | list) else str(value) for value in row]
    return "\n".join(parts)


async def test_id_numbers_typed_anywhere_are_never_stored_relayed_or_shown_in_full(
        assistant: Assistant, dispatcher: Dispatcher, database: Database, group: Recorder,
        telegram: Recorder, clock: ManualClock) -> None:
    citizen = Said(assistant, user="5100000001", channel="telegram")
    wang = Staff(assistant, STAFF_A, "王芳")
    staff_heard: list[str] = []

    # At the menu, in the middle of a booking, and in the details steps.
    await citizen.command("start")
    await citizen.say(f"我的身份证是{ID_NUMBER}")
    await citizen.say(f"卡号 {CARD}")
    await verify_dialog(citizen, [("/book", "便民服务中心"), ("[便民服务中心]", "居民身份证办理"),
                                  ("[居民身份证]", "一次性告知"), ("[材料已备齐]", "11月24日"),
                                  ("[11月24日]", "上午"), ("[上午]", "09:00"), ("[09:00-09:20]", "保留"),
                                  ("[同意并继续]", "真实姓名")])
    await citizen.say(ID_NUMBER)                          # as a name: refused, not kept
    await citizen.say("张三")
    await citizen.say(SPACED)                             # as a mobile: refused, not kept
    await citizen.say("13812345678")
    await citizen.say(SPACED)
    assert "请确认预约信息" in citizen.text
    await citizen.press("确认预约")
    assert "预约成功" in citizen.text

    # A home visit: the address and the times.
    await verify_dialog(citizen, [("身份证", "居民身份证办理"), ("[居民身份证]", "申请上门服务"),
                                  ("[申请上门服务]", "年满70周岁"), ("[年满70周岁]", "身份证号"),
                                  (ID_NUMBER, "上门地址"),
                                  (f"人民路12号，证件{ID_NUMBER}", "方便上门的时间"),
                                  (f"上午，电话{MOBILE}，卡{CARD}", "1个工作日内答复")])

    # A hand-off: what was not understood goes with it; then a relay both ways.
    await citizen.say(f"帮我查 {SPACED}")
    await citizen.say(f"{ID_NUMBER}?")
    await citizen.command("human")
    await dispatcher.drain()
    await wang.press(group.of_kind("handoff_alert")[0].tokens[0])
    staff_heard.append(wang.text)
    await citizen.say(f"我的证件 {ID_NUMBER}，电话 {MOBILE}，卡 {CARD}")
    await dispatcher.drain()
    private = telegram.of_kind("handoff_private")
    assert private and private[0].chat_id == str(STAFF_A) and MOBILE in private[0].text
    [relayed] = group.of_kind("handoff_message")
    assert MOBILE not in relayed.text and "139****5678" in relayed.text
    staff_heard.append(await wang.say(f"已查到 {ID_NUMBER} 的记录"))
    staff_heard.append(await wang.command("close", f"1 市民 {ID_NUMBER} 已答复"))
    await dispatcher.drain()

    # A low rating of the help opens a complaint; its comment carries the number again.
    await citizen.send(choice=GLOBAL_PREFIX + RateHelp(1, 1).encode())
    await citizen.say(f"投诉：我的身份证{ID_NUMBER}被念出来了")
    await dispatcher.drain()
    clock.advance(minutes=1)
    await dispatcher.drain()

    sent = [delivery.text for delivery in group.sent + telegram.sent]
    for text in [*citizen.heard, *staff_heard, *sent]:
        assert not leaks(text), text
    dump = await database_dump(database)
    assert not leaks(dump), [line for line in dump.splitlines() if leaks(line)]
    assert "110***********002X" in dump                     # masked, not dropped
    assert "投诉：我的身份证110***********002X被念出来了" in dump


@pytest.mark.parametrize(("typed", "shown", "for_the_owner"), [
    ("我的身份证110105194912310021谢谢", "我的身份证110***********0021谢谢", None),
    ("110105 19491231 002x", "110***********002X", None),
    ("１１０１０５１９４９１２３１００２Ｘ", "110***********002X", None),
    ("旧证 110105491231002", "旧证 110********1002", None),
    ("卡号6222-0212-3456-7890-123", "卡号***************0123", None),
    ("电话 138 1234 5678", "电话 138****5678", "电话 138 1234 5678"),
    ("11010519491231002X13812345678", "*************1002X138****5678",
     "*************1002X13812345678"),
    ("11月24日 10:30，0571-12345678，预约码 AB12CD", None, None),
    ("110***********002X", None, None),
])
def test_the_masker(typed: str, shown: str | None, for_the_owner: str | None) -> None:
    assert mask_text(typed) == (shown or typed)
    assert mask_text(typed, keep_mobiles=True) == (for_the_owner or shown or typed)
    assert mask_text(mask_text(typed)) == mask_text(typed)


# --- numbers from a client are bounded before they are read ----------------------------------------

@pytest.mark.parametrize("typed", ["9" * 5000, "０" + "９" * 4400, "0", "99", "12345"])
async def test_a_number_of_any_length_at_a_menu_is_an_option_that_does_not_exist(
        assistant: Assistant, typed: str) -> None:
    dialog = Dialog(assistant)
    await dialog.command("start")
    await dialog.say(typed)
    assert f"没有这个选项。请回复1到{len(dialog.labels)}之间的数字" in dialog.text
    assert "预约办事" in dialog.labels and "抱歉，系统" not in dialog.text
    await verify_dialog(dialog, [("[预约办事]", "青溪镇便民服务中心")])
    await dialog.say("7" * 4301)                      # inside a flow: its step is shown again
    assert "没有这个选项" in dialog.text and "青溪镇便民服务中心" in "".join(dialog.labels)
    await dialog.say("1")
    assert "居民身份证办理" in "".join(dialog.labels)


async def test_a_forged_menu_token_of_thousands_of_digits_is_stale(assistant: Assistant) -> None:
    dialog = Dialog(assistant, channel="telegram", user="5100000002")
    await dialog.command("start")
    await dialog.send(choice="m" + "1" * 5000 + ".0")
    assert "该菜单已过期" in dialog.text
    await dialog.send(choice="m1." + "9" * 5000)
    assert "该菜单已过期" in dialog.text


# --- a complaint's text reaches staff ---------------------------------------------------------------

async def complaint_after_help(citizen: Dialog, wang: Staff, dispatcher: Dispatcher) -> None:
    """The citizen is helped, rates the help 不满意: a complaint is opened."""
    await citizen.command("human")
    await dispatcher.drain()
    await wang.command("claim", "1")
    await wang.command("close", "1 已答复")
    await citizen.send(choice=GLOBAL_PREFIX + RateHelp(1, 2).encode())
    assert "已转为投诉（编号 1）" in citizen.text


@pytest.mark.parametrize("claimed_first", [False, True])
async def test_the_complaint_text_typed_after_a_low_rating_reaches_the_supervisor_masked(
        assistant: Assistant, dispatcher: Dispatcher, group: Recorder, telegram: Recorder,
        claimed_first: bool) -> None:
    citizen = Dialog(assistant, user="5100000003", channel="telegram")
    wang = Staff(assistant, STAFF_A, "王芳")
    boss = Staff(assistant, SUPERVISOR, "赵主任", chat=SUPERVISOR)
    await complaint_after_help(citizen, wang, dispatcher)
    await dispatcher.drain()
    [alert] = telegram.of_kind("complaint_alert")
    assert alert.chat_id == str(SUPERVISOR)
    assert "投诉 #1" in alert.text and "市民尚未写明" in alert.text
    if claimed_first:
        assert "已由 赵主任 负责" in await boss.press(alert.tokens[0])
    await citizen.say(f"窗口人员态度很差，还把我的身份证号 {ID_NUMBER} 念了出来")
    assert "已收到您的意见" in citizen.text
    await dispatcher.drain()
    [details] = telegram.of_kind("complaint_details")
    assert "窗口人员态度很差" in details.text and "110***********002X" in details.text
    assert ID_NUMBER not in details.text and "答复期限" in details.text
    assert not [d for d in group.sent if d.kind.startswith("complaint")]
    if claimed_first:
        assert "赵主任" in details.text and details.tokens == []
    else:
        assert details.tokens == ["g:claimc:1"]
        claimed = await boss.press(details.tokens[0])
        assert "窗口人员态度很差" in claimed and "已由 赵主任 负责" in claimed


# --- what a hand-off alert tells staff ---------------------------------------------------------------

async def test_a_hand_off_alert_says_where_from_who_in_which_language_and_what_was_said(
        assistant: Assistant, dispatcher: Dispatcher, group: Recorder) -> None:
    visitor = Dialog(assistant, user="5100000004", channel="telegram", locale="en-US")
    await visitor.command("book")
    await visitor.say(f"my id is {SPACED}, can you book for me")
    await visitor.say("human")
    assert "Hand-off" in visitor.text or "staff" in visitor.text.lower()
    await visitor.say(f"I need the passport office, call me at {MOBILE}")   # before any claim
    await dispatcher.drain()
    [alert] = group.of_kind("handoff_alert")
    assert "来自：预约办事" in alert.text and "booking" not in alert.text
    assert "联系人：未提供" in alert.text and "- -" not in alert.text
    assert "语言：English" in alert.text and "渠道：Telegram" in alert.text
    assert "my id is 110***********002X, can you book for me" in alert.text
    [waiting] = group.of_kind("handoff_message")
    assert "待认领" in waiting.text and "I need the passport office, call me at 139****5678" in waiting.text
    assert waiting.tokens == ["g:claim:1"]

    # From 我的预约, by someone who booked before: the contact is their own, masked.
    holder = Dialog(assistant, user="5100000005", channel="telegram")
    await book_id_card(holder)
    await holder.command("my")
    await holder.say("人工")
    await dispatcher.drain()
    alert = group.of_kind("handoff_alert")[-1]
    assert "来自：我的预约" in alert.text and "联系人：张* 138****5678" in alert.text
    assert "语言：中文" in alert.text


# --- withdrawing a hand-off ------------------------------------------------------------------------

@pytest.mark.parametrize("claimed", [False, True])
async def test_cancel_during_an_open_hand_off_withdraws_it_and_tells_staff(
        assistant: Assistant, dispatcher: Dispatcher, database: Database, group: Recorder,
        claimed: bool) -> None:
    citizen = Dialog(assistant, user="5100000006", channel="telegram")
    wang = Staff(assistant, STAFF_A, "王芳")
    await citizen.command("human")
    await dispatcher.drain()
    if claimed:
        await wang.command("claim", "1")
    await citizen.say("取消")
    assert "要结束这个请求吗" in citizen.text      # asked, not dropped on one word
    await citizen.press("结束人工服务")
    assert "已撤回您的人工服务请求（编号 1）" in citizen.text
    assert "号源" not in citizen.text and "预约办事" in citizen.labels
    await dispatcher.drain()
    [told] = group.of_kind("handoff_withdrawn")
    assert "人工服务 #1" in told.text and "市民已撤回请求" in told.text
    assert ("王芳" in told.text) == claimed
    async with database.read() as session:
        handoff = await session.get(Handoff, 1)
        assert handoff is not None and handoff.status == RequestStatus.CLOSED
    # Nothing is left open: a later message is not relayed, a claim is refused, a new
    # request opens a new hand-off.
    await citizen.say("还在吗")
    assert "已转给" not in citizen.text
    assert "已经结束" in await wang.command("claim", "1")
    await citizen.command("human")
    assert "编号 2" in citizen.text


async def test_cancel_with_nothing_held_does_not_speak_of_a_seat(assistant: Assistant) -> None:
    dialog = Dialog(assistant)
    await verify_dialog(dialog, [("/book", "青溪镇便民服务中心"), ("取消", "已取消当前操作")])
    assert "号源" not in dialog.text
