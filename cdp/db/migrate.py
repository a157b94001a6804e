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


def upgrade(engine: Engine, store: Store, revision: str = "head") -> None:
    """Bring ``store`` to ``revision`` (idempotent: running it twice changes nothing)."""
    cfg = _config(store)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current_revision(engine: Engine, store: Store) -> str | None:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": _VERSION_TABLES[store]})
        return ctx.get_current_revision()


def head_revision(store: Store) -> str | None:
    return ScriptDirectory.from_config(_config(store)).get_current_head()
