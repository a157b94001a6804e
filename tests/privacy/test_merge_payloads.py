"""A merge re-encrypts the absorbed subject's stored package and pending corrections under the
survivor's key: the absorbed key is destroyed by the merge, and neither may be lost."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from cdp.clock import FrozenClock
from cdp.crypto.normalize import IdentityKind
from cdp.ingest.pipeline import ingest_file
from cdp.privacy import request_filing, request_lifecycle, runner
from cdp.privacy.models import PrivacyPayload
from tests.conftest import CdpEnv
from tests.factories import read_pii
from tests.ingest.helpers import CUSTOMER_HEADER, customer, write_csv
from tests.privacy.test_requests import ctx

PAYLOADS = PrivacyPayload.__table__  # type: ignore[attr-defined]


def _subject(env: CdpEnv, customer_id: str) -> str:
    with env.runtime.data_engine.connect() as conn:
        sid, _ = request_filing.find_subject(
            env.runtime, conn, IdentityKind.CUSTOMER_ID, customer_id
        )
    assert sid is not None
    return sid


def test_the_absorbed_subjects_package_and_corrections_survive_a_merge(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    rt = cdp_env.runtime
    clock = FrozenClock(datetime(2026, 1, 1, tzinfo=UTC))

    def ingest(name: str, rows: list[dict[str, str]]) -> None:
        clock.advance(minutes=1)
        path = write_csv(tmp_path / name, rows, CUSTOMER_HEADER)
        ingest_file(runtime=rt, kind="customers", path=path, clock=clock)

    ingest("c1.csv", [customer(1, phone="")])
    ingest("c2.csv", [customer(2, phone="", city="Porto")])
    older, absorbed = _subject(cdp_env, "C00001"), _subject(cdp_env, "C00002")

    def filed(kind: str, **kw: object) -> str:
        rid = request_filing.create(
            runtime=rt,
            ctx=ctx(),
            type=kind,
            identity_kind="customer_id",
            identity_value="C00002",
            **kw,  # type: ignore[arg-type]
        ).id
        request_lifecycle.verify(runtime=rt, request_id=rid, actor="dpo-1")
        return rid

    access = filed("access")
    runner.run(runtime=rt, ctx=ctx(), request_id=access)
    fix = filed("rectification", corrections={"last_name": "Corrected"})

    ingest("link.csv", [customer(2, email="person1@example.com", phone="", city="")])
    assert _subject(cdp_env, "C00002") == older and not rt.vault.has_key(absorbed)
    with rt.data_engine.connect() as conn:
        owners = set(conn.execute(sa.select(PAYLOADS.c.subject_id)).scalars())
    assert owners == {older}

    package = runner.download_package(runtime=rt, ctx=ctx(), request_id=access).data
    assert package["personal_data"]["city"] == "Porto"  # as produced, before the merge
    done = runner.run(runtime=rt, ctx=ctx(), request_id=fix)
    assert done.status == "completed" and done.subject_id == older
    assert done.outcome == {
        "subject_found": True,
        "rectified_fields": ["last_name"],
        "destinations_to_notify": [],
    }
    values = rt.vault.decrypt_fields(older, read_pii(rt, older))
    assert values["last_name"] == "Corrected"
