"""Privacy through the conversation: an ID number is not a password, free text is masked before
it is stored, relayed or shown, and numbers from a client are bounded."""

from __future__ import annotations

import re

from sqlalchemy import select

from handlers.context import GLOBAL_PREFIX
from handlers.engine import Assistant
from handlers.payloads import CancelBooking, Rate, RescheduleBooking
from storage.clock import ManualClock
from storage.db import Database
from storage.models import Appointment, AppointmentStatus, ChannelIdentity, Person
from tests.dialog import Dialog, verify_dialog
from tests.test_flows import ID_NUMBER, book_id_card


def wire(payload: CancelBooking | RescheduleBooking | Rate) -> str:
    return GLOBAL_PREFIX + payload.encode()


async def stranger_books_with(stranger: Dialog, name: str, mobile: str = "13900000000") -> None:
    """The stranger books the social-security card for the victim's ID number."""
    await verify_dialog(stranger, [
        ("/book", "青溪镇便民服务中心"), ("社会保障卡", "社会保障卡"), ("[社会保障卡]", "一次性告知"),
        ("[材料已备齐]", "11月24日"), ("[11月24日]", "09:15"), ("[09:15-09:30]", "保留"),
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

    # The saved details offered next time are the stranger's own, masked.
    await verify_dialog(stranger, [("/book", "便民服务中心"), ("身份证", "居民身份证办理"),
                                   ("[居民身份证]", "一次性告知"), ("[材料已备齐]", "11月24日"),
                                   ("[11月24日]", "09:40"), ("[09:40-10:00]", "张*")])
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
