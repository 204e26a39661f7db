"""The parsed form of a message: a frozen MIME tree with byte offsets, plus the envelope.

All offsets are absolute: they count octets from the start of the stored message, also inside
encapsulated (message/rfc822) messages. MIME field strings are the header bytes decoded as UTF-8
with ``surrogateescape``, so ``s.encode("utf-8", "surrogateescape")`` gives back the exact octets
(IMAP needs them unchanged, 8-bit junk included). Case is kept as written in the message, as
Dovecot shows it; compare case-insensitively.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pobox.mail.dates import parse_date
from pobox.mail.envelope import (
    MISSING_DOMAIN,
    MISSING_MAILBOX,
    Address,
    Envelope,
    parse_address_list,
)
from pobox.mail.headers import decode_rfc2047, decode_rfc2231_value, split_fields

__all__ = ["MimePart", "ParsedMessage", "bstr", "sbytes"]

_FORMAT = 1


def bstr(b: bytes) -> str:
    """Raw header octets → str (reversible)."""
    return b.decode("utf-8", "surrogateescape")


def sbytes(s: str) -> bytes:
    """Inverse of bstr."""
    return s.encode("utf-8", "surrogateescape")


Params = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class MimePart:
    header_offset: int
    header_size: int  # this part's header block, including the blank line when there is one
    body_offset: int
    body_size: int
    body_lines: int  # number of LF octets in the body
    content_type: str  # as written ("text" when absent); compare case-insensitively
    content_subtype: str
    params: Params  # Content-Type parameters, RFC 2231 continuations joined as Dovecot does
    content_id: str | None
    content_description: str | None
    content_transfer_encoding: str | None
    disposition: str | None
    disposition_params: Params
    language: tuple[str, ...] | None
    location: str | None
    md5: str | None
    children: tuple[MimePart, ...]  # multipart children (empty for leaves)
    message: ParsedMessage | None  # the encapsulated message of a message/rfc822 part

    @property
    def is_multipart(self) -> bool:
        return self.content_type.lower() == "multipart"

    @property
    def is_message_rfc822(self) -> bool:
        return self.message is not None

    @property
    def mime_type(self) -> str:
        """Lower-case ``type/subtype``."""
        return f"{self.content_type}/{self.content_subtype}".lower()

    def param(self, name: str) -> str | None:
        """A Content-Type parameter, decoded (RFC 2231 ``name*`` preferred over ``name``)."""
        return _param(self.params, name)

    def disposition_param(self, name: str) -> str | None:
        return _param(self.disposition_params, name)

    @property
    def charset(self) -> str | None:
        return self.param("charset")

    @property
    def filename(self) -> str | None:
        """The attachment's file name: disposition ``filename``, else Content-Type ``name``."""
        return self.disposition_param("filename") or self.param("name")

    def walk(self) -> list[MimePart]:
        """This part and every part below it (through encapsulated messages), depth first."""
        out = [self]
        for child in self.children:
            out.extend(child.walk())
        if self.message is not None:
            out.extend(self.message.root.walk())
        return out


def _param(params: Params, name: str) -> str | None:
    lname = name.lower()
    plain: str | None = None
    for k, v in params:
        kl = k.lower()
        if kl == lname + "*":
            return decode_rfc2231_value(sbytes(v))
        if kl == lname and plain is None:
            plain = decode_rfc2047(sbytes(v))
    return plain


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    root: MimePart
    size: int
    header: bytes  # raw header block of the message (truncated if it was huge)
    envelope: Envelope

    # ---- search / sort helpers (decoded, unicode) --------------------------------------

    def header_values(self, name: str) -> list[str]:
        """Decoded (unfolded, RFC 2047) values of every occurrence of a header field."""
        lname = name.lower().encode("ascii", "replace")
        return [decode_rfc2047(v) for n, v in split_fields(self.header) if n.lower() == lname]

    def _last(self, name: str) -> str | None:
        vals = self.header_values(name)
        return vals[-1] if vals else None

    @property
    def subject(self) -> str:
        return self._last("subject") or ""

    def address_text(self, name: str) -> str:
        """An address field (From, To, Cc, Bcc…) as SEARCH matches it: every occurrence parsed
        and written out again as ``Name <mailbox@host>`` (or ``mailbox@host``), groups as
        ``group: a, b;``, display names RFC 2047-decoded, comments as names when there is no
        phrase (``a@b (Name)``), comments elsewhere dropped. Dovecot matches the same normalised
        form, so ``<a (x)@ b>`` is found by ``a@b``. A value with no address in it is kept as
        its decoded text."""
        lname = name.lower().encode("ascii", "replace")
        texts = [_address_text(v) for n, v in split_fields(self.header) if n.lower() == lname]
        return ", ".join(t for t in texts if t)

    @property
    def from_addr(self) -> str:
        return self.address_text("from")

    @property
    def to_addrs(self) -> str:
        return self.address_text("to")

    @property
    def cc(self) -> str:
        return self.address_text("cc")

    @property
    def bcc(self) -> str:
        return self.address_text("bcc")

    @property
    def message_id(self) -> str | None:
        mid = self.envelope.message_id
        return None if mid is None else bstr(mid).strip()

    @property
    def sent_date(self) -> datetime | None:
        return parse_date(self.envelope.date)

    # ---- serialisation ------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Compact JSON for the database."""
        return json.dumps([_FORMAT, _msg_out(self)], separators=(",", ":")).encode("ascii")

    @classmethod
    def from_bytes(cls, data: bytes) -> ParsedMessage:
        version, body = json.loads(data)
        if version != _FORMAT:
            raise ValueError(f"unknown ParsedMessage format {version!r}")
        return _msg_in(body)

    @classmethod
    def cached(cls, data: bytes) -> ParsedMessage:
        """:meth:`from_bytes` through a small per-process cache keyed by the stored bytes
        themselves (so it can never answer for other content): a message fetched again, part
        by part or by several sessions, is decoded once. The objects are immutable."""
        return _parsed(data)


@functools.lru_cache(maxsize=512)
def _parsed(data: bytes) -> ParsedMessage:
    return ParsedMessage.from_bytes(data)


# -- JSON encoding helpers (bytes as latin-1 strings; None stays null) -----------------------


def _b(v: bytes | None) -> str | None:
    return None if v is None else v.decode("latin-1")


def _ub(v: str | None) -> bytes | None:
    return None if v is None else v.encode("latin-1")


def _address_text(value: bytes) -> str:
    out: list[str] = []
    in_group = False
    for address in parse_address_list(value):
        if address.is_group_marker:
            if address.mailbox is not None:  # the start of a group
                out.append(decode_rfc2047(address.mailbox).strip() + ":")
                in_group = True
            elif in_group:  # its end
                out[-1] += ";"
                in_group = False
            continue
        mailbox = b"" if address.mailbox == MISSING_MAILBOX else address.mailbox or b""
        spec = mailbox.decode("utf-8", "replace")
        if address.host and address.host != MISSING_DOMAIN:
            spec += "@" + address.host.decode("utf-8", "replace")
        name = decode_rfc2047(address.name).strip() if address.name else ""
        text = f"{name} <{spec}>" if name else spec
        if in_group and out and out[-1].endswith(":"):
            out[-1] += " " + text
        else:
            out.append(text)
    if not out:
        return decode_rfc2047(value).strip()
    return ", ".join(out)


def _addrs_out(a: tuple[Address, ...] | None) -> list[list[str | None]] | None:
    if a is None:
        return None
    return [[_b(x.name), _b(x.adl), _b(x.mailbox), _b(x.host)] for x in a]


def _addrs_in(a: list[list[str | None]] | None) -> tuple[Address, ...] | None:
    if a is None:
        return None
    return tuple(Address(_ub(n), _ub(d), _ub(m), _ub(h)) for n, d, m, h in a)


def _env_out(e: Envelope) -> list[Any]:
    return [
        _b(e.date),
        _b(e.subject),
        _addrs_out(e.from_),
        _addrs_out(e.sender),
        _addrs_out(e.reply_to),
        _addrs_out(e.to),
        _addrs_out(e.cc),
        _addrs_out(e.bcc),
        _b(e.in_reply_to),
        _b(e.message_id),
    ]


def _env_in(v: list[Any]) -> Envelope:
    return Envelope(
        date=_ub(v[0]),
        subject=_ub(v[1]),
        from_=_addrs_in(v[2]),
        sender=_addrs_in(v[3]),
        reply_to=_addrs_in(v[4]),
        to=_addrs_in(v[5]),
        cc=_addrs_in(v[6]),
        bcc=_addrs_in(v[7]),
        in_reply_to=_ub(v[8]),
        message_id=_ub(v[9]),
    )


def _msg_out(m: ParsedMessage) -> list[Any]:
    return [_part_out(m.root), m.size, _b(m.header), _env_out(m.envelope)]


def _msg_in(v: list[Any]) -> ParsedMessage:
    header = _ub(v[2])
    assert header is not None
    return ParsedMessage(root=_part_in(v[0]), size=v[1], header=header, envelope=_env_in(v[3]))


def _part_out(p: MimePart) -> list[Any]:
    return [
        p.header_offset,
        p.header_size,
        p.body_offset,
        p.body_size,
        p.body_lines,
        p.content_type,
        p.content_subtype,
        [list(kv) for kv in p.params],
        p.content_id,
        p.content_description,
        p.content_transfer_encoding,
        p.disposition,
        [list(kv) for kv in p.disposition_params],
        None if p.language is None else list(p.language),
        p.location,
        p.md5,
        [_part_out(c) for c in p.children],
        None if p.message is None else _msg_out(p.message),
    ]


def _part_in(v: list[Any]) -> MimePart:
    return MimePart(
        header_offset=v[0],
        header_size=v[1],
        body_offset=v[2],
        body_size=v[3],
        body_lines=v[4],
        content_type=v[5],
        content_subtype=v[6],
        params=tuple((k, x) for k, x in v[7]),
        content_id=v[8],
        content_description=v[9],
        content_transfer_encoding=v[10],
        disposition=v[11],
        disposition_params=tuple((k, x) for k, x in v[12]),
        language=None if v[13] is None else tuple(v[13]),
        location=v[14],
        md5=v[15],
        children=tuple(_part_in(c) for c in v[16]),
        message=None if v[17] is None else _msg_in(v[17]),
    )
