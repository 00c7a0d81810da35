"""Matching what people type to the services of the catalog: synonyms and phrasings, toneless
pinyin, the sounds southern speakers and voice recognition mix up, and typos.

Why pypinyin: Chinese typos are mostly homophones (身分证 for 身份证, 社宝卡 for 社保卡, 口强 for
口腔), which the characters do not show and toneless pinyin does; pypinyin ships its own
dictionary (no network, no model), handles polyphones by phrase and is pure Python. On top of the
pinyin, the "fuzzy sounds" of pinyin input methods (zh/z, ch/c, sh/s, n/l, -ng/-n) absorb
dialect pronunciation and voice-recognition slips, and one syllable (or, in English, one or two
letters) may still be wrong in a long name.

Everything here is a plain function of its inputs: storage/services.py feeds it the rows of the
database, the intent corpus feeds it the catalog file.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pypinyin import lazy_pinyin

# Words people wrap a request in, which carry no meaning for the match ("嗯那个我想办一下…").
FILLERS = ("嗯嗯", "嗯", "呃", "额", "啊", "哦", "噢", "唉", "哎", "那个", "这个", "就是说", "就是",
           "然后", "请问", "麻烦", "一下", "您好", "你好", "谢谢", "呢", "吧", "吗", "呀", "啦", "哈")
_EN_FILLERS = {"um", "uh", "erm", "hmm", "please", "pls", "plz", "hi", "hello", "the", "a", "an",
               "i", "want", "to", "need", "my", "for", "and", "wanna", "would", "like",
               "book", "make", "appointment", "get", "do", "can", "you", "help", "me", "with"}
_PUNCTUATION = re.compile(r"[\s\W_]+", re.UNICODE)
_LATIN_WORD = re.compile(r"[a-z0-9]+")
# Fuzzy sounds of pinyin input methods (模糊音), applied to both sides.
_FUZZY = ((re.compile(r"^zh"), "z"), (re.compile(r"^ch"), "c"), (re.compile(r"^sh"), "s"),
          (re.compile(r"^l"), "n"), (re.compile(r"^r"), "n"), (re.compile(r"^f"), "h"),
          (re.compile(r"ng$"), "n"))


def fold(text: str) -> str:
    """Width, case and surrounding spaces do not matter: NFKC, casefold, strip."""
    return unicodedata.normalize("NFKC", text).casefold().strip()


def bare(text: str) -> str:
    """The text without punctuation, spaces and filler words."""
    folded = _PUNCTUATION.sub(" ", fold(text))
    for filler in FILLERS:
        folded = folded.replace(filler, " ")
    return "".join(w for w in folded.split() if w not in _EN_FILLERS)


@functools.lru_cache(maxsize=4096)
def syllables(text: str) -> tuple[str, ...]:
    """Toneless pinyin with fuzzy sounds, one entry a syllable; latin words stay words."""
    out: list[str] = []
    for piece in lazy_pinyin(fold(text), errors=lambda chars: chars):
        for word in _LATIN_WORD.findall(piece.casefold()) if piece.isascii() else [piece]:
            syllable = word
            if word.isalpha() and word.isascii() and len(word) <= 6:
                for pattern, repl in _FUZZY:
                    syllable = pattern.sub(repl, syllable)
            out.append(syllable)
    return tuple(s for s in out if s.strip())


def _edit_distance(a: Sequence[str], b: Sequence[str], limit: int) -> int:
    """Levenshtein distance with a swap of neighbours counting once ("crad" for "card"),
    stopping early once it exceeds ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    before: list[int] | None = None
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            cost = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y))
            if before is not None and j > 1 and x == b[j - 2] and a[i - 2] == y:
                cost = min(cost, before[j - 2] + 1)
            current.append(cost)
        if min(current) > limit:
            return limit + 1
        before, previous = previous, current
    return previous[-1]


def _contains(haystack: tuple[str, ...], needle: tuple[str, ...], typos: int) -> bool:
    """``needle`` occurs in ``haystack`` as whole syllables, with at most ``typos`` wrong."""
    n = len(needle)
    if not n or n > len(haystack) + typos:
        return False
    for size in {n - typos, n, n + typos}:
        if size < 1:
            continue
        for start in range(0, len(haystack) - size + 1):
            if _edit_distance(haystack[start:start + size], needle, typos) <= typos:
                return True
    return False


def _latin_words(text: str) -> list[str]:
    return [w for w in _LATIN_WORD.findall(fold(text)) if w not in _EN_FILLERS]


def term_score(term: str, text: str) -> int:
    """How well one name, synonym or phrasing matches what was typed; 0 when it does not.

    100: the same; 80+: the text contains the term; 60+: the text is part of the term; 50: the
    same toneless (fuzzy) pinyin; 30: pinyin with one syllable wrong, or English with a typo.
    """
    t, s = bare(term), bare(text)
    if not t or not s:
        return 0
    if t == s:
        return 100
    if len(t) >= 2 and t in s:
        return 80 + min(len(t), 19)
    if len(s) >= 2 and s in t and not s.isdigit():
        return 60 + min(len(s), 19)
    term_syllables, text_syllables = syllables(t), syllables(s)
    chinese = not t.isascii()
    if chinese and len(term_syllables) >= 2 and _contains(text_syllables, term_syllables, 0):
        return 50
    if chinese and len(term_syllables) >= 3 and _contains(text_syllables, term_syllables, 1):
        return 30
    if chinese and s.isascii() and len(s) >= 4:
        # Pinyin typed on a keyboard without a Chinese input method ("shebaoka").
        spelled = "".join(lazy_pinyin(t))
        if len(spelled) >= 6 and spelled in s:
            return 45
    if not chinese and _typo_match(_latin_words(term), _latin_words(text)):
        return 30
    return 0


def _typo_match(words: list[str], typed: list[str]) -> bool:
    """Every word of an English term is typed, a long one with a letter or two wrong."""
    if not words or not typed or not any(len(w) >= 4 for w in words):
        return False
    for word in words:
        if len(word) < 4:
            if word not in typed:
                return False
            continue
        limit = 1 if len(word) < 8 else 2
        if not any(_edit_distance(word, x, limit) <= limit for x in typed):
            return False
    return True


@dataclass(frozen=True)
class Entry:
    """One thing that can be matched: a service (or a department) and every term naming it."""

    key: object
    terms: tuple[str, ...]


def rank(text: str, entries: Iterable[Entry]) -> list[tuple[int, Entry]]:
    """The entries that match ``text``, best first (a tie keeps catalog order)."""
    scored = []
    for index, entry in enumerate(entries):
        best = max((term_score(term, text) for term in entry.terms), default=0)
        if best:
            scored.append((best, index, entry))
    scored.sort(key=lambda item: (-item[0], item[1]))
    return [(score, entry) for score, _, entry in scored]


def best(text: str, entries: Iterable[Entry]) -> list[Entry]:
    """The entries sharing the best score (several when the text fits several equally)."""
    ranked = rank(text, entries)
    if not ranked:
        return []
    top = ranked[0][0]
    return [entry for score, entry in ranked if score == top]


def catalog_entries(services: Iterable[object], departments: Iterable[object]) -> list[Entry]:
    """Entries for a catalog file's definitions (``ServiceDef``, ``DepartmentDef``): services
    keyed by code, departments by "dept:<code>", with the same terms the database rows give."""
    entries = [Entry(s.code, (s.name.zh, s.name.en, *s.keywords, *s.doctors))  # type: ignore[attr-defined]
               for s in services]
    entries += [Entry(f"dept:{d.code}", (d.name.zh, d.name.en, *d.keywords))  # type: ignore[attr-defined]
                for d in departments]
    return entries
