"""A merge carries the absorbed subject's export history (recipients ledger, sync state) over to
the survivor: erasure and the access package find the destination, and the next export neither
re-adds the person nor counts the absorbed id as an unresolvable remove."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from cdp.crypto.normalize import IdentityKind
from cdp.db.models import Identity
from cdp.exports.ledger import destinations_of, recipients_of
from cdp.exports.sync import SYNC
from cdp.ingest.pipeline import ingest_file
from cdp.privacy.access_package import build
from cdp.privacy.erasure import erase_subject
from tests.exports.conftest import World
from tests.ingest.helpers import CUSTOMER_HEADER, customer, write_csv


def _ingest(world: World, path: Path, rows: list[dict[str, str]]) -> int:
    world.clock.advance(minutes=1)
    summary = ingest_file(
        runtime=world.rt,
        kind="customers",
        path=write_csv(path, rows, CUSTOMER_HEADER),
        clock=world.clock,
    )
    return summary.merges


def _customer(world: World, tmp_path: Path, n: int) -> str:
    """Customer ``n`` as a new subject (email person<n>@example.com); returns its id."""
    _ingest(world, tmp_path / f"c{n}.csv", [customer(n, phone="")])
    tok = world.rt.tokenizer.token(IdentityKind.CUSTOMER_ID, f"C{n:05d}").value
    with world.rt.data_engine.connect() as conn:
        return str(
            conn.execute(
                sa.select(Identity.subject_id).where(  # type: ignore[call-overload]
                    Identity.token == tok
                )
            ).scalar_one()
        )


def _link(world: World, tmp_path: Path) -> None:
    """A record naming customer 2 with customer 1's email: the two subjects merge."""
    row = customer(2, email="person1@example.com", phone="", city="")
    assert _ingest(world, tmp_path / "link.csv", [row]) == 1


def _synced(world: World) -> list[str]:
    with world.rt.data_engine.connect() as conn:
        return sorted(conn.execute(sa.select(SYNC.c.subject_id)).scalars())


def _recipient_ids(world: World) -> list[str]:
    with world.rt.data_engine.connect() as conn:
        return sorted(
            conn.execute(sa.text("SELECT DISTINCT subject_id FROM export_recipients")).scalars()
        )


def test_the_absorbed_subjects_export_follows_it_into_the_survivor(
    world: World, tmp_path: Path
) -> None:
    rt = world.rt
    older = _customer(world, tmp_path, 1)  # survives the merge, never exported itself
    exported = _customer(world, tmp_path, 2)  # exported, then absorbed
    world.consent(exported, ["email_marketing"], "granted")
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    first = world.export_email()
    assert first.counts.sent == 1 and _synced(world) == [exported]

    _link(world, tmp_path)
    assert _synced(world) == [older]
    assert _recipient_ids(world) == [older]
    [rec] = recipients_of(older, runtime=rt)
    assert (rec.export_id, rec.destination_name, rec.op) == (first.export_id, "mail", "add")
    assert destinations_of(older, runtime=rt) == ["mail"]
    with rt.data_engine.connect() as conn:
        package = build(
            runtime=rt,
            conn=conn,
            subject_id=older,
            request_id="pr_" + "0" * 24,
            generated_at=world.clock(),
        )
    (section,) = [s for s in package["recipients"] if s["table"] == "export_recipients"]
    assert [row["export_id"] for row in section["rows"]] == [first.export_id]

    # the next run: the person is already there, nothing to add or withdraw
    c = world.export_email().counts
    assert (c.members, c.unchanged, c.sent, c.removed, c.removes_unresolvable) == (1, 1, 0, 0, 0)
    assert c.adds_up() and _synced(world) == [older]

    outcome = erase_subject(runtime=rt, subject_id=older, clock=world.clock)
    assert [d["name"] for d in outcome.destinations] == ["mail"]
    assert _synced(world) == [] and _recipient_ids(world) == []


def test_both_synced_keep_one_row_and_the_ledger_keeps_the_disclosure(
    world: World, tmp_path: Path
) -> None:
    """Both subjects at the destination: one sync row stays. In one export the survivor was
    withdrawn while the absorbed one was added: the merged ledger row is the ``add``."""
    rt = world.rt
    older = _customer(world, tmp_path, 1)
    newer = _customer(world, tmp_path, 2)
    world.consent(older, ["email_marketing"], "granted")
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    first = world.export_email()  # older added
    world.consent(older, ["email_marketing"], "withdrawn")
    world.consent(newer, ["email_marketing"], "granted")
    second = world.export_email()  # older removed, newer added: one export, both subjects
    assert (second.counts.sent, second.counts.removed) == (1, 1)
    world.consent(older, ["email_marketing"], "granted")
    third = world.export_email()  # older added again: both synced
    assert third.counts.sent == 1 and _synced(world) == sorted([older, newer])

    _link(world, tmp_path)
    assert _synced(world) == [older]
    assert _recipient_ids(world) == [older]
    assert [(r.export_id, r.op) for r in recipients_of(older, runtime=rt)] == [
        (first.export_id, "add"),
        (second.export_id, "add"),
        (third.export_id, "add"),
    ]
    c = world.export_email().counts
    assert (c.members, c.unchanged, c.sent, c.removed, c.removes_unresolvable) == (1, 1, 0, 0, 0)
    assert _synced(world) == [older]


def test_a_dead_letter_names_the_survivor_after_a_merge(world: World, tmp_path: Path) -> None:
    """A dead-lettered webhook batch lists its subjects; after a merge it must list the survivor
    (left on the absorbed id, the survivor's erasure did not scrub it: an id of the person
    stayed in the table, and the batch named a subject that no longer exists)."""
    import json

    from cdp.exports.models import WebhookDelivery

    deliveries = WebhookDelivery.__table__  # type: ignore[attr-defined]
    older = _customer(world, tmp_path, 1)
    absorbed = _customer(world, tmp_path, 2)
    other = "f" * 32
    world.consent(absorbed, ["email_marketing"], "granted")
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    export_id = world.export_email().export_id
    now = world.clock()
    with world.rt.data_engine.begin() as conn:
        for seq, ids in enumerate(([absorbed, other], [older, absorbed], [other])):
            conn.execute(
                sa.insert(deliveries).values(
                    export_id=export_id, seq=seq, op="add", idempotency_key=f"k{seq}",
                    status="dead_letter", attempts=3, rows=len(ids),
                    subject_ids=json.dumps(ids), created_at=now, finished_at=now,
                )
            )  # fmt: skip

    def lists() -> list[list[str]]:
        with world.rt.data_engine.connect() as conn:
            rows = conn.execute(sa.select(deliveries.c.subject_ids).order_by(deliveries.c.seq))
            return [json.loads(r[0]) for r in rows]

    _link(world, tmp_path)
    assert lists() == [[older, other], [older], [other]]
    erase_subject(runtime=world.rt, subject_id=older)
    assert lists() == [[other], [], [other]]
