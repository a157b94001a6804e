"""``cdp segments`` from the command line: ``compute --all`` goes on past a segment it cannot
compute; ``update`` without ``--description`` keeps the description; ``diff --to N`` compares N
with its previous; bad input is exit 2 with an accurate message, never an internal error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from cdp.cli import app
from cdp.clock import FrozenClock
from cdp.jsonio import MAX_DEPTH
from cdp.segments import membership, service
from cdp.segments.models import SegmentVersion
from cdp.segments.views import SegmentIn
from cdp.traits.compute import compute_traits
from tests.audit.factories import make_principal
from tests.conftest import CdpEnv
from tests.traits.factories import add_order, make_subjects, subject_ids

CLI = [sys.executable, "-c", "from cdp.cli import main; main()"]
GOOD = '{"consent": "email_marketing"}'


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    """The real entry point (exit statuses and messages as a user sees them)."""
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=os.environ.copy(), check=False
    )


def test_compute_all_goes_on_past_a_segment_it_cannot_compute(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    for name in ("aaa_huge", "aab_nan", "zzz_fine"):
        data = SegmentIn(name=name, rule={"consent": "analytics"})
        service.create_segment(runtime=rt, data=data, actor="t")
    ver_t = SegmentVersion.__table__  # type: ignore[attr-defined]
    stored = {  # as stored before rules were checked for them
        "aaa_huge": '{"trait":{"name":"total_value","op":"gt","value":' + str(10**30) + "}}",
        "aab_nan": '{"trait":{"name":"total_value","op":"gt","value":NaN}}',
    }
    with rt.data_engine.begin() as conn:
        for name, text in stored.items():
            seg_id = conn.execute(
                sa.text("SELECT id FROM segments WHERE name = :n"), {"n": name}
            ).scalar_one()
            conn.execute(sa.update(ver_t).where(ver_t.c.segment_id == seg_id).values(rule=text))
    done = _run("segments", "compute", "--all")
    assert done.returncode == 2, done.stderr
    err = " ".join(done.stderr.split())  # the console wraps long lines
    assert "aaa_huge: the segment's stored rule is not valid now" in err
    assert "aab_nan: the segment's stored rule is not valid now" in err
    assert "2 of 7 segments not computed" in err
    assert "internal_error" not in err and str(10**30) not in err
    for name in ("win_back", "vip", "zzz_fine"):  # after the bad ones, still computed
        assert f"{name}: " in done.stdout and "members" in done.stdout
    one = _run("segments", "compute", "aaa_huge")
    assert one.returncode == 2 and "update the segment" in " ".join(one.stderr.split())


runner = CliRunner()


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_update_without_description_keeps_it(cdp_env: CdpEnv) -> None:
    _ok(["segments", "create", "d", "--rule", GOOD, "--description", "kept"])
    _ok(["segments", "update", "d", "--rule", '{"consent": "analytics"}'])
    shown = json.loads(_ok(["segments", "show", "d"]))
    assert (shown["version"], shown["description"]) == (2, "kept")
    _ok(["segments", "update", "d", "--rule", '{"consent": "analytics"}', "--description", ""])
    assert json.loads(_ok(["segments", "show", "d"]))["description"] == ""


def test_diff_to_compares_with_the_computation_before(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    now = datetime.now(UTC)
    a, b = subject_ids(2, prefix=0x73)
    with rt.data_engine.begin() as conn:
        make_subjects(conn, [a, b])
        add_order(conn, a, now - timedelta(days=3), 150.0)
    compute_traits(runtime=rt, clock=FrozenClock(now), with_clv=False)
    rule = json.dumps({"trait": {"name": "total_value", "op": "ge", "value": 100}})
    _ok(["segments", "create", "big", "--rule", rule])
    first = membership.compute_segment(runtime=rt, name="big")
    with rt.data_engine.begin() as conn:
        add_order(conn, b, now - timedelta(days=1), 500.0)
    compute_traits(runtime=rt, clock=FrozenClock(now), with_clv=False)
    second = membership.compute_segment(runtime=rt, name="big")
    membership.compute_segment(runtime=rt, name="big")
    token = make_principal(rt, ["marketer"]).token
    auth = ["--token", token, "--purpose", "email_marketing"]
    d = json.loads(_ok(["segments", "diff", "big", "--to", str(second.id), *auth]))
    assert (d["from_computation"], d["to_computation"]) == (first.id, second.id)
    assert (d["added"], d["removed"]) == ([b], [])
    for option in ("--to", "--from"):  # a usage error, not an overflow in the database
        huge = runner.invoke(app, ["segments", "diff", "big", option, str(10**30), *auth])
        assert huge.exit_code == 2, huge.output


def _files(tmp: Path) -> dict[str, str]:
    deep = tmp / "deep.json"
    deep.write_text('{"not":' * 20_000 + "{}" + "}" * 20_000)
    latin = tmp / "latin.json"
    latin.write_bytes('{"consent": "caf\u00e9"}'.encode("latin-1"))
    bom = tmp / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    return {
        "missing": f"@{tmp / 'nonexistent.json'}",
        "dir": f"@{tmp}",
        "deep": f"@{deep}",
        "latin": f"@{latin}",
        "bom": f"@{bom}",
        "zero": "@/dev/zero",  # endless: only the first MiB may be read
    }


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["x", "--rule", "missing"], "the rule file cannot be read: No such file"),
        (["win_back", "--rule", "missing"], "the rule file cannot be read: No such file"),
        (["x", "--rule", "dir"], "the rule file cannot be read: Is a directory"),
        (["x", "--rule", "deep"], f"the rule nests more than {MAX_DEPTH} levels"),
        (["x", "--rule", "latin"], "the rule is not UTF-8 text"),
        (["x", "--rule", "{"], "the rule is not valid JSON"),
        (["x", "--rule", "zero"], "the rule file is larger than 1024 KiB"),
        (["x", "--rule", "[]"], "the rule must be a JSON object"),
        (["x", "--rule", GOOD, "--description", "d" * 600], "description: String should have"),
        (["vip", "--rule", GOOD, "--description", "d" * 600], "description: String should have"),
        (["Bad-Name", "--rule", GOOD], "name must be a lowercase letter"),
        (
            ["x", "--rule", '{"trait":{"name":"clv","op":"gt","value":1' + "0" * 30 + "}}"],
            "invalid rule clause at rule.trait.value: integers must be",
        ),
        (["x", "--rule", '{"orders_in_last_days":{"days":true}}'], "orders_in_last_days.days"),
    ],
)
def test_bad_input_exits_2_with_an_accurate_message(
    cdp_env: CdpEnv, tmp_path: Path, args: list[str], says: str
) -> None:
    files = _files(tmp_path)
    argv = [files.get(a, a) for a in args]
    command = "update" if args[0] in ("win_back", "vip") else "create"  # one reader for both
    done = _run("segments", command, *argv)
    assert done.returncode == 2, done.stderr
    message = " ".join(done.stderr.split())  # the console wraps long lines
    assert says in message, message
    assert "internal_error" not in message and "Traceback" not in message
    if "name" not in says:
        assert "name must" not in message
    assert str(tmp_path) not in message  # the path is not echoed


def test_a_rule_file_with_a_byte_order_mark_is_read(cdp_env: CdpEnv, tmp_path: Path) -> None:
    done = _run("segments", "create", "x", "--rule", _files(tmp_path)["bom"])
    assert done.returncode == 0, done.stderr
