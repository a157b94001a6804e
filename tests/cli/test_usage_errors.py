"""A command line cdp cannot parse gets click's usage message and exit status 2, from the real
entry point (not an internal error with a traceback)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import CdpEnv

CLI = [sys.executable, "-c", "from cdp.cli import main; main()"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["export", "run", "win_back", "--bogus"], "No such option"),
        (["export", "run"], "Missing argument"),
        (["ingest", "customers", "/nonexistent/customers.csv"], "does not exist"),
        (["principals", "create", "x", "--role"], "requires an argument"),
    ],
)
def test_a_usage_error_exits_2_with_the_usage(cdp_env: CdpEnv, args: list[str], says: str) -> None:
    done = subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=os.environ.copy(), check=False
    )
    assert done.returncode == 2, done.stderr
    assert says in done.stderr
    assert "internal_error" not in done.stderr and "Traceback" not in done.stderr


def test_an_error_message_holding_markup_like_text_prints_as_it_is(cdp_env: CdpEnv) -> None:
    """A name the caller chose can look like rich markup; the error handler used to raise
    MarkupError on it (a traceback instead of the error)."""
    done = subprocess.run(
        [*CLI, "principals", "revoke", "[/x]"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "no principal named '[/x]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_ctrl_c_while_the_commands_load_exits_130_without_a_traceback(
    cdp_env: CdpEnv,
) -> None:
    """A SIGINT that lands while the commands are still being imported and registered (before
    click runs, which turns it into ``Aborted!`` itself) exits 130 with one line, as one during
    a command does; it printed a traceback."""
    script = (
        "import cdp.cli as c\n"
        "def interrupted(*_a, **_k):\n"
        "    raise KeyboardInterrupt\n"
        "c.register = interrupted\n"
        "c.main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, "profiles", "show", "x"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        check=False,
    )
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and "Aborted!" in done.stderr
