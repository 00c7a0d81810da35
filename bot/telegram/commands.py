"""The commands shown in Telegram's menu (setMyCommands), scoped to who may use them.

``CITIZEN_COMMANDS``, ``STAFF_COMMANDS``, ``MANAGER_COMMANDS`` are what is registered:
citizens everywhere in private, the staff commands in the staff group, and each allow-listed
staff member or manager gets their own list in their private chat.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from telegram import (
    Bot,
    BotCommand,
    BotCommandScope,
    BotCommandScopeAllPrivateChats,
    BotCommandScopeChat,
)
from telegram.error import BadRequest

from bot.telegram.parse import CHANNEL
from storage.settings import AccessSettings

log = logging.getLogger("yuyue.telegram")




@dataclass(frozen=True)
class CommandSpec:
    name: str
    zh: str
    en: str

    def describe(self, locale: str) -> str:
        return self.en if locale == "en" else self.zh


CITIZEN_COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("start", "开始 / 主菜单", "Start / main menu"),
    CommandSpec("book", "预约办事", "Book an appointment"),
    CommandSpec("my", "我的预约（查看、取消、改期）", "My bookings (view, cancel, change)"),
    CommandSpec("guide", "办事指南与所需材料", "Service guide and what to bring"),
    CommandSpec("human", "人工服务", "Talk to a person"),
    CommandSpec("lang", "切换语言 / Language", "Language / 切换语言"),
    CommandSpec("help", "帮助", "Help"),
    CommandSpec("cancel", "退出当前操作", "Stop what you are doing"),
)

STAFF_COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("today", "今日预约 [事项]", "Today's appointments [service]"),
    CommandSpec("find", "查询预约：预约码或手机号", "Find bookings: code or mobile"),
    CommandSpec("checkin", "签到：预约码 [证件后4位]", "Check in: code [ID last 4]"),
    CommandSpec("done", "办结：预约码", "Mark done: code"),
    CommandSpec("noshow", "标记爽约：预约码", "Mark no-show: code"),
    CommandSpec("undo", "撤销上一次标记：预约码", "Undo the last mark: code"),
    CommandSpec("book", "代办预约（现场/电话）", "Book for a walk-in or caller"),
    CommandSpec("closure", "停办/停诊", "Close a service for a period"),
    CommandSpec("blocks", "当前限制预约名单", "Current blacklist"),
    CommandSpec("unblock", "解除限制：人员 原因", "Lift a block: person reason"),
    CommandSpec("claim", "认领人工服务：编号", "Claim a hand-off: number"),
    CommandSpec("reply", "答复市民：编号 内容", "Answer a citizen: number text"),
    CommandSpec("close", "结束人工服务：编号 小结", "Close a hand-off: number summary"),
    CommandSpec("open", "未结的人工服务、投诉和申请", "Open hand-offs, complaints, requests"),
    CommandSpec("claimc", "认领投诉：编号", "Claim a complaint: number"),
    CommandSpec("answer", "答复投诉：编号 内容", "Answer a complaint: number text"),
    CommandSpec("resolve", "办结投诉：编号 结果", "Resolve a complaint: number outcome"),
    CommandSpec("approve", "同意上门服务：编号 时间", "Approve a home visit: number time"),
    CommandSpec("decline", "不同意上门服务：编号 原因", "Decline a home visit: number reason"),
    CommandSpec("walkin", "代办预约（私聊）", "Book for a walk-in (private chat)"),
    CommandSpec("staffhelp", "工作人员命令说明", "Staff commands"),
)

MANAGER_COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("stats", "运行统计", "Figures"),
    CommandSpec("export", "导出数据", "Export data"),
)


async def register_commands(bot: Bot, access: AccessSettings, *, staff_chat: int,
                            default_locale: str) -> None:
    """setMyCommands, scoped: citizens, the staff group, each allow-listed staff/manager."""
    scopes: list[tuple[BotCommandScope, Sequence[CommandSpec]]] = [
        (BotCommandScopeAllPrivateChats(), CITIZEN_COMMANDS)]
    if staff_chat:
        scopes.append((BotCommandScopeChat(staff_chat), STAFF_COMMANDS))
    staff = set(_telegram_ids(access.staff)) | set(_telegram_ids(access.supervisors))
    managers = set(_telegram_ids(access.managers))
    for user in sorted(staff | managers):
        specs = list(CITIZEN_COMMANDS)
        if user in staff:
            specs += STAFF_COMMANDS
        if user in managers:
            specs += MANAGER_COMMANDS
        scopes.append((BotCommandScopeChat(user), _unique(specs)))
    for scope, scoped in scopes:
        await set_commands(bot, scope, scoped, default_locale=default_locale)


async def set_commands(bot: Bot, scope: BotCommandScope, specs: Sequence[CommandSpec], *,
                       default_locale: str) -> None:
    """Register ``specs`` for ``scope`` in the default language, Chinese and English."""
    for language, locale in ((None, default_locale), ("zh", "zh-CN"), ("en", "en")):
        commands = [BotCommand(s.name, s.describe(locale)) for s in specs]
        try:
            await bot.set_my_commands(commands, scope=scope, language_code=language)
        except BadRequest as error:
            # A manager who never opened a chat with the bot: their menu comes later.
            log.warning("commands for %s not registered: %s", scope.type, error.message)
            return


def _telegram_ids(entries: Iterable[str]) -> list[int]:
    ids = []
    for entry in entries:
        channel, _, user = entry.partition(":")
        if channel == CHANNEL and user.lstrip("-").isdecimal():
            ids.append(int(user))
    return ids


def _unique(specs: Iterable[CommandSpec]) -> list[CommandSpec]:
    seen: dict[str, CommandSpec] = {}
    for spec in specs:
        seen.setdefault(spec.name, spec)
    return list(seen.values())
