"""SQLAlchemy Core statements run straight on the DBAPI cursor, for the read hot path.

SQLAlchemy's execution machinery costs tens of microseconds per statement (execution context,
events, result metadata), more than SQLite itself takes to answer a primary-key lookup. A
:class:`Prepared` statement is compiled once per dialect (the statement stays the single source of
truth for the SQL) and executed on the connection's DBAPI cursor inside the caller's open
transaction; each column still goes through its SQLAlchemy type's result processor, so values come
back exactly as ``Connection.execute`` would return them (e.g. ``UtcDateTime`` as aware UTC).

Only for statements with plain (non-expanding) bound parameters on a positional ``qmark`` driver
(SQLite); anything else goes through ``Connection.execute``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy import Connection, Dialect

Processor = Callable[[Any], Any] | None


class _Compiled(NamedTuple):
    sql: str
    names: tuple[str, ...]
    defaults: dict[str, Any]
    processors: tuple[Processor, ...]


class Prepared:
    """One statement, compiled lazily per dialect, run on the raw cursor where that is safe."""

    def __init__(self, statement: sa.Select[Any]) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled | None] = {}

    def _compile(self, dialect: Dialect) -> _Compiled | None:
        if dialect.name != "sqlite" or dialect.paramstyle != "qmark":
            return None
        compiled = self.statement.compile(dialect=dialect)
        if compiled.post_compile_params or compiled.literal_execute_params:
            return None  # expanding IN and the like are rendered per execution
        processors = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in self.statement.selected_columns
        )
        return _Compiled(
            str(compiled), tuple(compiled.positiontup or ()), dict(compiled.params), processors
        )

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """The statement's rows for ``params``, in ``conn``'s open transaction."""
        dialect = conn.dialect
        if dialect.name not in self._compiled:
            self._compiled[dialect.name] = self._compile(dialect)
        prepared = self._compiled[dialect.name]
        if prepared is None:
            return [tuple(r) for r in conn.execute(self.statement, dict(params))]
        sql, names, defaults, processors = prepared
        values = [params[n] if n in params else defaults[n] for n in names]
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            fetched = cursor.execute(sql, values).fetchall()
        except dialect.loaded_dbapi.Error as exc:  # as Connection.execute would raise it
            raise sa.exc.DBAPIError.instance(
                sql, None, exc, dialect.loaded_dbapi.Error, hide_parameters=True, dialect=dialect
            ) from None
        finally:
            cursor.close()
        if not any(processors):
            return [tuple(r) for r in fetched]
        return [
            tuple(v if p is None else p(v) for p, v in zip(processors, r, strict=True))
            for r in fetched
        ]
