"""``cdp keys``: rotate, rewrap, retire and inspect key-encryption keys."""

from __future__ import annotations

import typer
from rich.table import Table

from cdp.cli.root import app, console
from cdp.runtime import get_runtime

keys_app = typer.Typer(help="Key-encryption keys: rotate, rewrap, retire, status; scrub.")
app.add_typer(keys_app, name="keys")


@keys_app.command("status")
def status() -> None:
    """Show each KEK version, whether it is current or retired, and how many DEKs it wraps."""
    rt = get_runtime()
    table = Table("version", "state", "created", "data keys", "wraps used")
    lost = []
    for s in rt.keystore.status():
        state = "current" if s.current else ("retired" if s.retired else "old")
        table.add_row(str(s.version), state, s.created_at[:19], str(s.deks), str(s.wraps))
        if s.retired and s.deks:
            lost.append(f"{s.deks} data keys are wrapped under retired version {s.version}")
    console.print(table)
    console.print(f"usage bound per version: {rt.settings.kek_max_wraps} wraps")
    for line in lost:  # only a release before this check could store them: they cannot unwrap
        console.print(f"warning: {line} and cannot be unwrapped")


@keys_app.command("rotate")
def rotate() -> None:
    """Add a new KEK version and make it current (old data keys stay readable)."""
    rt = get_runtime()
    version = rt.provider.rotate()
    console.print(f"KEK version {version} is now current; run `cdp keys rewrap` to move old keys")


@keys_app.command("rewrap")
def rewrap(
    batch_size: int = typer.Option(1000, min=1, help="Data keys re-wrapped per transaction."),
) -> None:
    """Re-wrap every data key under the current KEK version, without touching the data.

    Older versions are closed first: no process stores a new data key under them afterwards."""
    rt = get_runtime()
    done = rt.keystore.rewrap(batch_size=batch_size)
    console.print(f"re-wrapped {done} data keys under KEK version {rt.provider.current_version()}")


@keys_app.command("retire")
def retire(version: int = typer.Argument(..., help="The KEK version to destroy.")) -> None:
    """Destroy an old KEK version; refused while any data key is still wrapped under it.

    The key store refuses new data keys under the version from then on, in every process."""
    rt = get_runtime()
    if rt.keystore.retire(version):
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
    from cdp.crypto.scrub import vacuum
    from cdp.privacy.erasure import clear_wals

    rt = get_runtime()
    if rebuild:
        if rt.key_engine.dialect.name != "sqlite":
            console.print("the key store is not SQLite: nothing to rebuild (see operations.md)")
        else:
            vacuum(rt.key_engine)
            console.print("key store file rebuilt from its live keys")
    cleared = clear_wals(rt)
    if not cleared:
        console.print("no SQLite database: no WAL to clear")
    for name, done in cleared.items():
        if done:
            console.print(f"{name}: WAL cleared")
        else:
            console.print(f"{name}: WAL not cleared (a reader held an older snapshot); run again")
    if not all(cleared.values()):
        raise typer.Exit(1)
