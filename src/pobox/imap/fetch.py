"""FETCH data items (RFC 9051 §6.4.5 / §7.5.2, RFC 3501, RFC 3516 BINARY, RFC 7162 MODSEQ).

Pure functions: the session decides which messages to answer for, loads what
:func:`needs_structure` / :func:`needs_content` say it must, and writes what
:func:`render_fetch` returns between ``* <n> FETCH (`` and ``)\\r\\n``.

:func:`render_fetch` returns *pieces*: ``bytes`` to be written as they are, and :class:`Literal`
markers for message data that is large enough to be streamed from the stored file. Written in
order, the pieces are exactly the text between the parentheses, separators included, e.g.::

    [b"UID 5 BODY[1] ", Literal(offset=812, length=90000), b" FLAGS (\\\\Seen)"]

A :class:`Literal` is written as :meth:`Literal.prefix` followed by ``length`` octets of the
stored message read from ``offset`` (``Content.read`` in chunks, or ``loop.sendfile`` on
``Content.file()``). :func:`materialize` does that in memory (tests, small answers).

Observed Dovecot 2.3 behaviour reproduced here (tests/interop/test_dovecot_fetch.py):

* a section that does not exist, or a kind that does not apply (``1.HEADER`` of a text part),
  is answered with the empty literal ``{0}``, as every empty section is;
* ``HEADER.FIELDS`` returns the matching fields (case-insensitive names, message order, folded
  lines intact) followed by CRLF; ``HEADER.FIELDS.NOT`` the other fields, then CRLF;
* a partial ``<start.count>`` is applied to the section's data; the response label carries the
  origin only (``BODY[]<0>``); a start beyond the data gives an empty string;
* BINARY decodes base64 and quoted-printable (trailing blanks of QP lines dropped, ``=`` soft
  breaks joined, invalid ``=XX`` or base64 junk → ``NO [PARSE]``); any other encoding →
  ``NO [UNKNOWN-CTE]``. BINARY of the whole message, a multipart or a message/rfc822 part
  returns it as stored except that each encoded leaf inside is decoded and its header says
  ``Content-Transfer-Encoding: binary`` (moved to the end of that header); a message/rfc822
  part's own encoding is not decoded. A message root's encoding is honoured even without
  MIME-Version/Content-Type (the stored structure ignores it there; Dovecot's BINARY doesn't).
* BINARY data goes out as literal8 ``~{n}`` when it has NUL octets (and when streamed unseen);
  Dovecot uses literal8 more often, which is equally valid.
* a literal of any other item never carries a NUL octet (RFC 9051's ``CHAR8`` excludes it; a
  message can hold one, e.g. in a binary part): each is sent as 0x80, as Dovecot does, so
  the length and every other octet stay as stored (:func:`no_nul`).

Known divergences: for base64 parts Dovecot's BINARY.SIZE can differ from the length of its own
BINARY answer (755 vs 768 octets in the corpus); we answer the exact decoded length. A QP body
ending in ``=`` with no line break: Dovecot fails the command (BYE), we drop the ``=``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from pobox.imap import responses as r
from pobox.imap.bodystructure import _find as find_part
from pobox.imap.bodystructure import render_bodystructure, render_envelope, section_range
from pobox.imap.objectid import email_id
from pobox.mail.preview import preview_text
from pobox.mail.structure import MimePart, ParsedMessage
from pobox.store.api import Content, MessageMeta, Rendered

__all__ = [
    "CACHED",
    "STREAM_THRESHOLD",
    "DecodeError",
    "FetchError",
    "FetchItem",
    "Literal",
    "Section",
    "UnknownCte",
    "UnsupportedItem",
    "binary_data",
    "decode_base64",
    "decode_quoted_printable",
    "default_section_text",
    "filter_header",
    "format_flags",
    "format_internaldate",
    "materialize",
    "needs_content",
    "needs_structure",
    "no_nul",
    "render_fetch",
    "render_kept",
    "sets_seen",
    "wants_rendered",
]

#: Section data at least this long is returned as a :class:`Literal` to stream; shorter data is
#: read and inlined as ``{n}\r\n<octets>``.
STREAM_THRESHOLD = 16 * 1024

# --------------------------------------------------------------------------------------------
# errors


class FetchError(Exception):
    """A FETCH that must fail with ``NO [code] text`` (no partial FETCH response is sent)."""

    code = "SERVERBUG"

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class UnknownCte(FetchError):
    """BINARY of a part whose Content-Transfer-Encoding we cannot decode (RFC 3516 §4.3)."""

    code = "UNKNOWN-CTE"


class DecodeError(FetchError):
    """BINARY of a part whose base64 / quoted-printable data is invalid (Dovecot: [PARSE])."""

    code = "PARSE"


class UnsupportedItem(FetchError):
    """An item name render_fetch does not know (the session should refuse it with BAD earlier)."""

    code = "CLIENTBUG"


# --------------------------------------------------------------------------------------------
# input types


_KINDS = frozenset({"", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"})


@dataclass(frozen=True, slots=True)
class Section:
    """``[<part>.<kind>]<<start>.<count>>`` of BODY[...], BINARY[...] and BINARY.SIZE[...]."""

    part: tuple[int, ...] = ()  # () for the whole message
    kind: str = ""  # "" | HEADER | HEADER.FIELDS | HEADER.FIELDS.NOT | TEXT | MIME
    fields: tuple[bytes, ...] = ()  # header names for HEADER.FIELDS (.NOT), any case
    partial: tuple[int, int] | None = None  # (start, count)

    def __post_init__(self) -> None:
        if self.kind.upper() not in _KINDS:
            raise ValueError(f"unknown section kind {self.kind!r}")


_SIMPLE = frozenset(
    {
        "UID",
        "FLAGS",
        "INTERNALDATE",
        "RFC822.SIZE",
        "ENVELOPE",
        "BODY",  # without a section: the non-extensible body structure
        "BODYSTRUCTURE",
        "RFC822",
        "RFC822.PEEK",
        "RFC822.HEADER",
        "RFC822.TEXT",
        "RFC822.TEXT.PEEK",
        "MODSEQ",
        "SAVEDATE",
        "EMAILID",
        "THREADID",
        "PREVIEW",
    }
)
_SECTIONED = frozenset({"BODY", "BINARY", "BINARY.SIZE"})


@dataclass(frozen=True, slots=True)
class FetchItem:
    """One fetch-att.

    ``name`` is upper case: one of the simple names (``UID``, ``FLAGS``, ``INTERNALDATE``,
    ``RFC822.SIZE``, ``ENVELOPE``, ``BODY``, ``BODYSTRUCTURE``, ``RFC822``, ``RFC822.PEEK``,
    ``RFC822.HEADER``, ``RFC822.TEXT``, ``RFC822.TEXT.PEEK``, ``MODSEQ``, ``SAVEDATE``,
    ``EMAILID``, ``THREADID``), or
    ``BODY`` / ``BINARY`` / ``BINARY.SIZE`` with a ``section`` (``peek`` for the .PEEK forms).

    ``section_text`` is the text between the brackets exactly as the client wrote it
    (``HEADER.FIELDS (From Subject)``, ``1.MIME``); it is echoed in the response label, since
    clients compare labels textually. When None, :func:`default_section_text` builds one the way
    Dovecot does (field names upper-cased).
    """

    name: str
    section: Section | None = None
    peek: bool = False
    section_text: bytes | None = None

    @classmethod
    def simple(cls, name: str) -> FetchItem:
        return cls(name.upper())

    @classmethod
    def body(
        cls, section: Section, *, peek: bool = False, section_text: bytes | None = None
    ) -> FetchItem:
        return cls("BODY", section, peek, section_text)

    @classmethod
    def binary(
        cls, section: Section, *, peek: bool = False, section_text: bytes | None = None
    ) -> FetchItem:
        return cls("BINARY", section, peek, section_text)

    @classmethod
    def binary_size(cls, section: Section, *, section_text: bytes | None = None) -> FetchItem:
        return cls("BINARY.SIZE", section, True, section_text)


# --------------------------------------------------------------------------------------------
# output types


@dataclass(frozen=True, slots=True)
class Literal:
    """``length`` octets of the stored message from ``offset``, sent as a literal.

    ``binary`` selects the literal8 form ``~{n}`` (RFC 3516).
    """

    offset: int
    length: int
    binary: bool = False

    def prefix(self) -> bytes:
        return b"%s{%d}\r\n" % (b"~" if self.binary else b"", self.length)


Piece = bytes | Literal


def no_nul(data: bytes) -> bytes:
    """*data* fit for a literal that is not literal8: NUL octets become 0x80 (same length)."""
    return data.replace(b"\x00", b"\x80") if b"\x00" in data else data


def materialize(pieces: Iterable[Piece], content: Content | None) -> bytes:
    """The pieces as one byte string (reading the literals from ``content``)."""
    out = bytearray()
    for p in pieces:
        if isinstance(p, Literal):
            out += p.prefix()
            if p.length:
                if content is None:
                    raise ValueError("a Literal needs the message content")
                data = content.read(p.offset, p.length)
                if len(data) != p.length:
                    raise ValueError("stored message is shorter than its structure says")
                out += data if p.binary else no_nul(data)
        else:
            out += p
    return bytes(out)


# --------------------------------------------------------------------------------------------
# planning helpers for the session

_STRUCTURE_FREE = frozenset(
    {"UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "MODSEQ", "SAVEDATE", "RFC822", "RFC822.PEEK"}
    | {"EMAILID", "THREADID"}
)
_CONTENT_FREE = frozenset(
    {"UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "MODSEQ", "SAVEDATE", "ENVELOPE", "BODY"}
    | {"BODYSTRUCTURE", "EMAILID", "THREADID"}
)


#: Items answered from what the store keeps rendered (:class:`Rendered`), when it has it.
CACHED = frozenset({"ENVELOPE", "BODYSTRUCTURE"})


def needs_structure(items: Iterable[FetchItem], *, cached: bool = False) -> bool:
    """True when some item needs the message's ParsedMessage (with *cached*: apart from the
    items in :data:`CACHED`, which the caller answers from the kept renderings)."""
    for it in items:
        if it.section is not None:
            if it.name != "BODY" or it.section.part or it.section.kind:
                return True
        elif it.name not in _STRUCTURE_FREE and not (cached and it.name in CACHED):
            return True
    return False


def wants_rendered(items: Iterable[FetchItem]) -> bool:
    """True when some item is one the store may keep rendered (ENVELOPE, BODYSTRUCTURE)."""
    return any(it.section is None and it.name in CACHED for it in items)


def render_kept(parsed: ParsedMessage) -> Rendered:
    """What the store keeps rendered for a message: done once, at APPEND or on first FETCH."""
    return Rendered(render_envelope(parsed.envelope), render_bodystructure(parsed, True))


def needs_content(items: Iterable[FetchItem]) -> bool:
    """True when some item needs the message's bytes (Content)."""
    return any(it.section is not None or it.name not in _CONTENT_FREE for it in items)


_TOP_HEADER_KINDS = frozenset({"HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT"})


def header_only(items: Iterable[FetchItem]) -> bool:
    """True when every item that needs the message's bytes asks only for its top-level header
    (``BODY[HEADER]``, ``BODY.PEEK[HEADER.FIELDS (…)]``, ``RFC822.HEADER``): what clients
    fetch on every sync. The stored structure holds that header block (:func:`top_header`),
    so such a FETCH reads no message file, as Dovecot answers it from its cache file."""
    for it in items:
        if it.section is not None:
            if (
                it.name != "BODY"
                or it.section.part
                or it.section.kind.upper() not in (_TOP_HEADER_KINDS)
            ):
                return False
        elif it.name not in _CONTENT_FREE and it.name != "RFC822.HEADER":
            return False
    return True


def top_header(parsed: ParsedMessage | None) -> bytes | None:
    """The message's whole header block as stored, from its structure; None when the
    structure kept only the start of it (a header over ``MAX_HEADER_BYTES``)."""
    if parsed is None:
        return None
    root = parsed.root
    if root.header_offset == 0 and len(parsed.header) == root.header_size:
        return parsed.header
    return None


_SEEN_SETTERS = frozenset({"RFC822", "RFC822.TEXT"})


def sets_seen(items: Iterable[FetchItem]) -> bool:
    """Whether FETCH of these items implicitly sets ``\\Seen`` (RFC 9051 §6.4.5).

    BODY[...] and BINARY[...] without .PEEK, RFC822 and RFC822.TEXT do; BODY.PEEK, BINARY.PEEK,
    BINARY.SIZE, RFC822.HEADER, RFC822.PEEK and RFC822.TEXT.PEEK don't. The session sets the
    flag (when the mailbox is read-write) *before* rendering, and asks for FLAGS in the answer
    (``include_flags``) when that changed the flags.
    """
    for it in items:
        if it.section is not None:
            if it.name in ("BODY", "BINARY") and not it.peek:
                return True
        elif it.name in _SEEN_SETTERS:
            return True
    return False


# --------------------------------------------------------------------------------------------
# simple items

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_internaldate(dt: datetime) -> bytes:
    """``17-Jul-1996 02:44:25 -0700`` (RFC 9051 date-time, without the quotes), in dt's zone."""
    offset = dt.utcoffset()
    minutes = 0 if offset is None else int(offset.total_seconds()) // 60
    sign = b"-" if minutes < 0 else b"+"
    minutes = abs(minutes)
    return b"%02d-%s-%04d %02d:%02d:%02d %s%02d%02d" % (
        dt.day,
        _MONTHS[dt.month - 1].encode("ascii"),
        dt.year,
        dt.hour,
        dt.minute,
        dt.second,
        sign,
        minutes // 60,
        minutes % 60,
    )


# Dovecot's order: system flags by bit, \Recent, then keywords.
_FLAG_ORDER = ("\\answered", "\\flagged", "\\deleted", "\\seen", "\\draft")


def format_flags(flags: Iterable[str], recent: bool = False) -> bytes:
    """``(\\Seen $Label1)``: system flags first (Dovecot's order), then \\Recent, keywords."""
    system: list[tuple[int, str]] = []
    other: list[str] = []
    for f in flags:
        low = f.lower()
        if low in _FLAG_ORDER:
            system.append((_FLAG_ORDER.index(low), f))
        elif low != "\\recent":
            other.append(f)
    out = [f for _, f in sorted(system)]
    if recent:
        out.append("\\Recent")
    out += sorted(other)
    return b"(" + " ".join(out).encode("utf-8") + b")"


# --------------------------------------------------------------------------------------------
# section data


def default_section_text(section: Section) -> bytes:
    """The bracket text Dovecot echoes for a section: ``1.HEADER.FIELDS (FROM SUBJECT)``."""
    parts = [b"%d" % n for n in section.part]
    kind = section.kind.upper()
    if kind:
        parts.append(kind.encode("ascii"))
    text = b".".join(parts)
    if kind.startswith("HEADER.FIELDS"):
        text += b" (" + b" ".join(f.upper() for f in section.fields) + b")"
    return text


def _label(item: FetchItem, section: Section, *, with_origin: bool = True) -> bytes:
    text = item.section_text if item.section_text is not None else default_section_text(section)
    label = item.name.encode("ascii") + b"[" + text + b"]"
    if with_origin and section.partial is not None:
        label += b"<%d>" % section.partial[0]
    return label


def _inline(data: bytes, binary: bool = False) -> bytes:
    return b"%s{%d}\r\n%s" % (b"~" if binary else b"", len(data), data)


def _range_piece(content: Content | None, offset: int, length: int) -> Piece:
    """A literal of a range of the stored message: streamed when large, inline when small."""
    if length <= 0:
        return b"{0}\r\n"
    if length >= STREAM_THRESHOLD:
        return Literal(offset, length)
    if content is None:
        raise ValueError("section data needs the message content")
    return _inline(no_nul(content.read(offset, length)))


def _clip(length: int, partial: tuple[int, int] | None) -> tuple[int, int]:
    """(skip, length) after applying ``<start.count>`` to data of ``length`` octets."""
    if partial is None:
        return 0, length
    start, count = partial
    if start >= length:
        return 0, 0
    return start, min(count, length - start)


_HEADER_LINE = re.compile(rb"[^\n]*(?:\n|\Z)")


def _header_fields(block: bytes) -> list[tuple[bytes, bytes]]:
    """(lower-case name, raw octets including folds and line ends) of each field in block."""
    fields: list[tuple[bytes, bytes]] = []
    for m in _HEADER_LINE.finditer(block):
        line = m.group(0)
        if not line:
            break
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t") and fields:
            name, raw = fields[-1]
            fields[-1] = (name, raw + line)
            continue
        colon = line.find(b":")
        name = line.rstrip(b"\r\n") if colon < 0 else line[:colon].rstrip(b" \t")
        fields.append((name.lower(), line))
    return fields


def _one_block(block: bytes) -> bool:
    """True when *block* ends in LF and has no blank line but (perhaps) its last one."""
    if not block.endswith(b"\n"):
        return False
    inner = block[:-1]
    return b"\n\r\n" not in inner and b"\n\n" not in inner and not block.startswith(b"\r\n\r")


def _pick_fields(block: bytes, names: Iterable[bytes]) -> bytes:
    """The fields of *block* (one header block, every line ending in LF) named *names*
    (lower case), each with its folded lines, in the block's order: found by searching the
    lower-cased block for each name at a line start, as :func:`_header_fields` reads a field
    (``name [ \t]* :``, or a line that is only the name)."""
    lower = b"\n" + block.lower()
    found: list[tuple[int, bytes]] = []
    for name in names:
        needle = b"\n" + name
        at = lower.find(needle)
        while at >= 0:
            pos = at + len(needle)  # in *lower*; the block's offset is one less
            rest = pos
            while lower[rest : rest + 1] in (b" ", b"\t"):
                rest += 1
            tail = lower[rest : rest + 1]
            if tail == b":" or (
                rest == pos and lower[pos : lower.find(b"\n", pos) + 1].strip(b"\r") == b"\n"
            ):
                end = lower.find(b"\n", pos) + 1
                while lower[end : end + 1] in (b" ", b"\t") and end < len(lower):
                    end = lower.find(b"\n", end) + 1
                found.append((at, block[at : end - 1]))
            at = lower.find(needle, pos)
    found.sort()
    return b"".join(field for _, field in found)


def filter_header(
    block: bytes, names: Sequence[bytes], keep: bool, *, whole: bool = False
) -> bytes:
    """HEADER.FIELDS (keep=True) / HEADER.FIELDS.NOT (keep=False) of a raw header block.
    *whole*: the block is known to end at its first blank line (a stored top-level header)."""
    if (
        keep
        and names
        and block.endswith(b"\n")
        and not block.startswith((b"\r\n", b"\n"))
        and (whole or _one_block(block))
    ):
        # what clients ask on every sync: a search per name instead of a Python step per line
        # (the same answer: tests/unit/imap/test_fetch.py)
        return _pick_fields(block, {n.lower() for n in names}) + b"\r\n"
    return _filter_by_line(block, names, keep)


def _filter_by_line(block: bytes, names: Sequence[bytes], keep: bool) -> bytes:
    wanted = {n.lower() for n in names}
    out = bytearray()
    for name, raw in _header_fields(block):
        if (name in wanted) == keep:
            out += raw
            if not raw.endswith(b"\n"):
                out += b"\r\n"
    # Dovecot: HEADER.FIELDS always ends with the blank line; .NOT only when the message's
    # header had one.
    if keep or block in (b"\r\n", b"\n") or block.endswith((b"\n\r\n", b"\n\n")):
        out += b"\r\n"
    return bytes(out)


def _body_section(
    item: FetchItem, section: Section, parsed: ParsedMessage | None, content: Content | None
) -> list[Piece]:
    label = _label(item, section) + b" "
    kind = section.kind.upper()
    if not section.part and kind == "":
        # The whole message: no structure needed.
        total = content.size if content is not None else None
        if parsed is not None:
            total = parsed.size
        if total is None:
            raise ValueError("BODY[] needs the content or the structure")
        skip, length = _clip(total, section.partial)
        return [label, _range_piece(content, skip, length)]
    if parsed is None:
        raise ValueError(f"BODY[{default_section_text(section)!r}] needs the structure")
    rng = section_range(parsed, section.part, kind)
    if rng is None:
        # a part that does not exist: empty, written as every empty section is (as Dovecot)
        return [label + b"{0}\r\n"]
    offset, length = rng
    if not section.part and kind in _TOP_HEADER_KINDS:
        block = top_header(parsed)
        if block is not None:  # no read of the message file
            if kind != "HEADER":
                block = filter_header(block, section.fields, kind == "HEADER.FIELDS", whole=True)
            skip, n = _clip(len(block), section.partial)
            return [label + _inline(no_nul(block[skip : skip + n]))]
    if kind.startswith("HEADER.FIELDS"):
        if content is None:
            raise ValueError("HEADER.FIELDS needs the message content")
        data = filter_header(content.read(offset, length), section.fields, kind == "HEADER.FIELDS")
        skip, n = _clip(len(data), section.partial)
        return [label + _inline(no_nul(data[skip : skip + n]))]
    skip, n = _clip(length, section.partial)
    return [label, _range_piece(content, offset + skip, n)]


# --------------------------------------------------------------------------------------------
# BINARY (RFC 3516)

_IDENTITY = frozenset({"", "7bit", "8bit", "binary"})


def _cte(part: MimePart) -> str:
    return (part.content_transfer_encoding or "").strip().lower()


_CTE_SPECIALS = frozenset(b' \t;()<>@,:\\"/[]?=')


def _root_cte(part: MimePart, content: Content) -> str:
    """The transfer encoding of a message's root part, read from its header.

    The stored structure ignores Content-* fields of a message without Content-Type and
    MIME-Version (as Dovecot's BODYSTRUCTURE does), but Dovecot's BINARY still decodes such a
    body; so for BINARY the field is looked up here (the last well-formed one, a lone token).
    """
    if part.content_transfer_encoding is not None or part.header_size == 0:
        return _cte(part)
    found = ""
    for name, raw in _header_fields(content.read(part.header_offset, part.header_size)):
        if name == b"content-transfer-encoding":
            tok = raw.split(b":", 1)[1].replace(b"\r", b"").replace(b"\n", b"").strip(b" \t")
            if tok and not any(c in _CTE_SPECIALS for c in tok):
                found = tok.decode("ascii", "replace").lower()
    return found


def decode_base64(data: bytes) -> bytes:
    """Base64 body → octets; line breaks and blanks ignored; other junk is an error."""
    compact = re.sub(rb"[\r\n \t]", b"", data)
    # Padding may be split over lines ("RA=" CRLF "="); an unpadded tail is tolerated.
    if len(compact) % 4 == 1:
        raise DecodeError("Invalid base64 data in MIME part")
    compact += b"=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DecodeError("Invalid base64 data in MIME part") from exc


_HEX = frozenset(b"0123456789abcdefABCDEF")


def decode_quoted_printable(data: bytes) -> bytes:
    """Quoted-printable body → octets, as Dovecot decodes it.

    Trailing blanks of each line are dropped; a line ending in ``=`` (after its blanks) joins
    the next; ``=XX`` (either case) is an octet; any other ``=`` is an error.
    """
    out = bytearray()
    for m in _HEADER_LINE.finditer(data):
        line = m.group(0)
        if not line:
            break
        if line.endswith(b"\r\n"):
            text, eol = line[:-2], b"\r\n"
        elif line.endswith(b"\n"):
            text, eol = line[:-1], b"\n"
        else:
            text, eol = line, b""
        text = text.rstrip(b" \t")
        if text.endswith(b"="):
            text, eol = text[:-1], b""
        i = text.find(b"=")
        if i < 0:
            out += text
        else:
            start = 0
            while i >= 0:
                out += text[start:i]
                hexpair = text[i + 1 : i + 3]
                if len(hexpair) != 2 or not all(c in _HEX for c in hexpair):
                    raise DecodeError("Invalid quoted-printable data in MIME part")
                out.append(int(hexpair, 16))
                start = i + 3
                i = text.find(b"=", start)
            out += text[start:]
        out += eol
    return bytes(out)


def _decode(cte: str, data: bytes) -> bytes:
    if cte == "base64":
        return decode_base64(data)
    if cte == "quoted-printable":
        return decode_quoted_printable(data)
    raise UnknownCte("Unknown Content-Transfer-Encoding")


def _is_leaf(part: MimePart) -> bool:
    return not part.is_multipart and part.mime_type != "message/rfc822" and part.message is None


def _binary_header(block: bytes) -> bytes:
    """A part's header for BINARY output: its Content-Transfer-Encoding fields removed and
    ``Content-Transfer-Encoding: binary`` added at the end (as Dovecot does)."""
    out = bytearray()
    for name, raw in _header_fields(block):
        if name != b"content-transfer-encoding":
            out += raw
            if not raw.endswith(b"\n"):
                out += b"\r\n"
    out += b"Content-Transfer-Encoding: binary\r\n"
    if block in (b"\r\n", b"\n") or block.endswith((b"\n\r\n", b"\n\n")):
        out += b"\r\n"
    return bytes(out)


def binary_data(
    parsed: ParsedMessage, part: tuple[int, ...], content: Content
) -> tuple[int, int] | bytes:
    """What BINARY[part] designates: a range of the stored message when nothing needs decoding,
    else the octets. A missing part is the empty range.

    A leaf part's body is decoded. The whole message, a multipart or a message/rfc822 part
    (whose own encoding is left alone, as Dovecot does) is sent as stored except that every
    encoded leaf inside has its body decoded and its header rewritten to say
    ``Content-Transfer-Encoding: binary``.
    """
    node = parsed.root if not part else find_part(parsed, part)
    if node is None:
        return (0, 0)
    roots = {id(parsed.root)} | {id(p.message.root) for p in parsed.root.walk() if p.message}

    def cte_of(p: MimePart) -> str:
        return _root_cte(p, content) if id(p) in roots else _cte(p)

    if part and _is_leaf(node):
        cte = cte_of(node)
        if cte in _IDENTITY:
            return (node.body_offset, node.body_size)
        return _decode(cte, content.read(node.body_offset, node.body_size))
    if not part:
        start, end = parsed.root.header_offset, parsed.size
        candidates = node.walk()
    else:
        start, end = node.body_offset, node.body_offset + node.body_size
        candidates = node.walk()[1:]
    encodings = {id(p): cte_of(p) for p in candidates if _is_leaf(p)}
    targets = sorted(
        (p for p in candidates if encodings.get(id(p), "") not in _IDENTITY),
        key=lambda p: p.header_offset,
    )
    if not targets:
        return (start, end - start)
    out = bytearray()
    pos = start
    for p in targets:
        decoded = _decode(encodings[id(p)], content.read(p.body_offset, p.body_size))
        out += content.read(pos, p.header_offset - pos)
        out += _binary_header(content.read(p.header_offset, p.header_size))
        out += decoded
        pos = p.body_offset + p.body_size
    out += content.read(pos, end - pos)
    return bytes(out)


def _binary_section(
    item: FetchItem, section: Section, parsed: ParsedMessage | None, content: Content | None
) -> list[Piece]:
    if parsed is None or content is None:
        raise ValueError("BINARY needs the structure and the content")
    data = binary_data(parsed, section.part, content)
    if item.name == "BINARY.SIZE":
        size = data[1] if isinstance(data, tuple) else len(data)
        return [_label(item, section, with_origin=False) + b" %d" % size]
    label = _label(item, section) + b" "
    if isinstance(data, tuple):
        offset, length = data
        skip, n = _clip(length, section.partial)
        if n == 0:
            return [label + b"{0}\r\n"]
        if n >= STREAM_THRESHOLD:
            # Streamed without looking at it: NUL octets are possible, so use literal8.
            return [label, Literal(offset + skip, n, binary=True)]
        raw = content.read(offset + skip, n)
        return [label + _inline(raw, b"\x00" in raw)]
    skip, n = _clip(len(data), section.partial)
    chunk = data[skip : skip + n]
    return [label + _inline(chunk, b"\x00" in chunk)]


# --------------------------------------------------------------------------------------------
# the entry point


#: BODY (the non-extensible BODYSTRUCTURE) of recently fetched messages, by the identity of
#: their parse (each entry holds the parse, so the identity is not reused while it is here):
#: ParsedMessage.cached hands out the same object for a message fetched again, and a
#: multipart's rendering cost more than the rest of a FETCH of a few items.
_BODY_RENDERED: OrderedDict[int, tuple[ParsedMessage, bytes]] = OrderedDict()
_BODY_KEPT = 512


def _body_of(parsed: ParsedMessage) -> bytes:
    hit = _BODY_RENDERED.get(id(parsed))
    if hit is not None and hit[0] is parsed:
        _BODY_RENDERED.move_to_end(id(parsed))
        return hit[1]
    text = render_bodystructure(parsed, False)
    _BODY_RENDERED[id(parsed)] = (parsed, text)
    if len(_BODY_RENDERED) > _BODY_KEPT:
        _BODY_RENDERED.popitem(last=False)
    return text


def _simple(
    name: str,
    meta: MessageMeta,
    parsed: ParsedMessage | None,
    content: Content | None,
    recent: bool,
    rendered: Rendered | None = None,
) -> list[Piece]:
    if name == "UID":
        return [b"UID %d" % meta.uid]
    if name == "FLAGS":
        return [b"FLAGS " + format_flags(meta.flags, recent)]
    if name == "INTERNALDATE":
        return [b'INTERNALDATE "' + format_internaldate(meta.internal_date) + b'"']
    if name == "SAVEDATE":
        return [b'SAVEDATE "' + format_internaldate(meta.save_date) + b'"']
    if name == "RFC822.SIZE":
        return [b"RFC822.SIZE %d" % meta.size]
    if name == "MODSEQ":
        return [b"MODSEQ (%d)" % meta.modseq]
    if name == "EMAILID":
        return [b"EMAILID (" + email_id(meta.blob).encode() + b")"]
    if name == "THREADID":
        return [b"THREADID NIL"]  # RFC 8474 §5.2: no thread identifiers (yet)
    if name in ("RFC822", "RFC822.PEEK"):
        size = parsed.size if parsed is not None else meta.size
        return [b"RFC822 ", _range_piece(content, 0, size)]
    if rendered is not None:
        if name == "ENVELOPE" and rendered.envelope is not None:
            return [b"ENVELOPE " + rendered.envelope]
        if name == "BODYSTRUCTURE" and rendered.bodystructure is not None:
            return [b"BODYSTRUCTURE " + rendered.bodystructure]
    if parsed is None:
        raise ValueError(f"{name} needs the message structure")
    if name == "ENVELOPE":
        return [b"ENVELOPE " + render_envelope(parsed.envelope)]
    if name == "BODYSTRUCTURE":
        return [b"BODYSTRUCTURE " + render_bodystructure(parsed, True)]
    if name == "BODY":
        return [b"BODY " + _body_of(parsed)]
    if name == "PREVIEW":  # RFC 8970; text that is not ASCII goes as a literal (as Dovecot's)
        if content is None:
            raise ValueError("PREVIEW needs the message content")
        return [b"PREVIEW " + r.string(preview_text(parsed, content.read).encode("utf-8"))]
    if name == "RFC822.HEADER":
        root = parsed.root
        block = top_header(parsed)
        if block is not None:
            return [b"RFC822.HEADER " + _inline(no_nul(block))]
        return [b"RFC822.HEADER ", _range_piece(content, root.header_offset, root.header_size)]
    if name in ("RFC822.TEXT", "RFC822.TEXT.PEEK"):
        root = parsed.root
        return [b"RFC822.TEXT ", _range_piece(content, root.body_offset, root.body_size)]
    raise UnsupportedItem(f"FETCH item {name} is not supported")


def render_fetch(
    items: Sequence[FetchItem],
    meta: MessageMeta,
    parsed: ParsedMessage | None,
    content: Content | None,
    *,
    recent: bool = False,
    include_flags: bool = False,
    utf8: bool = False,
    rendered: Rendered | None = None,
) -> list[Piece]:
    """The contents of one ``* n FETCH (...)`` response, as pieces (see the module doc).

    Items are answered in the order given (duplicates included). ``recent`` adds ``\\Recent``
    to FLAGS; ``include_flags`` appends FLAGS when the items lack it (after an implicit
    ``\\Seen``, RFC 9051 §6.4.5). ``utf8`` (UTF8=ACCEPT enabled) changes nothing yet: the strings
    we send as literals stay valid either way. Raises :class:`FetchError` subclasses for items
    that must fail the command (UNKNOWN-CTE, PARSE); nothing of the response is valid then.
    """
    del utf8
    out: list[Piece] = []
    flags_sent = False
    for item in items:
        name = item.name.upper()
        if out:
            out.append(b" ")
        if item.section is not None:
            if name in ("BODY", "BODY.PEEK"):
                out += _body_section(
                    FetchItem("BODY", item.section, item.peek, item.section_text),
                    item.section,
                    parsed,
                    content,
                )
            elif name in ("BINARY", "BINARY.PEEK", "BINARY.SIZE"):
                base = "BINARY.SIZE" if name == "BINARY.SIZE" else "BINARY"
                kind = item.section.kind.upper()
                if kind:
                    raise UnsupportedItem(f"{base}[...{kind}] is not a valid section")
                out += _binary_section(
                    FetchItem(base, item.section, item.peek, item.section_text),
                    item.section,
                    parsed,
                    content,
                )
            else:
                raise UnsupportedItem(f"FETCH item {name}[...] is not supported")
            continue
        if name not in _SIMPLE:
            raise UnsupportedItem(f"FETCH item {name} is not supported")
        if name == "FLAGS":
            flags_sent = True
        out += _simple(name, meta, parsed, content, recent, rendered)
    if include_flags and not flags_sent:
        if out:
            out.append(b" ")
        out.append(b"FLAGS " + format_flags(meta.flags, recent))
    return _merge(out)


def _merge(pieces: list[Piece]) -> list[Piece]:
    """Runs of adjacent bytes joined into one piece (one join per run, no repeated copies)."""
    if not pieces:
        return []
    if all(type(p) is bytes for p in pieces):
        return [b"".join(pieces)]  # type: ignore[arg-type]
    merged: list[Piece] = []
    run: list[bytes] = []
    for p in pieces:
        if isinstance(p, bytes):
            run.append(p)
            continue
        if run:
            merged.append(b"".join(run))
            run = []
        merged.append(p)
    if run:
        merged.append(b"".join(run))
    return merged
