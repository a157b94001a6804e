"""A rectification reaches the destinations that hold the person (GDPR art. 19): the request's
outcome lists them, the next export sends the corrected value, and a corrected identifier the
destination matches on is withdrawn with a remove carrying the old value (never the new one to a
destination that did not get it)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cdp.crypto.normalize import IdentityKind
from cdp.exports.formats.hashing import sha256_hex
from cdp.exports.run import ExportResult, run_export
from cdp.privacy import request_filing, request_lifecycle, runner
from cdp.privacy.erasure import erase_subject
from tests.exports.conftest import World
from tests.factories import make_subject
from tests.privacy.test_requests import ctx as dpo

OLD, NEW = "old@example.com", "new@example.com"


def _person(world: World, email: str, first_name: str) -> str:
    sid = make_subject(
        world.rt, {"email": email, "first_name": first_name}, {IdentityKind.EMAIL: email}
    )
    world.consent(sid, ["email_marketing", "ad_audiences"], "granted")
    return sid


def _rectify(world: World, email: str, corrections: dict[str, str]) -> dict[str, Any]:
    rt = world.rt
    view = request_filing.create(
        runtime=rt,
        ctx=dpo(),
        type="rectification",
        identity_kind="email",
        identity_value=email,
        corrections=corrections,
        clock=world.clock,
    )
    request_lifecycle.verify(runtime=rt, request_id=view.id, actor="dpo-1", clock=world.clock)
    world.clock.advance(seconds=5)
    done = runner.run(runtime=rt, ctx=dpo(), request_id=view.id, clock=world.clock)
    assert done.outcome is not None
    return done.outcome


def _rows(result: ExportResult, op: str) -> list[dict[str, str]]:
    paths = [o["path"] for o in result.manifest["outputs"] if o["op"] == op]
    if not paths:
        return []
    with Path(paths[0]).open(newline="") as f:
        return list(csv.DictReader(f))


def _pending(world: World) -> int:
    with world.rt.data_engine.connect() as conn:
        return int(
            conn.execute(sa.text("SELECT count(*) FROM export_rectified_values")).scalar_one()
        )


def test_a_corrected_email_is_listed_resent_and_the_old_one_withdrawn(world: World) -> None:
    dest = world.destination(
        "mail", "csv", "email_marketing", ["email", "first_name"], min_audience=1
    )
    world.destination("names", "csv", "email_marketing", ["first_name"], min_audience=1)
    _person(world, OLD, "Ann")
    for i in range(2):
        _person(world, f"p{i}@example.com", f"P{i}")
    first = world.export_email("mail")
    assert {r["email"] for r in _rows(first, "add")} >= {OLD}
    world.export_email("names")

    outcome = _rectify(world, OLD, {"email": NEW})
    assert outcome["rectified_fields"] == ["email"]
    # the destination that received the email is named; the one that only got names is not
    assert outcome["destinations_to_notify"] == [
        {"destination_id": dest.destination.id, "name": "mail", "kind": "csv", "fields": ["email"]}
    ]
    assert _pending(world) == 1

    second = world.export_email("mail")
    assert _rows(second, "add") == [{"email": NEW, "first_name": "Ann"}]
    assert _rows(second, "remove") == [{"email": OLD, "first_name": ""}]
    assert second.counts.sent == 1 and second.counts.removes_rectified == 1
    assert _pending(world) == 0

    third = world.export_email("mail")  # settled: nothing more for Ann
    assert _rows(third, "add") == [] and _rows(third, "remove") == []
    assert third.counts.unchanged == 3


def test_a_corrected_name_is_resent_without_a_remove(world: World) -> None:
    dest = world.destination(
        "mail", "csv", "email_marketing", ["email", "first_name"], min_audience=1
    )
    _person(world, OLD, "Anne")
    _person(world, "p@example.com", "Pat")
    world.export_email("mail")
    outcome = _rectify(world, OLD, {"first_name": "Ann"})
    assert [d["destination_id"] for d in outcome["destinations_to_notify"]] == [dest.destination.id]
    second = world.export_email("mail")
    assert _rows(second, "add") == [{"email": OLD, "first_name": "Ann"}]
    assert _rows(second, "remove") == []
    assert _pending(world) == 0


def test_a_person_no_longer_eligible_is_withdrawn_by_the_old_value_only(world: World) -> None:
    world.destination("mail", "csv", "email_marketing", ["email", "first_name"], min_audience=1)
    ann = _person(world, OLD, "Ann")
    _person(world, "p@example.com", "Pat")
    world.export_email("mail")
    _rectify(world, OLD, {"email": NEW})
    world.consent(ann, ["email_marketing"], "withdrawn")  # an objection, say
    second = world.export_email("mail")
    assert _rows(second, "add") == []
    # the destination holds the old address: the remove carries it, and never the new one,
    # which the destination was never sent
    assert _rows(second, "remove") == [{"email": OLD, "first_name": "Ann"}]
    assert NEW not in Path(second.manifest["outputs"][0]["path"]).read_text()
    assert _pending(world) == 0


def test_an_ad_platform_gets_the_new_hash_and_a_remove_of_the_old_one(world: World) -> None:
    world.destination("meta-ads", "meta", "ad_audiences", ["email"], min_audience=1)
    _person(world, OLD, "Ann")

    def export() -> ExportResult:
        world.clock.advance(minutes=1)
        return run_export(
            runtime=world.rt,
            ctx=world.ctx("ad_audiences"),
            segment="everyone",
            destination="meta-ads",
            clock=world.clock,
        )

    export()
    outcome = _rectify(world, OLD, {"email": NEW})
    assert [d["name"] for d in outcome["destinations_to_notify"]] == ["meta-ads"]
    second = export()
    assert _rows(second, "add") == [{"email": sha256_hex(NEW)}]
    assert _rows(second, "remove") == [{"email": sha256_hex(OLD)}]


def test_erasure_deletes_the_pending_old_values(world: World) -> None:
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    ann = _person(world, OLD, "Ann")
    world.export_email("mail")
    _rectify(world, OLD, {"email": NEW})
    assert _pending(world) == 1
    outcome = erase_subject(runtime=world.rt, subject_id=ann).as_dict()
    assert outcome["deleted"]["export_rectified_values"] == 1
    assert _pending(world) == 0
