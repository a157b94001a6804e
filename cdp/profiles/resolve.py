"""Identity resolution: find (or create) the subject of each record of a batch, merging subjects
that a record shows to be one person.

Per batch, every identity is tokenised once (under every live pseudonym-key version, so subjects
tokenised before a key rotation are still found), then looked up with one ``IN`` query per kind
against the unique ``(kind, token)`` index: no scans. Tombstoned tokens make their record
``erased``. A union-find over the batch groups records that share a token with each other or with
stored subjects; each group ends as one subject: the oldest stored one (``created_at``, then id),
or a new one. New subjects get their data keys in one key-store transaction, then their rows and
identities are written in the caller's transaction, so a subject never exists without its
identities. Absorbed subjects are merged into the survivor (:mod:`cdp.profiles.merge`); their data
keys are destroyed by :meth:`Resolution.finish` once the data transaction has committed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cdp.crypto.normalize import IdentityKind
from cdp.db.models import Identity, Subject, Tombstone, new_subject_id
from cdp.ingest.bulk import insert_rows, select_in
from cdp.profiles.merge import merge_subjects
from cdp.runtime import Runtime

Claim = Sequence[tuple[IdentityKind, str]]
"""A record's identities: (kind, normalised value) pairs, strongest first."""

IN_CHUNK = 5_000


@dataclass
class Resolution:
    """Where each record of a batch belongs."""

    subjects: list[str | None]
    """Per record: its subject id, or None when the record is refused (erased)."""
    erased: list[bool]
    created: set[str] = field(default_factory=set)
    """Subjects created by this batch."""
    creator: dict[str, int] = field(default_factory=dict)
    """New subject -> index of the first record that created it."""
    merges: list[tuple[str, str, str]] = field(default_factory=list)
    """(survivor, absorbed, linked_by) pairs merged in this batch."""

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
    conn: Connection, table: type[Identity] | type[Tombstone], tokens: dict[str, set[str]]
) -> dict[tuple[str, str], str]:
    """(kind, token) -> subject id (identities) or kind (tombstones), one IN query per kind,
    through the unique (kind, token) index."""
    t = sa.inspect(table).local_table
    found: dict[tuple[str, str], str] = {}
    other = "subject_id" if table is Identity else "kind"
    for kind, values in tokens.items():
        for tok, value in select_in(
            conn, t, "token", sorted(values), ("token", other), equals=("kind", kind)
        ):
            found[(kind, tok)] = value
    return found


def resolve(
    *,
    runtime: Runtime,
    conn: Connection,
    claims: Sequence[Claim],
    now: datetime,
    signed_up: Sequence[datetime | None] | None = None,
) -> Resolution:
    """Resolve every claim of a batch to a subject, creating and merging as needed."""
    tokenizer = runtime.tokenizer
    versions = tokenizer.versions
    current = tokenizer.current
    # per claim: list of (kind, current token, [tokens of every version])
    tokenised: list[list[tuple[str, str, list[str]]]] = []
    memo: dict[tuple[IdentityKind, str], list[str]] = {}  # a customer's orders share tokens
    position = versions.index(current)
    wanted: dict[str, set[str]] = {}
    for claim in claims:
        row = []
        for id_kind, normalized in claim:
            toks = memo.get((id_kind, normalized))
            if toks is None:
                toks = memo[(id_kind, normalized)] = [
                    tokenizer.token_of_normalized(id_kind, normalized, version=v).value
                    for v in versions
                ]
            cur = toks[position]
            row.append((id_kind.value, cur, toks))
            wanted.setdefault(id_kind.value, set()).update(toks)
        tokenised.append(row)

    tombstoned = lookup(conn, Tombstone, wanted)
    known = lookup(conn, Identity, wanted)

    n = len(claims)
    erased = [False] * n
    uf = _UnionFind()
    new_token_node: dict[tuple[str, str], str] = {}
    record_node: list[str | None] = [None] * n
    via: dict[str, str] = {}
    pending = 0
    for i, row in enumerate(tokenised):
        if any((kind, tok) in tombstoned for kind, _, toks in row for tok in toks):
            erased[i] = True
            continue
        nodes: list[str] = []
        for kind, cur, toks in row:
            subject = next((known[(kind, t)] for t in toks if (kind, t) in known), None)
            if subject is not None:
                node = "S" + subject
                via.setdefault(subject, kind)
            else:
                node = new_token_node.get((kind, cur), "")
            if node:
                nodes.append(node)
        if not nodes:
            pending += 1
            nodes.append(f"P{pending}")
        first = nodes[0]
        for other in nodes[1:]:
            uf.union(first, other)
        for kind, cur, toks in row:
            if not any((kind, t) in known for t in toks):
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

    result = Resolution(subjects=[None] * n, erased=erased)
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

    for i, start in enumerate(record_node):
        if start is not None:
            owner = subject_of_root[uf.find(start)]
            result.subjects[i] = owner
            if owner in result.created:
                result.creator.setdefault(owner, i)

    if new_ids:
        runtime.vault.create_keys(new_ids)
        signup = signed_up or [None] * n
        rows = [
            {
                "id": sid,
                "created_at": now,
                "updated_at": now,
                "signed_up_at": signup[result.creator[sid]],
            }
            for sid in new_ids
        ]
        insert_rows(conn, Subject.__table__, rows, order_by=("id",))  # type: ignore[attr-defined]

    identity_rows = []
    seen: set[tuple[str, str]] = set()
    for i, row in enumerate(tokenised):
        holder = result.subjects[i]
        if holder is None:
            continue
        for kind, cur, _toks in row:
            if (kind, cur) in known or (kind, cur) in seen:
                continue
            seen.add((kind, cur))
            identity_rows.append(
                {
                    "subject_id": holder,
                    "kind": kind,
                    "token": cur,
                    "key_version": current,
                    "created_at": now,
                }
            )
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
        insert_rows(
            conn,
            Identity.__table__,  # type: ignore[attr-defined]
            identity_rows,
            order_by=("kind", "token"),
        )
    return result
