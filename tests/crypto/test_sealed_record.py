"""The sealed record: a subject's field ciphertexts packed into one stored value."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdp.access.categories import PII_FIELDS
from cdp.crypto.sealed_record import VAULT_FIELDS, fields_of, mask, pack, unpack
from cdp.errors import DecryptionError
from cdp.ingest.customer_record import CUSTOM_TRAITS_FIELD
from tests.conftest import CdpEnv
from tests.factories import make_subject, read_pii

RECORDS = st.dictionaries(st.sampled_from(VAULT_FIELDS), st.binary(max_size=300))


def test_every_field_the_vault_stores_has_a_number() -> None:
    assert set(VAULT_FIELDS) == set(PII_FIELDS) | {CUSTOM_TRAITS_FIELD}
    assert len(set(VAULT_FIELDS)) == len(VAULT_FIELDS)


@given(record=RECORDS, wanted=st.sets(st.sampled_from(VAULT_FIELDS)))
def test_unpack_gives_back_what_was_packed(record: dict[str, bytes], wanted: set[str]) -> None:
    sealed = pack(record)
    assert unpack(sealed) == record
    assert unpack(sealed, wanted) == {f: b for f, b in record.items() if f in wanted}
    assert set(fields_of(mask(record))) == set(record)


@given(record=RECORDS)
def test_equal_contents_pack_to_equal_bytes_whatever_the_order(record: dict[str, bytes]) -> None:
    assert pack(dict(reversed(list(record.items())))) == pack(record)


@given(record=RECORDS.filter(bool), data=st.data())
def test_a_record_cut_inside_an_entry_is_refused_not_misread(
    record: dict[str, bytes], data: st.DataObject
) -> None:
    sealed = pack(record)
    last = max(record, key=VAULT_FIELDS.index)  # entries are stored in field-number order
    cut = data.draw(st.integers(1, 5 + len(record[last]) - 1))
    with pytest.raises(DecryptionError):
        unpack(sealed[:-cut])


@pytest.mark.parametrize(
    "sealed",
    [b"", b"\x02", b"\x01\x63\x00\x00\x00\x00", b"\x01\x00\x00\x00\x00\x09abc", b"\x01\x00\x00"],
    ids=["empty", "unknown-format", "unknown-field", "overrun", "short-entry"],
)
def test_malformed_records_raise_a_decryption_error_naming_no_content(sealed: bytes) -> None:
    with pytest.raises(DecryptionError) as caught:
        unpack(sealed)
    assert "abc" not in str(caught.value)


def test_the_vault_row_round_trips_through_the_database(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    pii = {"email": "sealed@example.com", "city": "Lyon", "birthday": "1990-02-03"}
    sid = make_subject(rt, pii)
    stored = read_pii(rt, sid)
    assert set(stored) == set(pii)
    assert rt.vault.decrypt_fields(sid, stored) == pii
    # each field is still its own ciphertext, bound to its field: swapping two fails
    swapped = {"email": stored["city"], "city": stored["email"]}
    with pytest.raises(DecryptionError):
        rt.vault.decrypt_fields(sid, swapped)
