"""Batch connectors: bad rows, idempotency, updates, merges, tombstones, formats."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cdp.crypto.normalize import IdentityKind
from cdp.db.models import Identity, Tombstone
from cdp.ingest.pipeline import ingest_file
from cdp.profiles.pii_records import read_one
from tests.conftest import CdpEnv
from tests.ingest.helpers import (
    CUSTOMER_HEADER,
    count,
    customer,
    dump_tables,
    order,
    write_csv,
    write_jsonl,
)


def _pii(env: CdpEnv, customer_id: str) -> dict[str, str]:
    rt = env.runtime
    tok = rt.tokenizer.token(IdentityKind.CUSTOMER_ID, customer_id).value
    with rt.data_engine.connect() as conn:
        sid = conn.execute(
            sa.select(Identity.subject_id).where(Identity.token == tok)  # type: ignore[arg-type]
        ).scalar_one()
        sealed = read_one(conn, sid)
    return rt.vault.decrypt_fields(sid, sealed)


def test_bad_rows_are_rejected_with_line_and_reason_and_the_rest_is_ingested(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    sql = "Robert'); DROP TABLE subjects;--"
    formula = '=HYPERLINK("http://evil","x")'
    rows = [
        customer(1),
        customer(2, email="not-an-email"),  # line 3
        customer(3, birthday="2023-02-30"),  # line 4: impossible date
        customer(4, customer_id="", email="", phone=""),  # line 5: missing id
        customer(5, first_name=sql, last_name=formula),  # stored safely, encrypted
        customer(6, customer_id=formula),  # line 7: an id may not be a formula
        customer(7),
    ]
    path = write_csv(tmp_path / "customers.csv", rows, CUSTOMER_HEADER)
    with path.open("ab") as fh:
        fh.write(b"C00008,big@example.com,,," + b"x" * (10 * 1024 * 1024) + b",,,,,,,,\n")  # 9
        fh.write(b"C00009,u@example.com,,\xff\xfeBad,,,,,,,,,\n")  # line 10: invalid UTF-8
        fh.write(b"C00010,ok10@example.com,,Ten,,,,,,,,,\n")  # line 11
    summary = ingest_file(runtime=cdp_env.runtime, kind="customers", path=path)

    assert summary.read == 10
    assert summary.inserted == 4 and summary.rejected == 6
    assert summary.rejects_path == tmp_path / "customers.csv.rejects.jsonl"
    text = summary.rejects_path.read_text()
    rejects = [json.loads(line) for line in text.splitlines()]
    by_line = {r["line"]: r for r in rejects}
    assert by_line[3]["fields"] == ["email"] and by_line[3]["reason"] == "invalid"
    assert by_line[4]["fields"] == ["birthday"]
    assert by_line[5]["reason"] == "missing_id"
    assert by_line[7]["fields"] == ["customer_id"]
    assert by_line[9]["reason"] == "record_too_large"
    assert by_line[10]["reason"] == "invalid_utf8"
    for secret in ("not-an-email", "2023-02-30", "HYPERLINK", "xxxxxxxx", "Bad"):
        assert secret not in text
    # the injection strings are just data, encrypted; the tables are intact
    assert _pii(cdp_env, "C00005")["first_name"] == sql
    assert _pii(cdp_env, "C00005")["last_name"] == formula
    assert count(cdp_env.runtime, "subjects") == 4
    # no row half-written: every subject has identities and PII
    assert count(cdp_env.runtime, "subjects s", "WHERE NOT EXISTS "
                 "(SELECT 1 FROM identities i WHERE i.subject_id = s.id)") == 0  # fmt: skip
    assert count(cdp_env.runtime, "subjects s", "WHERE NOT EXISTS "
                 "(SELECT 1 FROM pii_records p WHERE p.subject_id = s.id)") == 0  # fmt: skip


def test_bad_orders_negative_total_unknown_currency(cdp_env: CdpEnv, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "orders.jsonl",
        [
            order(1),
            order(2, total="-5.00"),
            order(3, currency="XYZ"),
            order(4, ordered_at="2025-13-01T00:00:00Z"),
            order(5, customer_id=None),
            order(6, currency="JPY", total="1200", items=[{"price": "1200", "quantity": 1}]),
        ],
    )
    summary = ingest_file(runtime=cdp_env.runtime, kind="orders", path=path)
    assert (summary.inserted, summary.rejected) == (2, 4)
    rejects = [json.loads(x) for x in summary.rejects_path.read_text().splitlines()]  # type: ignore[union-attr]
    assert [(r["line"], r["fields"]) for r in rejects] == [
        (2, ["total"]),
        (3, ["currency"]),
        (4, ["ordered_at"]),
        (5, ["record"]),
    ]
    with cdp_env.runtime.data_engine.connect() as conn:
        rows = dict(conn.exec_driver_sql("SELECT order_ref, total_minor FROM orders").all())
        vb = conn.exec_driver_sql("SELECT value_base FROM orders WHERE order_ref='O000006'")
        value_base = vb.scalar_one()
    assert rows == {"O000001": 10050, "O000006": 1200}  # JPY has no minor unit
    assert abs(value_base - 1200 * 0.047) < 1e-6  # default rates: CNY per unit


def test_second_run_of_every_file_changes_nothing(cdp_env: CdpEnv, tmp_path: Path) -> None:
    from cdp.clock import FrozenClock
    from cdp.demo import DEFAULT_END, generate_shop

    shop = generate_shop(tmp_path / "shop", customers=300, orders=1500, seed=3)
    # the day after the shop's last: every record within its retention window, whatever the day
    clock = FrozenClock(datetime.combine(DEFAULT_END + timedelta(days=1), time(), UTC))
    files = {
        "customers": shop.customers,
        "orders": shop.orders,
        "consents": shop.consents,
        "events": shop.events,
    }
    rt = cdp_env.runtime

    def run(kind: str, path: Path) -> Any:
        return ingest_file(runtime=rt, kind=kind, path=path, batch_size=400, clock=clock)

    first = {k: run(k, p) for k, p in files.items()}
    before = dump_tables(rt)
    second = {k: run(k, p) for k, p in files.items()}
    assert dump_tables(rt) == before
    for kind, s in second.items():
        assert (s.inserted, s.updated, s.rejected) == (0, 0, 0), kind
        assert s.duplicates == s.read == first[kind].read, kind
    assert first["orders"].inserted == 1500


def test_changed_values_update_and_absent_values_are_kept(cdp_env: CdpEnv, tmp_path: Path) -> None:
    rt = cdp_env.runtime
    ingest_file(
        runtime=rt,
        kind="customers",
        path=write_csv(tmp_path / "a.csv", [customer(1)], CUSTOMER_HEADER),
    )
    changed = customer(1, city="Shanghai", first_name="")
    s = ingest_file(
        runtime=rt, kind="customers", path=write_csv(tmp_path / "b.csv", [changed], CUSTOMER_HEADER)
    )
    assert (s.updated, s.duplicates, s.inserted) == (1, 0, 0)
    pii = _pii(cdp_env, "C00001")
    assert pii["city"] == "Shanghai" and pii["first_name"] == "Given1"


def test_refund_exported_later_updates_the_order(cdp_env: CdpEnv, tmp_path: Path) -> None:
    rt = cdp_env.runtime
    ingest_file(runtime=rt, kind="orders", path=write_jsonl(tmp_path / "a.jsonl", [order(1)]))
    s = ingest_file(
        runtime=rt,
        kind="orders",
        path=write_jsonl(tmp_path / "b.jsonl", [order(1, status="refunded"), order(1)]),
    )
    assert (s.updated, s.duplicates) == (1, 1)
    with rt.data_engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT status FROM orders").scalar_one() == "refunded"
        assert conn.exec_driver_sql("SELECT count(*) FROM order_items").scalar_one() == 1


def test_tombstoned_identity_is_rejected_as_erased(cdp_env: CdpEnv, tmp_path: Path) -> None:
    rt = cdp_env.runtime
    tok = rt.tokenizer.token(IdentityKind.EMAIL, "person1@example.com")
    with rt.data_engine.begin() as conn:
        conn.execute(
            sa.insert(Tombstone).values(kind="email", token=tok.value, key_version=tok.key_version)
        )
    path = write_csv(tmp_path / "c.csv", [customer(1), customer(2)], CUSTOMER_HEADER)
    s = ingest_file(runtime=rt, kind="customers", path=path)
    assert (s.inserted, s.rejected, s.reasons) == (1, 1, {"erased": 1})
    assert count(rt, "subjects") == 1
    assert count(rt, "identities") == 3  # customer 2's customer_id, email, phone only
    o = ingest_file(
        runtime=rt,
        kind="orders",
        path=write_jsonl(
            tmp_path / "o.jsonl", [order(9, customer_id=None, email="PERSON1@example.com")]
        ),
    )
    assert (o.inserted, o.rejected) == (0, 1)
    assert count(rt, "orders") == 0 and count(rt, "subjects") == 1


def test_gzip_mapping_and_multiline_csv(cdp_env: CdpEnv, tmp_path: Path) -> None:
    text = (
        "Customer Number,E-mail,Given Name,Internal Note\n"
        'C1,a@example.com,"Ann\nMarie",drop me\n'
        "C2,b@example.com,Bob,drop me\n"
    )
    path = tmp_path / "export.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(text)
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"columns": {
        "Customer Number": "customer_id", "E-mail": "email", "Given Name": "first_name",
        "Internal Note": "",
    }}))  # fmt: skip
    s = ingest_file(runtime=cdp_env.runtime, kind="customers", path=path, mapping_path=mapping)
    assert (s.read, s.inserted, s.rejected) == (2, 2, 0)
    pii = _pii(cdp_env, "C1")
    assert pii["first_name"] == "Ann\nMarie" and "custom_traits" not in pii


def test_jsonl_with_a_byte_order_mark_keeps_its_first_record(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    path = tmp_path / "customers.jsonl"
    rows = [customer(1), customer(2)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8-sig")
    s = ingest_file(runtime=cdp_env.runtime, kind="customers", path=path)
    assert (s.read, s.inserted, s.rejected) == (2, 2, 0)
    assert _pii(cdp_env, "C00001")["email"] == "person1@example.com"


def test_custom_traits_are_kept_encrypted(cdp_env: CdpEnv, tmp_path: Path) -> None:
    header = [*CUSTOMER_HEADER, "loyalty_tier"]
    path = write_csv(tmp_path / "c.csv", [customer(1, loyalty_tier="gold")], header)
    ingest_file(runtime=cdp_env.runtime, kind="customers", path=path)
    assert json.loads(_pii(cdp_env, "C00001")["custom_traits"]) == {"loyalty_tier": "gold"}


def test_sources_cli_key_is_shown_once_and_authenticates(cdp_env: CdpEnv) -> None:
    from typer.testing import CliRunner

    from cdp.cli import app
    from cdp.errors import AuthenticationError
    from cdp.ingest.sources import authenticate_source

    runner = CliRunner()
    created = runner.invoke(app, ["sources", "create", "web"])
    assert created.exit_code == 0, created.output
    key = created.output.strip().splitlines()[-1].strip()
    assert authenticate_source(runtime=cdp_env.runtime, write_key=key).name == "web"
    listed = runner.invoke(app, ["sources", "list"])
    assert "web" in listed.output and key not in listed.output
    with cdp_env.runtime.data_engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT write_key_hash FROM sources").scalar_one()
    assert key not in stored and len(stored) == 64
    assert runner.invoke(app, ["sources", "revoke", "web"]).exit_code == 0
    import pytest

    with pytest.raises(AuthenticationError):
        authenticate_source(runtime=cdp_env.runtime, write_key=key)


def test_demo_command_runs_the_steps_in_order(cdp_env: CdpEnv, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cdp.cli import app
    from cdp.demo.pipeline import STEPS, DemoStep, register_step

    seen: list[str] = []
    step = DemoStep("probe", "Probe", lambda ctx: seen.append(str(len(ctx.results["ingest"]))))
    register_step(step)
    try:
        names = [s.name for s in STEPS]
        assert names.index("probe") == names.index("summary") - 1
        result = CliRunner().invoke(
            app, ["demo", "--customers", "40", "--orders", "150", "--out", str(tmp_path / "d")]
        )
        assert result.exit_code == 0, result.output
    finally:
        STEPS.remove(step)
    assert seen == ["4"]
    assert count(cdp_env.runtime, "orders") == 150
    assert "demo finished" in result.output


def test_a_subjects_records_give_one_end_state_in_one_batch_or_one_batch_each(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    """Precedence inside a batch equals precedence across batches: a new subject's row holds
    the earliest created_at as its sign-up date and the latest as profile_as_of, its profile
    the values of the latest record with older records filling gaps; the counts agree too."""
    from datetime import UTC, datetime

    from cdp.clock import FrozenClock

    rt = cdp_env.runtime
    clock = FrozenClock(datetime(2026, 2, 3, tzinfo=UTC))

    def records(group: str) -> list[dict[str, str]]:
        def one(n: int, **over: str) -> dict[str, str]:
            base = customer(n, customer_id=f"{group}{n}", email=f"{group}@example.com", phone="")
            return {**base, "first_name": "", "street": "", "gender": "", "city": "", **over}

        return [
            one(1, created_at="2025-03-01T00:00:00Z", city="Old", first_name="Ann"),
            one(2, created_at="2025-05-01T00:00:00Z", city="New"),
            one(3, created_at="", gender="x"),
            one(4, created_at="2025-01-01T00:00:00Z", city="Earliest", street="Early"),
        ]

    ends = {}
    for group, size in (("X", 50), ("Y", 1)):
        path = write_csv(tmp_path / f"{group}.csv", records(group), CUSTOMER_HEADER)
        s = ingest_file(runtime=rt, kind="customers", path=path, batch_size=size, clock=clock)
        assert (s.inserted, s.updated, s.duplicates, s.merges) == (1, 3, 0, 0), group
        with rt.data_engine.connect() as conn:
            row = conn.execute(
                sa.select(Identity.subject_id).where(  # type: ignore[call-overload]
                    Identity.token
                    == rt.tokenizer.token(IdentityKind.EMAIL, f"{group}@example.com").value
                )
            ).scalar_one()
            subject = conn.exec_driver_sql(
                "SELECT created_at, updated_at, signed_up_at, profile_as_of FROM subjects "
                f"WHERE id = '{row}'"
            ).one()
        pii = _pii(cdp_env, f"{group}1")
        assert pii.pop("email") == f"{group.lower()}@example.com"
        ends[group] = (tuple(subject), pii)
    assert ends["X"] == ends["Y"]
    (_created, _updated, signed_up, as_of), pii = ends["X"]
    assert str(signed_up).startswith("2025-01-01") and str(as_of).startswith("2025-05-01")
    assert (pii["city"], pii["first_name"], pii["street"], pii["gender"]) == (
        "New",
        "Ann",
        "Early",
        "x",
    )


def test_a_null_quantity_is_one_and_zero_is_refused(cdp_env: CdpEnv, tmp_path: Path) -> None:
    """A line item's ``"quantity": null`` was a reject in a file while the Segment API reads it
    as 1 (absent); both read it as 1 now. 0 stays a reject, the key missing stays 1."""
    path = write_jsonl(
        tmp_path / "orders.jsonl",
        [
            order(1, items=[{"price": "100.50", "quantity": None}]),
            order(2, items=[{"price": "100.50"}]),
            order(3, items=[{"price": "100.50", "quantity": 0}]),
        ],
    )
    summary = ingest_file(runtime=cdp_env.runtime, kind="orders", path=path)
    assert (summary.inserted, summary.rejected) == (2, 1)
    with cdp_env.runtime.data_engine.connect() as conn:
        quantities = conn.exec_driver_sql("SELECT quantity FROM order_items").scalars().all()
    assert quantities == [1, 1]
