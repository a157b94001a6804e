"""The master key file: versioned key-encryption keys, pseudonym keys and the audit signing key.

The file is JSON, created with mode 0600 by ``cdp init`` and rewritten atomically (write to a
temporary file, fsync, rename) under an exclusive lock. Deployments that inject secrets through
the environment set ``CDP_MASTER_KEYS`` to the same JSON instead; that copy is read-only here.
Nothing in this module ever renders key bytes in a repr, a log line or an error.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cdp.clock import utcnow
from cdp.errors import KeyFileMissingError, KeyMaterialError

FORMAT = 1
KEY_BYTES = 32


@dataclass(frozen=True)
class KeyVersion:
    """Metadata of one key version (never the key bytes)."""

    version: int
    created_at: str
    retired_at: str | None


def _new_version_entry(now: datetime) -> dict[str, Any]:
    return {
        "key": base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode(),
        "created_at": now.isoformat(),
        "retired_at": None,
    }


def new_key_material(now: datetime | None = None) -> dict[str, Any]:
    """Fresh material: KEK v1, pseudonym key v1, audit signing key."""
    at = now or utcnow()
    return {
        "format": FORMAT,
        "kek": {"current": 1, "versions": {"1": _new_version_entry(at)}},
        "pseudonym": {"current": 1, "versions": {"1": _new_version_entry(at)}},
        "audit_signing": _new_version_entry(at),
    }


@dataclass(frozen=True)
class PendingVersion:
    """A new key version a rotation has minted and not yet written into the key file. Its repr
    names the version only."""

    ring: str
    version: int
    entry: dict[str, Any] = field(repr=False)

    @classmethod
    def new(cls, ring: str, version: int, now: datetime) -> PendingVersion:
        return cls(ring, version, _new_version_entry(now))

    @property
    def key(self) -> bytes:
        return base64.b64decode(self.entry["key"])


class KeyMaterial:
    """Parsed key material. Its repr names versions only."""

    def __init__(self, data: dict[str, Any]) -> None:
        try:
            if data["format"] != FORMAT:
                raise KeyMaterialError("unsupported key file format")
            self._data = data
            self._validate()
        except (KeyError, TypeError, ValueError) as exc:
            raise KeyMaterialError("key material is malformed") from exc

    def _validate(self) -> None:
        for ring in ("kek", "pseudonym"):
            cur = str(self._data[ring]["current"])
            if self._data[ring]["versions"][cur]["key"] is None:
                raise KeyMaterialError(f"the current {ring} version has no key")
            for entry in self._data[ring]["versions"].values():
                if entry["key"] is not None and len(base64.b64decode(entry["key"])) != KEY_BYTES:
                    raise KeyMaterialError(f"a {ring} key has the wrong length")

    def __repr__(self) -> str:
        return f"KeyMaterial(kek_versions={self.versions('kek')}, current={self.current('kek')})"

    def to_json(self) -> str:
        return json.dumps(self._data, indent=2, sort_keys=True)

    def current(self, ring: str) -> int:
        return int(self._data[ring]["current"])

    def versions(self, ring: str) -> list[int]:
        return sorted(int(v) for v in self._data[ring]["versions"])

    def version_info(self, ring: str) -> list[KeyVersion]:
        out = []
        for v, entry in sorted(self._data[ring]["versions"].items(), key=lambda x: int(x[0])):
            out.append(KeyVersion(int(v), entry["created_at"], entry["retired_at"]))
        return out

    def key(self, ring: str, version: int) -> bytes:
        entry = self._data[ring]["versions"].get(str(version))
        if entry is None:
            raise KeyMaterialError(f"no {ring} key of version {version}")
        if entry["key"] is None:
            raise KeyMaterialError(f"{ring} key version {version} is retired")
        return base64.b64decode(entry["key"])

    def live_keys(self, ring: str) -> dict[int, bytes]:
        return {
            int(v): base64.b64decode(e["key"])
            for v, e in self._data[ring]["versions"].items()
            if e["key"] is not None
        }

    def signing_key(self) -> bytes:
        return base64.b64decode(self._data["audit_signing"]["key"])

    def next_version(self, ring: str) -> int:
        """The number a rotation of ``ring`` gives its new version."""
        return max(self.versions(ring)) + 1

    def with_version(self, pending: PendingVersion) -> KeyMaterial:
        """This material with ``pending`` added as its ring's current version (the next one)."""
        if pending.version != self.next_version(pending.ring):
            raise KeyMaterialError(f"{pending.ring} version {pending.version} is not the next one")
        data = json.loads(json.dumps(self._data))
        data[pending.ring]["versions"][str(pending.version)] = dict(pending.entry)
        data[pending.ring]["current"] = pending.version
        return KeyMaterial(data)

    def with_retired(self, ring: str, version: int, now: datetime) -> KeyMaterial:
        data = json.loads(json.dumps(self._data))
        entry = data[ring]["versions"].get(str(version))
        if entry is None:
            raise KeyMaterialError(f"no {ring} key of version {version}")
        if int(data[ring]["current"]) == version:
            raise KeyMaterialError(f"{ring} version {version} is current; rotate first")
        entry["key"] = None
        entry["retired_at"] = entry["retired_at"] or now.isoformat()
        return KeyMaterial(data)


class KeyFile:
    """The key file on disk (or the read-only copy from ``CDP_MASTER_KEYS``)."""

    def __init__(self, path: Path | None, *, inline_json: str | None = None) -> None:
        if path is None and inline_json is None:
            raise KeyMaterialError("no key file and no CDP_MASTER_KEYS")
        self.path = path
        self._inline = inline_json

    def __repr__(self) -> str:
        return f"KeyFile(path={self.path!s}, inline={self._inline is not None})"

    @property
    def read_only(self) -> bool:
        return self._inline is not None

    def exists(self) -> bool:
        return self._inline is not None or (self.path is not None and self.path.exists())

    def shared_mode(self) -> int | None:
        """The file's permission bits when group or others may read or write it (it should be
        0600), else None."""
        if self._inline is not None or self.path is None:
            return None
        try:
            mode = self.path.stat().st_mode & 0o777
        except FileNotFoundError:
            return None
        return mode if mode & 0o077 else None

    def stamp(self) -> tuple[int, int, int] | None:
        """What changes whenever the file is rewritten: inode, modification time and size (a
        rewrite renames a new file into place, so the inode alone already differs). ``None``
        for ``CDP_MASTER_KEYS`` (it never changes under a running process) or a missing file."""
        if self._inline is not None or self.path is None:
            return None
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def load(self) -> KeyMaterial:
        if self._inline is not None:
            raw = self._inline
        else:
            assert self.path is not None
            try:
                raw = self.path.read_text()
            except FileNotFoundError:
                raise KeyFileMissingError(
                    f"the key file {self.path} does not exist: restore it from its backup (only "
                    "an installation that holds no data yet creates one, with `cdp init`)"
                ) from None
            except (OSError, UnicodeDecodeError) as exc:  # a directory, no permission, not text
                reason = getattr(exc, "strerror", None) or type(exc).__name__
                raise KeyMaterialError(
                    f"the key file {self.path} cannot be read ({reason})"
                ) from None
        try:
            return KeyMaterial(json.loads(raw))
        except json.JSONDecodeError:
            raise KeyMaterialError("the key material is not valid JSON") from None

    def create(self) -> bool:
        """Create the key file (mode 0600) if it does not exist. True if created."""
        if self._inline is not None:
            return False
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.locked():
            if self.path.exists():
                return False
            self._write(KeyMaterial(new_key_material()))
            return True

    def save(self, material: KeyMaterial) -> None:
        if self._inline is not None:
            raise KeyMaterialError(
                "keys given through CDP_MASTER_KEYS are managed outside cdp; change them there"
            )
        self._write(material)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive lock so two processes never rotate at once."""
        if self.path is None:
            yield
            return
        lock_path = self.path.with_suffix(".lock")
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # -- a rotation's new version, before the key file holds it ----------------------------
    def _pending_path(self) -> Path:
        assert self.path is not None
        return self.path.with_suffix(".pending")

    def save_pending(self, pending: PendingVersion) -> None:
        """Keep a new version beside the key file (same mode, written the same way) while the
        key store reserves its number: a rotation interrupted before it saves the key file
        finds it there and finishes with the same key (the one the key store recorded)."""
        if self._inline is not None:
            raise KeyMaterialError(
                "keys given through CDP_MASTER_KEYS are managed outside cdp; change them there"
            )
        body = {"format": FORMAT, "ring": pending.ring, "version": pending.version}
        self._write_atomically(
            self._pending_path(), json.dumps({**body, "entry": pending.entry}).encode()
        )

    def load_pending(self) -> PendingVersion | None:
        """The version an interrupted rotation left beside the key file, if any (an unreadable
        one is ignored: it was never reserved, the reservation follows a complete write)."""
        if self._inline is not None or self.path is None:
            return None
        try:
            data = json.loads(self._pending_path().read_text())
            pending = PendingVersion(str(data["ring"]), int(data["version"]), dict(data["entry"]))
            if len(pending.key) != KEY_BYTES or data["format"] != FORMAT:
                return None
        except (OSError, ValueError, KeyError, TypeError):  # missing, or not what we write
            return None
        return pending

    def drop_pending(self) -> None:
        if self._inline is None and self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._pending_path().unlink()

    def _write(self, material: KeyMaterial) -> None:
        assert self.path is not None
        self._write_atomically(self.path, material.to_json().encode())

    def _write_atomically(self, path: Path, body: bytes) -> None:
        tmp = path.with_suffix(".tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
