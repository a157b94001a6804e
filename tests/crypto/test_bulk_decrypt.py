"""Bulk paths of the vault give the per-subject answers: ``decrypt_records`` equals each subject's
``decrypt_many`` and fails closed per subject; ``unwrap_many`` equals ``unwrap``."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp.crypto.cipher import SubjectCipher
from cdp.crypto.provider import WrappedKey
from cdp.crypto.sealed_record import decrypt_records, pack
from cdp.errors import DecryptionError
from tests.conftest import CdpEnv

FIELDS = ("email", "phone", "first_name", "city")
SUBJECTS = tuple(f"{n:032x}" for n in range(1, 6))
CIPHERS = {
    s: SubjectCipher(AESGCM(os.urandom(32)), subject_id=s, key_version=1 + n % 2)
    for n, s in enumerate(SUBJECTS)
}
KEYS = {s: (c.version, c.aead) for s, c in CIPHERS.items()}


@settings(max_examples=200, deadline=None)
@given(
    values=st.dictionaries(
        st.sampled_from(SUBJECTS),
        st.dictionaries(st.sampled_from(FIELDS), st.text(max_size=12), min_size=1),
        max_size=5,
    ),
    wanted=st.sets(st.sampled_from(FIELDS), min_size=1),
    keyless=st.sets(st.sampled_from(SUBJECTS)),
    data=st.data(),
)
def test_decrypt_records_equals_decrypt_many_and_fails_per_subject(
    values: dict[str, dict[str, str]],
    wanted: set[str],
    keyless: set[str],
    data: st.DataObject,
) -> None:
    sealed = {sid: CIPHERS[sid].encrypt_many(fields) for sid, fields in values.items()}
    # some ciphertexts of some subjects tampered with, or moved to another field
    bad: set[str] = set()
    present = {sid: dict(fields) for sid, fields in values.items()}
    for sid in data.draw(st.sets(st.sampled_from(sorted(values) or ["-"]), max_size=3)):
        if sid not in values:
            continue
        field = data.draw(st.sampled_from(sorted(values[sid])))
        blob = sealed[sid][field]
        how = data.draw(st.sampled_from(["flip", "move", "truncate", "relabel"]))
        if how == "flip":
            sealed[sid][field] = blob[:-1] + bytes([blob[-1] ^ 1])
        elif how == "truncate":
            sealed[sid][field] = blob[:20]
        elif how == "relabel":
            sealed[sid][field] = blob[:1] + (9).to_bytes(4, "big") + blob[5:]
        else:
            other = next(f for f in FIELDS if f != field)
            if other in values[sid]:
                continue
            del present[sid][field], sealed[sid][field]
            sealed[sid][other] = blob
            field = other
        if field in wanted:
            bad.add(sid)
    records = data.draw(st.permutations([(sid, pack(blobs)) for sid, blobs in sealed.items()]))
    keys = {s: k for s, k in KEYS.items() if s not in keyless}

    out, failed = decrypt_records(keys, records, wanted)

    expected = {}
    for sid, fields in present.items():
        if sid in keyless or sid in bad:
            assert sid in failed
            continue
        if wanted.intersection(fields):
            expected[sid] = {f: v for f, v in fields.items() if f in wanted}
    assert out == expected
    assert len(failed) == len(set(failed))
    assert set(failed).isdisjoint(out)
    for sid in out:  # the same answer as the per-subject path
        blobs = {f: b for f, b in sealed[sid].items() if f in wanted}
        assert CIPHERS[sid].decrypt_many(blobs) == out[sid]


@given(record=st.binary(max_size=80))
def test_decrypt_records_fails_closed_on_any_bytes(record: bytes) -> None:
    sid = SUBJECTS[0]
    out, failed = decrypt_records(KEYS, [(sid, record)], FIELDS)
    assert out == {}  # random bytes never authenticate
    assert failed in ([], [sid])


def test_unwrap_many_equals_unwrap_and_refuses_a_moved_key(cdp_env: CdpEnv) -> None:
    provider = cdp_env.runtime.provider
    keys = {f"{n:032x}": os.urandom(32) for n in range(1, 4)}
    wrapped = {s: provider.wrap(k, context=s.encode()) for s, k in keys.items()}
    rows = [(s, 1, w.kek_version, w.blob) for s, w in wrapped.items()]
    assert provider.unwrap_many(rows) == [(s, 1, keys[s]) for s in keys]
    for s, w in wrapped.items():
        assert provider.unwrap(WrappedKey(w.kek_version, w.blob), context=s.encode()) == keys[s]
    a, b = list(wrapped)[:2]
    with pytest.raises(DecryptionError):  # a's wrapped key relabelled as b's
        provider.unwrap_many([(b, 1, wrapped[a].kek_version, wrapped[a].blob)])


def test_keystore_unwrapped_leaves_out_shredded_and_unknown_subjects(cdp_env: CdpEnv) -> None:
    store = cdp_env.runtime.keystore
    ids = [f"{n:032x}" for n in range(10, 14)]
    created = {k.subject_id: k.key for k in store.create(ids)}
    store.shred(ids[:1])
    got = store.unwrapped([*ids, "f" * 32, ids[2]])
    assert sorted(got) == sorted((s, 1, created[s]) for s in ids[1:])
    assert store.load(ids) == {s: k for s, k in store.load(ids).items() if s in ids[1:]}
    assert set(store.load(ids)) == set(ids[1:])
