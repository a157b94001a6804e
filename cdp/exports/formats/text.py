"""Folding free text (names, cities, states) into the letters an ad platform hashes.

Two foldings share one rule for Latin letters: an accented Latin letter becomes its plain
base letter (``é`` → ``e``, ``ñ`` → ``n``) by Unicode compatibility decomposition, dropping the
combining diacritics U+0300 to U+036F; a few Latin letters that do not decompose are written out
(``ß`` → ``ss``, ``ø`` → ``o``, ...). Everything is lower-cased.

* :func:`fold_place` keeps only ``a`` to ``z``: anything else (digits, spaces, punctuation,
  non-Latin scripts) is removed.
* :func:`fold_name` also keeps letters of other scripts (Chinese, Cyrillic, Arabic, ...) and
  their combining marks, lower-cased, and removes everything else (spaces, digits,
  punctuation, symbols).

Both are idempotent. Per-character results are cached in translation tables, so the cost per
call is one ``str.translate`` (or one regex for pure ASCII input).
"""

from __future__ import annotations

import re
import unicodedata

_NOT_AZ = re.compile(r"[^a-z]+")
_DIACRITICS_START, _DIACRITICS_END = 0x0300, 0x0370

# Latin letters with no decomposition into base letter + diacritics.
_LATIN_EXTRA = {
    "ß": "ss",
    "ẞ": "ss",
    "æ": "ae",
    "Æ": "ae",
    "œ": "oe",
    "Œ": "oe",
    "ø": "o",
    "Ø": "o",
    "đ": "d",
    "Đ": "d",
    "ð": "d",
    "Ð": "d",
    "ħ": "h",
    "Ħ": "h",
    "\u0131": "i",  # dotless i
    "ł": "l",
    "Ł": "l",
    "þ": "th",
    "Þ": "th",
}
_MARK_CATEGORIES = frozenset({"Mn", "Mc", "Me"})


def _latin_letters(ch: str) -> str | None:
    """The plain lower-case ASCII letters ``ch`` stands for, if it is a Latin letter."""
    extra = _LATIN_EXTRA.get(ch)
    if extra is not None:
        return extra
    base = "".join(
        c
        for c in unicodedata.normalize("NFKD", ch)
        if not _DIACRITICS_START <= ord(c) < _DIACRITICS_END
    )
    if base and base.isascii() and base.isalpha():
        return base.lower()
    return None


class _FoldTable(dict[int, str | None]):
    """A ``str.translate`` table that computes and caches each character's folding."""

    def __init__(self, *, keep_other_scripts: bool) -> None:
        super().__init__()
        self.keep_other_scripts = keep_other_scripts

    def __missing__(self, code: int) -> str | None:
        ch = chr(code)
        folded = _latin_letters(ch)
        if folded is None and self.keep_other_scripts and not ch.isascii():
            in_diacritics = _DIACRITICS_START <= code < _DIACRITICS_END
            if not in_diacritics and (ch.isalpha() or unicodedata.category(ch) in _MARK_CATEGORIES):
                lowered = ch.lower()
                folded = lowered if len(lowered) == 1 else ch
        self[code] = folded
        return folded


_PLACE_TABLE = _FoldTable(keep_other_scripts=False)
_NAME_TABLE = _FoldTable(keep_other_scripts=True)


def fold_place(raw: str) -> str:
    """Lower-case ``a`` to ``z`` only: accents folded, everything else removed."""
    if raw.isascii():
        return _NOT_AZ.sub("", raw.lower())
    return unicodedata.normalize("NFKC", raw).translate(_PLACE_TABLE)


def fold_name(raw: str) -> str:
    """Lower-case letters only: Latin accents folded, other scripts kept, the rest removed."""
    if raw.isascii():
        return _NOT_AZ.sub("", raw.lower())
    folded = unicodedata.normalize("NFKC", raw).translate(_NAME_TABLE)
    return unicodedata.normalize("NFKC", folded)
