"""The reject file of a file ingestion: one JSON Lines row per rejected record (line number,
reason code, field names and a message — never the rejected values), written safely beside the
input."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import IO

from cdp.errors import InvalidInputError
from cdp.ingest.batch import Reject
from cdp.ingest.readers import printable_path


class RejectsFile:
    """The reject file. It is prepared before anything is read or stored — a path that cannot be
    written, that is not a regular file, or that is the input itself fails the run before its
    first batch.

    Rejects are written to a new file cdp creates beside the target (``O_EXCL | O_NOFOLLOW``,
    mode 0600), which replaces the target (by rename: a link's target is never written) only when
    something was rejected; otherwise that file is removed, and so is a stale reject file of an
    earlier run at the target — a regular file holding cdp's reject lines, nothing else —
    (:meth:`close`), unless the run read no record (:meth:`discard`: the target stays). A
    symbolic link, device, pipe or directory at the target is refused, never followed, written or
    removed."""

    def __init__(self, path: Path, *, source: Path) -> None:
        if _same_file(path, source):
            raise InvalidInputError(
                f"the reject file would overwrite the input {printable_path(source)}; "
                "choose another path",
                field="rejects",
            )
        self.path = path
        self._used = False
        kind = _not_regular(path)
        if kind is not None:
            raise InvalidInputError(
                f"cannot write the reject file {printable_path(path)}: it is {kind}, not a "
                "regular file (cdp neither follows nor replaces it); choose another path",
                field="rejects",
            )
        try:
            fd, temp = tempfile.mkstemp(  # O_CREAT | O_EXCL | O_NOFOLLOW, mode 0600
                prefix=".cdp-rejects-", suffix=".tmp", dir=path.parent
            )
        except OSError as exc:
            raise InvalidInputError(
                f"cannot write the reject file {printable_path(path)}: "
                f"{exc.strerror or type(exc).__name__}",
                field="rejects",
            ) from None
        self._temp = Path(temp)
        self._fh: IO[str] = os.fdopen(fd, "w", encoding="utf-8")

    def write(self, reject: Reject) -> None:
        self._used = True
        row = {
            "line": reject.position,
            "reason": reject.reason,
            "fields": list(reject.fields),
            "message": reject.message,
        }
        self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")

    def close(self) -> None:
        """Put the rejects in place (or remove the file cdp created, and a stale reject file)."""
        self._fh.close()
        if not self._used:
            self._temp.unlink(missing_ok=True)
            if _stale_rejects(self.path):
                self.path.unlink(missing_ok=True)
            return
        try:
            self._temp.replace(self.path)  # replaces a name, never writes through a link
        except OSError as exc:
            raise InvalidInputError(
                f"cannot write the reject file {printable_path(self.path)} "
                f"({exc.strerror or type(exc).__name__}); the rejects are in "
                f"{printable_path(self._temp)}",
                field="rejects",
            ) from None

    def discard(self) -> None:
        """Remove the file cdp created and leave the target as it is (the run read no record:
        refused before its first one — a damaged gzip, a CSV header it cannot use — or a file
        without records; an earlier run's rejects there still describe that run)."""
        self._fh.close()
        self._temp.unlink(missing_ok=True)

    @property
    def used(self) -> bool:
        return self._used


_REJECT_KEYS = ("line", "reason", "fields", "message")


def _not_regular(path: Path) -> str | None:
    """What ``path`` is when it exists and is not a regular file (a link is not followed)."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return None
    except OSError:
        return None  # e.g. a parent that is not a directory: creating the file says why
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "a device, pipe or socket"


def _stale_rejects(path: Path) -> bool:
    """Whether ``path`` is a regular file (not a link) that a run of cdp wrote: its first line is
    a reject row (a JSON object with a line number and no key a reject row lacks). Anything else
    at the path is someone else's file, and stays."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            return False
        first = fh.readline(4096)
    try:
        row = json.loads(first)
    except ValueError:
        return False
    return (
        isinstance(row, dict)
        and isinstance(row.get("line"), int)
        and set(row).issubset(_REJECT_KEYS)
    )


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (symbolic and hard links included)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return a.samefile(b)
    except OSError:  # one of them does not exist (yet)
        return False
