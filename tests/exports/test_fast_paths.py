"""The export's fast paths give the same answers as the plain ones: column-selective rows equal
the full row's columns, the joined CSV equals ``csv.writer``, bulk ciphers equal the vault's,
and the recipients ledger written set-based names exactly the subjects whose rows left."""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
from datetime import date

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp.exports import send as send_mod
from cdp.exports.audience_formats import PROFILE_FIELDS, available_formats, get_format
from cdp.exports.decrypt import decrypt_chunk
from cdp.exports.formats.base import CellMemo, remember
from cdp.exports.ledger import recipients_of
from cdp.exports.rows import AudienceRows, PlainRows
from cdp.exports.run import run_export
from cdp.exports.sync import RECIPIENTS
from cdp.exports.writers import FileSink
from cdp.profiles.pii_records import read_one, write_sealed
from tests.exports.conftest import World

TODAY = date(2025, 6, 30)
REGIONS = st.sampled_from(["US", "GB", "DE", "FR", "JP"])
VALUES = st.one_of(
    st.none(),
    st.text(max_size=30),
    st.text("+0123456789 -()", max_size=18),
    st.sampled_from(["John", "Zoë", "Pérez", "London", "CA", "94105-1234", "SW1A 1AA", "f"]),
)
PROFILES = st.fixed_dictionaries(
    {name: VALUES for name in PROFILE_FIELDS if name != "birthday"},
    optional={"birthday": st.one_of(st.none(), st.dates(), st.text(max_size=12))},
)


@settings(max_examples=150, deadline=None)
@given(profiles=st.lists(PROFILES, min_size=1, max_size=6), region=REGIONS, data=st.data())
def test_row_maker_cells_equal_the_full_rows_columns(
    profiles: list[dict[str, str | date | None]], region: str, data: st.DataObject
) -> None:
    for name in available_formats():
        fmt = get_format(name, today=TODAY)
        headers = data.draw(st.lists(st.sampled_from(fmt.headers), min_size=1, unique=True))
        in_order = [h for h in fmt.headers if h in headers]
        make = fmt.row_maker(headers, default_region=region)
        # twice over the same profiles: the second pass answers from the memo
        for profile in itertools.chain(profiles, profiles):
            full = dict(zip(fmt.headers, fmt.row(profile, default_region=region), strict=True))
            assert make(profile) == [full[h] for h in in_order]


def test_row_maker_refuses_unknown_columns() -> None:
    with pytest.raises(ValueError, match="not columns"):
        get_format("meta_custom_audience").row_maker(["email", "Email"], default_region="US")


CELLS = st.one_of(st.text(max_size=8), st.sampled_from(["", ",", '"', "\r", "\n", " a", "x,y"]))


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.lists(CELLS, min_size=1, max_size=4), max_size=6))
def test_csv_fast_join_equals_csv_writer(rows: list[list[str]]) -> None:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    assert FileSink._csv(rows) == buf.getvalue().encode()


def test_bulk_ciphers_match_the_vault_and_leave_the_cache_alone(world: World) -> None:
    rt = world.rt
    ids = [world.person({"email": f"c{i}@example.com", "phone": "+14155550100"}) for i in range(4)]
    rt.vault.forget_cached()
    rt.vault.warm(ids[:1])  # one cached, three not
    ciphers = rt.vault.bulk_keys([*ids, "sub_unknown"])
    assert sorted(ciphers) == sorted(ids)  # unknown subjects are left out
    assert len(rt.vault._cache) == 1  # the bulk read did not fill the cache
    profiles = decrypt_chunk(rt, ids, ["email", "phone"])
    assert profiles == {
        s: {"email": f"c{i}@example.com", "phone": "+14155550100"} for i, s in enumerate(ids)
    }
    rt.vault.shred(ids[2:3])
    assert ids[2] not in decrypt_chunk(rt, ids, ["email"])  # erased meanwhile: skipped


def test_ledger_names_exactly_the_subjects_sent_across_chunks(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(send_mod, "CHUNK", 3)
    sent = [world.person({"email": f"s{i}@example.com"}) for i in range(7)]
    unusable = [world.person({"email": "not an email"}) for _ in range(3)]
    world.destination("meta", "meta", "ad_audiences", ["email"], min_audience=1)
    world.clock.advance(minutes=1)
    result = run_export(
        runtime=world.rt,
        ctx=world.ctx("ad_audiences"),
        segment="everyone",
        destination="meta",
        clock=world.clock,
    )
    assert result.counts.sent == 7 and result.counts.excluded_no_data == 3
    with world.rt.data_engine.connect() as conn:
        ledger = conn.execute(
            sa.select(RECIPIENTS.c.subject_id, RECIPIENTS.c.op).where(
                RECIPIENTS.c.export_id == result.export_id
            )
        ).all()
    assert sorted(ledger) == sorted((s, "add") for s in sent)
    assert all(recipients_of(s, runtime=world.rt) == [] for s in unusable)
    assert [r.export_id for r in recipients_of(sent[0], runtime=world.rt)] == [result.export_id]


def test_a_chunk_decrypts_only_the_wanted_fields_of_each_record(world: World) -> None:
    pii = {
        "email": "w@example.com",
        "phone": "+14155550100",
        "first_name": "Ann",
        "last_name": "Lee",
        "city": "Austin",
        "state": "TX",
        "postal_code": "73301",
        "country": "US",
        "street": "1 Main St",
    }
    sid = world.person(pii)
    wanted = [f for f in pii if f != "street"]
    assert decrypt_chunk(world.rt, [sid], wanted) == {sid: {f: pii[f] for f in wanted}}
    # the street's ciphertext no longer authenticates: reads that skip it are unaffected,
    # which they could not be if it were decrypted along with the rest of the record
    with world.rt.data_engine.begin() as conn:
        sealed = read_one(conn, sid)
        street = sealed["street"]
        sealed["street"] = street[:-1] + bytes([street[-1] ^ 1])
        write_sealed(conn, {sid: sealed}, existing={sid}, now=world.clock())
    assert decrypt_chunk(world.rt, [sid], wanted) == {sid: {f: pii[f] for f in wanted}}
    assert decrypt_chunk(world.rt, [sid], ["email", "street"]) == {}


@settings(max_examples=100, deadline=None)
@given(keys=st.lists(st.integers(0, 40), max_size=200), limit=st.integers(1, 16))
def test_memo_stays_bounded_and_keeps_the_newest_entries(keys: list[int], limit: int) -> None:
    memo: dict[object, object] = {}
    stored: list[int] = []
    for n, key in enumerate(keys):
        if key in memo:  # callers only store what they missed
            continue
        remember(memo, key, n, limit)
        stored.append(key)
        assert len(memo) <= limit
        assert memo[key] == n  # what was just stored is there
    # eviction drops the oldest first: the survivors are the last ones stored, in order
    assert list(memo) == stored[len(stored) - len(memo) :]


@settings(max_examples=100, deadline=None)
@given(keys=st.lists(st.integers(0, 40), max_size=200), limit=st.integers(1, 16))
def test_cell_memo_answers_like_its_maker_and_stays_bounded(keys: list[int], limit: int) -> None:
    made: list[int] = []

    def make(key: int) -> str:
        made.append(key)
        return f"cell-{key}"

    memo = CellMemo(make, limit)
    stored: list[int] = []
    for key in keys:
        missed = key not in memo
        assert memo[key] == f"cell-{key}"
        if missed:
            stored.append(key)
        assert len(memo) <= limit
    assert made == stored  # the maker runs once per miss, never on a hit
    assert list(memo) == stored[len(stored) - len(memo) :]  # oldest dropped first
    assert "cell-" not in repr(memo)  # a repr shows no cells


DIGESTS = st.one_of(st.just(""), st.binary(max_size=8).map(lambda b: hashlib.sha256(b).hexdigest()))


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(st.lists(DIGESTS, min_size=2, max_size=2), max_size=6))
def test_digest_files_are_what_csv_writer_writes(
    rows: list[list[str]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("csv") / "out.csv"
    sink = FileSink(path, ("email", "phone"), fmt="csv", digests_only=True)
    sink.write([str(n) for n in range(len(rows))], rows)
    sink.commit()
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([["email", "phone"], *rows])
    assert path.read_bytes() == buf.getvalue().encode()


def test_only_all_hashed_columns_skip_the_quoting_check() -> None:
    meta = AudienceRows("meta_custom_audience", ["email", "phone"], default_region="US")
    assert meta.digests_only
    google = AudienceRows("google_customer_match", ["email", "country"], default_region="US")
    assert not google.digests_only  # Country is sent in clear
    assert AudienceRows("google_customer_match", ["email"], default_region="US").digests_only
    assert not PlainRows(["email"]).digests_only


def test_dense_chunks_read_as_ranges_give_the_same_keys_and_records(world: World) -> None:
    """Keys and records read as one range of ids (``dense``) equal the per-id reads: subjects
    between the chunk's ids that are not in it are dropped, shredded and unknown subjects are
    left out, and a range holding too many other subjects falls back to the lookups."""
    rt = world.rt
    ids = sorted(world.person({"email": f"d{i}@example.com"}) for i in range(12))
    chunk = ids[1:-1:2]  # every other subject: the range holds as many others as wanted
    rt.vault.shred(chunk[1:2])
    asked = [*chunk, "f" * 32, "0" * 32]  # unknown ids, one at each end of the range
    for fields in (["email"], ["email", "phone"]):
        plain = decrypt_chunk(rt, asked, fields)
        assert decrypt_chunk(rt, asked, fields, dense=True) == plain
        assert sorted(plain) == sorted(s for s in chunk if s != chunk[1])
    assert decrypt_chunk(rt, ids, ["email"], dense=True) == decrypt_chunk(rt, ids, ["email"])
    # sparse: six wanted among the eleven stored between them; a pair among eleven
    assert decrypt_chunk(rt, [ids[0], ids[-1]], ["email"], dense=True) == decrypt_chunk(
        rt, [ids[0], ids[-1]], ["email"]
    )
    store = rt.keystore
    for wanted in (asked, ids, [ids[0], ids[-1]]):
        assert sorted(store.unwrapped(wanted, dense=True)) == sorted(store.unwrapped(wanted))


def test_a_chunk_is_dense_when_its_span_holds_few_other_stored_subjects() -> None:
    from cdp.exports.decrypt import is_dense

    ids = [f"{n * 2**124:032x}" for n in range(16)]  # 1/16 of the id space apart
    assert is_dense(ids, 16)  # about every stored subject lies between them
    assert not is_dense(ids, 160)  # ten times as many: most are not in the chunk
    assert not is_dense(ids[:1], 1) and not is_dense(["sub_a", "sub_b"], 2)
    assert not is_dense(["g" * 32, "h" * 32], 2)
