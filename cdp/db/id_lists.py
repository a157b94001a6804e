"""Columns that hold a JSON list of subject ids (webhook dead letters): find the rows naming an id
and rewrite their lists.

Erasure drops the erased ids from such lists (:mod:`cdp.privacy.erasure`); a merge puts the
survivor's id in place of the absorbed one (:mod:`cdp.exports.merge`). Both find the rows the same
way, by the quoted id inside the JSON text, and write the rewritten list back by primary key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection


def rewrite_id_lists(
    conn: Connection,
    table: sa.Table,
    column: str,
    ids: Sequence[str],
    rewrite: Callable[[list[str]], list[str]],
    *,
    where: Sequence[sa.ColumnElement[bool]] = (),
) -> int:
    """Store ``rewrite(list)`` in ``column`` of every row (matching ``where``) whose list names
    one of ``ids``; return how many rows were written. An id's rows are read after the previous
    id's rewrite, so a row naming several ids is written once when the rewrite drops them all."""
    col = table.c[column]
    pk = list(table.primary_key.columns)
    touched = 0
    for sid in ids:
        rows = conn.execute(sa.select(*pk, col).where(*where, col.like(f'%"{sid}"%'))).all()
        for row in rows:
            listed = rewrite(json.loads(row[-1] or "[]"))
            key = [c == row[i] for i, c in enumerate(pk)]
            conn.execute(sa.update(table).where(*key).values({column: json.dumps(listed)}))
            touched += 1
    return touched
