"""``cdp keys orphans``: after a key store older than the data is restored, the data keys of the
people erased since come back; the command finds them (keys whose subject, or whose privacy
request's own payload, is gone from the data database) and destroys them, keeping live keys,
young keys (a batch may still be writing their owners) and refusing a run that would destroy
most of the store. Every key operation of ``cdp keys`` writes an audit record."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from cdp.audit.writer import LOG
from cdp.cli import app as cli_app
from cdp.clock import utcnow
from cdp.crypto.keystore_tables import data_keys
from cdp.db.models import new_subject_id
from cdp.errors import ConflictError, InvalidInputError
from cdp.privacy import request_filing
from cdp.privacy.erasure import erase_subject
from cdp.runtime import Runtime
from tests.conftest import CdpEnv
from tests.factories import make_subject, read_pii
from tests.privacy.test_requests import ctx


def _key_rows(rt: Runtime) -> dict[str, dict[str, Any]]:
    with rt.key_engine.connect() as conn:
        return {r["subject_id"]: dict(r) for r in conn.execute(sa.select(data_keys)).mappings()}


def _restore(rt: Runtime, row: dict[str, Any], *, age: timedelta) -> None:
    """Put a key back as an old key-store backup would (created ``age`` ago)."""
    with rt.key_engine.begin() as conn:
        conn.execute(sa.insert(data_keys).values({**row, "created_at": utcnow() - age}))


def _age(rt: Runtime, ids: list[str], age: timedelta) -> None:
    """Make keys look created ``age`` ago."""
    with rt.key_engine.begin() as conn:
        conn.execute(
            sa.update(data_keys)
            .where(data_keys.c.subject_id.in_(ids))
            .values(created_at=utcnow() - age)
        )


def _orphans(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli_app, ["keys", "orphans", "--json", *args])
    assert result.exit_code == 0, result.output
    out: dict[str, Any] = json.loads(result.stdout)
    return out


def _key_records(rt: Runtime) -> list[dict[str, Any]]:
    with rt.data_engine.connect() as conn:
        return [
            dict(r)
            for r in conn.execute(
                sa.select(LOG).where(LOG.c.resource == "keys").order_by(LOG.c.seq)
            ).mappings()
        ]


def test_the_keys_of_people_erased_since_a_key_store_backup_are_found_and_destroyed(
    cdp_env: CdpEnv,
) -> None:
    rt = cdp_env.runtime
    kept = make_subject(rt, {"email": "kept@example.org"})
    erased = make_subject(rt, {"email": "gone@example.org"})
    early = request_filing.create(  # corrections under the request's own key: a live key
        runtime=rt,
        ctx=ctx(),
        type="rectification",
        identity_kind="email",
        identity_value="early@example.org",
        corrections={"city": "Braga"},
    ).id
    backup = _key_rows(rt)[erased]
    erase_subject(runtime=rt, subject_id=erased)
    _restore(rt, backup, age=timedelta(days=3))  # the old key-store backup is restored
    young = new_subject_id()
    rt.vault.create_keys([young])  # a batch that has not committed its subject yet

    assert _orphans() == {
        "dry_run": True,
        "keys": 4,
        "orphaned": 1,
        "recent_kept": 1,
        "destroyed": 0,
        "wal_cleared": {},
    }
    assert erased in _key_rows(rt)  # counting changes nothing
    assert _key_records(rt) == []

    done = _orphans("--destroy")
    assert (done["orphaned"], done["destroyed"], done["recent_kept"]) == (1, 1, 1)
    left = _key_rows(rt)
    assert erased not in left
    assert {kept, early, young} <= set(left)
    rt.vault.forget_cached()
    assert rt.vault.decrypt_fields(kept, read_pii(rt, kept)) == {"email": "kept@example.org"}
    [record] = _key_records(rt)
    assert (record["action"], record["outcome"]) == ("destroy_orphans", "allowed")
    assert json.loads(record["subject_ids"]) == [erased]
    assert record["principal_id"] == "system:operator"

    # the shortest grace a destroying run takes is an hour; a second run finds nothing
    _age(rt, [young], timedelta(minutes=61))
    assert _orphans("--destroy", "--older-than", "1h")["destroyed"] == 1
    assert _orphans("--destroy", "--older-than", "1h")["orphaned"] == 0
    assert set(_key_rows(rt)) == {kept, early}


@pytest.mark.parametrize("grace", ["0s", "59m", "3599s"])
def test_a_destroying_run_keeps_keys_younger_than_an_hour_whatever_the_grace(
    cdp_env: CdpEnv, grace: str
) -> None:
    """A key is stored just before its owner's rows commit: a grace under an hour could
    destroy the key of an ingestion still in flight."""
    rt = cdp_env.runtime
    make_subject(rt, {"email": "one@example.org"})
    in_flight = new_subject_id()
    rt.vault.create_keys([in_flight])  # its subject row is not committed yet
    _age(rt, [in_flight], timedelta(minutes=2))
    result = CliRunner().invoke(
        cli_app, ["keys", "orphans", "--destroy", "--older-than", grace, "--allow-majority"]
    )
    assert isinstance(result.exception, InvalidInputError), result.output
    assert in_flight in _key_rows(rt) and _key_records(rt) == []
    assert _orphans("--older-than", "0s")["orphaned"] == 1  # counting takes any grace


def test_a_run_that_would_destroy_most_keys_is_refused(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    make_subject(rt, {"email": "one@example.org"})
    strays = [new_subject_id() for _ in range(3)]
    rt.vault.create_keys(strays)  # as if CDP_DATABASE_URL named the wrong database
    _age(rt, strays, timedelta(hours=2))

    result = CliRunner().invoke(cli_app, ["keys", "orphans", "--destroy", "--older-than", "1h"])
    assert isinstance(result.exception, ConflictError), result.output
    assert "3 of the 4" in str(result.exception) and "--allow-majority" in str(result.exception)
    assert len(_key_rows(rt)) == 4 and _key_records(rt) == []

    done = _orphans("--destroy", "--older-than", "1h", "--allow-majority")
    assert done["destroyed"] == 3 and len(_key_rows(rt)) == 1


@pytest.mark.parametrize("bad", ["1y", "-1h", "", "99999999999w"])
def test_a_bad_grace_period_is_refused(cdp_env: CdpEnv, bad: str) -> None:
    result = CliRunner().invoke(cli_app, ["keys", "orphans", "--older-than", bad])
    assert result.exception is not None and result.exit_code != 0


def test_every_key_operation_is_audited(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    make_subject(rt, {"email": "one@example.org"})
    runner = CliRunner()
    for args in (["rotate"], ["rewrap"], ["retire", "1"], ["scrub"]):
        result = runner.invoke(cli_app, ["keys", *args])
        assert result.exit_code in (0, 1), result.output  # scrub: 1 when a reader held the WAL
    actions = [r["action"] for r in _key_records(rt)]
    # rewrap: one record before any key moves, one with its outcome
    assert actions == ["rotate", "rewrap", "rewrap", "retire", "scrub"]
    verify = runner.invoke(cli_app, ["audit", "verify"])
    assert verify.exit_code == 0, verify.output
