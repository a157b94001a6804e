"""What the CLI writes when it does not write to a terminal (a file, a pipe, a log, cron mail):
tables keep every cell whole, an error stays one line, and every file a command writes that names
subjects or holds their data is mode 0600 whatever the umask. Bad paths are usage errors."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from cdp.consent.service import ConsentInput, record_consents
from tests.audit.factories import make_principal
from tests.conftest import CdpEnv
from tests.factories import make_subject

CLI = [sys.executable, "-c", "from cdp.cli import main; main()"]


def _cdp(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real CLI with stdout and stderr on pipes (not a terminal)."""
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        env=env if env is not None else os.environ.copy(),
        check=False,
    )


def test_a_saved_proof_of_consent_keeps_every_cell_whole(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    sid = make_subject(rt, identities={"email": "proof@example.org"})
    when = datetime(2026, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
    record_consents(
        runtime=rt,
        items=[
            ConsentInput(
                subject_id=sid,
                purpose=p,
                status="granted",
                occurred_at=when,
                source="checkout-page-newsletter-box",
                mechanism="checkbox",
                recorded_by="storefront-connector",
                notice_version="2026-04-privacy-notice",
            )
            for p in ("email_marketing", "sms_marketing", "ad_audiences")
        ],
    )
    dpo = make_principal(rt, ["dpo"]).token
    done = _cdp("consent", "show", sid, "--token", dpo, "--purpose", "privacy_request")
    assert done.returncode == 0, done.stderr
    assert "…" not in done.stdout
    assert done.stdout.count("2026-05-01T10:00:00.123456") >= 3
    for whole in ("checkout-page-newsletter-box", "storefront-connector", "2026-04-privacy-notice"):
        assert whole in done.stdout


def test_an_error_is_one_line_on_a_pipe(cdp_env: CdpEnv, tmp_path: Path) -> None:
    deep = tmp_path / ("a-rather-long-directory-name-" * 4) / "home"
    env = {**os.environ, "CDP_HOME": str(deep)}
    env.pop("CDP_MASTER_KEYS", None)
    done = _cdp("keys", "status", env=env)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and re.match(r"^error \(key_error\): ", lines[0]), done.stderr
    assert lines[0] == lines[0].rstrip()


def test_files_naming_subjects_are_private_whatever_the_umask(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    rt = cdp_env.runtime
    make_subject(rt, identities={"email": "mode@example.org"})
    auditor = make_principal(rt, ["auditor"]).token
    dpo = make_principal(rt, ["dpo"]).token
    outputs = {
        "report.md": ["audit", "report", "denied-anomalies", "--token", auditor,
                      "--purpose", "audit", "--out"],
        "states.csv": ["consent", "export", "--token", dpo, "--purpose", "privacy_request",
                       "-o"],
        "chart.html": ["metrics", "--chart"],
    }  # fmt: skip
    old = os.umask(0o022)
    try:
        for name, args in outputs.items():
            done = _cdp(*args, str(tmp_path / name))
            assert done.returncode == 0, (name, done.stderr)
    finally:
        os.umask(old)
    modes = {n: stat.S_IMODE((tmp_path / n).stat().st_mode) for n in outputs}
    # the chart holds aggregates only: it takes the umask like any file
    assert modes == {"report.md": 0o600, "states.csv": 0o600, "chart.html": 0o644}


def test_a_mapping_or_key_file_that_cannot_be_read_is_a_usage_error(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    data = tmp_path / "customers.csv"
    data.write_text("customer_id,email\nc1,c1@example.org\n")
    big = tmp_path / "big.json"
    big.write_text('{"columns": {"a": "' + "x" * (1024 * 1024) + '"}}')
    for mapping, said in ((tmp_path, "cannot be read"), (big, "larger than")):
        done = _cdp("ingest", "customers", str(data), "--mapping", str(mapping))
        assert done.returncode == 2, done.stderr
        assert said in done.stderr and "Traceback" not in done.stderr
    home = tmp_path / "keys-home"
    (home / "master-keys.json").mkdir(parents=True)
    env = {**os.environ, "CDP_HOME": str(home)}
    env.pop("CDP_MASTER_KEYS", None)
    done = _cdp("keys", "status", env=env)
    assert done.returncode == 2, done.stderr
    assert "error (key_error)" in done.stderr and "cannot be read" in done.stderr
    assert "Traceback" not in done.stderr


def test_text_typed_where_a_subject_id_belongs_is_not_echoed(cdp_env: CdpEnv) -> None:
    dpo = make_principal(cdp_env.runtime, ["dpo"]).token
    auth = ["--token", dpo, "--purpose", "privacy_request"]
    for typed in ("jane.synthetic@example.com", "+14155550199"):
        for args in (["consent", "show", typed], ["consent", "withdraw", typed, "email_marketing"]):
            done = _cdp(*args, *auth)
            assert done.returncode == 2, done.stderr
            assert "error (not_found)" in done.stderr and typed not in done.stderr
    unknown = "0" * 32  # shaped like an id: named, as it is the caller's own id
    done = _cdp("consent", "show", unknown, *auth)
    assert done.returncode == 2 and unknown in done.stderr
