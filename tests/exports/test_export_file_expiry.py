"""Export files are a hand-off, not a store: retention deletes the files an export wrote
(adds, removes, the manifest file) ``CDP_EXPORT_FILE_DAYS`` after the run, and nothing else.

The bug: the plaintext CSV of an erased person stayed under ``CDP_EXPORT_DIR`` for ever; neither
erasure nor retention touched that directory.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from typer.testing import CliRunner

from cdp.cli import app
from cdp.clock import FrozenClock
from cdp.exports.outputs import export_dir
from cdp.exports.records import get_export
from cdp.privacy.erasure import erase_subject
from cdp.privacy.retention import run_retention
from tests.audit.factories import make_principal
from tests.exports.conftest import World

EMAIL = "gone.person@example.org"
DAY = timedelta(days=1)


def _export(world: World) -> tuple[str, list[Path]]:
    """One CSV export of a consenting person; its id and the files it wrote."""
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    sid = world.person({"email": EMAIL})
    result = world.export_email()
    files = [Path(o["path"]) for o in result.manifest["outputs"]]
    files.append(files[0].parent / f"{result.export_id}.manifest.json")
    assert all(f.is_file() for f in files) and EMAIL in files[0].read_text()
    world.sid = sid  # type: ignore[attr-defined]
    return result.export_id, files


def _at(world: World, days: float) -> FrozenClock:
    return FrozenClock(world.clock() + timedelta(days=days))


def test_retention_deletes_an_exports_files_once_past_the_window_and_nothing_else(
    world: World,
) -> None:
    rt = world.rt
    export_id, files = _export(world)
    assert rt.settings.export_file_days == 7
    others = [
        files[0].parent / "notes.csv",  # written by someone else beside the exports
        export_dir(rt) / "README.txt",
        files[0].parent / f"{export_id}.csv.bak",  # named like ours, never recorded
    ]
    for other in others:
        other.write_text(EMAIL)

    young = run_retention(runtime=rt, clock=_at(world, 6.9))
    assert young.export_files == 0 and all(f.is_file() for f in files)
    assert get_export(runtime=rt, export_id=export_id).files_deleted_at is None

    dry = run_retention(runtime=rt, clock=_at(world, 8), dry_run=True)
    assert dry.export_files == len(files) and dry.as_dict()["export_files"] == len(files)
    assert all(f.is_file() for f in files)

    done = run_retention(runtime=rt, clock=_at(world, 8))
    assert done.export_files == len(files)
    assert not any(f.exists() for f in files)
    assert all(o.read_text() == EMAIL for o in others)
    view = get_export(runtime=rt, export_id=export_id)
    assert view.files_deleted_at == world.clock() + 8 * DAY
    assert view.manifest is not None and view.manifest["export_id"] == export_id  # kept in the DB
    assert run_retention(runtime=rt, clock=_at(world, 9)).export_files == 0


def test_a_link_planted_at_an_output_path_is_not_followed(world: World, tmp_path: Path) -> None:
    rt = world.rt
    export_id, files = _export(world)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    files[0].unlink()
    files[0].symlink_to(victim)

    dry = run_retention(runtime=rt, clock=_at(world, 8), dry_run=True)
    assert dry.export_files == len(files) - 1
    done = run_retention(runtime=rt, clock=_at(world, 8))
    assert done.export_files == len(files) - 1
    assert victim.read_text() == "keep me"
    assert files[0].is_symlink()  # left alone: cdp did not write it
    assert not any(f.exists() for f in files[1:])
    assert get_export(runtime=rt, export_id=export_id).files_deleted_at is not None


def test_cdp_retention_run_deletes_old_export_files_and_export_show_says_so(world: World) -> None:
    rt = world.rt
    export_id, files = _export(world)  # on 2026-11-01: older than 7 days from now on
    admin = make_principal(rt, ["admin"]).token
    auth = ["--token", admin, "--purpose", "operations"]
    runner = CliRunner()
    dry = runner.invoke(app, ["retention", "run", "--dry-run", *auth])
    assert dry.exit_code == 0, dry.output
    assert "export files" in dry.output and all(f.is_file() for f in files)
    result = runner.invoke(app, ["retention", "run", *auth])
    assert result.exit_code == 0, result.output
    assert "export files" in result.output
    assert not any(f.exists() for f in files)
    marketer = make_principal(rt, ["marketer"]).token
    shown = runner.invoke(
        app, ["export", "show", export_id, "--token", marketer, "--purpose", "marketing"]
    )
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["files_deleted_at"] is not None


def test_erasure_outcome_names_the_export_files_that_still_hold_the_person(world: World) -> None:
    rt = world.rt
    _export(world)
    outcome = erase_subject(runtime=rt, subject_id=world.sid).as_dict()  # type: ignore[attr-defined]
    assert [d["name"] for d in outcome["destinations_to_notify"]] == ["mail"]
    assert outcome["export_files_kept_days"] == rt.settings.export_file_days
