"""Modified UTF-7 for mailbox names (RFC 3501 §5.1.3).

Printable US-ASCII (0x20-0x7E) stands for itself, except ``&`` which is written ``&-``.
Everything else is UTF-16BE, base64-encoded with ``,`` instead of ``/`` and no padding,
between ``&`` and ``-``. :func:`decode` is strict: it rejects the non-canonical forms a
careful client's decoder also rejects (encoded printable ASCII, adjacent encoded runs,
non-zero padding bits), so a name has exactly one spelling.
"""

from __future__ import annotations

import binascii

__all__ = ["MUtf7Error", "decode", "encode"]


class MUtf7Error(ValueError):
    """The bytes are not valid modified UTF-7."""


def _is_direct(ch: str) -> bool:
    return "\x20" <= ch <= "\x7e"


def encode(name: str) -> bytes:
    out = bytearray()
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            b64 = binascii.b2a_base64(raw, newline=False).rstrip(b"=").replace(b"/", b",")
            out.extend(b"&" + b64 + b"-")
            pending.clear()

    for ch in name:
        if _is_direct(ch):
            flush()
            out.extend(b"&-" if ch == "&" else ch.encode("ascii"))
        else:
            pending.append(ch)
    flush()
    return bytes(out)


def decode(data: bytes) -> str:
    out: list[str] = []
    i = 0
    n = len(data)
    last_encoded_end = -1
    while i < n:
        c = data[i]
        if not 0x20 <= c <= 0x7E:
            raise MUtf7Error(f"byte 0x{c:02x} is not allowed in modified UTF-7")
        if c != 0x26:  # '&'
            out.append(chr(c))
            i += 1
            continue
        end = data.find(b"-", i + 1)
        if end < 0:
            raise MUtf7Error("unterminated '&' sequence")
        if end == i + 1:
            out.append("&")
            i = end + 1
            continue
        if last_encoded_end == i:
            raise MUtf7Error("adjacent encoded sequences")
        out.append(_decode_run(data[i + 1 : end]))
        i = end + 1
        last_encoded_end = i
    return "".join(out)


def _decode_run(b64: bytes) -> str:
    if b"/" in b64 or b"=" in b64:
        raise MUtf7Error("'/' and '=' are not used in modified base64")
    if len(b64) % 4 == 1:
        raise MUtf7Error("truncated base64 run")
    padded = b64.replace(b",", b"/") + b"=" * (-len(b64) % 4)
    try:
        raw = binascii.a2b_base64(padded, strict_mode=True)
    except binascii.Error as exc:
        raise MUtf7Error(f"invalid base64 run: {exc}") from None
    # Re-encoding must give the same text: this rejects non-zero padding bits.
    again = binascii.b2a_base64(raw, newline=False).rstrip(b"=").replace(b"/", b",")
    if again != b64 or len(raw) % 2:
        raise MUtf7Error("base64 run is not canonical UTF-16")
    try:
        text = raw.decode("utf-16-be")
    except UnicodeDecodeError:
        raise MUtf7Error("base64 run is not valid UTF-16") from None
    if any(_is_direct(ch) for ch in text):
        raise MUtf7Error("printable ASCII must not be base64-encoded")
    return text
