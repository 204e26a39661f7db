"""Character-level reading of one IMAP command (RFC 9051 §9 formal syntax), sans-IO.

A command arrives from :mod:`pobox.imap.protocol` as ``lines`` (without CRLF) and the
``literals`` between them: every line but the last ends with a literal announcement
(``{n}``, ``{n+}``, ``~{n}``, ``~{n+}``) whose bytes are the literal of the same index.
:class:`Reader` walks that structure; the grammar modules build commands from its
primitives. Errors are :class:`ParseError`; the reader never raises anything else.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from pobox.imap.commands import ExtValue, Parameter
from pobox.imap.sequences import SequenceSet, SequenceSetError

__all__ = [
    "LiteralMarker",
    "ParseError",
    "PendingLiteral",
    "Reader",
    "find_literal_marker",
]

T = TypeVar("T")

MAX_NUMBER64 = 2**63 - 1

# ATOM-CHAR: any CHAR except atom-specials: ( ) { SP CTL % * " \ ]
# 8-bit octets are tolerated in atoms (some clients send raw UTF-8 unquoted).
_ATOM_CHARS = frozenset(c for c in range(0x21, 0x100) if c != 0x7F and c not in b'(){%*"\\]')
_ASTRING_CHARS = _ATOM_CHARS | {ord("]")}
_LIST_CHARS = _ASTRING_CHARS | {ord("%"), ord("*")}
_TAG_CHARS = frozenset(c for c in _ASTRING_CHARS if c < 0x80 and c != ord("+"))
_SEQ_CHARS = frozenset(b"0123456789:,*$")
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    )
}
_MARKER_RE = re.compile(rb"(~?)\{([0-9]{1,20})(\+?)\}\Z")
_DATE_TIME_RE = re.compile(
    rb'"([ 0-9]?[0-9])-([A-Za-z]{3})-([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{4})"'
)
MAX_DEPTH = 64


class ParseError(Exception):
    """The command does not follow the grammar; ``text`` goes into the BAD response."""

    def __init__(self, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.code = code


@dataclass(frozen=True, slots=True)
class LiteralMarker:
    size: int
    sync: bool  # {n} waits for "+"; {n+} (LITERAL+/LITERAL-) does not
    binary: bool  # literal8 ~{n}


class PendingLiteral(Exception):
    """The reader reached the announced literal that has not arrived yet."""

    def __init__(self, marker: LiteralMarker) -> None:
        super().__init__("pending literal")
        self.marker = marker


def find_literal_marker(line: bytes) -> LiteralMarker | None:
    """The literal announced at the end of ``line`` (without CRLF), if any."""
    if not line.endswith(b"}"):
        return None
    m = _MARKER_RE.search(line[-25:])
    if m is None:
        return None
    return LiteralMarker(int(m.group(2)), sync=not m.group(3), binary=bool(m.group(1)))


class Reader:
    def __init__(self, lines: Sequence[bytes], literals: Sequence[bytes]) -> None:
        self.lines = lines
        self.literals = literals
        self.index = 0
        self.pos = 0
        self.line = lines[0] if lines else b""

    # -- position -----------------------------------------------------------------------

    def peek(self) -> int | None:
        return self.line[self.pos] if self.pos < len(self.line) else None

    def at_end(self) -> bool:
        return self.pos >= len(self.line) and self.index >= len(self.lines) - 1

    def mark(self) -> tuple[int, int]:
        return (self.index, self.pos)

    def raw_since(self, mark: tuple[int, int]) -> bytes | None:
        """The line text since ``mark``, or None if a literal intervened."""
        if mark[0] != self.index:
            return None
        return self.line[mark[1] : self.pos]

    def fail(self, what: str) -> ParseError:
        near = self.line[self.pos : self.pos + 20].decode("ascii", "replace")
        if self.pos >= len(self.line):
            return ParseError(f"{what}, found end of line")
        return ParseError(f"{what} near {near!r}")

    # -- tokens -------------------------------------------------------------------------

    def expect(self, token: bytes) -> None:
        """Exact token, compared case-insensitively."""
        end = self.pos + len(token)
        if self.line[self.pos : end].upper() != token.upper():
            raise self.fail(f"expected {token.decode()!r}")
        self.pos = end

    def try_expect(self, token: bytes) -> bool:
        end = self.pos + len(token)
        if self.line[self.pos : end].upper() == token.upper():
            self.pos = end
            return True
        return False

    def sp(self) -> None:
        if self.peek() != 0x20:
            raise self.fail("expected a space")
        self.pos += 1

    def try_sp(self) -> bool:
        if self.peek() == 0x20:
            self.pos += 1
            return True
        return False

    def end(self) -> None:
        if not self.at_end():
            raise self.fail("unexpected extra data")

    def _run(self, chars: frozenset[int]) -> bytes:
        start = self.pos
        line = self.line
        n = len(line)
        while self.pos < n and line[self.pos] in chars:
            self.pos += 1
        return line[start : self.pos]

    def tag(self) -> str:
        raw = self._run(_TAG_CHARS)
        if not raw:
            raise self.fail("expected a tag")
        return raw.decode("ascii")

    def atom(self, what: str = "an atom") -> bytes:
        raw = self._run(_ATOM_CHARS)
        if not raw:
            raise self.fail(f"expected {what}")
        return raw

    def keyword(self, what: str = "a keyword") -> str:
        """An atom as upper-case ASCII text."""
        return self.atom(what).decode("ascii", "replace").upper()

    def word(self) -> str:
        """Letters, digits, '.', '-' and '=' (command names, fetch/store item names)."""
        start = self.pos
        line = self.line
        while self.pos < len(line) and (chr(line[self.pos]).isalnum() or line[self.pos] in b".-=_"):
            self.pos += 1
        if start == self.pos:
            raise self.fail("expected a keyword")
        return line[start : self.pos].decode("ascii", "replace").upper()

    def number(self, limit: int = MAX_NUMBER64) -> int:
        start = self.pos
        while self.pos < len(self.line) and 0x30 <= self.line[self.pos] <= 0x39:
            self.pos += 1
        if start == self.pos:
            raise self.fail("expected a number")
        if self.pos - start > 20:
            raise ParseError("number too large")
        value = int(self.line[start : self.pos])
        if value > limit:
            raise ParseError("number too large")
        return value

    def nz_number(self, limit: int = 0xFFFFFFFF) -> int:
        value = self.number(limit)
        if value == 0:
            raise ParseError("expected a non-zero number")
        return value

    def quoted(self) -> bytes:
        if self.peek() != 0x22:
            raise self.fail("expected a quoted string")
        out = bytearray()
        line = self.line
        i = self.pos + 1
        n = len(line)
        while i < n:
            c = line[i]
            if c == 0x22:
                self.pos = i + 1
                return bytes(out)
            if c == 0x5C:
                if i + 1 < n and line[i + 1] in b'"\\':
                    out.append(line[i + 1])
                    i += 2
                    continue
                raise ParseError("invalid escape in quoted string")
            if c == 0:
                raise ParseError("NUL in quoted string")
            out.append(c)
            i += 1
        raise ParseError("unterminated quoted string")

    def literal(self) -> tuple[bytes, LiteralMarker]:
        m = _MARKER_RE.match(self.line, self.pos)
        if m is None:
            raise self.fail("expected a literal")
        marker = LiteralMarker(int(m.group(2)), sync=not m.group(3), binary=bool(m.group(1)))
        if self.index >= len(self.literals):
            raise PendingLiteral(marker)
        data = self.literals[self.index]
        self.index += 1
        self.line = self.lines[self.index]
        self.pos = 0
        return data, marker

    def _at_literal(self) -> bool:
        """At ``{`` or ``~{`` (a lone ``~`` is an ordinary atom character)."""
        c = self.peek()
        return c == 0x7B or (c == 0x7E and self.line[self.pos + 1 : self.pos + 2] == b"{")

    def string(self, *, binary_ok: bool = False) -> bytes:
        if self.peek() == 0x22:
            return self.quoted()
        if self._at_literal():
            data, marker = self.literal()
            if marker.binary and not binary_ok:
                raise ParseError("literal8 is not allowed here")
            if not marker.binary and b"\x00" in data:
                raise ParseError("NUL in literal")
            return data
        raise self.fail("expected a string")

    def astring(self, what: str = "a string") -> bytes:
        if self.peek() == 0x22 or self._at_literal():
            return self.string()
        raw = self._run(_ASTRING_CHARS)
        if not raw:
            raise self.fail(f"expected {what}")
        return raw

    def nstring(self) -> bytes | None:
        if self.try_nil():
            return None
        return self.string()

    def try_nil(self) -> bool:
        end = self.pos + 3
        if self.line[self.pos : end].upper() == b"NIL" and (
            end >= len(self.line) or self.line[end] not in _ASTRING_CHARS
        ):
            self.pos = end
            return True
        return False

    def list_mailbox(self) -> bytes:
        if self.peek() == 0x22 or self._at_literal():
            return self.string()
        raw = self._run(_LIST_CHARS)
        if not raw:
            raise self.fail("expected a mailbox pattern")
        return raw

    def flag(self) -> str:
        """``\\Flag`` or a keyword; system flags get their canonical case."""
        if self.peek() == 0x5C:
            self.pos += 1
            if self.peek() == 0x2A:  # "\*" (only meaningful in PERMANENTFLAGS)
                self.pos += 1
                return "\\*"
            name = self.atom("a flag").decode("ascii", "replace")
            return "\\" + _SYSTEM_FLAGS.get(name.upper(), name)
        return self.atom("a flag").decode("ascii", "replace")

    def flag_list(self) -> tuple[str, ...]:
        return tuple(self.paren_list(self.flag, allow_empty=True))

    def paren_list(self, item: Callable[[], T], *, allow_empty: bool = False) -> list[T]:
        self.expect(b"(")
        items: list[T] = []
        if self.peek() == 0x29:
            if not allow_empty:
                raise self.fail("expected a non-empty list")
            self.pos += 1
            return items
        while True:
            items.append(item())
            if self.peek() == 0x29:
                self.pos += 1
                return items
            self.sp()

    def sequence_set(self) -> SequenceSet:
        raw = self._run(_SEQ_CHARS)
        if not raw:
            raise self.fail("expected a sequence set")
        try:
            return SequenceSet.parse(raw)
        except SequenceSetError as exc:
            raise ParseError(str(exc)) from None

    def date(self) -> _dt.date:
        """``date`` of RFC 9051: ``1-Feb-2024`` optionally in double quotes."""
        quoted = self.try_expect(b'"')
        day = self.number(99)
        self.expect(b"-")
        month = _MONTHS.get(self.line[self.pos : self.pos + 3].decode("ascii", "replace").upper())
        if month is None:
            raise self.fail("expected a month name")
        self.pos += 3
        self.expect(b"-")
        start = self.pos
        year = self.number(9999)
        if self.pos - start != 4:
            raise ParseError("expected a four-digit year")
        if quoted:
            self.expect(b'"')
        try:
            return _dt.date(year, month, day)
        except ValueError:
            raise ParseError("invalid date") from None

    def date_time(self) -> _dt.datetime:
        """``date-time``: ``"26-Aug-2026 10:11:12 +0200"`` → aware datetime."""
        m = _DATE_TIME_RE.match(self.line, self.pos)
        if m is None:
            raise self.fail("expected a date-time")
        day, mon, year, hh, mm, ss, sign, zone = m.groups()
        month = _MONTHS.get(mon.decode("ascii").upper())
        offset = int(zone[:2]) * 60 + int(zone[2:])
        if month is None or int(zone[2:]) > 59:
            raise ParseError("invalid date-time")
        tz = _dt.timezone(_dt.timedelta(minutes=-offset if sign == b"-" else offset))
        try:
            value = _dt.datetime(
                int(year), month, int(day.strip()), int(hh), int(mm), int(ss), tzinfo=tz
            )
        except ValueError:
            raise ParseError("invalid date-time") from None
        self.pos = m.end()
        return value

    # -- RFC 4466 tagged-ext parameters -------------------------------------------------

    def parameters(self) -> tuple[Parameter, ...]:
        """``"(" param *(SP param) ")"`` where ``param = name [SP value]``."""
        self.expect(b"(")
        params: list[Parameter] = []
        if self.peek() == 0x29:
            self.pos += 1
            return ()
        while True:
            name = self.keyword("a parameter name")
            value: ExtValue | None = None
            if self.peek() == 0x20 and self._value_follows():
                self.pos += 1
                value = self.ext_value(0)
            params.append(Parameter(name, value))
            if self.peek() == 0x29:
                self.pos += 1
                return tuple(params)
            self.sp()

    def _value_follows(self) -> bool:
        nxt = self.line[self.pos + 1 : self.pos + 2]
        return bool(nxt) and nxt in b"0123456789*$(-"

    def ext_value(self, depth: int) -> ExtValue:
        if depth > MAX_DEPTH:
            raise ParseError("too deeply nested")
        if self.peek() == 0x28:
            self.pos += 1
            items: list[ExtValue] = []
            while self.peek() != 0x29:
                if items:
                    self.sp()
                items.append(self.ext_value(depth + 1))
            self.pos += 1
            return tuple(items)
        if self.peek() == 0x5C:
            return self.flag().encode("ascii", "replace")
        return self.astring("a parameter value")


_SYSTEM_FLAGS = {
    f.upper(): f
    for f in (
        *("Seen", "Answered", "Flagged", "Deleted", "Draft", "Recent"),
        # special-use attributes (RFC 6154), for CREATE (USE (...))
        *("All", "Archive", "Drafts", "Junk", "Sent", "Trash"),
    )
}
