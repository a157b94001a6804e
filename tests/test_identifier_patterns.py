"""Names and identifiers are checked against whole-string patterns: ``$`` also matches before a
trailing newline, so ``"bob\\n"`` used to pass as a principal, source, destination or schedule
name, or as an audit record's principal name."""

from __future__ import annotations

import re

import pytest

from cdp import intervals
from cdp.access import principals
from cdp.api import middleware
from cdp.audit import writer
from cdp.cli import durations as cli_durations
from cdp.crypto import normalize
from cdp.errors import InvalidInputError
from cdp.exports import destinations, schedule
from cdp.ingest import sources
from tests.conftest import CdpEnv

PATTERNS: list[tuple[str, re.Pattern[str], str]] = [
    ("principal name", principals._NAME, "bob"),
    ("request id", middleware._SAFE_ID, "req-1"),
    ("audit name", writer._NAME, "support"),
    ("audit client", writer._CLIENT, "127.0.0.1"),
    ("duration", cli_durations._DURATION, "30d"),
    ("email local part", normalize._LOCAL_PART, "john"),
    ("domain label", normalize._DOMAIN_LABEL, "example"),
    ("destination name", destinations._NAME, "crm"),
    ("schedule name", schedule._NAME, "daily"),
    ("interval (schedules, CDP_TRAITS_INTERVAL)", intervals._EVERY, "1d"),
    ("source name", sources._NAME, "web"),
]


@pytest.mark.parametrize(("what", "pattern", "valid"), PATTERNS, ids=[p[0] for p in PATTERNS])
def test_a_trailing_newline_does_not_pass(what: str, pattern: re.Pattern[str], valid: str) -> None:
    assert pattern.match(valid)
    assert not pattern.match(valid + "\n")


def test_a_principal_or_source_named_with_a_newline_is_refused(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    with pytest.raises(InvalidInputError):
        principals.create(runtime=rt, name="bob\n", roles=["admin"])
    with pytest.raises(InvalidInputError):
        sources.create_source(runtime=rt, name="web\n")
