"""FETCH / UID FETCH arguments: ``fetch-att`` of RFC 9051 and RFC 3501 (with RFC 3516 BINARY,
RFC 7162 MODSEQ and generic fetch modifiers such as ``(CHANGEDSINCE 5)``)."""

from __future__ import annotations

from pobox.imap.commands import (
    FETCH_MACROS,
    Fetch,
    FetchAttribute,
    FetchBinary,
    FetchBinarySize,
    FetchBody,
    FetchSimple,
    Parameter,
)
from pobox.imap.lexer import ParseError, Reader

__all__ = ["parse_fetch"]

_SIMPLE = frozenset(
    {
        "ENVELOPE",
        "FLAGS",
        "INTERNALDATE",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.SIZE",
        "RFC822.TEXT",
        "BODYSTRUCTURE",
        "UID",
        "MODSEQ",
        "EMAILID",
        "THREADID",
        "SAVEDATE",
        # pre-rev1 spellings real clients still send (Thunderbird, fetchmail)
        "RFC822.PEEK",
        "RFC822.TEXT.PEEK",
    }
)
_SECTION_TEXTS = frozenset({"HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "MIME", "TEXT"})


def parse_fetch(r: Reader, tag: str, uid: bool) -> Fetch:
    """After ``FETCH``: ``SP sequence-set SP (macro / att / "(" att *(SP att) ")") [SP mods]``."""
    r.sp()
    seqs = r.sequence_set()
    r.sp()
    attributes: list[FetchAttribute]
    if r.peek() == 0x28:
        attributes = r.paren_list(lambda: parse_fetch_att(r))
    else:
        mark = r.mark()
        name = r.word()
        if name in FETCH_MACROS:
            attributes = [FetchSimple(n) for n in FETCH_MACROS[name]]
        else:
            r.index, r.pos = mark
            attributes = [parse_fetch_att(r)]
    modifiers: tuple[Parameter, ...] = ()
    if r.try_sp():
        modifiers = r.parameters()
    r.end()
    return Fetch(tag, uid=uid, sequence_set=seqs, attributes=tuple(attributes), modifiers=modifiers)


def parse_fetch_att(r: Reader) -> FetchAttribute:
    name = r.word()
    if name in ("BODY", "BODY.PEEK"):
        if r.peek() != 0x5B:
            if name == "BODY.PEEK":
                raise r.fail("expected '[' after BODY.PEEK")
            return FetchSimple("BODY")
        part, text, fields, section = _section(r)
        return FetchBody(
            peek=name == "BODY.PEEK",
            part=part,
            text=text,
            fields=fields,
            partial=_partial(r),
            section=section,
        )
    if name in ("BINARY", "BINARY.PEEK", "BINARY.SIZE"):
        if r.peek() != 0x5B:
            raise r.fail(f"expected '[' after {name}")
        r.pos += 1
        start = r.pos
        part = _part_numbers(r) if r.peek() != 0x5D else ()
        section = r.line[start : r.pos]
        r.expect(b"]")
        if name == "BINARY.SIZE":
            return FetchBinarySize(part, section)
        return FetchBinary(
            peek=name == "BINARY.PEEK", part=part, partial=_partial(r), section=section
        )
    if name == "PREVIEW":  # RFC 8970: PREVIEW [SP "(" "LAZY" ")"]
        _preview_modifiers(r)
        return FetchSimple(name)
    if name in _SIMPLE:
        return FetchSimple(name)
    raise ParseError(f"unknown FETCH attribute {name}")


def _preview_modifiers(r: Reader) -> None:
    """RFC 8970 §5: ``SP "(" preview-mod *(SP preview-mod) ")"`` with LAZY the only modifier.
    pobox always makes the preview (it is quick), so LAZY changes nothing."""
    mark = r.mark()
    if not r.try_sp() or r.peek() != 0x28:
        r.index, r.pos = mark
        return
    r.pos += 1
    if not r.try_expect(b"LAZY"):
        r.index, r.pos = mark  # a fetch modifier such as (CHANGEDSINCE 5), not PREVIEW's
        return
    while r.try_sp():
        word = r.word()
        if word != "LAZY":
            raise ParseError(f"unknown PREVIEW modifier {word}")
    r.expect(b")")


def _part_numbers(r: Reader) -> tuple[int, ...]:
    parts = [r.nz_number()]
    while r.line[r.pos : r.pos + 1] == b"." and r.line[r.pos + 1 : r.pos + 2].isdigit():
        r.pos += 1
        parts.append(r.nz_number())
    return tuple(parts)


def _section(r: Reader) -> tuple[tuple[int, ...], str | None, tuple[bytes, ...], bytes]:
    """``"[" [section-spec] "]"``; returns part numbers, text, field names and the raw label."""
    r.expect(b"[")
    mark = r.mark()
    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[bytes, ...] = ()
    c = r.peek()
    if c is not None and 0x30 <= c <= 0x39:
        part = _part_numbers(r)
        if r.try_expect(b"."):
            text = r.word()
    elif c != 0x5D:
        text = r.word()
    if text is not None:
        if text not in _SECTION_TEXTS or (text == "MIME" and not part):
            raise ParseError(f"invalid section {text}")
        if text.startswith("HEADER.FIELDS"):
            r.sp()
            fields = tuple(r.paren_list(lambda: r.astring("a header field name")))
    raw = r.raw_since(mark)
    r.expect(b"]")
    if raw is None:  # a literal inside the field list: rebuild a canonical label
        raw = _canonical_section(part, text, fields)
    return part, text, fields, raw


def _canonical_section(part: tuple[int, ...], text: str | None, fields: tuple[bytes, ...]) -> bytes:
    items = [str(p).encode() for p in part]
    if text is not None:
        items.append(text.encode())
    label = b".".join(items)
    if fields:
        label += b" (" + b" ".join(_quote(f) for f in fields) + b")"
    return label


def _quote(value: bytes) -> bytes:
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def _partial(r: Reader) -> tuple[int, int] | None:
    """``"<" number "." nz-number ">"``"""
    if r.peek() != 0x3C:
        return None
    r.pos += 1
    origin = r.number(0xFFFFFFFF)
    r.expect(b".")
    length = r.nz_number()
    r.expect(b">")
    return (origin, length)
