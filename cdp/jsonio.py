"""JSON decoding and sizing through orjson where it gives what the json module gives.

orjson parses and serialises several times faster than the standard library, but it is stricter:
it refuses NaN and Infinity, integers past 64 bits come back as floats, lone surrogate escapes
are errors, and its number formatting differs from ``json.dumps`` in a few places. The helpers
here use orjson only where the outcome is provably the json module's, and step aside otherwise,
so callers keep the standard library's exact behaviour at orjson's speed for ordinary input.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

import orjson

NOT_STRICT: Final = object()
"""What :func:`strict_loads` returns when the json module must decide."""

_LONG_NUMBER = re.compile(rb"[0-9]{19}")
_SIZE_MARGIN: Final = 3
"""``json.dumps`` of a value is at most this many times ``orjson.dumps`` of it (NaN, Infinity and
exponents are written longer; -Infinity against null is the worst case, 2.25x)."""


def strict_loads(raw: bytes) -> Any:
    """``raw`` decoded by orjson, or :data:`NOT_STRICT` when the json module could read it
    differently: not strict JSON or not UTF-8 (NaN, Infinity, lone surrogates, other encodings,
    invalid input) or a run of 19 digits (an integer past 64 bits, which orjson makes a float)."""
    if _LONG_NUMBER.search(raw):
        return NOT_STRICT
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return NOT_STRICT


def compact_size(value: Any, limit: int) -> int:
    """The UTF-8 size of ``value`` as compact JSON (``json.dumps`` with ``(",", ":")`` and
    ``ensure_ascii=False``; lone surrogates count their three bytes), exact whenever it could
    reach ``limit``, else a figure below ``limit``."""
    try:
        size = len(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError):
        size = limit
    if size * _SIZE_MARGIN < limit:
        return size
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return len(text.encode("utf-8", "surrogatepass"))


MAX_DEPTH: Final = 64
"""Deepest nesting of objects and arrays an ingested document may have (a Segment message, a
JSON Lines record): deeper documents are refused before anything recurses over them."""


def too_deep(raw: bytes, value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` (parsed from ``raw``) nests objects and arrays more than ``limit`` deep.

    A document with at most ``limit`` opening brackets cannot be deeper (two C-level counts);
    only others are walked, without recursion."""
    if raw.count(b"{") + raw.count(b"[") <= limit:
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
