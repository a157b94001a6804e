"""structlog, configured in one place, with personal data redacted before anything is rendered.

- ``merge_contextvars`` first, so request id and principal bound per request appear on every line;
- known PII keys are masked whatever their value; any email address or phone-number-like run
  inside any string (event text, exception text, nested values) is masked too;
- tracebacks are rendered without local variables;
- JSON lines off a terminal, a console renderer on one (``CDP_LOG_FORMAT`` overrides).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

from cdp.settings import get_settings

MASK = "[redacted]"

#: Keys whose values are personal data whatever they contain.
PII_KEYS = frozenset(
    {
        "email",
        "phone",
        "first_name",
        "last_name",
        "name",
        "full_name",
        "birthday",
        "date_of_birth",
        "gender",
        "street",
        "address",
        "city",
        "postal_code",
        "zip",
        "state",
        "plaintext",
        "value",
        "values",
        "password",
        "token",
        "secret",
        "key",
        "dek",
        "kek",
        "authorization",
        "userid",
        "user_id",
        "anonymousid",
        "anonymous_id",
        "traits",
        "context",
    }
)

# the local part may hold any atext character (RFC 5322), apostrophes included
_EMAIL = re.compile(r"[^\s@<>()\[\],;:\"]+@[^\s@<>()\[\],;:\"']+\.[^\s@<>()\[\],;:\"']+")
_PHONE_CANDIDATE = re.compile(r"(?<![\w.])\+?\(?\d[\d\s().\-]{5,}\d(?![\w])")
_DATE_LIKE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{2}:\d{2}:\d{2}")


def _mask_phone(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = sum(ch.isdigit() for ch in text)
    if digits < 7 or _DATE_LIKE.search(text):
        return text
    has_marker = text.startswith("+") or any(ch in text for ch in " ()-.")
    if not has_marker and digits < 10:
        return text
    return MASK


def redact_text(text: str) -> str:
    """Mask email addresses and phone-number-like runs inside free text."""
    if "@" in text:
        text = _EMAIL.sub(MASK, text)
    return _PHONE_CANDIDATE.sub(_mask_phone, text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            k: (MASK if isinstance(k, str) and k.lower() in PII_KEYS else _redact_value(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(v) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    return value


def redact_pii(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask PII keys and PII-shaped text anywhere in the event."""
    for key in list(event_dict):
        if key.lower() in PII_KEYS:
            event_dict[key] = MASK
        else:
            event_dict[key] = _redact_value(event_dict[key])
    return event_dict


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is now (test runners and CLIs swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def configure_logging(*, force_format: str | None = None) -> None:
    """Configure structlog (and the stdlib root logger) once for the process."""
    settings = get_settings()
    fmt = force_format or settings.log_format
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    level = logging.getLevelNamesMapping()[settings.log_level.upper()]

    processors: list[Any] = _shared_processors()
    if fmt == "json":
        processors += [
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            redact_pii,
            structlog.processors.JSONRenderer(),
        ]
    else:
        processors += [
            structlog.processors.format_exc_info,
            redact_pii,
            structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback),
        ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=level, stream=sys.stderr, format="%(message)s", force=True)
    for noisy in ("alembic", "httpx", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def get_logger(name: str | None = None) -> Any:
    """A structlog logger; bind context with ``structlog.contextvars.bind_contextvars``."""
    return structlog.get_logger(name)


def bind_context(**values: Any) -> None:
    """Bind values (request id, principal…) to every log line of the current context."""
    structlog.contextvars.bind_contextvars(**values)


def clear_context() -> None:
    structlog.contextvars.clear_contextvars()


def redacted_mapping(values: MutableMapping[str, Any]) -> dict[str, Any]:
    """A copy of ``values`` with PII keys and PII-shaped text masked (for error bodies)."""
    return dict(_redact_value(values))
