"""The bulk insert's guard: a value the database cannot store (a NUL in PostgreSQL text, a lone
surrogate anywhere) fails its batch with an error naming the column, never the value, and the
batch's transaction stores nothing. Validation refuses both in every text field, so only a gap in
it could reach here; before the guard such a batch surfaced as an internal error (psycopg's
``DataError``, or a ``UnicodeEncodeError``)."""

from __future__ import annotations

import pytest

from cdp.clock import utcnow
from cdp.errors import InvalidInputError
from cdp.ingest.bulk import insert_tuples
from cdp.ingest.models import SeenMessage
from tests.conftest import CdpEnv
from tests.ingest.helpers import count

_COLUMNS = ("message_id", "kind", "received_at")


@pytest.mark.parametrize("bad", ["m\x00", "m\ud800"], ids=["nul", "surrogate"])
def test_an_unstorable_value_fails_the_batch_naming_its_column(cdp_env: CdpEnv, bad: str) -> None:
    rt = cdp_env.runtime
    table = SeenMessage.__table__  # type: ignore[attr-defined]
    now = utcnow()
    rows = [("fine", "identify", now), (bad, "identify", now)]
    if bad == "m\x00" and cdp_env.backend == "sqlite":  # SQLite text holds a NUL
        with rt.data_engine.begin() as conn:
            insert_tuples(conn, table, _COLUMNS, rows)
        assert count(rt, "seen_messages") == 2
        return
    with pytest.raises(InvalidInputError) as caught, rt.data_engine.begin() as conn:
        insert_tuples(conn, table, _COLUMNS, rows)
    assert caught.value.field == "seen_messages.message_id"
    assert "nothing of this batch was stored" in str(caught.value)
    assert bad not in str(caught.value)
    assert count(rt, "seen_messages") == 0
