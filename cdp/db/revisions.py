"""Whether a database's schema is the one this code expects: the migration revisions applied to
it against the heads of the migration scripts, the revisions ``cdp init`` brings it to.

``/readyz`` asks it (:mod:`cdp.health`), and so does every process that opens the runtime
(:func:`cdp.runtime.check_schemas`), once: one small query per database. Neither imports
alembic (its import alone cost a CLI command a few tenths of a second, and reading the scripts
through it runs every one of them): the scripts' ``revision`` and ``down_revision`` are read
from their source, once per process (``tests/db/test_schema.py`` checks them against
alembic's reading).
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import sqlalchemy as sa
from sqlalchemy import Engine

from cdp.db.engine import database_exists

Store = Literal["data", "keystore"]
VERSION_TABLES: Final[dict[Store, str]] = {
    "data": "alembic_version",
    "keystore": "alembic_version_keystore",
}
_SCRIPTS = Path(__file__).parent / "migrations"
_FIRST_DEFINITION = re.compile(r"^(?:async\s+def|def|class)\s", re.MULTILINE)


@dataclass(frozen=True)
class Scripts:
    """The revisions of one store's migration scripts, and their heads (sorted)."""

    revisions: frozenset[str]
    heads: tuple[str, ...]


def _identifiers(source: str) -> dict[str, Any]:
    """A script's module-level ``revision`` and ``down_revision``: parsed from its header (the
    source before its first function or class, where alembic's template puts them), or from
    all of it when they are not there."""
    header = _FIRST_DEFINITION.split(source, maxsplit=1)[0]
    for text in (header, source):
        try:
            body = ast.parse(text).body
        except SyntaxError:  # the header cut through a string: read it all
            continue
        found: dict[str, Any] = {}
        for node in body:
            if isinstance(node, ast.Assign):
                targets, value = node.targets, node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                targets, value = [node.target], node.value
            else:
                continue
            for target in targets:
                if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                    found[target.id] = ast.literal_eval(value)
        if "revision" in found:
            return found
    raise ValueError("a migration script without a module-level `revision`")


@functools.cache
def scripts(store: Store) -> Scripts:
    """``store``'s migration scripts as alembic reads them (each ``versions/*.py`` but
    ``__init__.py``; a head is a revision no other one revises), read once per process."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in sorted((_SCRIPTS / store / "versions").glob("*.py")):
        if path.name.startswith(("__", ".#")):
            continue
        found = _identifiers(path.read_text(encoding="utf-8"))
        revisions.add(found["revision"])
        down = found.get("down_revision")
        revised.update([down] if isinstance(down, str) else (down or ()))
    return Scripts(frozenset(revisions), tuple(sorted(revisions - revised)))


def current_revisions(engine: Engine, store: Store) -> tuple[str, ...]:
    """The revisions applied to ``store``, sorted; none when it has no schema (no version
    table, or an SQLite file not created yet, which asking does not create). One query; read
    without taking SQLite's write lock, so a long ingestion never stalls it."""
    if not database_exists(engine):
        return ()
    table = VERSION_TABLES[store]
    conn = engine.connect().execution_options(sqlite_begin="DEFERRED")
    with conn:
        try:
            found = conn.execute(sa.text(f"SELECT version_num FROM {table}")).scalars()  # noqa: S608
            return tuple(sorted(found))
        except sa.exc.DBAPIError:
            conn.rollback()  # (PostgreSQL: the failed statement ended the transaction)
            if sa.inspect(conn).has_table(table):
                raise  # not a missing table: the database's own error
            return ()


@dataclass(frozen=True)
class SchemaState:
    """Where a database's schema is, against this code's migration scripts."""

    store: Store
    applied: tuple[str, ...]

    @property
    def heads(self) -> tuple[str, ...]:
        return scripts(self.store).heads

    @property
    def at_heads(self) -> bool:
        """The schema is the one this code expects."""
        return self.applied == self.heads

    @property
    def unknown(self) -> tuple[str, ...]:
        """Applied revisions this code has no migration for (a newer release's, or another
        application's): ``cdp init`` cannot take the schema anywhere from them."""
        known = scripts(self.store).revisions
        return tuple(rev for rev in self.applied if rev not in known)


def schema_state(engine: Engine, store: Store) -> SchemaState:
    """Where ``store``'s schema is (a database error, e.g. an unreachable server, is raised)."""
    return SchemaState(store, current_revisions(engine, store))
