"""Modified UTF-7 (RFC 3501 §5.1.3)."""

from __future__ import annotations

import pytest

from pobox.imap import mutf7


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        ("INBOX", b"INBOX"),
        ("Entwürfe", b"Entw&APw-rfe"),
        ("~peter/mail/台北/日本語", b"~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
        ("&", b"&-"),
        ("A&B", b"A&-B"),
        ("Hi Mom -☺-!", b"Hi Mom -&Jjo--!"),
        ("😀", b"&2D3eAA-"),
        ("", b""),
    ],
)
def test_round_trip_examples(text: str, wire: bytes) -> None:
    assert mutf7.encode(text) == wire
    assert mutf7.decode(wire) == text


@pytest.mark.parametrize(
    "bad",
    [
        b"&Jjo",  # unterminated
        b"&Jjo!-",  # invalid base64 char
        b"&AGE-",  # printable ASCII encoded
        b"&Jjo-&Jjo-",  # adjacent encoded runs
        b"&Jjp-",  # non-zero padding bits
        b"&AA-",  # odd number of octets
        b"\xc3\xa4",  # 8-bit
        b"a\tb",  # control
        b"&2D0-",  # lone surrogate
        b"&Jjo/-",
    ],
)
def test_rejects_non_canonical(bad: bytes) -> None:
    with pytest.raises(mutf7.MUtf7Error):
        mutf7.decode(bad)
