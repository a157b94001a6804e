"""CSV records from a byte stream, one at a time, each bounded and parsed on its own.

Python's csv module (strict) decides what a record is: a quote inside an unquoted field is a
literal character, a quoted field may span lines. It is fed one physical line at a time by
:class:`_Feed`, which holds the current record's lines (never more than ``limit`` bytes of them)
so that a record that cannot be read is rejected at its first line and the lines after that line
are read again as records of their own — a stray quote never swallows the rest of the file:

- a quoted field still open at the end of the input: ``invalid_csv`` (unterminated quote);
- a record that breaks csv's rules (``"a"b``): ``invalid_csv`` (malformed CSV);
- a record over ``limit`` bytes (a line over it is skipped in bounded reads, never held):
  ``record_too_large``. If a quoted field is still open there, its end is looked for in at most
  ``limit`` more bytes: found, the whole record is skipped (one reject); not found, the quote is
  taken as stray and the lines after the record's first are read again.

Lines read again after a broken record kept that record's quote open, so none of them may start a
record spanning lines (one that tries is rejected as unterminated): each line is parsed at most
twice or so, and reading stays linear. Only the line where csv found the record broken (or the
first one past the look-ahead) may start a multi-line record again.
"""

from __future__ import annotations

import csv
import re
from collections import deque
from collections.abc import Iterator
from typing import IO, NamedTuple, NoReturn

# Where csv's parser is, as far as it decides where a record ends.
_START, _FIELD, _QUOTED, _QUOTE, _ERROR = range(5)
_CLOSED = (_START, _FIELD, _QUOTE)
_SKIP_CHUNK = 1 << 16


class _Line(NamedTuple):
    """A physical line to read again (or a placeholder for one over the limit: ``text`` None)."""

    number: int
    text: str | None
    bad_utf8: bool
    single: bool
    """Read as a record of its own line: it may not open a quoted field that goes on."""
    state: int = _START
    """For a line over the limit: the quote state at its end."""


class _Broken(Exception):  # noqa: N818 - a control-flow signal, not an error
    """The current record cannot be read: reject it at ``line`` and read ``replay`` again."""

    def __init__(self, line: int, reason: str, message: str, replay: list[_Line]) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason
        self.message = message
        self.replay = replay


def quote_state(text: str, state: int, delimiter: str, stops: re.Pattern[str]) -> int:
    """The csv parser's state after ``text`` (a line or a piece of one) from ``state``: enough of
    it to tell whether a record goes on after a line end (``_QUOTED``) or broke (``_ERROR``)."""
    i, n = 0, len(text)
    while i < n:
        if state == _QUOTED:
            j = text.find('"', i)
            if j < 0:
                return _QUOTED
            state, i = _QUOTE, j + 1
        elif state == _QUOTE:  # a quote in a quoted field: escaped, or the field's end
            c = text[i]
            if c == '"':
                state = _QUOTED
            elif c == delimiter or c in "\r\n":
                state = _START
            else:
                return _ERROR  # strict csv: '"a"b'
            i += 1
        elif state == _START and text[i] == '"':
            state, i = _QUOTED, i + 1
        else:  # an unquoted field (its quotes are literal) runs to a delimiter or line end
            m = stops.search(text, i)
            if m is None:
                return _FIELD
            state, i = _START, m.end()
    return state


class _Feed:
    """The csv reader's input: one physical line a call. The current record's lines are held (at
    most ``limit`` bytes) until the reader has parsed it, so that a broken record can be read
    again from its second line."""

    def __init__(self, stream: IO[bytes], limit: int, delimiter: str) -> None:
        self._readline = stream.readline
        self._limit = limit
        self._delimiter = delimiter
        self._stops = re.compile("[" + re.escape(delimiter) + "\r\n]")
        self.number = 0
        """Physical lines read from the stream so far."""
        self.held: list[str] = []
        """The current record's lines (its line numbers run from ``first``)."""
        self.first = 0
        self.size = 0
        self.bad: list[int] = []
        """Lines of the current record that are not valid UTF-8."""
        self.single = False
        self.ended = False
        self.replay: deque[_Line] = deque()

    def begin(self) -> None:
        """A new record starts with the next call."""
        self.held.clear()
        if self.bad:
            self.bad = []
        self.single = self.ended = False

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> str:
        if self.held:
            return self._continue()
        if self.replay:
            return self._restart()
        chunk = self._readline(self._limit + 1)
        if not chunk:
            self.ended = True
            raise StopIteration
        self.number += 1
        number = self.number
        if len(chunk) > self._limit and not chunk.endswith(b"\n"):
            self._oversize(number, self._skip(chunk, _START))
        try:
            text = chunk.decode()
        except UnicodeDecodeError:
            text = chunk.decode(errors="replace")  # keeps csv in step; the record is rejected
            self.bad.append(number)
        if number == 1 and text.startswith("\ufeff"):
            text = text[1:]
        self.first = number
        self.size = len(text)
        self.held.append(text)
        return text

    def _take(self, state: int) -> _Line | None:
        """The next line (``state``: the quote state it starts in, to scan a line too long to
        hold); None at the end of the input."""
        if self.replay:
            return self.replay.popleft()
        chunk = self._readline(self._limit + 1)
        if not chunk:
            return None
        self.number += 1
        if len(chunk) > self._limit and not chunk.endswith(b"\n"):
            return _Line(self.number, None, False, True, self._skip(chunk, state))
        try:
            return _Line(self.number, chunk.decode(), False, False)
        except UnicodeDecodeError:
            return _Line(self.number, chunk.decode(errors="replace"), True, False)

    def _skip(self, chunk: bytes, state: int) -> int:
        """Skip the rest of a line over the limit in bounded reads; its quote state at the end.
        (Latin-1 maps bytes one to one: quotes, delimiters and line ends are ASCII in UTF-8.)"""
        state = self._scan(chunk.decode("latin-1"), state)
        while not chunk.endswith(b"\n"):
            chunk = self._readline(_SKIP_CHUNK)
            if not chunk:
                break
            if state != _ERROR:
                state = self._scan(chunk.decode("latin-1"), state)
        return state

    def _scan(self, text: str, state: int) -> int:
        return quote_state(text, state, self._delimiter, self._stops)

    def _restart(self) -> str:
        """A record starting on a line read again."""
        line = self.replay.popleft()
        if line.text is None:
            raise _Broken(line.number, "record_too_large", f"over {self._limit} bytes", [])
        self.first, self.single, self.size = line.number, line.single, len(line.text)
        if line.bad_utf8:
            self.bad.append(line.number)
        self.held.append(line.text)
        return line.text

    def _continue(self) -> str:
        """The next line of a record whose quoted field goes on."""
        if self.single:
            raise _Broken(self.first, "invalid_csv", "unterminated quote", [])
        line = self._take(_QUOTED)
        if line is None:
            self.ended = True
            raise StopIteration
        if line.text is None:
            self._oversize(line.number, line.state)
        size = len(line.text)
        if self.size + size > self._limit:
            self._follow(self.first, [line], self._scan(line.text, _QUOTED))
        if line.bad_utf8:
            self.bad.append(line.number)
        self.size += size
        self.held.append(line.text)
        return line.text

    def _oversize(self, number: int, state: int) -> NoReturn:
        """A line over the limit in the current record (or starting one); ``state`` at its end."""
        placeholder = _Line(number, None, False, True)
        if state == _QUOTED:  # its quoted field goes on: look for the end
            if self.held:
                self._follow(self.first, [placeholder], state)
            self._follow(number, [], state)
        if state == _ERROR and self.held:  # broken in this record: the quote before was stray
            raise _Broken(
                self.first, "invalid_csv", "malformed CSV", [*self._held_lines(), placeholder]
            )
        message = f"over {self._limit} bytes"
        raise _Broken(self.first if self.held else number, "record_too_large", message, [])

    def _follow(self, first: int, ahead: list[_Line], state: int) -> NoReturn:
        """The record outgrew the limit with a quoted field open: look for the field's end in at
        most ``limit`` more bytes. Found, the record ends there; else the quote was stray (or the
        field too long to tell) and the lines after the record's first are read again."""
        size = 0
        while state == _QUOTED and size <= self._limit:
            line = self._take(_QUOTED)
            if line is None:
                break
            ahead.append(line)
            if line.text is None:
                state = line.state
            else:
                size += len(line.text)
                state = self._scan(line.text, _QUOTED)
        if state in _CLOSED:
            raise _Broken(first, "record_too_large", f"over {self._limit} bytes", [])
        again = [*self._held_lines(), *(a._replace(single=True) for a in ahead)]
        if again and (state != _QUOTED or size > self._limit):  # not at the end of the input:
            again[-1] = again[-1]._replace(single=again[-1].text is None)  # may start one
        message = f"a quoted field not closed within {self._limit} bytes"
        raise _Broken(first, "record_too_large", message, again)

    def _held_lines(self) -> list[_Line]:
        """The current record's lines after its first, to read again (each on its own)."""
        bad = set(self.bad)
        return [
            _Line(n, text, n in bad, True)
            for n, text in enumerate(self.held[1:], start=self.first + 1)
        ]

    def broken(self, message: str = "malformed CSV") -> _Broken:
        """The current record after csv refused it (or, spanning lines, its width is wrong: a
        stray quote most likely joined lines)."""
        if self.ended:  # the input ended inside a quoted field
            return _Broken(self.first, "invalid_csv", "unterminated quote", self._held_lines())
        again = self._held_lines()
        if again:  # the line csv stopped at may start a record of its own
            again[-1] = again[-1]._replace(single=False)
        return _Broken(self.first, "invalid_csv", message, again)


def csv_rows(
    stream: IO[bytes], *, limit: int, delimiter: str = ","
) -> Iterator[tuple[int, list[str] | None, str, str]]:
    """(first line, cells, "", "") per record — the first is the header —, or (first line, None,
    reason, message) for a record that cannot be read (a record of another width than the
    header's included); blank lines yield nothing."""
    feed = _Feed(stream, limit, delimiter)
    # A field may be as long as a record (csv's own default limit is 128 KiB).
    if csv.field_size_limit() < limit:
        csv.field_size_limit(limit)
    reader = csv.reader(feed, delimiter=delimiter, strict=True)
    width = -1  # until the header is read
    while True:
        feed.begin()
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error:
            broken = feed.broken()
        except _Broken as exc:
            broken = exc
        else:
            if feed.bad:
                yield feed.first, None, "invalid_utf8", "line is not valid UTF-8"
                continue
            if len(row) == width:
                yield feed.first, row, "", ""
                continue
            if not row:
                continue
            if width < 0:
                width = len(row)
                yield feed.first, row, "", ""
                continue
            message = f"{len(row)} columns where the header has {width}"
            if len(feed.held) == 1:
                yield feed.first, None, "invalid_csv", message
                continue
            broken = feed.broken(message)
        yield broken.line, None, broken.reason, broken.message
        feed.replay.extendleft(reversed(broken.replay))
