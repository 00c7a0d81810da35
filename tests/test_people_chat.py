"""The account's people through the conversation: 为谁预约 at the details step, adding a person
with a relation, the holder's authorisation and the consent record, a blocked person told when
chosen, 我的办事人 (list, add, remove), 我的信息 (withdraw consent and delete) and 绑定 (a
one-time code between two accounts, a staff-made booking by code and ID ending)."""

from __future__ import annotations

import re

from sqlalchemy import select

from handlers.details import CONSENT_VERSION
from handlers.engine import Assistant
from storage.clock import ManualClock
from storage.db import Database
from storage.models import (
    AccountPerson,
    Appointment,
    AppointmentStatus,
    Block,
    Channel,
    Outbox,
    Person,
    Relation,
)
from tests.dialog import Dialog, verify_dialog
from tests.helpers import local, valid_id
from tests.test_flows import book_id_card

MOTHER_ID = valid_id("11010519520303002")


def code_in(dialog: Dialog) -> str:
    return re.search(r"预约码：([A-Z0-9]{6})", dialog.text).group(1)  # type: ignore[union-attr]


async def book_for_mother(dialog: Dialog, slot: str = "09:20-09:40") -> str:
    """The holder (already 本人) adds their mother while booking the ID card, and books."""
    await verify_dialog(dialog, [
        ("/book", "便民服务中心"), ("身份证", "居民身份证办理"), ("[居民身份证]", "一次性告知"),
        ("[材料已备齐]", "为谁预约"), ("[添加办事人]", "新办事人是您的"),
    ])
    assert "本人" not in dialog.labels            # the account already holds 本人
    await verify_dialog(dialog, [
        ("[父母]", "已获得该办事人（父母）的授权"), ("[我已获授权，同意并继续]", "真实姓名"),
        ("李秀华", "手机号"), ("13900001111", "身份证号"), (MOTHER_ID, "11月24日"),
        ("[11月24日]", "上午"), ("[上午]", slot), (f"[{slot}]", "请确认预约信息"),
    ])
    assert "李*华" in dialog.text and "139****1111" in dialog.text
    await verify_dialog(dialog, [("[确认预约]", "预约成功")])
    return code_in(dialog)


async def test_booking_for_a_parent_keeps_the_holders_own_booking_and_records_consent(
        assistant: Assistant, database: Database, clock: ManualClock) -> None:
    holder = Dialog(assistant, user="holder")
    own = await book_id_card(holder)
    mothers = await book_for_mother(holder)

    await holder.command("my")
    assert sum("居民身份证" in label for label in holder.labels) == 2
    await holder.press("09:20")
    assert mothers in holder.text
    await holder.command("my")
    await holder.press("09:00")
    assert own in holder.text

    # The next booking lists both, masked, 本人 first.
    await verify_dialog(holder, [("/book", "便民服务中心"), ("社会保障卡", "社会保障卡"),
                                 ("[社会保障卡]", "一次性告知"), ("[材料已备齐]", "为谁预约")])
    assert holder.labels[:3] == ["张* · 身份证 110…002X · 本人",
                                 f"李*华 · 身份证 110…{MOTHER_ID[-4:]} · 父母", "添加办事人"]
    async with database.read() as session:
        links = (await session.scalars(select(AccountPerson).order_by(AccountPerson.id))).all()
        assert [(link.relation, link.consent_version) for link in links] == [
            (Relation.SELF, CONSENT_VERSION), (Relation.PARENT, CONSENT_VERSION)]
        assert links[1].consented_at is not None
        assert links[1].consented_at.replace(tzinfo=None) == clock.now().replace(tzinfo=None)


async def test_a_blocked_person_is_told_when_chosen_and_another_may_be_chosen(
        assistant: Assistant, database: Database, clock: ManualClock) -> None:
    holder = Dialog(assistant, user="holder")
    await book_id_card(holder)
    await book_for_mother(holder)
    async with database.session() as session:
        mother = await session.scalar(select(Person).where(Person.name == "李秀华"))
        assert mother is not None
        session.add(Block(person_id=mother.id, starts_at=clock.now(), ends_at=local(2027, 2, 21, 9),
                          strikes=3, created_at=clock.now()))
    await verify_dialog(holder, [("/book", "便民服务中心"), ("社会保障卡", "社会保障卡"),
                                 ("[社会保障卡]", "一次性告知"), ("[材料已备齐]", "为谁预约"),
                                 ("[李*华]", "暂停至2027年2月21日 周日")])
    assert "失约3次" in holder.text and "人工" in holder.text      # why, until when, how to appeal
    assert "为谁预约" in holder.text and "请选择【" not in holder.text  # before any day or seat
    await verify_dialog(holder, [("[张*]", "11月24日")])


async def test_my_people_add_and_remove_refused_while_a_booking_is_to_come(
        assistant: Assistant, database: Database) -> None:
    holder = Dialog(assistant, user="holder")
    await book_id_card(holder)
    await book_for_mother(holder)
    await verify_dialog(holder, [("/start", "我的办事人"), ("[我的办事人]", "我的办事人（最多5位）"),
                                 ("[李*华]", "关系：父母"), ("[移除该办事人]", "还有1个未到期的预约")])
    # Someone added from the list, with no booking, can be removed.
    await verify_dialog(holder, [
        ("[添加办事人]", "新办事人是您的"), ("[子女]", "授权"), ("[我已获授权，同意并继续]", "真实姓名"),
        ("张小明", "手机号"), ("13700002222", "身份证号"),
        (valid_id("11010520150505003"), "已添加办事人 张*明"),
    ])
    assert any("张*明 · 身份证" in label and "子女" in label for label in holder.labels)
    await verify_dialog(holder, [("[张*明]", "关系：子女"), ("[移除该办事人]", "已将 张*明 从您的办事人中移除")])
    assert not any("张*明" in label for label in holder.labels)
    # My bookings leads there too.
    await verify_dialog(holder, [("/my", "我的办事人"), ("[我的办事人]", "李*华")])


async def test_my_data_shows_what_is_kept_masked_and_withdrawing_consent_anonymises(
        assistant: Assistant, database: Database, clock: ManualClock) -> None:
    holder = Dialog(assistant, user="holder")
    await book_id_card(holder)
    mothers = await book_for_mother(holder)
    await verify_dialog(holder, [("/mydata", "我们为您保存的信息")])
    assert "李*华" in holder.text and "139****1111" in holder.text and "110***********002X" in holder.text
    assert "李秀华" not in holder.text and MOTHER_ID not in holder.text
    await verify_dialog(holder, [("[撤回并删除：李*华]", "中心按规定保留已有的预约记录"),
                                 ("[确定撤回并删除]", "还有1个未到期的预约")])
    # Cancelled, the booking no longer stands in the way.
    async with database.session() as session:
        appointment = await session.scalar(select(Appointment).where(Appointment.code == mothers))
        assert appointment is not None
        appointment.status = AppointmentStatus.CANCELLED
    await verify_dialog(holder, [("/mydata", "我们为您保存的信息"), ("[撤回并删除：李*华]", "确定撤回吗"),
                                 ("[确定撤回并删除]", "已撤回同意")])
    assert "姓名、手机号和证件号已删除" in holder.text
    async with database.read() as session:
        mother = await session.scalar(select(Person).where(Person.id == appointment.person_id))
        assert mother is not None and mother.name == "" and mother.id_hash is None
        kept = await session.scalar(select(Appointment).where(Appointment.code == mothers))
        assert kept is not None and kept.identity_id is None      # kept for the centre, anonymised
    await holder.command("my")
    assert not any("09:20" in label for label in holder.labels)


async def test_linking_two_accounts_by_a_one_time_code_and_unlinking_from_either_side(
        assistant: Assistant, database: Database) -> None:
    wechat = Dialog(assistant, user="o-wechat-1234", channel="wechat")
    code = await book_id_card(wechat)
    telegram = Dialog(assistant, user="5100000077", channel="telegram")
    await verify_dialog(telegram, [("/link", "绑定账号"), ("[输入绑定码]", "6位绑定码"),
                                   ("123", "验证未通过")])
    await verify_dialog(wechat, [("/link", "显示绑定码"), ("[显示绑定码]", "您的绑定码")])
    shown = re.search(r"绑定码：(\d{6})", wechat.text).group(1)  # type: ignore[union-attr]
    await verify_dialog(wechat, [("/link", "显示绑定码"), ("[输入绑定码]", "6位绑定码"),
                                 (shown, "这是本账号显示的绑定码")])
    await verify_dialog(telegram, [("/link", "绑定账号"), ("[输入绑定码]", "6位绑定码"),
                                   (shown, "绑定成功：本账号已与 微信 账号 …1234 绑定")])
    async with database.read() as session:
        told = (await session.scalars(select(Outbox).where(Outbox.kind == "account_linked"))).all()
        assert len(told) == 1 and told[0].payload == {"channel": "telegram", "user": "…0077"}
    await telegram.command("my")
    assert any("居民身份证" in label for label in telegram.labels)
    # The code is single use.
    await verify_dialog(telegram, [("/link", "解除绑定"), ("[输入绑定码]", "6位绑定码"),
                                   (shown, "验证未通过")])
    # Unlinked from the WeChat side: the Telegram account no longer sees the booking.
    await verify_dialog(wechat, [("/link", "解除绑定：Telegram …0077"),
                                 ("[解除绑定]", "已解除绑定")])
    await telegram.command("my")
    assert code not in telegram.text and "您还没有预约记录" in telegram.text


async def test_a_staff_booking_is_attached_with_its_code_and_the_id_ending(
        assistant: Assistant, database: Database, clock: ManualClock) -> None:
    from storage import booking
    from storage.identity import PersonDetails, find_or_create_person
    from tests.helpers import load_demo, slots_of

    holder = Dialog(assistant, user="holder", channel="telegram")
    await book_id_card(holder)
    async with database.session() as session:
        services = await load_demo(session, clock.now())
        person = await find_or_create_person(session, PersonDetails("张三", "13812345678", valid_id()),
                                             assistant.centre.hasher, clock.now())
        slot = (await slots_of(session, assistant.centre, services["social_card"], clock.now(),
                               local(2026, 11, 25).date()))[0]
        at_window = await booking.book(session, assistant.centre, clock.now(), person_id=person.id,
                                       slot_id=slot.id, identity_id=None, channel=Channel.STAFF,
                                       made_by="staff:9", offline=True)
        window_code = at_window.code
    await holder.command("my")
    assert window_code not in holder.text and not any("社会保障卡" in x for x in holder.labels)
    await verify_dialog(holder, [("/link", "绑定窗口"), ("[绑定窗口/电话预约]", "预约码"),
                                 (window_code, "后6位"), ("123456", "验证未通过"),
                                 (window_code, "后6位"), (valid_id()[-6:], f"预约 {window_code} 已关联")])
    await holder.command("my")
    assert any("社会保障卡" in label for label in holder.labels)


async def rendered(database: Database, assistant: Assistant, code: str) -> list[str]:
    """The texts of the notices queued for the booking ``code``, as its account would get them."""
    from handlers.notices import render
    from storage.models import ChannelIdentity

    async with database.read() as session:
        appointment = await session.scalar(select(Appointment).where(Appointment.code == code))
        assert appointment is not None
        rows = (await session.scalars(select(Outbox).where(
            Outbox.appointment_id == appointment.id).order_by(Outbox.id))).all()
        texts = []
        for row in rows:
            identity = await session.get(ChannelIdentity, row.identity_id) if row.identity_id else None
            made = await render(session, assistant.centre, assistant.settings, row, identity,
                                assistant.clock.now())
            texts += [reply.text for reply in made.replies]
        return texts


async def test_notices_name_the_person_when_the_account_booked_for_someone_else(
        assistant: Assistant, database: Database) -> None:
    holder = Dialog(assistant, user="holder")
    own = await book_id_card(holder)
    mothers = await book_for_mother(holder)
    for_mother = await rendered(database, assistant, mothers)
    assert for_mother and all("您为父母 李*华 预约的：【居民身份证" in text for text in for_mother)
    for_self = await rendered(database, assistant, own)
    assert for_self and not any("您为" in text for text in for_self)


async def test_a_walk_in_reaches_only_an_account_that_proved_the_person(
        assistant: Assistant, database: Database, clock: ManualClock) -> None:
    from storage import booking
    from storage.identity import PersonDetails, find_or_create_person
    from tests.helpers import load_demo, slots_of

    async def at_window(day: int) -> Appointment:
        async with database.session() as session:
            services = await load_demo(session, clock.now())
            person = await find_or_create_person(
                session, PersonDetails("张三", "13812345678", valid_id()), assistant.centre.hasher,
                clock.now())
            slot = (await slots_of(session, assistant.centre, services["social_card"], clock.now(),
                                   local(2026, 11, day).date()))[0]
            return await booking.book(session, assistant.centre, clock.now(), person_id=person.id,
                                      slot_id=slot.id,
                                      identity_id=await booking.reachable_identity(session, person.id),
                                      channel=Channel.STAFF, made_by="staff:9", offline=True,
                                      attached=True)

    typed = Dialog(assistant, user="typed-only", channel="telegram")
    await book_id_card(typed)                         # typed the ID number: proves nothing
    first = await at_window(25)
    assert first.identity_id is None
    prover = Dialog(assistant, user="prover", channel="telegram")
    await verify_dialog(prover, [("/link", "绑定窗口"), ("[绑定窗口/电话预约]", "预约码"),
                                 (first.code, "后6位"), (valid_id()[-6:], "已关联")])
    second = await at_window(26)                      # the next one goes to the account that proved
    async with database.read() as session:
        prover_id = await session.scalar(select(Appointment.identity_id).where(
            Appointment.code == first.code))
    assert second.identity_id == prover_id and second.attached_at is not None
    await prover.command("my")
    assert sum("社会保障卡" in label for label in prover.labels) == 2
    await typed.command("my")
    assert not any("社会保障卡" in label for label in typed.labels)


async def test_the_list_of_people_is_capped_politely(assistant: Assistant, database: Database,
                                                    clock: ManualClock) -> None:
    import dataclasses

    from storage.settings import AccountSettings

    small = Assistant(database=database, clock=clock, settings=assistant.settings,
                      centre=dataclasses.replace(assistant.centre, accounts=AccountSettings(
                          people_per_account=1)))
    holder = Dialog(small, user="holder")
    await book_id_card(holder)
    await verify_dialog(holder, [
        ("/people", "添加办事人"), ("[添加办事人]", "新办事人是您的"), ("[子女]", "授权"),
        ("[我已获授权，同意并继续]", "真实姓名"), ("张小明", "手机号"), ("13700002222", "身份证号"),
        (valid_id("11010520150505003"), "最多登记1位办事人，名单已满，未添加"),
    ])
    assert "预约办事" in holder.labels
