"""Binary parts of an APPENDed message made storable (RFC 3516 §4.4, as Dovecot does).

Sans-IO. A client that APPENDs with a literal8 (``~{n}``) may send parts whose
Content-Transfer-Encoding is ``binary``: any octets, NUL and bare CR or LF included. The store
keeps messages with CRLF line ends (RFC 5322), which would change such a part, and no IMAP
literal may carry a NUL. So each leaf part declared ``binary`` is stored base64-encoded, its
header saying so: BINARY[...] and BINARY.SIZE[...] then give back exactly the octets the client
sent, and BODY[...] is plain 7-bit text. Nothing else in the message changes.
"""

from __future__ import annotations

import base64
import re

from pobox.mail.parse import parse_bytes

__all__ = ["encode_binary_parts"]

# the whole Content-Transfer-Encoding field, folded lines included
_CTE_FIELD = re.compile(rb"(?im)^(content-transfer-encoding[ \t]*:)[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*")


def encode_binary_parts(raw: bytes) -> bytes | None:
    """*raw* with every leaf part whose Content-Transfer-Encoding is ``binary`` base64-encoded
    (76-character lines, CRLF), or None when it has no such part."""
    parsed = parse_bytes(raw)
    edits: list[tuple[int, int, bytes]] = []
    for part in parsed.root.walk():
        if part.is_multipart or part.is_message_rfc822:
            continue  # RFC 2046 §5: these are never base64; their leaves are walked
        if (part.content_transfer_encoding or "").lower() != "binary":
            continue
        header_end = part.header_offset + part.header_size
        header = _CTE_FIELD.sub(rb"\1 base64", raw[part.header_offset : header_end], count=1)
        body = raw[part.body_offset : part.body_offset + part.body_size]
        encoded = base64.encodebytes(body).rstrip(b"\n").replace(b"\n", b"\r\n")
        edits.append((part.header_offset, header_end, header))
        edits.append((part.body_offset, part.body_offset + part.body_size, encoded))
    if not edits:
        return None
    out = bytearray(raw)
    for start, end, replacement in sorted(edits, reverse=True):
        out[start:end] = replacement
    return bytes(out)
