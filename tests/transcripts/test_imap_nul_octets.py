"""A message may hold NUL octets (a binary part, RFC 3516), but an IMAP literal may not: CHAR8
is %x01-ff (RFC 9051 §9). FETCH of BODY[...] and RFC822 sends each NUL as 0x80 (as Dovecot
does), keeping the length and every other octet; BINARY[...] sends the octets as they are, in
a literal8. A literal8 APPEND of a part declared binary is stored base64-encoded, so BINARY gives
back exactly the octets sent (RFC 3516 §4.4). Transcripts cannot carry these octets, so these
tests talk to the server in bytes."""

from __future__ import annotations

import asyncio
import re

import pytest

from pobox.imap.fetch import STREAM_THRESHOLD
from pobox.server import Running
from pobox.store.api import Account

ADDRESS, PASSWORD = "nul@example.org", "secret"
HEADER = (
    b"From: a@example.org\r\nSubject: nul\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n"
)
# a NUL in a part not declared binary is stored as it came (mail as broken mailers send it)
NUL_HEADER = HEADER.replace(b"Encoding: binary", b"Encoding: 8bit")


@pytest.fixture
async def account(running: Running) -> Account:
    return await running.service.accounts.add(ADDRESS, PASSWORD)


async def _command(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tag: bytes, text: bytes
) -> bytes:
    """Send one command; everything the server answered, literals included, up to the tag."""
    writer.write(tag + b" " + text + b"\r\n")
    out = b""
    while True:
        line = await asyncio.wait_for(reader.readline(), 10)
        assert line, out
        out += line
        literal = re.search(rb"~?\{(\d+)\}\r\n$", line)
        if literal:
            out += await asyncio.wait_for(reader.readexactly(int(literal[1])), 10)
            continue
        if line.startswith(tag + b" "):
            assert line.startswith(tag + b" OK"), out
            return out


@pytest.mark.parametrize("size", [7, STREAM_THRESHOLD + 100], ids=["inline", "streamed"])
async def test_body_sends_nul_as_0x80_and_binary_as_it_is(
    running: Running, account: Account, size: int
) -> None:
    body = (b"\x00-\xe4\r\n" * size)[:size]
    message = NUL_HEADER + body
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port("imap"))
    try:
        assert (await reader.readline()).startswith(b"* OK")
        await _command(reader, writer, b"a1", b'LOGIN "%s" "%s"' % (ADDRESS.encode(), b"secret"))
        await _command(reader, writer, b"a2", b"APPEND INBOX ~{%d+}\r\n" % len(message) + message)
        await _command(reader, writer, b"a3", b"SELECT INBOX")
        shown = body.replace(b"\x00", b"\x80")
        answer = await _command(reader, writer, b"a4", b"FETCH 1 (BODY.PEEK[1])")
        assert b"BODY[1] {%d}\r\n" % size + shown + b")\r\n" in answer
        assert b"\x00" not in answer
        answer = await _command(reader, writer, b"a5", b"FETCH 1 (BODY.PEEK[])")
        assert b"BODY[] {%d}\r\n" % len(message) + NUL_HEADER + shown + b")\r\n" in answer
        assert b"\x00" not in answer
        answer = await _command(reader, writer, b"a6", b"FETCH 1 (RFC822.TEXT)")
        assert b"\x00" not in answer and shown in answer
        answer = await _command(reader, writer, b"a7", b"FETCH 1 (BINARY.PEEK[1])")
        assert b"BINARY[1] ~{%d}\r\n" % size + body + b")\r\n" in answer
    finally:
        writer.close()


async def test_a_literal8_append_gives_back_the_binary_octets_sent(
    running: Running, account: Account
) -> None:
    # RFC 3516 §4.4: a literal8 APPEND of a part declared binary, with a NUL, an 8-bit octet and
    # bare line ends (which the store's CRLF line ends would change): BINARY gives them back
    octets = b"\x00-\xe4\n\r\n\n"
    message = HEADER + octets
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port("imap"))
    try:
        assert (await reader.readline()).startswith(b"* OK")
        await _command(reader, writer, b"a1", b'LOGIN "%s" "%s"' % (ADDRESS.encode(), b"secret"))
        await _command(reader, writer, b"a2", b"APPEND INBOX ~{%d+}\r\n" % len(message) + message)
        await _command(reader, writer, b"a3", b"SELECT INBOX")
        answer = await _command(reader, writer, b"a4", b"FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1])")
        assert b"BINARY.SIZE[1] 7 BINARY[1] ~{7}\r\n" + octets + b")\r\n" in answer
        answer = await _command(reader, writer, b"a5", b"FETCH 1 (BODY.PEEK[1] BODY.PEEK[1.MIME])")
        assert b"BODY[1] {12}\r\nAC3kCg0KCg==" in answer  # 7-bit text
        assert b"Content-Transfer-Encoding: base64\r\n" in answer
    finally:
        writer.close()
