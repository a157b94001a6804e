"""``CDP_TRAITS_INTERVAL``: a schedule's ``--every`` syntax, ``0`` or ``off`` for never, and a
value cdp cannot use is a ``ConfigurationError`` naming the variable, never the value (the CLI
prints it as its one ``configuration_error`` line: tests/cli/test_configuration_errors.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from cdp.errors import ConfigurationError
from cdp.settings import get_settings, reset_settings

Read = Callable[[str | None], timedelta | None]


@pytest.fixture
def interval(monkeypatch: pytest.MonkeyPatch) -> Read:
    def read(value: str | None) -> timedelta | None:
        if value is None:
            monkeypatch.delenv("CDP_TRAITS_INTERVAL", raising=False)
        else:
            monkeypatch.setenv("CDP_TRAITS_INTERVAL", value)
        reset_settings()
        try:
            return get_settings().traits_interval
        finally:
            reset_settings()

    return read


def test_intervals_that_cdp_reads(interval: Read) -> None:
    assert interval(None) == timedelta(days=1)
    assert interval("6h") == timedelta(hours=6)
    assert interval(" 30M ") == timedelta(minutes=30)
    assert interval("366d") == timedelta(days=366)
    assert interval("off") is None and interval("OFF") is None and interval("0") is None


BAD = ["10s", "1w", "", "tomorrow", "367d", "99999999999999d", "-1d", "1.5h"]


@pytest.mark.parametrize("bad", BAD)
def test_an_interval_cdp_cannot_use_names_the_setting_not_the_value(
    interval: Read, bad: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        interval(bad)
    message = str(caught.value)
    assert message.startswith("invalid settings: CDP_TRAITS_INTERVAL: ")
    assert bad.strip() == "" or bad not in message
