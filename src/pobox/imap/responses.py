"""Typed IMAP responses → bytes. Every byte pobox sends to an IMAP client is built here.

Rules (RFC 9051 §4.3, §9 and the client findings in research/clients.md §3.C):

* status words and response names are upper case, a tagged status always has text after it,
  lines end in CRLF;
* a string is an atom where the grammar allows one (``astring``), a quoted string when it is
  short printable 7-bit text (8-bit UTF-8 too once UTF8=ACCEPT is enabled) with ``"`` and ``\\``
  escaped, and a literal otherwise (``~{n}`` literal8 for binary data when requested);
* mailbox names go out in modified UTF-7, or as UTF-8 once UTF8=ACCEPT / IMAP4rev2 is enabled;
  ``INBOX`` is always spelled in upper case.

Each response type has ``render(utf8=...)``; :func:`render` is the one-call form.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from pobox.imap import mutf7
from pobox.imap.sequences import format_uid_set

CRLF = b"\r\n"
_ATOM_SPECIALS = frozenset(b'(){ %*"\\]')
_MAX_QUOTED = 4096


# --------------------------------------------------------------------------- strings


def is_atom(data: bytes, *, astring: bool = True) -> bool:
    """True when ``data`` may be sent as an atom (``astring`` also allows ``]``)."""
    if not data or data.upper() == b"NIL":
        return False
    for c in data:
        if (c <= 0x20 or c >= 0x7F or c in _ATOM_SPECIALS) and not (astring and c == 0x5D):
            return False
    return True


def _quotable(data: bytes, utf8: bool) -> bool:
    if len(data) > _MAX_QUOTED:
        return False
    if data.isascii():
        return all(0x20 <= c < 0x7F for c in data)
    if not utf8 or any(c < 0x20 or c == 0x7F for c in data):
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def quoted(data: bytes) -> bytes:
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def literal(data: bytes, *, binary: bool = False) -> bytes:
    return b"%s{%d}\r\n%s" % (b"~" if binary else b"", len(data), data)


def string(data: bytes, *, utf8: bool = False, binary: bool = False) -> bytes:
    """``string``: quoted when possible, else a literal (literal8 if ``binary`` and NUL)."""
    if _quotable(data, utf8):
        return quoted(data)
    return literal(data, binary=binary and b"\x00" in data)


def astring(data: bytes, *, utf8: bool = False) -> bytes:
    return data if is_atom(data) else string(data, utf8=utf8)


def nstring(data: bytes | None, *, utf8: bool = False, binary: bool = False) -> bytes:
    return b"NIL" if data is None else string(data, utf8=utf8, binary=binary)


def mailbox_name(name: str, *, utf8: bool = False) -> bytes:
    """A mailbox name as ``astring``: mUTF-7 (rev1) or UTF-8 (UTF8=ACCEPT / IMAP4rev2)."""
    if name.upper() == "INBOX":
        return b"INBOX"
    raw = name.encode("utf-8") if utf8 else mutf7.encode(name)
    return astring(raw, utf8=utf8)


def flag_list(flags: Iterable[str]) -> bytes:
    return b"(" + b" ".join(f.encode("utf-8") for f in flags) + b")"


#: Longest human-readable text sent; texts that quote a client's input stay short.
MAX_TEXT = 300


def _text(text: str) -> bytes:
    """Human-readable text: one line of printable 7-bit ASCII, never empty (imaplib needs text
    after a status). Texts may quote what a client sent (``unknown command ...``): anything
    else, control characters, 8-bit bytes and invalid UTF-8 included, is sent as ``?``, so a
    reply never echoes a client's raw bytes."""
    line = text[:MAX_TEXT].replace("\r", " ").replace("\n", " ")
    safe = "".join(c if " " <= c <= "~" else "?" for c in line)
    return safe.encode("ascii") or b"done"


# --------------------------------------------------------------------------- response codes


@dataclass(frozen=True, slots=True)
class ResponseCode:
    """``[NAME args]``; ``args`` is pre-rendered. Use the class methods for common codes."""

    name: str
    args: bytes | None = None

    def render(self) -> bytes:
        if self.args is None:
            return b"[" + self.name.encode("ascii") + b"]"
        return b"[" + self.name.encode("ascii") + b" " + self.args + b"]"

    @classmethod
    def plain(cls, name: str) -> ResponseCode:
        """ALERT, READ-ONLY, READ-WRITE, TRYCREATE, TOOBIG, NONEXISTENT, CLOSED, …"""
        return cls(name)

    @classmethod
    def number(cls, name: str, value: int) -> ResponseCode:
        """UIDVALIDITY, UIDNEXT, UNSEEN, HIGHESTMODSEQ, APPENDLIMIT, …"""
        return cls(name, b"%d" % value)

    @classmethod
    def objectid(cls, name: str, objectid: str) -> ResponseCode:
        """``MAILBOXID (F12-1796654232)`` (RFC 8474 §4)."""
        return cls(name, b"(" + objectid.encode("ascii") + b")")

    @classmethod
    def uidvalidity(cls, value: int) -> ResponseCode:
        return cls.number("UIDVALIDITY", value)

    @classmethod
    def uidnext(cls, value: int) -> ResponseCode:
        return cls.number("UIDNEXT", value)

    @classmethod
    def permanentflags(cls, flags: Iterable[str]) -> ResponseCode:
        return cls("PERMANENTFLAGS", flag_list(flags))

    @classmethod
    def capability(cls, capabilities: Iterable[str]) -> ResponseCode:
        return cls("CAPABILITY", " ".join(capabilities).encode("ascii"))

    @classmethod
    def appenduid(cls, uidvalidity: int, uids: Iterable[int]) -> ResponseCode:
        return cls("APPENDUID", b"%d %s" % (uidvalidity, format_uid_set(uids).encode()))

    @classmethod
    def copyuid(cls, uidvalidity: int, source: Iterable[int], dest: Iterable[int]) -> ResponseCode:
        src = format_uid_set(source).encode()
        dst = format_uid_set(dest).encode()
        return cls("COPYUID", b"%d %s %s" % (uidvalidity, src, dst))

    @classmethod
    def badcharset(cls, charsets: Iterable[str] = ()) -> ResponseCode:
        names = [astring(c.encode("ascii")) for c in charsets]
        return cls("BADCHARSET", b"(" + b" ".join(names) + b")" if names else None)


# --------------------------------------------------------------------------- responses


class Response(Protocol):
    def render(self, *, utf8: bool = False) -> bytes: ...


def render(response: Response, *, utf8: bool = False) -> bytes:
    return response.render(utf8=utf8)


def _status_line(prefix: bytes, status: str, code: ResponseCode | None, text: str) -> bytes:
    parts = [prefix, status.encode("ascii")]
    if code is not None:
        parts.append(code.render())
    parts.append(_text(text))
    return b" ".join(parts) + CRLF


@dataclass(frozen=True, slots=True)
class Tagged:
    """``a1 OK [READ-WRITE] SELECT completed``; ``tag=None`` gives ``* BAD ...``."""

    tag: str | None
    status: str  # "OK" | "NO" | "BAD"
    text: str
    code: ResponseCode | None = None

    def render(self, *, utf8: bool = False) -> bytes:
        prefix = b"*" if self.tag is None else self.tag.encode("ascii")
        return _status_line(prefix, self.status, self.code, self.text)


@dataclass(frozen=True, slots=True)
class Untagged:
    """``* OK [UIDVALIDITY 3857529045] UIDs valid``; also NO, BAD, BYE and PREAUTH."""

    status: str
    text: str
    code: ResponseCode | None = None

    def render(self, *, utf8: bool = False) -> bytes:
        return _status_line(b"*", self.status, self.code, self.text)


def bye(text: str, code: ResponseCode | None = None) -> Untagged:
    return Untagged("BYE", text, code)


@dataclass(frozen=True, slots=True)
class Continuation:
    """``+ text`` (``text`` may be empty: ``+ `` is what SASL and literals expect)."""

    text: bytes = b""

    def render(self, *, utf8: bool = False) -> bytes:
        return b"+ " + self.text + CRLF


@dataclass(frozen=True, slots=True)
class MessageCount:
    """``* 3 EXISTS`` / ``* 0 RECENT`` / ``* 2 EXPUNGE``."""

    number: int
    kind: str

    def render(self, *, utf8: bool = False) -> bytes:
        return b"* %d %s\r\n" % (self.number, self.kind.encode("ascii"))


def exists(n: int) -> MessageCount:
    return MessageCount(n, "EXISTS")


def recent(n: int) -> MessageCount:
    return MessageCount(n, "RECENT")


def expunge(msn: int) -> MessageCount:
    return MessageCount(msn, "EXPUNGE")


@dataclass(frozen=True, slots=True)
class Flags:
    flags: tuple[str, ...]

    def render(self, *, utf8: bool = False) -> bytes:
        return b"* FLAGS " + flag_list(self.flags) + CRLF


@dataclass(frozen=True, slots=True)
class ListItem:
    """``* LIST (\\HasNoChildren \\Drafts) "/" Drafts``; ``kind="LSUB"`` for LSUB.

    ``extra`` is pre-rendered extended data such as ``("CHILDINFO" ("SUBSCRIBED"))``.
    """

    attributes: tuple[str, ...]
    delimiter: str | None
    name: str
    kind: str = "LIST"
    extra: bytes = b""

    def render(self, *, utf8: bool = False) -> bytes:
        delim = b"NIL" if self.delimiter is None else quoted(self.delimiter.encode("ascii"))
        out = b"* %s %s %s %s" % (
            self.kind.encode("ascii"),
            flag_list(self.attributes),
            delim,
            mailbox_name(self.name, utf8=utf8),
        )
        if self.extra:
            out += b" " + self.extra
        return out + CRLF


@dataclass(frozen=True, slots=True)
class StatusResponse:
    """``* STATUS INBOX (MESSAGES 3 UIDNEXT 4)``"""

    name: str
    items: tuple[tuple[str, int | str], ...]  # a str is an object id: MAILBOXID (F1-2)

    def render(self, *, utf8: bool = False) -> bytes:
        body = b" ".join(
            b"%s %d" % (k.encode("ascii"), v)
            if isinstance(v, int)
            else k.encode("ascii") + b" (" + v.encode("ascii") + b")"
            for k, v in self.items
        )
        return b"* STATUS " + mailbox_name(self.name, utf8=utf8) + b" (" + body + b")" + CRLF


@dataclass(frozen=True, slots=True)
class SearchResponse:
    """``* SEARCH 2 3`` (``modseq`` adds ``(MODSEQ n)`` for CONDSTORE)."""

    numbers: tuple[int, ...]
    modseq: int | None = None

    def render(self, *, utf8: bool = False) -> bytes:
        out = b"* SEARCH"
        if self.numbers:
            out += b" " + b" ".join(b"%d" % n for n in self.numbers)
        if self.modseq is not None:
            out += b" (MODSEQ %d)" % self.modseq
        return out + CRLF


@dataclass(frozen=True, slots=True)
class ESearchResponse:
    """``* ESEARCH (TAG "a1") UID MIN 1 COUNT 4`` (RFC 4731).

    ``items`` values: an int, a list of numbers rendered as a compressed set (ALL), or bytes
    written as they are (PARTIAL, ADDTO and REMOVEFROM of RFC 5267 and RFC 9394).
    """

    tag: str | None
    uid: bool
    items: tuple[tuple[str, int | tuple[int, ...] | bytes], ...] = field(default=())
    #: ALL in the order given (ESORT, RFC 5267 §3): ascending runs shortened to ranges only
    ordered: bool = False

    def render(self, *, utf8: bool = False) -> bytes:
        out = b"* ESEARCH"
        if self.tag is not None:
            out += b' (TAG "' + self.tag.encode("ascii") + b'")'
        if self.uid:
            out += b" UID"
        for name, value in self.items:
            if isinstance(value, int):
                out += b" %s %d" % (name.encode("ascii"), value)
            elif isinstance(value, bytes):
                out += b" %s %s" % (name.encode("ascii"), value)
            elif value:
                text = ordered_set(value) if self.ordered else format_uid_set(sorted(value))
                out += b" %s %s" % (name.encode("ascii"), text.encode())
        return out + CRLF


def ordered_set(numbers: tuple[int, ...]) -> str:
    """Numbers in their order, each run n, n+1, … m written ``n:m``."""
    parts: list[str] = []
    start = prev = numbers[0]
    for n in numbers[1:]:
        if n == prev + 1:
            prev = n
            continue
        parts.append(f"{start}:{prev}" if prev != start else str(start))
        start = prev = n
    parts.append(f"{start}:{prev}" if prev != start else str(start))
    return ",".join(parts)


@dataclass(frozen=True, slots=True)
class ThreadResponse:
    """``* THREAD (2)(3 6 (4 23)(44 7 96))`` (RFC 5256 §4): *threads* is the rendered list."""

    threads: bytes

    def render(self, *, utf8: bool = False) -> bytes:
        return (b"* THREAD " + self.threads if self.threads else b"* THREAD") + CRLF


@dataclass(frozen=True, slots=True)
class SortResponse:
    """``* SORT 2 3 1`` (RFC 5256 §4; ``modseq`` adds ``(MODSEQ n)``, RFC 7162 §3.1.5)."""

    numbers: tuple[int, ...]
    modseq: int | None = None

    def render(self, *, utf8: bool = False) -> bytes:
        out = b"* SORT"
        if self.numbers:
            out += b" " + b" ".join(b"%d" % n for n in self.numbers)
        if self.modseq is not None:
            out += b" (MODSEQ %d)" % self.modseq
        return out + CRLF


@dataclass(frozen=True, slots=True)
class FetchResponse:
    """``* 12 FETCH (UID 5 FLAGS (\\Seen))``: items are pre-rendered (name, value) pairs."""

    msn: int
    items: tuple[tuple[bytes, bytes], ...]

    def render(self, *, utf8: bool = False) -> bytes:
        body = b" ".join(name + b" " + value for name, value in self.items)
        return b"* %d FETCH (%s)\r\n" % (self.msn, body)


@dataclass(frozen=True, slots=True)
class CapabilityResponse:
    capabilities: tuple[str, ...]
    kind: str = "CAPABILITY"  # or "ENABLED"

    def render(self, *, utf8: bool = False) -> bytes:
        words = [self.kind, *self.capabilities]
        return b"* " + " ".join(words).encode("ascii") + CRLF


def enabled(capabilities: Iterable[str]) -> CapabilityResponse:
    return CapabilityResponse(tuple(capabilities), "ENABLED")


Namespaces = tuple[tuple[str, str | None], ...] | None


@dataclass(frozen=True, slots=True)
class NamespaceResponse:
    """``* NAMESPACE (("" "/")) NIL NIL``; each part is ((prefix, delimiter), …) or None."""

    personal: Namespaces
    other: Namespaces = None
    shared: Namespaces = None

    def render(self, *, utf8: bool = False) -> bytes:
        parts = []
        for ns in (self.personal, self.other, self.shared):
            if not ns:
                parts.append(b"NIL")
                continue
            items = []
            for prefix, delim in ns:
                raw = prefix.encode("utf-8") if utf8 else mutf7.encode(prefix)
                d = b"NIL" if delim is None else quoted(delim.encode("ascii"))
                items.append(b"(" + string(raw, utf8=utf8) + b" " + d + b")")
            parts.append(b"(" + b"".join(items) + b")")
        return b"* NAMESPACE " + b" ".join(parts) + CRLF


@dataclass(frozen=True, slots=True)
class IdResponse:
    """``* ID ("name" "pobox" "version" "0.1")`` or ``* ID NIL``."""

    parameters: tuple[tuple[str, str | None], ...] | None

    def render(self, *, utf8: bool = False) -> bytes:
        if not self.parameters:
            return b"* ID NIL" + CRLF
        items = []
        for key, value in self.parameters:
            items.append(string(key.encode("utf-8"), utf8=utf8))
            items.append(nstring(None if value is None else value.encode("utf-8"), utf8=utf8))
        return b"* ID (" + b" ".join(items) + b")" + CRLF


@dataclass(frozen=True, slots=True)
class VanishedResponse:
    """``* VANISHED (EARLIER) 41,43:116`` (RFC 7162 QRESYNC)."""

    uids: tuple[int, ...]
    earlier: bool = False

    def render(self, *, utf8: bool = False) -> bytes:
        prefix = b"* VANISHED (EARLIER) " if self.earlier else b"* VANISHED "
        return prefix + format_uid_set(self.uids).encode() + CRLF


# --------------------------------------------------------------------------- ACL (RFC 4314)


def _identifier(text: str, utf8: bool) -> bytes:
    return astring(text.encode("utf-8"), utf8=utf8)


@dataclass(frozen=True, slots=True)
class MyRightsResponse:
    """``* MYRIGHTS INBOX lrswipkxteacd`` (RFC 4314 §3.8, RFC 8440)."""

    name: str
    rights: str

    def render(self, *, utf8: bool = False) -> bytes:
        rights = astring(self.rights.encode("ascii"))
        return b"* MYRIGHTS " + mailbox_name(self.name, utf8=utf8) + b" " + rights + CRLF


@dataclass(frozen=True, slots=True)
class AclResponse:
    """``* ACL INBOX fred@example.org lrswi`` (RFC 4314 §3.6)."""

    name: str
    entries: tuple[tuple[str, str], ...]

    def render(self, *, utf8: bool = False) -> bytes:
        parts = [b"* ACL " + mailbox_name(self.name, utf8=utf8)]
        for identifier, rights in self.entries:
            parts.append(_identifier(identifier, utf8) + b" " + astring(rights.encode("ascii")))
        return b" ".join(parts) + CRLF


@dataclass(frozen=True, slots=True)
class ListRightsResponse:
    """``* LISTRIGHTS INBOX fred@example.org "" l r s w …`` (RFC 4314 §3.7)."""

    name: str
    identifier: str
    required: str
    optional: tuple[str, ...]

    def render(self, *, utf8: bool = False) -> bytes:
        parts = [
            b"* LISTRIGHTS " + mailbox_name(self.name, utf8=utf8),
            _identifier(self.identifier, utf8),
            astring(self.required.encode("ascii")),
            *(astring(o.encode("ascii")) for o in self.optional),
        ]
        return b" ".join(parts) + CRLF
