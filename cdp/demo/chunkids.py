"""Identifiers of the customers of one chunk, pre-rendered for the byte writers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from cdp.demo import fastfmt as ff

U8 = NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class ChunkIds:
    """Per customer of a chunk: its id, and the JSON members that name it in a record."""

    ids: list[str]
    """``C000001`` style customer ids."""
    id_rows: U8
    """The same ids as byte rows."""
    who: U8
    """For orders: rows 0..n-1 ``"customer_id": "C..."``, rows n..2n-1 ``"email": "..."``."""
    actor: U8
    """For events: rows 0..n-1 ``"customer_id": "C..."``, rows n..2n-1
    ``"anonymous_id": "anon-..."`` (a device id that does not reveal the customer)."""

    @classmethod
    def build(
        cls, numbers: NDArray[np.int64], width: int, salt: int, emails: list[str] | None = None
    ) -> ChunkIds:
        """Render the identifiers of customers numbered `numbers` (1-based)."""
        n = len(numbers)
        id_rows = ff.join(["C", ff.digits(numbers, width)], n)
        if emails is None:
            return cls(ids=ff.lines([id_rows], n), id_rows=id_rows, who=id_rows, actor=id_rows)
        mixed = (numbers.astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9)) ^ np.uint64(salt)
        device = [f"{v:016x}" for v in mixed.tolist()]
        clean = [e.strip().lower() for e in emails]
        by_id = ff.join(['"customer_id": "', id_rows, '"'], n)
        who = ff.stack([by_id, ff.join(['"email": "', ff.strings(clean), '"'], n)])
        actor = ff.stack([by_id, ff.join(['"anonymous_id": "anon-', ff.strings(device), '"'], n)])
        return cls(ids=ff.lines([id_rows], n), id_rows=id_rows, who=who, actor=actor)
