"""``cdp keys``: rotate, rewrap, retire and inspect key-encryption keys; scrub; destroy
orphaned data keys.

Like ``cdp init``, these run with direct access to the installation (no token); every command
that changes keys writes one audit record (:mod:`cdp.audit.operations`) naming this host.
"""

from __future__ import annotations

import json
from datetime import timedelta

import typer
from rich.table import Table

from cdp.cli.root import app, console
from cdp.clock import utcnow
from cdp.runtime import get_runtime

keys_app = typer.Typer(
    help="Key-encryption keys: rotate, rewrap, retire, status; scrub; destroy orphaned data keys."
)
app.add_typer(keys_app, name="keys")


@keys_app.command("status")
def status() -> None:
    """Show each KEK version, its state (current, old, superseded, retired) and how many DEKs
    it wraps."""
    from cdp.crypto.key_checks import mismatches, secrets_in_use_for
    from cdp.exports.secret_rotation import secrets_per_version
    from cdp.runtime import open_runtime
    from cdp.settings import get_settings

    rt = open_runtime(get_settings(), check_keys=False)  # show a mismatch rather than fail on it
    problems = mismatches(
        rt.key_engine, rt.provider.material, secrets_in_use=secrets_in_use_for(rt.data_engine)
    )
    secrets = secrets_per_version(rt)
    table = Table("version", "state", "created", "data keys", "webhook secrets", "wraps used")
    lost = []
    for s in rt.keystore.status():
        state = s.state
        held = secrets.get(s.version, 0)
        table.add_row(
            str(s.version), state, s.created_at[:19], str(s.deks), str(held), str(s.wraps)
        )
        if s.retired and s.deks:
            lost.append(f"{s.deks} data keys are wrapped under retired version {s.version}")
        if s.retired and held:
            lost.append(f"{held} webhook secrets are wrapped under retired version {s.version}")
    console.print(table)
    console.print(f"usage bound per version: {rt.settings.kek_max_wraps} wraps")
    for line in lost:  # only a release before this check could store them: they cannot unwrap
        console.print(f"warning: {line} and cannot be unwrapped")
    shared = rt.key_file.shared_mode()
    if shared is not None:
        console.print(
            f"warning: the key file {rt.key_file.path} is mode {shared:o}: other users may read "
            "it; run `chmod 600` on it"
        )
    for line in problems:
        console.print(f"error: {line}")
    if problems:
        console.print(
            "error: the key file does not belong to this key store: restore the newest key file "
            "(see 'Lost key file or key store' in docs/operations.md)"
        )
        raise typer.Exit(1)


@keys_app.command("rotate")
def rotate() -> None:
    """Add a new KEK version and make it current (old data keys stay readable)."""
    from cdp.cli.access import record_cli_operation
    from cdp.crypto.key_checks import rotate_kek

    rt = get_runtime()
    version = rotate_kek(rt.key_engine, rt.provider)
    record_cli_operation(rt, action="rotate", resource="keys")
    console.print(f"KEK version {version} is now current; run `cdp keys rewrap` to move old keys")


@keys_app.command("rewrap")
def rewrap(
    batch_size: int = typer.Option(1000, min=1, help="Data keys re-wrapped per transaction."),
) -> None:
    """Re-wrap every data key under the current KEK version, without touching the data.

    Older versions are closed first: no process stores a new data key under them afterwards."""
    from cdp.cli.access import record_cli_operation
    from cdp.exports.secret_rotation import rewrap_secrets

    rt = get_runtime()
    rt.provider.reload()
    target = f"kek_version:{rt.provider.current_version()}"
    # recorded before any key moves (a run killed part-way is on record), and its outcome after
    record_cli_operation(rt, action="rewrap", resource="keys", fields=("stage:started", target))
    try:
        done = rt.keystore.rewrap(batch_size=batch_size)
        secrets = rewrap_secrets(rt)
    except Exception as exc:
        failed = ("stage:failed", target, f"error:{type(exc).__name__}")
        record_cli_operation(rt, action="rewrap", resource="keys", fields=failed)
        raise
    completed = ("stage:completed", target, f"data_keys:{done}", f"webhook_secrets:{secrets}")
    record_cli_operation(rt, action="rewrap", resource="keys", fields=completed)
    console.print(
        f"re-wrapped {done} data keys and {secrets} webhook signing secrets under KEK version "
        f"{rt.provider.current_version()}"
    )


@keys_app.command("retire")
def retire(version: int = typer.Argument(..., help="The KEK version to destroy.")) -> None:
    """Destroy an old KEK version; refused while any data key is still wrapped under it.

    The key store refuses new data keys under the version from then on, in every process."""
    from cdp.cli.access import record_cli_operation
    from cdp.exports.secret_rotation import secrets_per_version

    rt = get_runtime()
    # the secrets are counted under the version's lock, after the key store has marked it
    # retired: a secret wrapped meanwhile is either counted or re-wrapped under the current one
    destroyed = rt.keystore.retire(
        version, secrets_in_use=lambda v: secrets_per_version(rt).get(v, 0)
    )
    record_cli_operation(rt, action="retire", resource="keys")
    if destroyed:
        console.print(f"KEK version {version} retired and its key material destroyed")
    else:
        console.print(
            f"KEK version {version} retired in the key store: no data key can be wrapped under it "
            "any more. Its key is in CDP_MASTER_KEYS, which cdp cannot change: remove it there "
            "and deploy that to every process"
        )


@keys_app.command("scrub")
def scrub(
    rebuild: bool = typer.Option(
        False,
        "--vacuum",
        help="First rebuild the SQLite key store file (VACUUM): once, after upgrading a key "
        "store that earlier releases wrote without secure_delete.",
    ),
) -> None:
    """Leave no old copy of destroyed keys or erased rows in the SQLite files: checkpoint and
    truncate the WAL of the key store and of the data database, as every erasure does."""
    from cdp.cli.access import record_cli_operation
    from cdp.crypto.scrub import vacuum
    from cdp.privacy.erasure_steps import clear_wals

    rt = get_runtime()
    if rebuild:
        if rt.key_engine.dialect.name != "sqlite":
            console.print("the key store is not SQLite: nothing to rebuild (see operations.md)")
        else:
            vacuum(rt.key_engine)
            console.print("key store file rebuilt from its live keys")
    cleared = clear_wals(rt)
    record_cli_operation(rt, action="scrub", resource="keys")
    if not cleared:
        console.print("no SQLite database: no WAL to clear")
    for name, done in cleared.items():
        if done:
            console.print(f"{name}: WAL cleared")
        else:
            console.print(f"{name}: WAL not cleared (a reader held an older snapshot); run again")
    if not all(cleared.values()):
        raise typer.Exit(1)


@keys_app.command("orphans")
def orphans(
    destroy: bool = typer.Option(
        False, "--destroy", help="Destroy the orphaned keys (without it: only count them)."
    ),
    older_than: str = typer.Option(
        "24h",
        "--older-than",
        help="Only keys created longer ago than this (3600s, 90m, 12h, 30d, 2w): a younger key "
        "may belong to a batch still being written. At least 1h with --destroy.",
    ),
    allow_majority: bool = typer.Option(
        False,
        "--allow-majority",
        help="Destroy even when more than half of all keys have no owner (refused otherwise: "
        "that is what a wrong CDP_DATABASE_URL looks like).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
) -> None:
    """Find data keys whose owner is gone from the data database — after restoring a key-store
    backup older than the data, the keys of everyone erased since — and with --destroy destroy
    them. Counts only; ids are never printed."""
    from cdp.cli.access import cli_client
    from cdp.cli.durations import parse_duration
    from cdp.privacy.orphan_keys import destroy_orphans

    grace = parse_duration(
        older_than, option="--older-than", most=timedelta(days=3650), too_long="at most 3650d"
    )
    rt = get_runtime()
    report = destroy_orphans(
        rt,
        now=utcnow(),
        older_than=grace,
        client=cli_client(),
        dry_run=not destroy,
        allow_majority=allow_majority,
    )
    if as_json:
        typer.echo(json.dumps(report.as_dict(), sort_keys=True))
        return
    console.print(
        f"{report.keys} data keys; {report.orphaned} without an owner, created over "
        f"{older_than} ago; {report.recent} without an owner but younger (kept)"
    )
    if not destroy:
        if report.orphaned:
            console.print("run again with --destroy to destroy them")
        return
    console.print(f"destroyed {report.destroyed} orphaned data keys")
    for name, done in report.wal_cleared.items():
        if not done:
            console.print(
                f"{name}: WAL not cleared (a reader held an older snapshot); run `cdp keys scrub`"
            )
