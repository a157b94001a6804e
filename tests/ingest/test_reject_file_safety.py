"""The reject file is written only to a file cdp creates: a symbolic link, a device or a pipe at
its path is refused (exit 2) and left as it is, someone else's file is never truncated or removed,
and the file only replaces its target (by rename) when something was rejected. Before, the path
was opened with truncation through any link and removed after a clean run, whatever it was: a
link planted in a drop folder truncated its target, ``--rejects /dev/null`` as root deleted the
device."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cdp.ingest.pipeline import ingest_file
from tests.conftest import CdpEnv
from tests.ingest.helpers import CUSTOMER_HEADER, count, customer, write_csv

CLI = [sys.executable, "-c", "from cdp.cli import main; main()"]


def _cdp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=os.environ.copy(), check=False,
        timeout=120,  # the old code blocked forever opening a pipe with no reader
    )  # fmt: skip


def _clean(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "customers.csv", [customer(1)], CUSTOMER_HEADER)


def _with_a_reject(tmp_path: Path) -> Path:
    rows = [customer(1), customer(2, email="not-an-email")]
    return write_csv(tmp_path / "customers.csv", rows, CUSTOMER_HEADER)


def _no_temp_files(directory: Path) -> None:
    assert not [p.name for p in directory.iterdir() if p.name.startswith(".cdp-rejects-")]


@pytest.mark.parametrize("rejected", [False, True])
def test_a_link_planted_at_the_default_reject_path_is_refused_and_its_target_kept(
    cdp_env: CdpEnv, tmp_path: Path, rejected: bool
) -> None:
    drop, victim = tmp_path / "drop", tmp_path / "victim"
    drop.mkdir()
    victim.mkdir()
    config = victim / "config.txt"
    config.write_text("precious config\n")
    path = (_with_a_reject if rejected else _clean)(tmp_path)
    path = path.rename(drop / "customers.csv")
    link = drop / "customers.csv.rejects.jsonl"
    link.symlink_to("../victim/config.txt")
    done = _cdp("ingest", "customers", str(path))
    assert done.returncode == 2, done.stderr
    said = " ".join(done.stderr.split())
    assert "cannot write the reject file" in said and "symbolic link" in said
    assert config.read_text() == "precious config\n"
    assert link.is_symlink() and link.readlink() == Path("../victim/config.txt")
    assert count(cdp_env.runtime, "subjects") == 0  # refused before anything was stored
    _no_temp_files(drop)


def test_a_link_named_by_rejects_is_refused(cdp_env: CdpEnv, tmp_path: Path) -> None:
    target = tmp_path / "target.txt"
    target.write_text("keep\n")
    (tmp_path / "link").symlink_to(target)
    path = _with_a_reject(tmp_path)
    done = _cdp("ingest", "customers", str(path), "--rejects", str(tmp_path / "link"))
    assert done.returncode == 2 and "symbolic link" in " ".join(done.stderr.split())
    assert target.read_text() == "keep\n" and (tmp_path / "link").is_symlink()


def test_a_pipe_or_device_named_by_rejects_is_refused_and_kept(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    nodes = [fifo]
    if os.geteuid() == 0:  # a copy of /dev/null (never the real one)
        fake_null = tmp_path / "fake_null"
        os.mknod(fake_null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        nodes.append(fake_null)
    path = _clean(tmp_path)
    for node in nodes:
        done = _cdp("ingest", "customers", str(path), "--rejects", str(node))
        assert done.returncode == 2, done.stderr
        assert "not a regular file" in " ".join(done.stderr.split())
        mode = node.lstat().st_mode
        assert stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)
    assert count(cdp_env.runtime, "subjects") == 0
    _no_temp_files(tmp_path)


def test_a_clean_run_leaves_a_file_that_is_not_a_reject_file_alone(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    important = tmp_path / "important.txt"
    important.write_text("keep\n")
    summary = ingest_file(
        runtime=cdp_env.runtime, kind="customers", path=_clean(tmp_path), rejects_path=important
    )
    assert summary.inserted == 1 and summary.rejects_path is None
    assert important.read_text() == "keep\n"
    _no_temp_files(tmp_path)


def test_rejects_replace_the_named_file_by_rename_never_writing_into_it(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    """A hard link to another file at the path: the other name keeps its content (the old code
    truncated and wrote the shared inode)."""
    precious = tmp_path / "precious.txt"
    precious.write_text("keep\n")
    target = tmp_path / "r.jsonl"
    os.link(precious, target)
    summary = ingest_file(
        runtime=cdp_env.runtime,
        kind="customers",
        path=_with_a_reject(tmp_path),
        rejects_path=target,
    )
    assert summary.rejected == 1 and summary.rejects_path == target
    assert precious.read_text() == "keep\n"
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert [(r["line"], r["reason"]) for r in rows] == [(3, "invalid")]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    _no_temp_files(tmp_path)


def test_a_stale_reject_file_goes_on_a_clean_run_and_a_new_one_replaces_it(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    rt = cdp_env.runtime
    path = _with_a_reject(tmp_path)
    first = ingest_file(runtime=rt, kind="customers", path=path)
    assert first.rejects_path == tmp_path / "customers.csv.rejects.jsonl"
    again = ingest_file(runtime=rt, kind="customers", path=path)  # replaced, not appended
    assert again.rejects_path is not None and len(again.rejects_path.read_text().splitlines()) == 1
    clean = ingest_file(runtime=rt, kind="customers", path=_clean(tmp_path))
    assert clean.rejects_path is None
    assert not (tmp_path / "customers.csv.rejects.jsonl").exists()
    _no_temp_files(tmp_path)
