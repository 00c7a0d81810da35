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
from handlers.i18n import normalize_locale, translate
from storage.settings import AccessSettings

log = logging.getLogger("yuyue.telegram")


@dataclass(frozen=True)
class CommandSpec:
    """A command in Telegram's menu; its description is ``commands.<audience>.<name>`` in the
    message catalogs (a staff member's "book" is not a citizen's)."""

    name: str
    audience: str

    def describe(self, locale: str) -> str:
        return translate(normalize_locale(locale), f"commands.{self.audience}.{self.name}")


CITIZEN_COMMANDS: tuple[CommandSpec, ...] = tuple(CommandSpec(name, "citizen") for name in (
    "start", "book", "my", "progress", "guide", "human", "lang", "help", "cancel",
    "people", "mydata", "link",   # accounts and people
    "doctor", "complaint",        # 停诊查询, 投诉建议
))

STAFF_COMMANDS: tuple[CommandSpec, ...] = tuple(CommandSpec(name, "staff") for name in (
    "today", "find", "checkin", "done", "noshow", "undo", "book", "closure", "blocks", "unblock",
    "claim", "reply", "close", "open", "claimc", "answer", "resolve", "approve", "decline",
    "walkin", "staffhelp", "case", "cases", "ready", "collected", "extend", "resubmit", "correct",
    "refuse", "partdone", "expect", "opencase", "walkincase",
    "sms",
    "person",   # accounts and people
    "roster",
    "move", "phone", "closures", "reopen",
    "complaints", "classify", "complex",
))

MANAGER_COMMANDS: tuple[CommandSpec, ...] = tuple(CommandSpec(name, "manager") for name in (
    "stats", "export",
))


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
