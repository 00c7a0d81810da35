"""The one masker of free text: what a citizen (or a staff member) typed, before it is stored,
relayed or shown.

Free text is anything not checked into a field: what the bot did not understand, hand-off
messages both ways, complaint and rating comments, home-visit addresses and times, case
follow-up comments. People type their ID number, a bank card or a phone number into it, often
with spaces or dashes, sometimes in full-width digits. Structured fields have their own maskers
in ``storage.identity`` (``mask_id``, ``mask_mobile``, ``mask_name``); this module masks numbers
found inside text:

- a resident ID number (18 characters: 17 digits and a digit or X; or an old 15-digit one):
  first 3 and last 4 kept, ``110***********002X``;
- a bank-card-shaped number (13 to 19 digits) or any longer run of digits: last 4 kept;
- a mainland mobile number (11 digits, 1[3-9]...), unless ``keep_mobiles``: ``138****5678``.

Digits may be separated by single spaces or dashes ("110105 19491231 002X", "6222-0212-..."),
and may be full-width. Masking is idempotent: a masked form has no run of digits long enough to
be masked again. Mobiles are kept as written only where the owner of a hand-off must call the
citizen back (``keep_mobiles=True``: the stored hand-off messages and the owner's private copy);
every group alert masks them.
"""

from __future__ import annotations

import re

from storage.identity import mask_id, mask_mobile

# A run of digits, single spaces or dashes between them, maybe ending in X (an ID's check
# character). Unicode digits count (\d), so full-width numbers are caught too.
_RUN = re.compile(r"(?<!\d)\d(?:[ \-‐-―－]?\d)*(?:[ \-]?[XxＸｘ])?(?!\d)")
_SEPARATORS = re.compile(r"[ \-‐-―－]")
_MOBILE = re.compile(r"1[3-9]\d{9}")
_CARD_DIGITS = 13


def _digits(run: str) -> str:
    """The run's digits in ASCII, X upper-case."""
    plain = _SEPARATORS.sub("", run)
    return "".join(str(int(ch)) if ch.isdigit() else "X" for ch in plain)


def _mask_run(run: str, keep_mobiles: bool) -> str:
    digits = _digits(run)
    count = len(digits)
    if digits.endswith("X"):
        if count == 18:
            return mask_id(digits)
        if count >= _CARD_DIGITS:
            return "*" * (count - 4) + digits[-4:]
        return run
    if count in (15, 18):
        return mask_id(digits)
    if count >= _CARD_DIGITS:
        return "*" * (count - 4) + digits[-4:]
    if count == 11 and _MOBILE.fullmatch(digits) and not keep_mobiles:
        return mask_mobile(digits)
    return run


def mask_text(text: str, *, keep_mobiles: bool = False) -> str:
    """``text`` with every ID-number-shaped, bank-card-shaped and (unless ``keep_mobiles``)
    mobile-shaped number in it masked; everything else as written."""
    if not text:
        return text
    return _RUN.sub(lambda match: _mask_run(match.group(0), keep_mobiles), text)


def mask_texts(texts: list[str], *, keep_mobiles: bool = False) -> list[str]:
    """Each of ``texts`` masked (``mask_text``)."""
    return [mask_text(text, keep_mobiles=keep_mobiles) for text in texts]
