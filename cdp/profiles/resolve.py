"""Identity resolution: find (or create) the subject of each record of a batch, merging subjects
that a record shows to be one person.

Per batch, every identity is tokenised once (under every live pseudonym-key version, so subjects
tokenised before a key rotation are still found), then looked up with one ``IN`` query per kind
against the unique ``(kind, token)`` index: no scans. Tombstoned tokens make their record
``erased``; tokens a rectification corrected away from a person make it ``rectified``. A
union-find over the batch groups records that share a token with each other or with stored
subjects; each group ends as one subject: the oldest stored one (``created_at``, then id),
or a new one. New subjects get their data keys in one key-store transaction, then their rows and
identities are written in the caller's transaction, so a subject never exists without its
identities. An erased record is neither linked to nor merged with anything, and creates nothing;
the live subjects its other identities name are reported (:attr:`Resolution.live_holders`) for
the one thing such a record may still do, record a withdrawal (:mod:`cdp.ingest.consents`).
Absorbed subjects are merged into the survivor (:mod:`cdp.profiles.merge`); their data
keys are destroyed by :meth:`Resolution.finish` once the data transaction has committed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cdp.crypto.normalize import IdentityKind
from cdp.db.models import Identity, RectifiedIdentity, Subject, Tombstone, new_subject_id
from cdp.ingest.bulk import insert_tuples, select_in
from cdp.profiles.merge import merge_subjects
from cdp.runtime import Runtime

Claim = Sequence[tuple[IdentityKind, str]]
"""A record's identities: (kind, normalised value) pairs, strongest first."""

LiveHolder = tuple[str, int]
"""(subject id, position in the claim of the identity that names it)."""

IN_CHUNK = 5_000
SUBJECTS = cast(sa.Table, Subject.__table__)  # type: ignore[attr-defined]
IDENTITIES = cast(sa.Table, Identity.__table__)  # type: ignore[attr-defined]


@dataclass
class Resolution:
    """Where each record of a batch belongs."""

    subjects: list[str | None]
    """Per record: its subject id, or None when the record is refused."""
    refused: list[str | None]
    """Per record: why it is refused (``erased``, ``rectified``), or None."""
    created: set[str] = field(default_factory=set)
    """Subjects created by this batch."""
    creator: dict[str, int] = field(default_factory=dict)
    """New subject -> index of the first record that created it."""
    merges: list[tuple[str, str, str]] = field(default_factory=list)
    """(survivor, absorbed, linked_by) pairs merged in this batch."""
    live_holders: dict[int, list[LiveHolder]] = field(default_factory=dict)
    """Per erased record (by index) whose other identities name live subjects: each such
    subject once, as it stands after this batch (a stored subject, the survivor of a merge of
    this batch, or a subject another record of the batch created), with the position in the
    record's claim of the first identity naming it. The erased record is linked to none of them;
    only a withdrawal may be recorded for them."""

    def finish(self, runtime: Runtime) -> None:
        """After commit: destroy the data keys of absorbed subjects (their data moved)."""
        absorbed = [m[1] for m in self.merges]
        if absorbed:
            runtime.vault.shred(absorbed)


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        parent = self.parent
        parent.setdefault(x, x)
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), IN_CHUNK):
        yield items[start : start + IN_CHUNK]


def lookup(
    conn: Connection,
    table: type[Identity] | type[Tombstone] | type[RectifiedIdentity],
    tokens: dict[str, set[str]],
) -> dict[tuple[str, str], str]:
    """(kind, token) -> subject id (identities) or kind (tombstones, rectified identities), one
    IN query per kind, through the unique (kind, token) index."""
    t = sa.inspect(table).local_table
    found: dict[tuple[str, str], str] = {}
    other = "subject_id" if table is Identity else "kind"
    for kind, values in tokens.items():
        for tok, value in select_in(
            conn, t, "token", sorted(values), ("token", other), equals=("kind", kind)
        ):
            found[(kind, tok)] = value
    return found


def _live_holders(
    tokenised: list[list[tuple[str, str, list[str]]]],
    erased: list[bool],
    dead: set[tuple[str, str]],
    holder: dict[tuple[str, str], str],
    new_token_node: dict[tuple[str, str], str],
    uf: _UnionFind,
    subject_of_root: dict[str, str],
) -> dict[int, list[LiveHolder]]:
    """Per erased record: the live subjects its identities that are not erased name, after this
    batch's merges and creations (see :attr:`Resolution.live_holders`)."""
    out: dict[int, list[LiveHolder]] = {}
    for i, row in enumerate(tokenised):
        if not erased[i]:
            continue
        found: dict[str, int] = {}
        for position, (kind, cur, _toks) in enumerate(row):
            if (kind, cur) in dead:
                continue
            stored = holder.get((kind, cur))
            if stored is not None:
                node: str | None = "S" + stored
                # a stored subject no live record names is in no group: it stays itself
                sid = subject_of_root[uf.find(node)] if node in uf.parent else stored
            else:
                node = new_token_node.get((kind, cur))
                if node is None:
                    continue  # nobody holds it: an erased record creates nothing
                sid = subject_of_root[uf.find(node)]
            found.setdefault(sid, position)
        if found:
            out[i] = list(found.items())
    return out


def resolve(
    *,
    runtime: Runtime,
    conn: Connection,
    claims: Sequence[Claim],
    now: datetime,
    signed_up: Sequence[datetime | None] | None = None,
    profile_as_of: Sequence[datetime | None] | None = None,
    keyless: Collection[str] = (),
) -> Resolution:
    """Resolve every claim of a batch to a subject, creating and merging as needed.

    A new subject's row gets the earliest of its records' ``signed_up`` times and the latest of
    their ``profile_as_of`` times (per claim; None: not known). A claim naming one of the
    ``keyless`` subjects (rows left, data key destroyed: an erasure under way or stopped half-way)
    is refused like a tombstoned one (``erased``); a claim carrying a token a rectification
    corrected away is refused as ``rectified`` (:class:`~cdp.db.models.RectifiedIdentity`). A
    refused claim's other identities are not stored, linked or merged; the live subjects they
    name are in :attr:`Resolution.live_holders`."""
    tokenizer = runtime.tokenizer
    versions = tokenizer.versions
    current = tokenizer.current
    position = versions.index(current)
    values_of = tokenizer.values_of_normalized
    # per claim: (kind, current token, tokens of every version) per identity; a customer's
    # orders share identities, so each distinct one is tokenised once
    tokenised: list[list[tuple[str, str, list[str]]]] = []
    memo: dict[tuple[IdentityKind, str], tuple[str, str, list[str]]] = {}
    wanted: dict[str, set[str]] = {}
    for claim in claims:
        row = []
        for id_kind, normalized in claim:
            entry = memo.get((id_kind, normalized))
            if entry is None:
                toks = values_of(id_kind, normalized)
                kind = id_kind.value
                entry = memo[(id_kind, normalized)] = (kind, toks[position], toks)
                found = wanted.get(kind)
                if found is None:
                    found = wanted[kind] = set()
                found.update(toks)
            row.append(entry)
        tokenised.append(row)

    tombstoned = lookup(conn, Tombstone, wanted)
    corrected = lookup(conn, RectifiedIdentity, wanted)
    known = lookup(conn, Identity, wanted)
    # per identity (by its current token): the stored subject it names (the first key version
    # that finds one), and whether it is tombstoned or corrected away
    holder: dict[tuple[str, str], str] = {}
    dead: set[tuple[str, str]] = set()
    retired: set[tuple[str, str]] = set()
    if known or tombstoned or corrected:
        for kind, cur, toks in memo.values():
            for t in toks:
                if (kind, t) in tombstoned:
                    dead.add((kind, cur))
                if (kind, t) in corrected:
                    retired.add((kind, cur))
                subject = known.get((kind, t))
                if subject is not None and (kind, cur) not in holder:
                    holder[(kind, cur)] = subject
                    if subject in keyless:
                        dead.add((kind, cur))

    n = len(claims)
    refused: list[str | None] = [None] * n
    uf = _UnionFind()
    new_token_node: dict[tuple[str, str], str] = {}
    record_node: list[str | None] = [None] * n
    via: dict[str, str] = {}
    pending = 0
    for i, row in enumerate(tokenised):
        if dead and any((kind, cur) in dead for kind, cur, _ in row):
            refused[i] = "erased"
            continue
        if retired and any((kind, cur) in retired for kind, cur, _ in row):
            refused[i] = "rectified"
            continue
        nodes: list[str] = []
        for kind, cur, _toks in row:
            subject = holder.get((kind, cur))
            if subject is not None:
                nodes.append("S" + subject)
                via.setdefault(subject, kind)
            else:
                node = new_token_node.get((kind, cur))
                if node:
                    nodes.append(node)
        if not nodes:
            pending += 1
            nodes.append(f"P{pending}")
        first = nodes[0]
        for other in nodes[1:]:
            uf.union(first, other)
        for kind, cur, _toks in row:
            if (kind, cur) not in holder:
                new_token_node.setdefault((kind, cur), first)
        record_node[i] = first

    # group members per root
    members: dict[str, set[str]] = {}
    for node in list(uf.parent) + [x for x in record_node if x is not None]:
        members.setdefault(uf.find(node), set()).add(node)
    created_at: dict[str, tuple[datetime, str]] = {}
    multi = [m for ms in members.values() if sum(x.startswith("S") for x in ms) > 1 for m in ms]
    if multi:
        ids = sorted({m[1:] for m in multi if m.startswith("S")})
        for chunk in _chunks(ids):
            for sid, at in conn.execute(
                sa.select(Subject.id, Subject.created_at).where(  # type: ignore[call-overload]
                    Subject.id.in_(chunk)  # type: ignore[attr-defined]
                )
            ):
                created_at[sid] = (at, sid)

    result = Resolution(subjects=[None] * n, refused=refused)
    subject_of_root: dict[str, str] = {}
    new_ids: list[str] = []
    for root, ms in members.items():
        olds = sorted(m[1:] for m in ms if m.startswith("S"))
        if not olds:
            sid = new_subject_id()
            new_ids.append(sid)
            result.created.add(sid)
        elif len(olds) == 1:
            sid = olds[0]
        else:
            olds.sort(key=lambda s: created_at.get(s, (now, s)))
            sid = olds[0]
            result.merges.extend((sid, other, via.get(other, "identity")) for other in olds[1:])
        subject_of_root[root] = sid

    if dead or retired:
        result.live_holders = _live_holders(
            tokenised,
            [why is not None for why in refused],
            dead | retired,
            holder,
            new_token_node,
            uf,
            subject_of_root,
        )
    created, creator, subjects = result.created, result.creator, result.subjects
    first_signup: dict[str, datetime] = {}
    last_as_of: dict[str, datetime] = {}
    for i, start in enumerate(record_node):
        if start is not None:
            owner = subjects[i] = subject_of_root[uf.find(start)]
            if owner in created:
                creator.setdefault(owner, i)
                at = signed_up[i] if signed_up is not None else None
                if at is not None:
                    seen = first_signup.get(owner)
                    if seen is None or at < seen:
                        first_signup[owner] = at
                at = profile_as_of[i] if profile_as_of is not None else None
                if at is not None:
                    seen = last_as_of.get(owner)
                    if seen is None or at > seen:
                        last_as_of[owner] = at

    if new_ids:
        new_ids.sort()  # index order, for the key store's index and ours (see insert_rows)
        runtime.vault.create_keys(new_ids)
        insert_tuples(
            conn,
            SUBJECTS,
            ("id", "created_at", "updated_at", "signed_up_at", "profile_as_of"),
            [(s, now, now, first_signup.get(s), last_as_of.get(s)) for s in new_ids],
        )

    identity_rows: dict[str, tuple[str, str, str, int, datetime]] = {}
    for i, row in enumerate(tokenised):
        sid = subjects[i]
        if sid is None:
            continue
        for kind, cur, _toks in row:
            key = kind + "\x00" + cur  # orders as (kind, token): the unique index's order
            if key not in identity_rows and (kind, cur) not in known:
                identity_rows[key] = (sid, kind, cur, current, now)
    for survivor, absorbed, linked_by in result.merges:
        merge_subjects(
            runtime=runtime,
            conn=conn,
            survivor=survivor,
            absorbed=absorbed,
            linked_by=linked_by,
            now=now,
        )
    if identity_rows:
        insert_tuples(
            conn,
            IDENTITIES,
            ("subject_id", "kind", "token", "key_version", "created_at"),
            [identity_rows[k] for k in sorted(identity_rows)],
        )
    return result
