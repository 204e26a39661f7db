"""Parts declared Content-Transfer-Encoding: binary are stored base64-encoded (RFC 3516 §4.4),
so that the store's CRLF line ends and IMAP's literals (no NUL) leave their octets intact."""

from __future__ import annotations

import base64
import io
from typing import BinaryIO

from pobox.imap.fetch import binary_data
from pobox.mail.binary import encode_binary_parts
from pobox.mail.parse import parse_bytes
from pobox.service.content import IncomingMessage

OCTETS = b"\x00-\xe4\n\r\n\n"  # NUL, 8-bit, bare LF, CRLF: what a CRLF store would change


def _single(cte: bytes = b"binary") -> bytes:
    return (
        b"From: a@example.org\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: " + cte + b"\r\n\r\n" + OCTETS
    )


MULTIPART = (
    b"From: a@example.org\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    b"preamble\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\n\r\n"
    b"--b\r\nContent-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding:\r\n BINARY\r\nContent-ID: <x@y>\r\n\r\n" + OCTETS + b"\r\n"
    b"--b--\r\n"
)


def test_a_binary_part_becomes_base64_and_nothing_else_changes() -> None:
    converted = encode_binary_parts(_single())
    assert converted == _single(b"base64").replace(OCTETS, base64.b64encode(OCTETS))
    converted = encode_binary_parts(MULTIPART)
    assert converted is not None
    assert converted == MULTIPART.replace(b"Encoding:\r\n BINARY", b"Encoding: base64").replace(
        OCTETS, base64.b64encode(OCTETS)
    )
    parts = parse_bytes(converted).root.children
    assert [p.content_transfer_encoding for p in parts] == [None, "base64"]


def test_without_a_binary_part_there_is_nothing_to_do() -> None:
    assert encode_binary_parts(_single(b"8bit")) is None
    assert encode_binary_parts(b"Subject: plain\r\n\r\nhi\r\n") is None


class _MemorySpool:
    def __init__(self) -> None:
        self.data = bytearray()
        self.size = 0
        self.sealed = False

    def write(self, data: bytes) -> None:
        self.data += data
        self.size = len(self.data)

    def seal(self) -> None:
        self.sealed = True

    def open(self) -> BinaryIO:
        return io.BytesIO(bytes(self.data))

    def discard(self) -> None:
        self.data.clear()


class _Stored:
    def __init__(self, data: bytes) -> None:
        self.data, self.size = data, len(data)

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length]

    def file(self) -> BinaryIO | None:
        return None

    def close(self) -> None:
        pass


def test_a_literal8_append_gives_back_the_octets_sent() -> None:
    spool = _MemorySpool()
    incoming = IncomingMessage(spool, binary=True)
    for i in range(0, len(MULTIPART), 5):  # in pieces, as literals arrive
        incoming.write(MULTIPART[i : i + 5])
    message = incoming.finish()
    stored = bytes(spool.data)
    assert spool.sealed and b"\x00" not in stored
    assert stored.count(b"\n") == stored.count(b"\r\n")  # the store's line ends throughout
    parsed = parse_bytes(stored)
    assert message.structure == parsed.to_bytes()
    assert binary_data(parsed, (2,), _Stored(stored)) == OCTETS
    assert b"hello\r\n" in stored  # the text part: only its line end made CRLF


def test_an_ordinary_append_is_written_as_it_comes() -> None:
    spool = _MemorySpool()
    incoming = IncomingMessage(spool)
    incoming.write(b"Subject: x\n\nhi\n")
    assert bytes(spool.data) == b"Subject: x\r\n\r\nhi\r\n"  # before finish: nothing held back
