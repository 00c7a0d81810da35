"""The WeChat Official Account channel: see ``bot.wechat.channel`` for the wiring.

The names ``yuyue run`` and ``yuyue wechat menu`` need; everything else is imported from its
module.
"""

from bot.wechat.api import WechatApiError
from bot.wechat.channel import WechatChannel, build_wechat
from bot.wechat.menu import create_menu

__all__ = ["WechatApiError", "WechatChannel", "build_wechat", "create_menu"]
