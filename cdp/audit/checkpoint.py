"""Signed checkpoints of the audit chain's head, kept outside the database.

A checkpoint is a small JSON file naming the last sequence number and its hash, signed with
HMAC-SHA256 under the ``audit_signing`` key of the master key file (or ``CDP_MASTER_KEYS``), which
never lives in the data database. Someone who can edit the database but not the key cannot forge a
checkpoint, so ``cdp audit verify --checkpoint FILE`` detects a tail that was cut off or a chain
that was rebuilt after the checkpoint was taken.

Signed message: ``cdp-audit-checkpoint:v1:<seq>:<hash>:<created_at>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from cdp.clock import Clock, utcnow
from cdp.errors import InvalidInputError, KeyMaterialError
from cdp.runtime import Runtime

FORMAT: Final = 1
ALGORITHM: Final = "HMAC-SHA256"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A verified checkpoint: the chain's head at ``created_at``."""

    seq: int
    hash: str
    created_at: str


def _message(seq: int, digest: str, created_at: str) -> bytes:
    return f"cdp-audit-checkpoint:v{FORMAT}:{seq}:{digest}:{created_at}".encode()


def _signature(key: bytes, seq: int, digest: str, created_at: str) -> str:
    return hmac.new(key, _message(seq, digest, created_at), hashlib.sha256).hexdigest()


def head_of_log(runtime: Runtime) -> tuple[int, str]:
    """The last record's sequence number and hash (0 and the genesis hash for an empty log)."""
    with runtime.data_engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
        row = conn.exec_driver_sql(
            "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
        ).first()
    if row is None:
        return 0, "0" * 64
    return int(row[0]), str(row[1])


def write_checkpoint(
    *, runtime: Runtime, seq: int, digest: str, out: Path, clock: Clock = utcnow
) -> Checkpoint:
    """Sign (``seq``, ``digest``) and write the checkpoint file atomically."""
    created_at = clock().isoformat()
    key = runtime.provider.material.signing_key()
    doc = {
        "format": FORMAT,
        "algorithm": ALGORITHM,
        "key": "audit_signing",
        "seq": seq,
        "hash": digest,
        "created_at": created_at,
        "signature": _signature(key, seq, digest, created_at),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".checkpoint-")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Checkpoint(seq=seq, hash=digest, created_at=created_at)


def read_checkpoint(*, runtime: Runtime, path: Path) -> Checkpoint:
    """Read a checkpoint file and check its signature; ``InvalidInputError`` if it is malformed,
    ``KeyMaterialError`` if the signature does not verify under the audit signing key."""
    try:
        doc = json.loads(path.read_text())
        seq, digest, created_at = int(doc["seq"]), str(doc["hash"]), str(doc["created_at"])
        signature = str(doc["signature"])
        if doc.get("format") != FORMAT or doc.get("algorithm") != ALGORITHM:
            raise ValueError("unsupported checkpoint format")
        datetime.fromisoformat(created_at)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(
            f"cannot read the checkpoint file: {type(exc).__name__}", field="checkpoint"
        ) from None
    key = runtime.provider.material.signing_key()
    expected = _signature(key, seq, digest, created_at)
    if not hmac.compare_digest(expected, signature):
        raise KeyMaterialError(
            "the checkpoint's signature does not verify: it was not signed "
            "with this installation's audit signing key, or it was edited"
        )
    return Checkpoint(seq=seq, hash=digest, created_at=created_at)
