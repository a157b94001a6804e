"""Files cdp writes never go through a link planted where the file is expected: ``cdp generate
--out DIR`` and ``cdp audit checkpoint --out FILE`` refuse a link (exit 2, nothing written), and
the demo's shop files, reports and checkpoint replace a link in the demo's own directory instead
of writing through it. Before, ``cdp generate`` and the demo's reports wrote through a planted
link into its target (the report's target was truncated and made 0600)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from cdp.demo import generate_shop
from cdp.demo.generator import SHOP_FILES
from cdp.demo.steps_access import write_private_text
from tests.conftest import CdpEnv
from tests.crash.helpers import CLI

VICTIM = "someone else's file\n"


def _plant(link: Path, tmp_path: Path) -> Path:
    victim = tmp_path / f"victim-{link.name}"
    victim.write_text(VICTIM)
    victim.chmod(0o644)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(victim)
    return victim


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "300"}
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_generate_refuses_a_planted_link(tmp_path: Path) -> None:
    out = tmp_path / "shop"
    victim = _plant(out / "customers.csv", tmp_path)
    done = _cli("generate", "--customers", "5", "--orders", "5", "--out", str(out))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--out" in done.stderr and "symbolic link" in done.stderr
    assert victim.read_text() == VICTIM
    assert not (out / "orders.jsonl").exists()  # refused before anything was written


def test_generate_into_a_file_is_a_usage_error(tmp_path: Path) -> None:
    out = tmp_path / "a-file"
    out.write_text("x")
    done = _cli("generate", "--customers", "5", "--orders", "5", "--out", str(out))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "not a directory" in done.stderr and "internal_error" not in done.stderr


def test_the_shop_generator_replaces_links_instead_of_writing_through_them(
    tmp_path: Path,
) -> None:
    out = tmp_path / "shop"
    victims = [_plant(out / name, tmp_path) for name in SHOP_FILES]
    shop = generate_shop(out, customers=5, orders=5, seed=1)
    assert [v.read_text() for v in victims] == [VICTIM] * 4
    for path in (shop.customers, shop.orders, shop.consents, shop.events):
        assert not path.is_symlink() and path.stat().st_size > 0
    assert sorted(p.name for p in out.iterdir()) == sorted(SHOP_FILES)  # no temporary left


def test_the_demo_report_writer_replaces_a_link(tmp_path: Path) -> None:
    report = tmp_path / "reports" / "subject-access.html"
    victim = _plant(report, tmp_path)
    write_private_text(report, "<html>report</html>")
    assert victim.read_text() == VICTIM and victim.stat().st_mode & 0o777 == 0o644
    assert not report.is_symlink() and report.read_text() == "<html>report</html>"
    assert report.stat().st_mode & 0o777 == 0o600


def test_checkpoint_refuses_a_planted_link(cdp_env: CdpEnv, tmp_path: Path) -> None:
    out = tmp_path / "checkpoint.json"
    victim = _plant(out, tmp_path)
    done = _cli("audit", "checkpoint", "--out", str(out))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "symbolic link" in done.stderr
    assert out.is_symlink() and victim.read_text() == VICTIM
