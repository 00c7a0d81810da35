"""The words that work at any step, in both languages, and what 取消 says it cancelled:
regressions of what a new citizen ran into."""

from __future__ import annotations

import pytest

from handlers.engine import Assistant
from handlers.words import COMPLAINT_COMMAND, global_word
from tests.dialog import Dialog, verify_dialog


@pytest.mark.parametrize(("said", "command"), [
    ("主菜单", "menu"), ("菜单", "menu"), ("main menu", "menu"),
    ("我的预约", "my"), ("我的预约。", "my"), ("My bookings", "my"), ("取消预约", "my"),
    ("办事指南", "guide"), ("guide", "guide"), ("要带什么材料", None), ("需要带什么", "guide"),
    ("人工", "human"), ("请帮我转人工", "human"), ("talk to staff", "human"),
    ("投诉", COMPLAINT_COMMAND), ("我要投诉", COMPLAINT_COMMAND), ("举报", COMPLAINT_COMMAND),
    ("建议", COMPLAINT_COMMAND), ("意见", COMPLAINT_COMMAND), ("不满意", COMPLAINT_COMMAND),
    ("嗯，我要投诉！", COMPLAINT_COMMAND), ("I want to complain", COMPLAINT_COMMAND),
    ("取消", "cancel"), ("算了", "cancel"), ("Cancel", "cancel"),
    ("帮助", "help"), ("help", "help"), ("？", "help"),
    ("进度", "progress"), ("查一下进度", "progress"), ("progress", "progress"),
    # A sentence that merely contains one is not one.
    ("建议多开几个窗口", None), ("取消了吗我的身份证", None), ("我想看牙", None),
])
def test_global_words(said: str, command: str | None) -> None:
    assert global_word(said) == command


async def test_my_bookings_and_guide_work_inside_another_flow(assistant: Assistant) -> None:
    """Regression: typed inside the booking flow they were "not understood" twice and then led
    to the hand-off offer."""
    dialog = Dialog(assistant)
    await verify_dialog(dialog, [("/book", "青溪镇便民服务中心"), ("[便民服务中心]", "居民身份证办理"),
                                 ("[居民身份证]", "一次性告知")])
    await dialog.say("我的预约")
    assert "没有理解" not in dialog.text and "还没有预约记录" in dialog.text
    await verify_dialog(dialog, [("/book", "青溪镇便民服务中心"), ("[便民服务中心]", "居民身份证办理")])
    await dialog.say("办事指南")
    assert "没有理解" not in dialog.text and "请选择要查看的事项" in dialog.text
    await dialog.say("进度")
    assert "办件" in dialog.text and "没有理解" not in dialog.text
    await dialog.say("帮助")
    assert "使用说明" in dialog.text


async def test_the_same_words_in_english(assistant: Assistant) -> None:
    dialog = Dialog(assistant, locale="en-US")
    await dialog.command("book")
    await dialog.say("my bookings")
    assert "didn't understand" not in dialog.text and "no bookings" in dialog.text.lower()
    await dialog.say("guide")
    assert "didn't understand" not in dialog.text
    await dialog.say("cancel")
    assert "Stopped (service guide)" in dialog.text
    await dialog.say("cancel")
    assert "nothing in progress to cancel" in dialog.text


async def test_complaint_words_reach_the_complaint_flow_or_a_person(assistant: Assistant) -> None:
    dialog = Dialog(assistant)
    await dialog.command("book")
    await dialog.say("我要投诉")
    assert "没有理解" not in dialog.text
    assert "人工服务" in dialog.labels or "投诉" in dialog.text


async def test_cancel_says_what_it_cancelled(assistant: Assistant) -> None:
    dialog = Dialog(assistant)
    # Nothing in progress: nothing "released".
    await dialog.say("取消")
    assert "没有进行中的操作" in dialog.text and "号源" not in dialog.text
    # A half-filled form.
    await verify_dialog(dialog, [("/book", "青溪镇便民服务中心"), ("[便民服务中心]", "居民身份证办理"),
                                 ("[居民身份证]", "一次性告知")])
    await dialog.say("取消")
    assert "预约办事" in dialog.text and "填写到一半的内容没有保存" in dialog.text
    assert "号源" not in dialog.text
    # A held seat.
    await verify_dialog(dialog, [("/book", "青溪镇便民服务中心"), ("[便民服务中心]", "居民身份证办理"),
                                 ("[居民身份证]", "一次性告知"), ("[材料已备齐]", "11月24日"),
                                 ("[11月24日]", "上午"), ("[上午]", "09:00-09:20"),
                                 ("[09:00-09:20]", "已为您保留")])
    await dialog.say("取消")
    assert "为您保留的号源已释放" in dialog.text


async def test_cancel_during_an_open_hand_off_asks_whether_to_end_it(assistant: Assistant) -> None:
    """Regression: 取消 during an open hand-off said "为您保留的号源已释放" (nothing was held)
    and left the hand-off open without a word."""
    dialog = Dialog(assistant, channel="telegram", user="5100000042")
    await dialog.command("human")
    assert "编号 1" in dialog.text
    await dialog.say("取消")
    assert "号源" not in dialog.text and "要结束这个请求吗" in dialog.text
    await dialog.press("继续等待")
    assert "继续保留" in dialog.text
    # From another flow, the open hand-off is not forgotten either.
    await dialog.say("菜单")
    await dialog.command("book")
    await dialog.say("取消")
    assert "已取消当前操作（预约办事）" in dialog.text and "要一并结束吗" in dialog.text
    await dialog.press("结束人工服务")
    assert "已撤回您的人工服务请求（编号 1）" in dialog.text
    await dialog.say("取消")
    assert "没有进行中的操作" in dialog.text


async def test_refusals_do_not_tell_wechat_users_to_send_start_or_use_a_private_chat(
        assistant: Assistant) -> None:
    dialog = Dialog(assistant, channel="wechat", user="oRefused")
    await dialog.command("today")
    assert "/start" not in dialog.text and "菜单" in dialog.text
    await dialog.command("stats")
    assert "私聊" not in dialog.text and "统计" in dialog.text
    english = Dialog(assistant, channel="wechat", user="oRefusedEn", locale="en")
    await english.command("today")
    assert "/start" not in english.text
    await english.command("stats")
    assert "private chat" not in english.text
