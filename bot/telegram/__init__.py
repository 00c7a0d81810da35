"""The Telegram channel (python-telegram-bot): see ``bot.telegram.channel`` for the wiring.

The names ``yuyue run`` and ``yuyue`` need; everything else is imported from its module.
"""

from bot.telegram.channel import TelegramChannel, build_telegram
from bot.telegram.config import TelegramConfigError
from bot.telegram.polling import PollingConflict

__all__ = ["PollingConflict", "TelegramChannel", "TelegramConfigError", "build_telegram"]
