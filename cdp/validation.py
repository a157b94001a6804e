"""Where a validation error happened, named without echoing what the caller sent.

A pydantic error's ``loc`` mixes the schema's own names (fields, aliases, list indexes, tags of
union members) with names taken from the input: the keys of free-form objects (custom traits,
event properties, a message's context) and, for a model that forbids extra fields, the unknown
key itself. A key may be personal data (a headerless file's first row becomes its "header"; a
trait can be named after a person), so only the schema's part of the path is kept.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Final, overload

from pydantic import BeforeValidator

FREE_FORM: Final = frozenset({"traits", "properties", "context"})
"""Fields holding objects whose keys come from the input: the path stops at them."""
UNKNOWN_FIELD: Final = "(unknown field)"
_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def safe_location(loc: Sequence[int | str], error_type: str = "") -> str:
    """The dotted path of ``loc`` with every part that may come from the input left out.

    Indexes and identifier-shaped names are kept; the path ends at a free-form object (its keys
    are the input's); the key an ``extra_forbidden`` error names becomes ``(unknown field)``;
    anything else (a union member's tag such as ``constrained-str``) is dropped."""
    parts: list[str] = []
    last = len(loc) - 1
    for i, part in enumerate(loc):
        if isinstance(part, int):
            parts.append(str(part))
            continue
        if i == last and error_type == "extra_forbidden":
            parts.append(UNKNOWN_FIELD)
            break
        if _NAME.fullmatch(part):
            parts.append(part)
            if part in FREE_FORM:
                break
    return ".".join(parts)


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text (None when it can): a NUL character (PostgreSQL's
    text type cannot hold one; SQLite would keep it, so the engines would disagree) or a lone
    surrogate (not encodable as UTF-8)."""
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (not valid Unicode text)"
    return None


def check_text(value: str, field: str) -> str:
    """``value`` if it can be stored as text, else :class:`InvalidInputError` naming ``field``
    (never the value)."""
    from cdp.errors import InvalidInputError

    problem = text_problem(value)
    if problem is not None:
        raise InvalidInputError(f"{field} {problem}", field=field)
    return value


_CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
"""Control characters (C0, DEL, C1) other than tab and line breaks."""
CONTROL_MESSAGE: Final = "contains control characters"


def has_control(value: str) -> bool:
    """Whether ``value`` holds a control character other than tab and line breaks."""
    return not value.isprintable() and _CONTROL.search(value) is not None


@overload
def plain_text(value: str) -> str: ...
@overload
def plain_text(value: None) -> None: ...
def plain_text(value: str | None) -> str | None:
    """Free text (names, streets, product names, event names, consent sources) holds no control
    characters but tab and line breaks: a NUL cannot even be stored in PostgreSQL text, and none
    of them belongs in a name. (A lone surrogate is not a string pydantic accepts at all.)"""
    if value is not None and has_control(value):
        raise ValueError(CONTROL_MESSAGE)
    return value


FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet reads as the start of a formula (OWASP's list): identifiers may not start
so (ingestion), and CSV cells that do are defused when written (exports, audit reports)."""


def defuse(value: str) -> str:
    """``value`` as a spreadsheet shows it as text: a leading ``'`` when it starts like a
    formula (``=HYPERLINK(...)`` in a name would otherwise run when the file is opened)."""
    return "'" + value if value.startswith(FORMULA_START) else value


_NUMBER: Final = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)\s*")


def not_epoch(value: Any) -> Any:
    """A time (or date) given as a number, or as a string of digits such as ``20240115``, is
    refused: pydantic would read it as Unix seconds (a date in 1970). Times are ISO 8601 text."""
    if value.__class__ is str:
        if _NUMBER.fullmatch(value):
            raise ValueError(
                "digits alone are not a time (they would be read as Unix seconds); "
                "write ISO 8601, e.g. 2024-01-15 or 2024-01-15T10:00:00Z"
            )
    elif isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        raise ValueError("a number is not a time (it would be read as Unix seconds)")
    return value


IsoDateTime = Annotated[datetime, BeforeValidator(not_epoch)]
"""A datetime given as ISO 8601 text (API bodies and query parameters, like ingestion)."""
