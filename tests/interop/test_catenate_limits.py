"""CATENATE (RFC 4469 §5) and the APPEND limit: a message put together from URLs and TEXT parts
may not grow past it (NO [TOOBIG], nothing stored), whichever part crosses it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.conftest import make_config

from pobox.config import Config
from pobox.server import Running

ADDRESS = "cat-limit@example.org"
PASSWORD = "secret"
LIMIT = 200


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path / "data", imap={"max_literal": LIMIT})


async def _command(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tag: str, data: bytes
) -> list[bytes]:
    writer.write(tag.encode() + b" " + data + b"\r\n")
    await writer.drain()
    lines = []
    while True:
        line = await asyncio.wait_for(reader.readline(), 10)
        assert line, "connection closed"
        lines.append(line)
        if line.startswith(tag.encode() + b" "):
            return lines


async def test_catenate_past_the_append_limit(running: Running) -> None:
    await running.service.accounts.add(ADDRESS, PASSWORD)
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port("imap"))
    try:
        assert (await reader.readline()).startswith(b"* OK")
        await _command(reader, writer, "a1", f"LOGIN {ADDRESS} {PASSWORD}".encode())
        message = b"Subject: part\r\n\r\n" + b"x" * 100 + b"\r\n"  # 119 octets
        done = await _command(reader, writer, "a2", b"APPEND INBOX {119+}\r\n" + message)
        assert done[-1].startswith(b"a2 OK [APPENDUID"), done
        # one copy fits; two do not
        done = await _command(reader, writer, "a3", b'APPEND INBOX CATENATE (URL "/INBOX/;UID=1")')
        assert done[-1].startswith(b"a3 OK [APPENDUID"), done
        both = b'APPEND INBOX CATENATE (URL "/INBOX/;UID=1" URL "/INBOX/;UID=1")'
        done = await _command(reader, writer, "a4", both)
        assert done[-1].startswith(b"a4 NO [TOOBIG]"), done
        # a TEXT literal that crosses the limit after a URL: refused, its octets skipped
        text = b"y" * 90
        mixed = b'APPEND INBOX CATENATE (URL "/INBOX/;UID=1" TEXT {90+}\r\n' + text + b")"
        done = await _command(reader, writer, "a5", mixed)
        assert done[-1].startswith(b"a5 NO [TOOBIG]"), done
        status = await _command(reader, writer, "a6", b"STATUS INBOX (MESSAGES)")
        assert status[0] == b"* STATUS INBOX (MESSAGES 2)\r\n"
    finally:
        writer.close()
        await writer.wait_closed()
