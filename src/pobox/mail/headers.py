"""Header-block handling: splitting fields, unfolding, RFC 2047 words, MIME parameters.

Everything here works on bytes as they appear in the message; the decoded (unicode) helpers are
for SEARCH, SORT and the webmail. Behaviour on malformed input follows what Dovecot was observed
to do (see tests/interop/test_dovecot_bodystructure.py): never raise, keep what can be kept.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import functools
import re
import urllib.parse

__all__ = [
    "HeaderField",
    "decode_rfc2047",
    "decode_rfc2231_value",
    "first_value",
    "join_rfc2231",
    "parse_content_type",
    "parse_disposition",
    "parse_language",
    "split_fields",
    "unfold",
]

HeaderField = tuple[bytes, bytes]
"""(name, raw value): value starts after the colon and its leading blanks; folds kept as is."""

_WSP = b" \t"


def split_fields(block: bytes) -> list[HeaderField]:
    """Split a raw header block into fields.

    Continuation lines (starting with SP or HTAB) belong to the previous field. A line without a
    colon is kept as a field whose name is the whole line and whose value is empty, as Dovecot
    does. The blank line that ends the block, if present, is ignored. The trailing line ending of
    each field is removed; interior folds (CRLF + WSP) are kept.

    The message's header block is split about ten times while a new message is described (the
    envelope, then subject, addresses, references… for the search columns): the last few blocks'
    fields are kept (a function of the bytes alone), so that costs one split.
    """
    return list(_split_fields(block))


@functools.lru_cache(maxsize=32)
def _split_fields(block: bytes) -> tuple[HeaderField, ...]:
    fields: list[list[bytes]] = []
    for line in block.splitlines(keepends=True):
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1][1] += line
            continue
        colon = line.find(b":")
        if colon < 0:
            fields.append([line.rstrip(b"\r\n"), b""])
            continue
        name = line[:colon].rstrip(_WSP)
        value = line[colon + 1 :].lstrip(_WSP)
        fields.append([name, value])
    out: list[HeaderField] = []
    for name, value in fields:
        if value.endswith(b"\n"):
            value = value[:-1]
            if value.endswith(b"\r"):
                value = value[:-1]
        out.append((name, value))
    return tuple(out)


def unfold(value: bytes) -> bytes:
    """Remove the CR and LF octets of folds (RFC 5322 §2.2.3); the blanks stay."""
    return value.replace(b"\r", b"").replace(b"\n", b"")


def first_value(fields: list[HeaderField], name: bytes) -> bytes | None:
    lname = name.lower()
    for n, v in fields:
        if n.lower() == lname:
            return v
    return None


def last_value(fields: list[HeaderField], name: bytes) -> bytes | None:
    lname = name.lower()
    found: bytes | None = None
    for n, v in fields:
        if n.lower() == lname:
            found = v
    return found


# --------------------------------------------------------------------------------------------
# RFC 2047


_ENCODED_WORD = re.compile(rb"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")


def _charset_decode(data: bytes, charset: str) -> str:
    charset = charset.split("*", 1)[0]  # RFC 2231 language suffix
    try:
        codecs.lookup(charset)
    except LookupError:
        charset = "utf-8"
    try:
        return data.decode(charset, errors="replace")
    except (LookupError, ValueError):  # pragma: no cover - defensive
        return data.decode("utf-8", errors="replace")


def _decode_word(charset: bytes, enc: bytes, text: bytes) -> str | None:
    try:
        if enc in (b"b", b"B"):
            padded = text + b"=" * (-len(text) % 4)
            raw = base64.b64decode(padded, validate=True)
        else:
            raw = re.sub(
                rb"=([0-9A-Fa-f]{2})",
                lambda m: bytes([int(m.group(1), 16)]),
                text.replace(b"_", b" "),
            )
    except (binascii.Error, ValueError):
        return None
    return _charset_decode(raw, charset.decode("ascii", "replace"))


def _raw_text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def decode_rfc2047(value: bytes) -> str:
    """Decode a header value to unicode: unfold, decode encoded words (blanks between adjacent
    encoded words are dropped), read remaining 8-bit text as UTF-8 or else Latin-1."""
    value = unfold(value)
    out: list[str] = []
    pos = 0
    last_was_word = False
    for m in _ENCODED_WORD.finditer(value):
        between = value[pos : m.start()]
        decoded = _decode_word(m.group(1), m.group(2), m.group(3))
        if decoded is None:
            out.append(_raw_text(value[pos : m.end()]))
            last_was_word = False
        else:
            if not (last_was_word and between.strip(_WSP) == b""):
                out.append(_raw_text(between))
            out.append(decoded)
            last_was_word = True
        pos = m.end()
    out.append(_raw_text(value[pos:]))
    return "".join(out)


# --------------------------------------------------------------------------------------------
# RFC 2045 / 2183 / 2231 parameters

_TSPECIALS = b'()<>@,;:\\"/[]?='


def _skip_cfws(s: bytes, i: int) -> int:
    n = len(s)
    while i < n:
        c = s[i : i + 1]
        if c in (b" ", b"\t", b"\r", b"\n"):
            i += 1
        elif c == b"(":
            depth = 0
            while i < n:
                c = s[i : i + 1]
                if c == b"\\":
                    i += 2
                    continue
                if c == b"(":
                    depth += 1
                elif c == b")":
                    depth -= 1
                    if depth == 0:
                        i += 1
                        break
                i += 1
        else:
            break
    return i


def _token(s: bytes, i: int) -> tuple[bytes, int]:
    j = i
    n = len(s)
    while j < n and s[j] > 0x20 and s[j] != 0x7F and s[j : j + 1] not in _TSPECIALS:
        j += 1
    return s[i:j], j


def _quoted(s: bytes, i: int) -> tuple[bytes, int]:
    """s[i] is a DQUOTE; returns the unescaped content and the index after the closing quote."""
    out = bytearray()
    i += 1
    n = len(s)
    while i < n:
        c = s[i]
        if c == 0x5C and i + 1 < n:  # backslash
            out.append(s[i + 1])
            i += 2
            continue
        if c == 0x22:
            return bytes(out), i + 1
        if c not in (0x0D, 0x0A):
            out.append(c)
        i += 1
    return bytes(out), i


def _parse_params(s: bytes, i: int) -> list[tuple[bytes, bytes]]:
    params: list[tuple[bytes, bytes]] = []
    n = len(s)
    while i < n:
        i = _skip_cfws(s, i)
        if i >= n:
            break
        if s[i : i + 1] != b";":
            break  # junk: like Dovecot, ignore the rest
        i = _skip_cfws(s, i + 1)
        name, i = _token(s, i)
        i = _skip_cfws(s, i)
        if not name or s[i : i + 1] != b"=":
            break
        i = _skip_cfws(s, i + 1)
        if s[i : i + 1] == b'"':
            value, i = _quoted(s, i)
        else:
            value, i = _token(s, i)
            if not value:
                break
        params.append((name, value))
    return params


def join_rfc2231(params: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Join RFC 2231 continuations the way Dovecot presents them in BODYSTRUCTURE.

    Plain parameters come first, in their order. Then each starred parameter, in order of first
    appearance: if no segment is extended (``name*0="a"; name*1="b"``) the result is the plain
    ``name`` with the segments joined; otherwise it is ``name*`` with the value still in RFC 2231
    form (``charset'lang'%XX...``), plain segments having their ``%`` escaped, and ``''`` put in
    front when the first segment carries no charset part.
    """
    plain: list[tuple[bytes, bytes]] = []
    groups: dict[bytes, dict[int, tuple[bool, bytes]]] = {}
    for name, value in params:
        star = name.find(b"*")
        if star < 0:
            plain.append((name, value))
            continue
        base = name[:star]
        rest = name[star + 1 :]
        if rest == b"":
            idx, extended = 0, True
        else:
            extended = rest.endswith(b"*")
            digits = rest[:-1] if extended else rest
            if not digits.isdigit():
                plain.append((name, value))
                continue
            idx = int(digits)
        segs = groups.setdefault(base, {})
        if idx not in segs:
            segs[idx] = (extended, value)
    out = list(plain)
    for base, segs in groups.items():
        ordered: list[tuple[bool, bytes]] = []
        k = 0
        while k in segs:
            ordered.append(segs[k])
            k += 1
        if not ordered:
            continue
        if not any(ext for ext, _ in ordered):
            out.append((base, b"".join(v for _, v in ordered)))
            continue
        pieces: list[bytes] = []
        if not ordered[0][0]:
            pieces.append(b"''")
        for ext, v in ordered:
            pieces.append(v if ext else v.replace(b"%", b"%25"))
        out.append((base + b"*", b"".join(pieces)))
    return out


def decode_rfc2231_value(value: bytes) -> str:
    """Decode a ``charset'lang'%XX`` value (as produced by join_rfc2231 for ``name*``)."""
    parts = value.split(b"'", 2)
    if len(parts) != 3:
        return _raw_text(urllib.parse.unquote_to_bytes(value))
    charset = parts[0].decode("ascii", "replace") or "us-ascii"
    raw = urllib.parse.unquote_to_bytes(parts[2])
    return _charset_decode(raw, charset)


def parse_content_type(value: bytes) -> tuple[bytes, bytes, list[tuple[bytes, bytes]]] | None:
    """type, subtype (case kept), RFC 2231-joined params. None when there is no type token."""
    i = _skip_cfws(value, 0)
    ctype, i = _token(value, i)
    if not ctype:
        return None
    i = _skip_cfws(value, i)
    subtype = b""
    if value[i : i + 1] == b"/":
        i = _skip_cfws(value, i + 1)
        subtype, i = _token(value, i)
    return ctype, subtype, join_rfc2231(_parse_params(value, i))


def parse_disposition(value: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]] | None:
    i = _skip_cfws(value, 0)
    disp, i = _token(value, i)
    if not disp:
        return None
    return disp, join_rfc2231(_parse_params(value, i))


def parse_language(value: bytes) -> list[bytes]:
    out: list[bytes] = []
    i = 0
    n = len(value)
    while i < n:
        i = _skip_cfws(value, i)
        if i >= n:
            break
        if value[i : i + 1] == b",":
            i += 1
            continue
        tok, j = _token(value, i)
        if not tok:
            i += 1
            continue
        out.append(tok)
        i = j
    return out
