"""Screens for a phone and for older citizens: grouped time slots, lists that fit one WeChat
reply and end with 返回 and 主菜单, materials not numbered like the choices, and 长辈 mode."""

from __future__ import annotations

import re

from bot.wechat.render import render_reply, split_text
from handlers.core import Reply
from handlers.engine import Assistant
from tests.dialog import Dialog, verify_dialog
from tests.helpers import valid_id

ID_NUMBER = valid_id()      # born 1950: 76 on the test's day


def one_wechat_reply(replies: list[Reply]) -> bool:
    """The answer's menu fits one WeChat text message, rendered as WeChat renders it."""
    menus = [r for r in replies if r.choices]
    return all(len(split_text(render_reply(r))) == 1 for r in menus)


def ends_with_back_and_menu(dialog: Dialog) -> bool:
    return dialog.labels[-2:] == ["返回", "主菜单"]


async def to_dates(dialog: Dialog) -> None:
    await verify_dialog(dialog, [("/book", "青溪镇便民服务中心"), ("[便民服务中心]", "居民身份证办理"),
                                 ("[居民身份证]", "一次性告知")])
    notice = dialog.text
    assert not re.search(r"^\d+\.", notice, re.MULTILINE), notice   # no numbers but the choices
    assert "• 居民户口簿" in notice
    assert ends_with_back_and_menu(dialog)
    await dialog.press("材料已备齐")


async def test_many_time_slots_are_grouped_by_half_day_and_each_list_fits_one_reply(
        assistant: Assistant) -> None:
    dialog = Dialog(assistant, channel="wechat", user="oScreens")
    await to_dates(dialog)
    assert ends_with_back_and_menu(dialog) and one_wechat_reply(dialog.last)
    await dialog.press("11月24日")
    # 19 slots: 上午 and 下午 first, not two WeChat messages.
    assert "请先选上午或下午" in dialog.text
    assert [label.split("（")[0] for label in dialog.labels] == ["上午", "下午", "返回", "主菜单"]
    await dialog.press("上午")
    slots = [label for label in dialog.labels if re.match(r"\d\d:\d\d-", label)]
    assert slots and all(label < "12" for label in slots) and len(slots) <= 9
    assert ends_with_back_and_menu(dialog) and one_wechat_reply(dialog.last)
    await dialog.press("返回")                   # back to the halves, not the dates
    assert "请先选上午或下午" in dialog.text
    await dialog.press("下午")
    assert all(label >= "13" for label in dialog.labels if re.match(r"\d\d:\d\d-", label))
    assert one_wechat_reply(dialog.last)
    await dialog.press("13:30")
    assert "已为您保留" in dialog.text


async def test_a_day_with_few_slots_lists_them_at_once(assistant: Assistant) -> None:
    dialog = Dialog(assistant)
    await verify_dialog(dialog, [("体检", "健康体检"), ("[健康体检]", "一次性告知"),
                                 ("[材料已备齐]", "请选择")])
    await dialog.press("11月24日")
    assert "上午或下午" not in dialog.text and "07:30-08:00" in " ".join(dialog.labels)
    assert ends_with_back_and_menu(dialog)


async def test_elder_mode_screens_stay_within_limits(assistant: Assistant) -> None:
    dialog = Dialog(assistant)
    await dialog.say("长辈模式")
    assert "已切换为长辈模式" in dialog.text
    screens = []

    async def step(action: str) -> None:
        if action.startswith("["):
            await dialog.press(action[1:-1])
        else:
            await dialog.say(action)
        screens.append((action, dialog.text, list(dialog.labels)))

    for action in ["预约办事", "[便民服务中心]", "[更多]"]:
        await step(action)
    assert "医保零星报销" in dialog.labels and "居民身份证办理（首次申领/换领/补领）" not in dialog.labels
    for action in ["[从头再看]", "[居民身份证]", "[材料带齐了]"]:
        await step(action)
    assert "请先选哪一周" in dialog.text                 # dates by week first
    await step("[11月24日 周二至")
    await step("[11月24日]")
    assert "请先选上午或下午" in dialog.text
    await step("[上午]")
    assert any(label == "更多（还有4项）" or label.startswith("更多") for label in dialog.labels)
    await step("[更多]")
    await step("[返回]")
    for action, text, labels in screens:
        assert len(labels) <= 6, (action, labels)
        assert "需要帮助：回复“人工”，或拨打电话 0571-8800 1234" in text, (action, text)
        assert not re.search(r"\b(ID|OK|APP)\b", text), (action, text)
    await dialog.say("标准模式")
    assert "已切换为标准模式" in dialog.text and "拨打电话" not in dialog.text


async def test_elder_mode_is_offered_from_the_age_in_the_id_number(assistant: Assistant) -> None:
    dialog = Dialog(assistant)
    await to_dates(dialog)
    await verify_dialog(dialog, [("[11月24日]", "上午"), ("[上午]", "09:00-09:20"),
                                 ("[09:00-09:20]", "已为您保留"), ("[同意并继续]", "真实姓名"),
                                 ("张三", "手机号"), ("13812345678", "身份证号"),
                                 (ID_NUMBER, "请确认预约信息")])
    assert "长辈模式" in dialog.text and "年满65周岁" in dialog.text
    await dialog.say("长辈模式")
    assert "已切换为长辈模式" in dialog.text


async def test_a_younger_citizen_is_not_offered_elder_mode(assistant: Assistant) -> None:
    dialog = Dialog(assistant)
    await to_dates(dialog)
    await verify_dialog(dialog, [("[11月24日]", "上午"), ("[上午]", "09:00-09:20"),
                                 ("[09:00-09:20]", "已为您保留"), ("[同意并继续]", "真实姓名"),
                                 ("李四", "手机号"), ("13812345679", "身份证号"),
                                 (valid_id("11010519900101001"), "请确认预约信息")])
    assert "长辈模式" not in dialog.text
