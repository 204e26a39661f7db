"""UNAUTHENTICATE (RFC 8437) gives back the per-account session slot a login took: with one
IMAP session allowed per account, a second connection can log in once the first has
unauthenticated, and the first can log in again once the second has logged out."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.conftest import make_config

from pobox.config import Config
from pobox.server import Running

ADDRESS = "reuse@example.org"
PASSWORD = "secret"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path / "data", limits={"max_imap_sessions_per_account": 1})


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        conn = cls(*await asyncio.open_connection("127.0.0.1", port))
        assert (await conn.line()).startswith(b"* OK")
        return conn

    async def line(self) -> bytes:
        return await asyncio.wait_for(self.reader.readline(), 10)

    async def command(self, tag: str, text: str) -> list[bytes]:
        self.writer.write(f"{tag} {text}\r\n".encode())
        await self.writer.drain()
        lines = []
        while True:
            line = await self.line()
            assert line, "connection closed before the tagged answer"
            lines.append(line)
            if line.startswith(tag.encode() + b" "):
                return lines

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def test_unauthenticate_frees_the_account_slot(running: Running) -> None:
    await running.service.accounts.add(ADDRESS, PASSWORD)
    port = running.port("imap")
    first = await Conn.open(port)
    second = await Conn.open(port)
    assert (await first.command("a1", f"LOGIN {ADDRESS} {PASSWORD}"))[-1].startswith(b"a1 OK")
    assert (await first.command("a2", "SELECT INBOX"))[-1].startswith(b"a2 OK")
    refused = (await second.command("b1", f"LOGIN {ADDRESS} {PASSWORD}"))[-1]
    assert refused.startswith(b"b1 NO [UNAVAILABLE]"), refused
    assert (await first.command("a3", "UNAUTHENTICATE"))[
        -1
    ] == b"a3 OK UNAUTHENTICATE completed\r\n"
    assert (await second.command("b2", f"LOGIN {ADDRESS} {PASSWORD}"))[-1].startswith(b"b2 OK")
    again = (await first.command("a4", f"LOGIN {ADDRESS} {PASSWORD}"))[-1]
    assert again.startswith(b"a4 NO [UNAVAILABLE]"), again
    assert (await second.command("b3", "LOGOUT"))[-1].startswith(b"b3 OK")
    await second.close()
    for _ in range(200):  # the slot comes back once the server has seen the LOGOUT through
        answer = (await first.command("a5", f"LOGIN {ADDRESS} {PASSWORD}"))[-1]
        if answer.startswith(b"a5 OK"):
            break
        await asyncio.sleep(0.02)
    assert answer.startswith(b"a5 OK"), answer
    assert (await first.command("a6", "CAPABILITY"))[0].count(b"UNAUTHENTICATE") == 1
    await first.close()
