"""structlog, configured in one place, with personal data redacted before anything is rendered.

- ``merge_contextvars`` first, so request id and principal bound per request appear on every line;
- known PII keys are masked whatever their value; any email address or phone-number-like run
  inside any string (event text, exception text, nested values) is masked too;
- tracebacks are rendered without local variables;
- JSON lines off a terminal, a console renderer on one (``CDP_LOG_FORMAT`` overrides).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, Final

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
_TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?"
)
"""An ISO 8601 time: its seconds and fraction (``03.123456+00``) look like a phone number."""


def _mask_phone(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = sum(ch.isdigit() for ch in text)
    if digits < 7 or _DATE_LIKE.search(text):
        return text
    has_marker = text.startswith("+") or any(ch in text for ch in " ()-.")
    if not has_marker and digits < 10:
        return text
    return MASK


def _mask_phones(text: str) -> str:
    """Phone-number-like runs masked, outside ISO 8601 times (kept as they are)."""
    if not _TIMESTAMP.search(text):
        return _PHONE_CANDIDATE.sub(_mask_phone, text)
    parts: list[str] = []
    last = 0
    for moment in _TIMESTAMP.finditer(text):
        parts.append(_PHONE_CANDIDATE.sub(_mask_phone, text[last : moment.start()]))
        parts.append(moment.group(0))
        last = moment.end()
    parts.append(_PHONE_CANDIDATE.sub(_mask_phone, text[last:]))
    return "".join(parts)


_CLEAN: dict[str, None] = {}
"""Short strings already found to need no masking (route templates, methods, levels, event
names recur on every line). Only clean strings are remembered, never one that was masked, so this
holds no personal data; emptied when full."""
_MAX_CLEAN: Final = 4096
_MAX_CLEAN_LENGTH: Final = 256
_PLAIN: Final = (int, float, bool, type(None))


def redact_text(text: str) -> str:
    """Mask email addresses and phone-number-like runs inside free text."""
    if text in _CLEAN:
        return text
    masked = _EMAIL.sub(MASK, text) if "@" in text else text
    masked = _mask_phones(masked)
    if masked == text and len(text) <= _MAX_CLEAN_LENGTH:
        if len(_CLEAN) >= _MAX_CLEAN:
            _CLEAN.clear()
        _CLEAN[text] = None
    return masked


def _redact_value(value: Any) -> Any:
    if type(value) is str:
        return redact_text(value)
    if type(value) in _PLAIN:
        return value
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


_FRAME_CODE = frozenset({"filename", "lineno", "name", "line"})
"""A traceback frame's keys that name code, not data (``name`` is the function's)."""


def _redact_exception(value: Any) -> Any:
    """The JSON renderer's traceback (``ExceptionDictTransformer``: a list of exceptions, each
    with ``exc_value`` and ``frames``): frames keep their file, line and function names — code,
    not data, which the key-based rule masked as if ``name`` were a person's — and everything
    else (the exception's text first) is redacted as usual."""
    if not isinstance(value, list):
        return _redact_value(value)
    out: list[Any] = []
    for exc in value:
        if not isinstance(exc, Mapping):
            out.append(_redact_value(exc))
            continue
        clean = {k: _redact_value(v) for k, v in exc.items() if k != "frames"}
        frames = exc.get("frames")
        if isinstance(frames, list):
            clean["frames"] = [
                {
                    k: (v if k in _FRAME_CODE and type(v) in (str, int) else _redact_value(v))
                    for k, v in frame.items()
                }
                if isinstance(frame, Mapping)
                else _redact_value(frame)
                for frame in frames
            ]
        out.append(clean)
    return out


def redact_pii(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask PII keys and PII-shaped text anywhere in the event."""
    for key, value in list(event_dict.items()):
        if key == "exception" and type(value) is list:
            event_dict[key] = _redact_exception(value)
        elif key.lower() in PII_KEYS:
            event_dict[key] = MASK
        elif type(value) not in _PLAIN:
            event_dict[key] = _redact_value(value)
    return event_dict


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is now (test runners and CLIs swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _json_fallback(obj: Any) -> Any:
    """What structlog's JSON renderer does with a value JSON cannot hold."""
    try:
        return obj.__structlog__()
    except AttributeError:
        return repr(obj)


_JSON: Final = json.JSONEncoder(default=_json_fallback)
"""Built once: ``json.dumps(obj, default=...)`` builds a new encoder for every line (the same
output: standard separators, ASCII only)."""


def _render_json(obj: Any, **_: Any) -> str:
    return _JSON.encode(obj)


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


_LOGGED: Final = "__cdp_logged__"


def mark_logged(exc: BaseException) -> None:
    """Note that ``exc`` has been logged with its traceback (the API's 500 handler does), so the
    server's own "Exception in ASGI application" line for it is not written a second time:
    Starlette re-raises the exception to the server after the handler has answered."""
    setattr(exc, _LOGGED, True)


def _not_logged_before(record: logging.LogRecord) -> bool:
    """A standard-library record passes unless it carries an exception :func:`mark_logged`
    marked."""
    exc = record.exc_info[1] if record.exc_info else None
    return not getattr(exc, _LOGGED, False)


def configure_logging(*, force_format: str | None = None) -> None:
    """Configure structlog (and the stdlib root logger) once for the process."""
    settings = get_settings()
    fmt = force_format or settings.log_format
    level = logging.getLevelNamesMapping()[settings.log_level.upper()]
    _configure(fmt, level)


def configure_fallback_logging() -> None:
    """The same redacting pipeline at level ``info``, without reading the settings: for the CLI
    before its settings are read, and when they cannot be (structlog's own default would print a
    rich traceback with every frame's local variables)."""
    _configure("auto", logging.INFO)


def _configure(fmt: str, level: int) -> None:
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    tail: list[Any]
    if fmt == "json":
        tail = [
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            redact_pii,
            structlog.processors.JSONRenderer(serializer=_render_json),
        ]
    else:
        tail = [
            structlog.processors.format_exc_info,
            redact_pii,
            structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback),
        ]
    structlog.configure(
        processors=[*_shared_processors(), *tail],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    # Lines of the standard library's loggers (uvicorn's "Exception in ASGI application" with
    # its traceback, whose exception text can quote a database row; alembic; httpx) take the same
    # path: the same shape, no local variables, redacted.
    handler = logging.StreamHandler(_CurrentStderr())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*_shared_processors(), structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
        )
    )
    handler.addFilter(_not_logged_before)
    logging.basicConfig(level=level, handlers=[handler], force=True)
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
