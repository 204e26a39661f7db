"""ENVELOPE, BODY and BODYSTRUCTURE rendering and BODY[section] ranges from a ParsedMessage.

Pure functions, bytes out. The output matches Dovecot 2.3's byte for byte on the corpus in
tests/data/messages (checked by tests/interop/test_dovecot_bodystructure.py). Observed Dovecot
rules reproduced here:

* strings are quoted (with ``\\`` and ``"`` escaped) unless they contain 8-bit octets, CR, LF
  or NUL, in which case they are sent as literals;
* the envelope's Subject and address display names are "strings for humans": line breaks are
  removed, tabs become spaces, runs of spaces shrink to one and the ends are trimmed; when that
  changed anything, or the text has ``"``, ``\\`` or 8-bit octets, it goes out as a literal;
* text parts without a charset parameter get ``("charset" "us-ascii")`` appended;
* a multipart without parsed children (no boundary) is shown with one empty text/plain child,
  since the grammar needs at least one;
* type, subtype, parameter names and the transfer encoding keep the message's case.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pobox.mail.envelope import Address, Envelope
from pobox.mail.structure import MimePart, ParsedMessage, sbytes

__all__ = [
    "astring_for_humans",
    "nstring",
    "render_body_part",
    "render_bodystructure",
    "render_envelope",
    "section_range",
]

NIL = b"NIL"


#: octets a quoted string cannot carry (RFC 9051 §4.3: 8-bit, CR, LF, NUL): a regex search runs
#: in C, where a generator over the octets cost a Python step each
_LITERAL_ONLY = re.compile(rb"[\x00\n\r\x80-\xff]").search
#: what makes Dovecot send a display name or subject as a literal: 8-bit, NUL, a quote or backslash
_HUMAN_LITERAL = re.compile(rb'[\x00"\\\x80-\xff]').search


def _needs_literal(value: bytes) -> bool:
    return _LITERAL_ONLY(value) is not None


def _literal(value: bytes) -> bytes:
    return b"{%d}\r\n%s" % (len(value), value)


def _quote(value: bytes) -> bytes:
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def nstring(value: bytes | str | None) -> bytes:
    """NIL, a quoted string, or a literal (8-bit, CR, LF, NUL)."""
    if value is None:
        return NIL
    if isinstance(value, str):
        value = sbytes(value)
    if _needs_literal(value):
        return _literal(value)
    return _quote(value)


def _for_humans(value: bytes) -> bytes:
    v = value.replace(b"\r", b"").replace(b"\n", b"").replace(b"\t", b" ")
    while b"  " in v:
        v = v.replace(b"  ", b" ")
    return v.strip(b" ")


def astring_for_humans(value: bytes | None) -> bytes:
    """How Dovecot sends Subject and display names in ENVELOPE."""
    if value is None:
        return NIL
    clean = _for_humans(value)
    if clean != value or _HUMAN_LITERAL(clean) is not None:
        return _literal(clean)
    return b'"' + clean + b'"'


# --------------------------------------------------------------------------------------------
# ENVELOPE


def _address(a: Address) -> bytes:
    return b"(%s %s %s %s)" % (
        astring_for_humans(a.name),
        nstring(a.adl),
        nstring(a.mailbox),
        nstring(a.host),
    )


def _addresses(addrs: tuple[Address, ...] | None) -> bytes:
    if not addrs:
        return NIL
    return b"(" + b"".join(_address(a) for a in addrs) + b")"


def render_envelope(env: Envelope) -> bytes:
    """The parenthesised ENVELOPE list (RFC 9051 §7.5.2)."""
    return b"(%s)" % b" ".join(
        [
            nstring(env.date),
            astring_for_humans(env.subject),
            _addresses(env.from_),
            _addresses(env.sender),
            _addresses(env.reply_to),
            _addresses(env.to),
            _addresses(env.cc),
            _addresses(env.bcc),
            nstring(env.in_reply_to),
            nstring(env.message_id),
        ]
    )


# --------------------------------------------------------------------------------------------
# BODY / BODYSTRUCTURE


def _params(params: Iterable[tuple[str, str]]) -> bytes:
    items = [nstring(k) + b" " + nstring(v) for k, v in params]
    if not items:
        return NIL
    return b"(" + b" ".join(items) + b")"


def _disposition(part: MimePart) -> bytes:
    if part.disposition is None:
        return NIL
    return b"(%s %s)" % (nstring(part.disposition), _params(part.disposition_params))


def _language(part: MimePart) -> bytes:
    if not part.language:
        return NIL
    return b"(" + b" ".join(nstring(x) for x in part.language) + b")"


_EMPTY_TEXT = (
    b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0',
    b" NIL NIL NIL NIL",
)


def render_body_part(part: MimePart, extensible: bool) -> bytes:
    """One body (part) in BODY (extensible=False) or BODYSTRUCTURE form."""
    if part.is_multipart:
        if part.children:
            kids = b"".join(render_body_part(c, extensible) for c in part.children)
        else:
            kids = _EMPTY_TEXT[0] + (_EMPTY_TEXT[1] if extensible else b"") + b")"
        out = [kids + b" " + nstring(part.content_subtype)]
        if extensible:
            out += [
                _params(part.params),
                _disposition(part),
                _language(part),
                nstring(part.location),
            ]
        return b"(" + b" ".join(out) + b")"

    params = list(part.params)
    is_text = part.content_type.lower() == "text"
    if is_text and not any(k.lower() == "charset" for k, _ in params):
        params.append(("charset", "us-ascii"))
    fields = [
        nstring(part.content_type),
        nstring(part.content_subtype),
        _params(params),
        nstring(part.content_id),
        nstring(part.content_description),
        nstring(part.content_transfer_encoding or "7bit"),
        b"%d" % part.body_size,
    ]
    if part.message is not None:
        fields += [
            render_envelope(part.message.envelope),
            render_body_part(part.message.root, extensible),
            b"%d" % part.body_lines,
        ]
    elif is_text:
        fields.append(b"%d" % part.body_lines)
    if extensible:
        fields += [nstring(part.md5), _disposition(part), _language(part), nstring(part.location)]
    return b"(" + b" ".join(fields) + b")"


def render_bodystructure(msg: ParsedMessage, extensible: bool) -> bytes:
    """FETCH BODYSTRUCTURE (extensible=True) or BODY (False) for a whole message."""
    return render_body_part(msg.root, extensible)


# --------------------------------------------------------------------------------------------
# BODY[section]


def _find(msg: ParsedMessage, path: tuple[int, ...]) -> MimePart | None:
    """The part a section number designates (RFC 9051 §6.4.5).

    As in Dovecot: a multipart's child that is neither multipart nor message/rfc822 is also its
    own part 1, once (``1.1`` of a text/plain part 1 is that part again, ``1.1.1`` is nothing);
    ``1`` of a single-part message (top-level or encapsulated) is its body, and ``1.1`` is
    nothing; a multipart without parsed children has no parts at all.
    """
    node: MimePart | None = None
    selfable = False  # node is a multipart child not yet used as its own part 1
    for n in path:
        if node is None:
            container = msg.root
        elif node.message is not None:
            container = node.message.root
        elif node.is_multipart:
            container = node
        elif selfable and n == 1:
            selfable = False
            continue
        else:
            return None
        if container.is_multipart:
            if not 1 <= n <= len(container.children):
                return None
            node = container.children[n - 1]
            selfable = True
        elif n == 1:
            node = container
            selfable = False
        else:
            return None
    return node


def section_range(msg: ParsedMessage, part: tuple[int, ...], kind: str) -> tuple[int, int] | None:
    """(offset, length) in the stored message for ``BODY[<part>.<kind>]``.

    ``kind`` is "" (the part's content; the whole message for part=()), "HEADER" (and the
    HEADER.FIELDS variants, which filter this range), "TEXT" or "MIME". Returns None when the
    part does not exist or the kind does not apply to it (HEADER/TEXT of a part that is not a
    message/rfc822, MIME of the whole message); Dovecot answers those with an empty string.
    """
    kind = kind.upper()
    if kind.startswith("HEADER.FIELDS"):
        kind = "HEADER"
    if not part:
        root = msg.root
        if kind == "":
            return (root.header_offset, msg.size)
        if kind == "HEADER":
            return (root.header_offset, root.header_size)
        if kind == "TEXT":
            return (root.body_offset, root.body_size)
        return None
    node = _find(msg, part)
    if node is None:
        return None
    if kind == "":
        return (node.body_offset, node.body_size)
    if kind == "MIME":
        return (node.header_offset, node.header_size)
    if node.message is None:
        return None
    inner = node.message.root
    if kind == "HEADER":
        return (inner.header_offset, inner.header_size)
    if kind == "TEXT":
        return (inner.body_offset, inner.body_size)
    return None
