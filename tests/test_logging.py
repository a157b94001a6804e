"""The redaction processor masks PII keys and PII-shaped text, in JSON and console output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from cdp.logging import MASK, configure_logging, get_logger, redact_text
from cdp.settings import reset_settings


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CDP_LOG_FORMAT", "json")
    reset_settings()
    configure_logging()
    yield capsys
    structlog.reset_defaults()
    reset_settings()


def test_known_keys_and_patterns_are_masked(json_logs: pytest.CaptureFixture[str]) -> None:
    log = get_logger()
    log.info(
        "customer zhang.san@example.cn called from +86 138 0013 8000",
        email="x@y.cn",
        first_name="三",
        nested={"phone": "13800138000", "note": "mail me at ab@cd.org"},
        subject_id="0f" * 16,
        count=1234567,
        at="2026-11-23T01:02:03Z",
    )
    line = json.loads(json_logs.readouterr().err.strip().splitlines()[-1])
    text = json.dumps(line, ensure_ascii=False)
    for secret in (
        "zhang.san@example.cn",
        "138 0013 8000",
        "x@y.cn",
        "三",
        "13800138000",
        "ab@cd.org",
    ):
        assert secret not in text
    assert line["subject_id"] == "0f" * 16 and line["count"] == 1234567
    assert line["at"] == "2026-11-23T01:02:03Z"
    assert line["email"] == MASK


def test_tracebacks_carry_no_locals_and_no_pii(json_logs: pytest.CaptureFixture[str]) -> None:
    def fail(secret_email: str) -> None:
        raise ValueError(f"bad value {secret_email}")

    try:
        fail("li.si@example.cn")
    except ValueError:
        get_logger().exception("failed")
    err = json_logs.readouterr().err
    assert "li.si@example.cn" not in err
    assert "secret_email" not in err or "locals" not in err
    assert "ValueError" in err
    # the frames keep the names of the functions (they were all masked as if a person's name)
    [exc] = json.loads(err.strip().splitlines()[-1])["exception"]
    names = [frame["name"] for frame in exc["frames"]]
    assert names[-1] == "fail" and "test_tracebacks_carry_no_locals_and_no_pii" in names
    assert all(isinstance(f["lineno"], int) for f in exc["frames"])
    assert exc["exc_value"] == f"bad value {MASK}"


@pytest.mark.parametrize(
    "text",
    ["call +1 (415) 555-0132 now", "0044 20 7946 0958", "13800138000", "a.b+tag@sub.example.co.uk"],
)
def test_redact_text_masks(text: str) -> None:
    assert MASK in redact_text(text)


@pytest.mark.parametrize(
    "text", ["2026-11-23 01:02:03", "inserted 250000 rows", "version 1.2.3", "id C000123"]
)
def test_redact_text_keeps_ordinary_text(text: str) -> None:
    assert redact_text(text) == text


@given(st.emails())
def test_any_email_inside_text_is_masked(email: str) -> None:
    assert email not in redact_text(f"hello {email} bye")


def test_api_worker_process_logs_through_the_redaction(tmp_path: Path) -> None:
    """A `cdp serve --workers N` worker is a fresh process that only imports the app factory:
    its log lines must still be redacted and its tracebacks carry no local variables."""
    code = (
        "from cdp.api.app import create_app\n"
        "from cdp.logging import get_logger\n"
        "create_app()\n"
        "def fail():\n"
        "    secret = 'alice.worker@example.com'\n"
        "    raise RuntimeError('boom')\n"
        "try:\n"
        "    fail()\n"
        "except RuntimeError:\n"
        "    get_logger('cdp.test').exception('unhandled error', email='bob.w@example.com')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDP_")}
    env["CDP_HOME"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    out = done.stdout + done.stderr
    assert "unhandled error" in out and "boom" in out
    assert "alice.worker@example.com" not in out
    assert "bob.w@example.com" not in out


@given(st.text(max_size=120))
def test_remembering_clean_text_changes_no_answer(text: str) -> None:
    """Clean strings are remembered to skip the patterns next time: the second answer is the
    first, and a string that was masked is never remembered (the memory holds no PII)."""
    from cdp.logging import _CLEAN

    first = redact_text(text)
    assert redact_text(text) == first
    assert (text in _CLEAN) <= (first == text)


def test_masked_text_is_masked_every_time() -> None:
    for _ in range(3):
        assert redact_text("write to zhang.san@example.cn") == f"write to {MASK}"
        assert MASK in redact_text("call +1 (415) 555-0132 now")


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_standard_library_log_lines_are_redacted_too(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    """uvicorn logs an unhandled error through the standard library, and a database error's
    text can quote the row (``Key (name)=(alice@example.com) already exists``)."""
    import logging

    monkeypatch.setenv("CDP_LOG_FORMAT", fmt)
    reset_settings()
    configure_logging()
    try:
        try:
            raise RuntimeError("DETAIL: Key (name)=(alice.race3@example.com) already exists.")
        except RuntimeError:
            logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
        logging.getLogger("uvicorn.error").warning("peer +1 (415) 555-0132 at %s", "now")
        err = capsys.readouterr().err
    finally:
        structlog.reset_defaults()
        reset_settings()
    assert "Exception in ASGI application" in err and "RuntimeError" in err
    assert "alice.race3@example.com" not in err and "555-0132" not in err
    if fmt == "json":
        lines = [json.loads(line) for line in err.splitlines() if line.strip()]
        assert {line["logger"] for line in lines} == {"uvicorn.error"}


def test_timestamps_are_not_taken_for_phone_numbers() -> None:
    assert redact_text("now 2026-11-24T02:52:03.123456+00:00") == (
        "now 2026-11-24T02:52:03.123456+00:00"
    )
    assert redact_text("+1 415 555 0132 at 2026-11-24T02:52:03Z") == (
        f"{MASK} at 2026-11-24T02:52:03Z"
    )
