"""The words that work at any step, in both languages (主菜单, 我的预约, 办事指南, 人工, 投诉, 取消,
帮助, 进度), and what 取消 says it cancelled.

A global word is recognised only when it is the whole message, give or take punctuation, filler
words and a polite lead-in ("嗯，我要投诉。", "请帮我转人工"): "建议多开几个窗口" is a comment,
not a request for the suggestion form.
"""

from __future__ import annotations

import re

from storage import matching

# The command each group of words runs. Complaints and suggestions go to the flow that owns
# this command; named here once so that the flow can be connected (or renamed) in one place.
COMPLAINT_COMMAND = "complaint"
CANCEL = "cancel"

_WORDS: dict[str, tuple[str, ...]] = {
    "menu": ("主菜单", "菜单", "回主菜单", "返回主菜单", "回到主菜单", "首页", "开始", "重新开始",
             "你好", "您好", "menu", "main menu", "start", "home", "hi", "hello"),
    "my": ("我的预约", "我的预约记录", "查预约", "查看预约", "查询预约", "预约记录", "我约的", "取消预约",
           "改约", "改期", "改时间", "my bookings", "my booking", "my appointments", "my appointment",
           "bookings", "appointments"),
    "guide": ("办事指南", "指南", "办事须知", "办事流程", "要带什么", "需要带什么", "带什么材料",
              "需要什么材料", "guide", "service guide", "what to bring"),
    "human": ("人工", "转人工", "人工服务", "人工客服", "客服", "找人工", "真人", "工作人员",
              "human", "agent", "talk to staff", "staff", "a person", "real person"),
    COMPLAINT_COMMAND: ("投诉", "举报", "建议", "意见", "不满意", "差评", "提建议", "提意见",
                        "投诉建议", "我有意见", "complaint", "complain", "suggestion", "feedback",
                        "report"),
    CANCEL: ("取消", "退出", "不办了", "算了", "不要了", "cancel", "quit", "exit", "stop"),
    "help": ("帮助", "怎么用", "使用说明", "说明", "help", "?", "？", "how to use"),
    "elder": ("长辈模式", "老年模式", "老人模式", "关怀模式", "大字模式", "elder mode", "senior mode"),
    "standard": ("标准模式", "普通模式", "退出长辈模式", "standard mode", "normal mode"),
    "progress": ("进度", "查进度", "办件进度", "办理进度", "进展", "办到哪了", "办好了吗",
                 "progress", "status", "case status"),
}
# Message kinds the chat platforms tell apart, each with its own hint (locales: words.unsupported).
UNSUPPORTED_KINDS = ("image", "voice", "location", "link", "video", "file", "sticker")

# A polite lead-in before the word itself: "我要投诉", "请帮我转人工", "I want to complain".
_LEAD_IN = re.compile(r"^(?:我要|我想要|我想|我需要|我得|请帮我|帮我|请|麻烦|给我|查一下|看一下|看看|"
                      r"i want to |i'd like to |i would like to |i want |i need |please |can i )+")
_TRAIL = re.compile(r"(?:一下|下|吧|啊|呀|呢|嘛|了)+$")
_SPACES = re.compile(r"[\s\W_]+", re.UNICODE)


def _key(text: str) -> str:
    words = _SPACES.sub(" ", matching.fold(text)).strip()
    for filler in ("嗯嗯", "嗯", "呃", "额", "啊", "哦", "那个", "就是"):
        if words.startswith(filler):
            words = words.removeprefix(filler).strip()
    words = _LEAD_IN.sub("", words).strip()
    return _TRAIL.sub("", words).strip() or words


# "?" alone has no letters left once punctuation is dropped: global_word handles it apart.
_LOOKUP = {key: command for command, words in _WORDS.items() for word in words if (key := _key(word))}


def key_of(text: str) -> str:
    """A message as the global words are looked up: folded, without fillers and lead-ins."""
    return _key(matching.fold(text))


def global_word(text: str) -> str | None:
    """The command a message that is one of the global words asks for, or None."""
    stripped = matching.fold(text)
    if stripped in ("?", "？"):
        return "help"
    if not stripped or len(stripped) > 40:
        return None
    key = _key(stripped)
    return _LOOKUP.get(key) if key else None


def intent_of(text: str, entries: list[matching.Entry]) -> str:
    """What a message outside a question asks for, read the way the engine reads it: a global
    word's command; else the one service (or department) it names; "ambiguous" when it names
    several equally; "none" when nothing. For the intent corpus and its benchmark."""
    if (word := global_word(text)) is not None:
        return word
    if len(matching.bare(text)) < 2 or text.strip().isdigit():
        return "none"
    found = matching.best(text, entries)
    services = [entry for entry in found if not str(entry.key).startswith("dept:")]
    found = services or found
    if len(found) == 1:
        return str(found[0].key)
    return "ambiguous" if found else "none"
