"""WeCom (企业微信): the self-built app staff work in (``bot.wecom.channel``) and the optional
notify-only group robot (``bot.wecom.robot``).

The names ``yuyue run`` and ``yuyue wecom ...`` need; everything else is imported from its
module.
"""

from bot.wecom.api import WecomApiError
from bot.wecom.channel import WecomChannel, build_wecom
from bot.wecom.robot import WecomRobotSender, build_wecom_sender

__all__ = ["WecomApiError", "WecomChannel", "WecomRobotSender", "build_wecom",
           "build_wecom_sender"]
