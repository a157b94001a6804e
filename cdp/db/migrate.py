"""Schema migrations of the data database and the key store, run from code (``cdp init``).

Whether a database's schema is the one this code expects is :mod:`cdp.db.revisions`, which
does not import alembic."""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from cdp.db.revisions import Store, current_revisions

__all__ = [
    "Store",
    "current_revision",
    "current_revisions",
    "downgrade",
    "head_revisions",
    "upgrade",
]


def _config(store: Store) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations" / store))
    return cfg


@functools.cache
def _scripts(store: Store) -> ScriptDirectory:
    """The migration scripts of ``store``, read once per process (reading them imports every
    revision's module)."""
    return ScriptDirectory.from_config(_config(store))


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


def current_revision(engine: Engine, store: Store) -> str:
    """The applied revision(s), comma-separated (for display)."""
    return ",".join(current_revisions(engine, store)) or "none"


def head_revisions(store: Store) -> tuple[str, ...]:
    """The revisions the migration scripts bring ``store`` to (``cdp init``), sorted, as
    alembic reads them (:func:`cdp.db.revisions.scripts` reads the same without alembic)."""
    return tuple(sorted(_scripts(store).get_heads()))
