"""Property-based test through the conversation: whatever three chat accounts do (add a person,
book for one of their people, cancel, link by a one-time code, unlink), each account's 我的预约
lists exactly the bookings it made or an account linked to it made, and no account can open or
cancel another's booking through a notification's button. No deadline; the clock stands still."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from handlers.context import GLOBAL_PREFIX
from handlers.engine import Assistant
from handlers.payloads import CancelBooking
from storage.accounts import visible_bookings
from storage.clock import ManualClock
from storage.db import Database
from storage.models import ChannelIdentity
from storage.settings import Settings
from tests.dialog import Dialog
from tests.helpers import examples, load_demo, make_centre, valid_id
from tests.test_properties import PROPERTY_SETTINGS, START, fresh_url

USERS = (("terminal", "t-user-1001"), ("telegram", "5100002002"), ("wechat", "o-wechat-3003"))
PEOPLE = (("张三", valid_id("11010519800101001")), ("李秀英", valid_id("11010519520303002")),
          ("王小明", valid_id("11010520100505003")))
MASKED = ("张*", "李*英", "王*明")
DAYS = ("11月24日", "11月25日", "11月26日")


@dataclass
class Model:
    made_by: dict[str, int] = field(default_factory=dict)      # booking code -> account index
    cancelled: set[str] = field(default_factory=set)
    links: set[frozenset[int]] = field(default_factory=set)

    def sees(self, account: int, code: str) -> bool:
        maker = self.made_by[code]
        return maker == account or frozenset((maker, account)) in self.links


async def steps(dialog: Dialog, said: list[str]) -> bool:
    """Say or press each in turn ("[x]" presses); False, and the flow left, when a button to
    press is not there (the rules refused something on the way)."""
    for each in said:
        if each.startswith("["):
            label = each[1:-1]
            if not any(label in shown for shown in dialog.labels):
                await dialog.command("cancel")
                return False
            await dialog.press(label)
        elif each.startswith("/"):
            await dialog.command(each[1:])
        else:
            await dialog.say(each)
    return True


async def run(url: str, operations: list[tuple[str, int, int, int]]) -> None:
    database = Database(url, pool_size=2)
    clock = ManualClock(START)
    try:
        centre = make_centre()
        async with database.session() as session:
            await load_demo(session, clock.now())
        assistant = Assistant(database=database, centre=centre, clock=clock, settings=Settings())
        dialogs = [Dialog(assistant, user=user, channel=channel) for channel, user in USERS]
        model = Model()
        for name, a, b, c in operations:
            me = dialogs[a]
            if name == "add":
                person_name, number = PEOPLE[b]
                await steps(me, ["/people", "[添加办事人]", "[其他亲属]", "[我已获授权]", person_name,
                                 f"1390000{b}00{a}", number])
            elif name == "book":
                done = await steps(me, ["/book", "社会保障卡", "[社会保障卡]", "[材料已备齐]"])
                if done and "为谁预约" in me.text:   # else nobody yet: details after the slot
                    done = await steps(me, [f"[{MASKED[b]}]"])
                if done and await steps(me, [f"[{DAYS[c]}]"]):
                    if any(label.startswith("上午") for label in me.labels):
                        await me.press("上午")      # a busy day: the half-day first
                    slot = next((x for x in me.labels if re.match(r"\d\d:\d\d-\d\d:\d\d 余", x)), None)
                    if slot is None:
                        await me.command("cancel")
                        continue
                    await me.press(slot)
                    if "同意并继续" in me.labels:
                        person_name, number = PEOPLE[b]
                        await steps(me, ["[同意并继续]", person_name, f"1390000{b}00{a}", number])
                    if "确认预约" in me.labels:
                        await me.press("确认预约")
                        found = re.search(r"预约码：([A-Z0-9]{6})", me.text)
                        assert found is not None, me.text
                        model.made_by[found.group(1)] = a
                    else:
                        await me.command("cancel")
            elif name == "cancel":
                await me.command("my")
                items = [x for x in me.labels if "社会保障卡" in x and "已预约" in x]
                if items:
                    await me.press(items[c % len(items)])
                    code = re.search(r"预约码：([A-Z0-9]{6})", me.text)
                    assert code is not None and model.sees(a, code.group(1)), me.text
                    if await steps(me, ["[取消预约]", "[确定取消]"]) and "已取消" in me.text:
                        model.cancelled.add(code.group(1))
            elif name == "link" and a != b:
                await steps(me, ["/link", "[显示绑定码]"])
                shown = re.search(r"绑定码：(\d{6})", me.text)
                assert shown is not None
                await steps(dialogs[b], ["/link", "[输入绑定码]", shown.group(1)])
                assert "绑定成功" in dialogs[b].text
                model.links.add(frozenset((a, b)))
            elif name == "unlink" and a != b:
                await me.command("link")
                other = f"…{USERS[b][1][-4:]}"
                if any(other in x for x in me.labels):
                    await me.press(other)
                    assert "已解除绑定" in me.text
                    model.links.discard(frozenset((a, b)))
            await check(database, dialogs, model)
    finally:
        await database.dispose()


async def check(database: Database, dialogs: list[Dialog], model: Model) -> None:
    async with database.read() as session:
        ids = [await session.scalar(select(ChannelIdentity.id).where(
            ChannelIdentity.platform_user_id == user)) for _, user in USERS]
        for index, account in enumerate(ids):
            if account is None:
                continue
            groups = await visible_bookings(session, account_id=account, limit=1000)
            shown = {a.code for group in groups for a in group.appointments}
            assert shown == {code for code in model.made_by if model.sees(index, code)}
    for index, dialog in enumerate(dialogs):
        await dialog.command("my")
        listed = [x for x in dialog.labels if "社会保障卡" in x]
        assert len(listed) == len({c for c in model.made_by if model.sees(index, c)})
        for code in model.made_by:
            if not model.sees(index, code) and code not in model.cancelled:
                await dialog.send(choice=GLOBAL_PREFIX + CancelBooking(code).encode())
                assert "确定取消" not in dialog.text and code not in dialog.text
        await dialog.command("cancel")


operation = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 2), st.integers(0, 2), st.just(0)),
    st.tuples(st.just("book"), st.integers(0, 2), st.integers(0, 2), st.integers(0, 2)),
    st.tuples(st.just("cancel"), st.integers(0, 2), st.just(0), st.integers(0, 5)),
    st.tuples(st.just("link"), st.integers(0, 2), st.integers(0, 2), st.just(0)),
    st.tuples(st.just("unlink"), st.integers(0, 2), st.integers(0, 2), st.just(0)),
)


# Each example is a few hundred chat turns.
@settings(PROPERTY_SETTINGS, max_examples=examples(10, on_postgres=4))
@given(operations=st.lists(operation, min_size=1, max_size=8))
@example(operations=[("book", 0, 0, 0), ("add", 1, 1, 0), ("book", 1, 1, 1), ("link", 0, 1, 0),
                     ("cancel", 1, 0, 0), ("add", 2, 2, 0), ("book", 2, 2, 2), ("unlink", 1, 0, 0),
                     ("link", 2, 0, 0)])
def test_through_the_chat_no_account_sees_a_booking_it_should_not(
        migrated_template: str, tmp_path: Path, operations: list[tuple[str, int, int, int]]) -> None:
    counter = getattr(test_through_the_chat_no_account_sees_a_booking_it_should_not, "counter", [0])
    test_through_the_chat_no_account_sees_a_booking_it_should_not.counter = counter  # type: ignore[attr-defined]
    asyncio.run(run(fresh_url(migrated_template, tmp_path, counter), operations))
