"""Schema migrations of the data database and the key store, run from code (``cdp init``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

Store = Literal["data", "keystore"]
_VERSION_TABLES = {"data": "alembic_version", "keystore": "alembic_version_keystore"}


def _config(store: Store) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations" / store))
    return cfg


def upgrade(engine: Engine, store: Store, revision: str = "heads") -> None:
    """Bring ``store`` to ``revision`` (idempotent: running it twice changes nothing).

    The default is every head, so that migrations written side by side on separate branches
    from a common parent all apply; a merge revision later joins them."""
    cfg = _config(store)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, store: Store, revision: str) -> None:
    """Take ``store`` back to ``revision`` (each revision's downgrade, newest first)."""
    cfg = _config(store)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def current_revisions(engine: Engine, store: Store) -> tuple[str, ...]:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": _VERSION_TABLES[store]})
        return tuple(sorted(ctx.get_current_heads()))


def current_revision(engine: Engine, store: Store) -> str:
    """The applied revision(s), comma-separated (for display)."""
    return ",".join(current_revisions(engine, store)) or "none"


def head_revisions(store: Store) -> tuple[str, ...]:
    return tuple(sorted(ScriptDirectory.from_config(_config(store)).get_heads()))
