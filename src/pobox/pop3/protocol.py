"""Sans-IO POP3: command lines in, typed commands out; replies formatted as bytes.

RFC 1939 (the protocol), RFC 2449 (CAPA, response codes, 255-octet command lines), RFC 5034
(AUTH), RFC 6856 (UTF8), RFC 2595 (STLS). Nothing here touches a socket, the event loop or the
store: :mod:`pobox.pop3.session` does that. Errors are values (:class:`BadCommand`), never
exceptions, so random input can be fed in without harm.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pobox.sasl.mechanisms import MECHANISMS

CRLF = b"\r\n"

#: RFC 2449 §4: a command line is at most 255 octets including CRLF.
MAX_COMMAND_LINE = 255
#: A SASL client response line (base64), RFC 5034 continuation.
MAX_SASL_LINE = 8192
#: Largest message number or line count accepted (beyond any real maildrop).
_MAX_DIGITS = 18

# response codes (RFC 2449 §8, RFC 3206)
IN_USE = "IN-USE"
LOGIN_DELAY = "LOGIN-DELAY"
AUTH = "AUTH"
SYS_TEMP = "SYS/TEMP"
SYS_PERM = "SYS/PERM"
UTF8 = "UTF8"


# commands ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class User:
    name: str


@dataclass(frozen=True, slots=True)
class Pass:
    password: str


@dataclass(frozen=True, slots=True)
class Apop:
    pass


@dataclass(frozen=True, slots=True)
class Auth:
    mechanism: str | None  # None: list the mechanisms
    initial: bytes | None = None  # the base64 initial response as sent ("=" for empty)


@dataclass(frozen=True, slots=True)
class Capa:
    pass


@dataclass(frozen=True, slots=True)
class Stls:
    pass


@dataclass(frozen=True, slots=True)
class Utf8:
    pass


@dataclass(frozen=True, slots=True)
class Stat:
    pass


@dataclass(frozen=True, slots=True)
class List:
    number: int | None = None


@dataclass(frozen=True, slots=True)
class Uidl:
    number: int | None = None


@dataclass(frozen=True, slots=True)
class Retr:
    number: int


@dataclass(frozen=True, slots=True)
class Top:
    number: int
    lines: int


@dataclass(frozen=True, slots=True)
class Dele:
    number: int


@dataclass(frozen=True, slots=True)
class Noop:
    pass


@dataclass(frozen=True, slots=True)
class Rset:
    pass


@dataclass(frozen=True, slots=True)
class Last:
    pass


@dataclass(frozen=True, slots=True)
class Quit:
    pass


@dataclass(frozen=True, slots=True)
class BadCommand:
    """A line that is not a valid command; ``keyword`` is set when the keyword was known."""

    reason: str
    keyword: str = ""


Command = (
    User
    | Pass
    | Apop
    | Auth
    | Capa
    | Stls
    | Utf8
    | Stat
    | List
    | Uidl
    | Retr
    | Top
    | Dele
    | Noop
    | Rset
    | Last
    | Quit
)


def _number(text: bytes) -> int | None:
    if not text.isdigit() or len(text) > _MAX_DIGITS:
        return None
    return int(text)


def _text(data: bytes) -> str:
    """A user name or password: UTF-8 (RFC 6856 "UTF8 USER"); undecodable bytes stay distinct."""
    return data.decode("utf-8", "surrogateescape")


_NO_ARGS: dict[str, Callable[[], Command]] = {
    "CAPA": Capa,
    "STLS": Stls,
    "UTF8": Utf8,
    "STAT": Stat,
    "NOOP": Noop,
    "RSET": Rset,
    "LAST": Last,
    "QUIT": Quit,
}


def parse_command(line: bytes) -> Command | BadCommand:
    """One command line without its CRLF. Never raises."""
    if not line:
        return BadCommand("empty command line")
    keyword_bytes, _, rest = line.partition(b" ")
    if not keyword_bytes.isascii() or not keyword_bytes.isalnum() or len(keyword_bytes) > 8:
        return BadCommand("unknown command")
    keyword = keyword_bytes.decode("ascii").upper()
    # USER and PASS take the rest of the line: passwords may contain spaces (RFC 1939 §7 notes)
    if keyword == "PASS":
        if not rest:
            return BadCommand("PASS needs a password", keyword)
        return Pass(_text(rest))
    if keyword == "USER":
        name = rest.strip(b" ")
        if not name:
            return BadCommand("USER needs a user name", keyword)
        return User(_text(name))
    args = rest.split()
    if keyword == "APOP":
        return Apop()
    if keyword in _NO_ARGS:
        if args:
            return BadCommand(f"{keyword} takes no arguments", keyword)
        return _NO_ARGS[keyword]()
    if keyword == "AUTH":
        if not args:
            return Auth(None)
        if len(args) > 2:
            return BadCommand("AUTH takes a mechanism and an optional initial response", keyword)
        if not args[0].isascii():
            return BadCommand("bad mechanism name", keyword)
        return Auth(args[0].decode("ascii").upper(), args[1] if len(args) == 2 else None)
    if keyword in ("LIST", "UIDL"):
        if len(args) > 1:
            return BadCommand(f"{keyword} takes at most one message number", keyword)
        if not args:
            return List() if keyword == "LIST" else Uidl()
        number = _number(args[0])
        if number is None:
            return BadCommand("invalid message number", keyword)
        return List(number) if keyword == "LIST" else Uidl(number)
    if keyword in ("RETR", "DELE"):
        if len(args) != 1:
            return BadCommand(f"{keyword} takes one message number", keyword)
        number = _number(args[0])
        if number is None:
            return BadCommand("invalid message number", keyword)
        return Retr(number) if keyword == "RETR" else Dele(number)
    if keyword == "TOP":
        if len(args) != 2:
            return BadCommand("TOP takes a message number and a line count", keyword)
        number, lines = _number(args[0]), _number(args[1])
        if number is None:
            return BadCommand("invalid message number", keyword)
        if lines is None:
            return BadCommand("invalid line count", keyword)
        return Top(number, lines)
    return BadCommand("unknown command")


# reading lines ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LineTooLong:
    """A line over the limit was received (and is being discarded up to its end)."""


class LineBuffer:
    """Splits received bytes into lines with a bound on line length; memory stays bounded.

    A line longer than the limit is reported once as :class:`LineTooLong` as soon as it is known
    to be too long; the rest of it is dropped up to its LF. Dropping that goes on and on is
    reported again every :attr:`DISCARD_REPORT` octets, so a session can count it as misbehaviour.
    """

    DISCARD_REPORT = 65536

    def __init__(self) -> None:
        self._buf = bytearray()
        self._discarding = False
        self._discarded = 0

    def feed(self, data: bytes) -> None:
        self._buf += data

    def discard_pending(self) -> None:
        """Forget everything received (after STLS, RFC 2595 §4 requires it)."""
        self._buf.clear()
        self._discarding = False
        self._discarded = 0

    @property
    def pending(self) -> bool:
        return bool(self._buf)

    def next_line(self, limit: int = MAX_COMMAND_LINE) -> bytes | LineTooLong | None:
        """The next line without CRLF (or LF), LineTooLong, or None when more data is needed.

        *limit* counts the line including its CRLF.
        """
        while True:
            end = self._buf.find(b"\n")
            if self._discarding:
                if end < 0:
                    self._discarded += len(self._buf)
                    self._buf.clear()
                    if self._discarded >= self.DISCARD_REPORT:
                        self._discarded = 0
                        return LineTooLong()
                    return None
                del self._buf[: end + 1]
                self._discarding = False
                self._discarded = 0
                continue
            if end < 0:
                if len(self._buf) >= limit:
                    self._buf.clear()
                    self._discarding = True
                    return LineTooLong()
                return None
            line = bytes(self._buf[: end + 1])
            del self._buf[: end + 1]
            if len(line) > limit:
                return LineTooLong()
            return line[:-2] if line.endswith(CRLF) else line[:-1]


# replies ----------------------------------------------------------------------------------------
def _clean(text: str) -> bytes:
    """Reply text on one line (no CR/LF can be smuggled into a reply)."""
    return text.replace("\r", " ").replace("\n", " ").encode("utf-8", "replace")


def ok(text: str = "", code: str | None = None) -> bytes:
    return _status(b"+OK", text, code)


def err(text: str, code: str | None = None) -> bytes:
    return _status(b"-ERR", text, code)


def _status(word: bytes, text: str, code: str | None) -> bytes:
    parts = [word]
    if code:
        parts.append(b"[" + _clean(code) + b"]")
    if text:
        parts.append(_clean(text))
    return b" ".join(parts) + CRLF


def continuation(data: bytes) -> bytes:
    """A SASL continuation: ``+ `` and the base64 challenge (``+ `` CRLF when empty)."""
    return b"+ " + data + CRLF


def multiline(first: bytes, lines: Iterable[bytes]) -> bytes:
    """A multi-line reply: *first* (a whole +OK line), the lines dot-stuffed, then ``.``."""
    out = [first]
    for line in lines:
        if line.startswith(b"."):
            out.append(b"." + line + CRLF)
        else:
            out.append(line + CRLF)
    out.append(b"." + CRLF)
    return b"".join(out)


def listing(first: bytes, entries: Iterable[tuple[int, int | str]]) -> bytes:
    """LIST/UIDL listings: ``n value`` lines with single spaces (never start with a dot)."""
    body = b"".join(b"%d %s\r\n" % (n, str(v).encode("ascii")) for n, v in entries)
    return first + body + b".\r\n"


def capabilities(
    expire: str, *, stls: bool, implementation: str, plaintext: bool = True
) -> list[bytes]:
    """The CAPA lines (RFC 2449 §6, RFC 3206, RFC 5034, RFC 6856, RFC 2595). Without
    ``plaintext`` (no password may cross the connection yet) USER and SASL are left out: every
    mechanism offered carries a password."""
    login = [b"USER", b"SASL " + " ".join(MECHANISMS).encode("ascii")] if plaintext else []
    lines = [
        b"TOP",
        b"UIDL",
        *login,
        b"RESP-CODES",
        b"AUTH-RESP-CODE",
        b"PIPELINING",
        b"EXPIRE " + _clean(expire),
        b"LOGIN-DELAY 0",
        b"UTF8 USER" if plaintext else b"UTF8",
        b"IMPLEMENTATION " + _clean(implementation),
    ]
    if stls:
        lines.append(b"STLS")
    return lines


# streaming message content -------------------------------------------------------------------
_DOT_LINE = re.compile(rb"\n\.").search


class DotStuffer:
    """Byte-stuffs message content chunk by chunk (RFC 1939 §3) for RETR and TOP.

    Any line (after LF, or at the very start) that begins with "." gets another "." in front;
    chunks may split lines anywhere. :meth:`finish` ends the reply: a CRLF if the content did not
    end with one, then ".\\r\\n".
    """

    __slots__ = ("_line_start", "_tail", "octets")

    def __init__(self) -> None:
        self._line_start = True
        self._tail = b""
        self.octets = 0

    def feed(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        self.octets += len(chunk)
        # most content has no line starting with "." (base64 has no "." at all): finding out
        # with memchr (a single byte) or the regex engine is 2-500 times cheaper than replace()
        # with its two-byte pattern, which scans the whole chunk three bytes at a time
        if chunk.find(b".") < 0 or _DOT_LINE(chunk) is None:
            out = chunk
        else:
            out = chunk.replace(b"\n.", b"\n..")
        if self._line_start and chunk[0] == 0x2E:  # "."
            out = b"." + out
        self._line_start = chunk[-1] == 0x0A
        self._tail = (self._tail + chunk[-2:])[-2:]
        return out

    def finish(self) -> bytes:
        if self.octets == 0 or self._tail == CRLF:
            return b".\r\n"
        return b"\r\n.\r\n"


def unstuff(wire: bytes) -> bytes:
    """The inverse of :class:`DotStuffer` (what a client does): for tests and tools."""
    if not wire.endswith(b".\r\n"):
        raise ValueError("no terminating dot line")
    body = wire[:-3]
    if body and not body.endswith(CRLF):
        raise ValueError("the terminating dot is not on a line of its own")
    if body.startswith(b"."):
        body = body[1:]
    return body.replace(b"\n..", b"\n.")


class TopScanner:
    """Finds where ``TOP n k`` ends: the header, the blank line, then *k* body lines.

    Feed the content in order, in chunks of any size; :meth:`feed` returns the octet offset to
    stop at (exclusive) once it is known, else None. A message without a blank line is all
    header and TOP sends all of it. The work is done by bulk byte searches (``find``, ``count``,
    ``split``) on whole chunks, never line by line in Python; the last two octets of the
    previous chunk are carried over, so a blank line split across chunks is found.
    """

    __slots__ = ("_body_lines", "_in_header", "_offset", "_tail", "end")

    def __init__(self, lines: int) -> None:
        self._body_lines = lines
        self._in_header = True
        self._offset = 0  # absolute offset of the next chunk
        # the octets before the next chunk; the content starts a line, as if after an LF
        self._tail = b"\n"
        self.end: int | None = None

    def feed(self, chunk: bytes) -> int | None:
        if self.end is not None or not chunk:
            return self.end
        base = self._offset
        self._offset += len(chunk)
        pos = 0
        if self._in_header:
            # the blank line (LF LF or LF CR LF) that ends the header, carried tail included
            window = self._tail + chunk
            crlf = window.find(b"\n\r\n")
            # stored mail ends its lines in CRLF: a bare LF LF can only come before that
            lf = window.find(b"\n\n", 0, len(window) if crlf < 0 else crlf + 1)
            if lf < 0 and crlf < 0:
                self._tail = window[-2:]
                return None
            if crlf < 0 or 0 <= lf < crlf:
                pos = lf + 2 - len(self._tail)
            else:
                pos = crlf + 3 - len(self._tail)
            self._in_header = False
            if self._body_lines == 0:
                self.end = base + pos
                return self.end
        wanted = self._body_lines
        count = chunk.count(b"\n", pos)
        if count < wanted:
            self._body_lines -= count
            return None
        rest = chunk[pos:].split(b"\n", wanted)[-1]  # what follows the wanted-th LF
        self.end = base + len(chunk) - len(rest)
        return self.end
