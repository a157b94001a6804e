"""Commands that write files or take dates refuse what they cannot use before any work (exit 2
with a clear message), instead of an internal error after the read was already audited."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from cdp.audit.writer import LOG
from tests.audit.factories import make_principal
from tests.conftest import CdpEnv

CLI = [sys.executable, "-c", "from cdp.cli import main; main()"]


def _cdp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=os.environ.copy(), check=False
    )


def _audit_records(env: CdpEnv) -> int:
    with env.runtime.data_engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(LOG)).scalar_one())


@pytest.mark.parametrize("where", ["/nonexistent/dir/x", "{tmp}"])
def test_an_output_that_cannot_be_written_is_refused_before_any_read(
    cdp_env: CdpEnv, tmp_path: Path, where: str
) -> None:
    out = where.format(tmp=tmp_path)  # a missing directory, or a directory itself
    auditor = make_principal(cdp_env.runtime, ["auditor"]).token
    dpo = make_principal(cdp_env.runtime, ["dpo"]).token
    before = _audit_records(cdp_env)
    commands = [
        ["audit", "report", "denied-anomalies", "--out", out + ".md", "--token", auditor,
         "--purpose", "audit"] if where != "{tmp}" else
        ["audit", "report", "denied-anomalies", "--out", out, "--token", auditor,
         "--purpose", "audit"],
        ["consent", "export", "-o", out if where == "{tmp}" else out + ".csv", "--token", dpo,
         "--purpose", "privacy_request"],
        ["metrics", "--chart", out + ".html" if where != "{tmp}" else out],
    ]  # fmt: skip
    for args in commands:
        if args[0] == "metrics" and where == "{tmp}":
            continue  # a directory named without .html is refused for its suffix already
        done = _cdp(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert "internal_error" not in done.stderr and "Traceback" not in done.stderr
        said = " ".join(done.stderr.split())  # (the console wraps long lines)
        assert any(why in said for why in ("cannot be written", "does not exist", "a directory"))
    assert _audit_records(cdp_env) == before  # nothing was read, so nothing was recorded


@pytest.mark.parametrize(
    "args",
    [
        ["metrics", "--from", "0001-01-01", "--to", "9999-12-31"],
        ["metrics", "--to", "0001-01-02"],
        ["clv", "fit", "--calibration-end", "9999-12-31"],
        ["clv", "predict", "--horizon", "inf"],
        ["clv", "predict", "--horizon", "1e308"],
    ],
)
def test_dates_and_horizons_out_of_range_exit_2(cdp_env: CdpEnv, args: list[str]) -> None:
    done = _cdp(*args)
    assert done.returncode == 2, done.stderr
    assert "internal_error" not in done.stderr and "Traceback" not in done.stderr


def test_consent_export_of_an_unknown_purpose_writes_nothing(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    dpo = make_principal(cdp_env.runtime, ["dpo"]).token
    out = tmp_path / "states.csv"
    done = _cdp(
        "consent", "export", "-o", str(out), "--only", "nope", "--token", dpo,
        "--purpose", "privacy_request",
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert not out.exists() or out.read_text() == ""


def test_an_output_path_never_goes_through_a_link(cdp_env: CdpEnv, tmp_path: Path) -> None:
    """A link planted where a report is expected (/tmp/report.html -> someone's file) was
    followed and the file truncated. A link, a pipe or a device is refused now; a regular file
    is replaced whole (a temporary file beside it, renamed), and no temporary file stays."""
    auditor = make_principal(cdp_env.runtime, ["auditor"]).token
    dpo = make_principal(cdp_env.runtime, ["dpo"]).token
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    commands = {
        "report.md": ["audit", "report", "denied-anomalies", "--token", auditor,
                      "--purpose", "audit", "--out"],
        "states.csv": ["consent", "export", "--token", dpo, "--purpose", "privacy_request",
                       "-o"],
        "chart.html": ["metrics", "--chart"],
    }  # fmt: skip
    before = _audit_records(cdp_env)
    for name, args in commands.items():
        link = tmp_path / name
        link.symlink_to(victim)
        done = _cdp(*args, str(link))
        assert done.returncode == 2, (name, done.stderr)
        assert "symbolic link" in " ".join(done.stderr.split())
        assert victim.read_text() == "precious\n" and link.is_symlink()
        link.unlink()
    assert _audit_records(cdp_env) == before
    fifo = tmp_path / "pipe.md"
    os.mkfifo(fifo)
    done = _cdp(*commands["report.md"], str(fifo))
    assert done.returncode == 2 and "not a regular file" in " ".join(done.stderr.split())
    for name, args in commands.items():  # an existing regular file is replaced
        target = tmp_path / name
        target.write_text("old\n")
        done = _cdp(*args, str(target))
        assert done.returncode == 0, (name, done.stderr)
        assert target.read_text() != "old\n" and not target.is_symlink()
    assert not list(tmp_path.glob(".cdp-*"))
