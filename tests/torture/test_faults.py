"""A busy/locked or full database under every protocol: temporary failures, nothing lost, and
recovery by itself once the fault clears.

The fault is injected in-process: while it is on, every SQLite write (and, for "locked", every
read) raises what SQLite raises (``database is locked``, ``database or disk is full``), below
the store's error mapping (``as_store_error``), so the real paths from the store up to the wire
are exercised.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from tests.conftest import make_config

from pobox.config import Config
from pobox.server import Running
from pobox.store.sqlite import db as sqlite_db

T = TypeVar("T")
ADDRESS = "fault@example.org"
PASSWORD = "pw"

pytestmark = pytest.mark.torture


class Fault:
    def __init__(self) -> None:
        self.error: str | None = None
        self.reads = False

    def wrap(self, fn: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], T]:
        def run(conn: sqlite3.Connection) -> T:
            if self.error is not None:
                raise sqlite3.OperationalError(self.error)
            return fn(conn)

        return run


@pytest.fixture
def fault(monkeypatch: pytest.MonkeyPatch) -> Fault:
    fault = Fault()
    write = sqlite_db.Database.write
    read = sqlite_db.Database.read

    async def faulty_write(
        self: sqlite_db.Database, fn: Callable[[sqlite3.Connection], Any], **options: Any
    ) -> Any:
        return await write(self, fault.wrap(fn), **options)

    async def faulty_read(
        self: sqlite_db.Database, fn: Callable[[sqlite3.Connection], Any], **options: Any
    ) -> Any:
        # inline reads too: a busy database sends them to the pool, where they fail again
        return await read(self, fault.wrap(fn) if fault.reads else fn, **options)

    monkeypatch.setattr(sqlite_db.Database, "write", faulty_write)
    monkeypatch.setattr(sqlite_db.Database, "read", faulty_read)
    return fault


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(
        tmp_path / "data",
        pop3={"auth_failure_delay": 0.0},
        auth={"penalty_max": 0.0},
    )


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        conn = cls(*await asyncio.open_connection("127.0.0.1", port))
        await conn.line()
        return conn

    async def line(self) -> bytes:
        return await asyncio.wait_for(self.reader.readline(), 30)

    async def ask(self, text: bytes) -> bytes:
        self.writer.write(text)
        await self.writer.drain()
        return await self.line()

    async def reply(self, text: bytes) -> bytes:
        """An SMTP command's whole reply (continuation lines joined)."""
        self.writer.write(text)
        await self.writer.drain()
        lines = []
        while True:
            line = await self.line()
            lines.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                return b"".join(lines)

    async def tagged(self, text: bytes, tag: bytes) -> bytes:
        self.writer.write(text)
        await self.writer.drain()
        while True:
            line = await self.line()
            assert line, "closed"
            if line.startswith(tag + b" "):
                return line

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


def message(n: int) -> bytes:
    return b"Subject: fault-%d\r\nMessage-ID: <fault-%d@test>\r\n\r\nbody %d\r\n" % (n, n, n)


async def deliver(port: int, n: int, lmtp: bool) -> bytes:
    conn = await Conn.open(port)
    await conn.reply(b"LHLO t\r\n" if lmtp else b"EHLO t\r\n")
    assert (await conn.reply(b"MAIL FROM:<a@test>\r\n")).startswith(b"250")
    rcpt = await conn.reply(b"RCPT TO:<%s>\r\n" % ADDRESS.encode())
    if not rcpt.startswith(b"250"):
        await conn.close()
        return rcpt
    assert (await conn.reply(b"DATA\r\n")).startswith(b"354")
    answer = await conn.reply(message(n) + b".\r\n")
    await conn.close()
    return answer


@pytest.mark.parametrize("error", ["database is locked", "database or disk is full"])
async def test_database_faults_are_temporary_everywhere(
    running: Running, fault: Fault, error: str
) -> None:
    await running.service.accounts.add(ADDRESS, PASSWORD)
    acked: set[int] = set()
    for n, lmtp in ((1, True), (2, False)):
        answer = await deliver(running.port("lmtp" if lmtp else "smtp"), n, lmtp)
        assert answer.startswith(b"250"), answer
        acked.add(n)

    # logged-in sessions from before the fault
    imap = await Conn.open(running.port("imap"))
    login = b"a LOGIN %s %s\r\n" % (ADDRESS.encode(), PASSWORD.encode())
    assert (await imap.tagged(login, b"a")).startswith(b"a OK")
    assert (await imap.tagged(b"b SELECT INBOX\r\n", b"b")).startswith(b"b OK")
    pop = await Conn.open(running.port("pop3"))
    assert (await pop.ask(b"USER %s\r\n" % ADDRESS.encode())).startswith(b"+OK")
    assert (await pop.ask(b"PASS %s\r\n" % PASSWORD.encode())).startswith(b"+OK")

    fault.error = error
    for n, lmtp in ((10, True), (11, False)):
        answer = await deliver(running.port("lmtp" if lmtp else "smtp"), n, lmtp)
        assert answer[:1] == b"4", answer  # 451/452: the client keeps the message and retries
    content = message(12)
    imap.writer.write(b"c APPEND INBOX {%d}\r\n" % len(content))
    assert (await imap.line()).startswith(b"+")
    answer = await imap.tagged(content + b"\r\n", b"c")
    assert answer.startswith((b"c NO [UNAVAILABLE]", b"c NO [SERVERBUG]")), answer
    answer = await imap.tagged(b"d STORE 1 +FLAGS (\\Flagged)\r\n", b"d")
    assert answer.startswith((b"d NO [UNAVAILABLE]", b"d NO [SERVERBUG]")), answer
    assert (await pop.ask(b"DELE 1\r\n")).startswith(b"+OK")
    answer = await pop.ask(b"QUIT\r\n")
    assert answer.startswith(b"-ERR [SYS/TEMP]"), answer
    await pop.close()

    fault.error = None  # the fault clears: everything works again without a restart
    for n, lmtp in ((20, True), (21, False)):
        answer = await deliver(running.port("lmtp" if lmtp else "smtp"), n, lmtp)
        assert answer.startswith(b"250"), answer
        acked.add(n)
    imap.writer.write(b"e APPEND INBOX {%d}\r\n" % len(content))
    assert (await imap.line()).startswith(b"+")
    assert (await imap.tagged(content + b"\r\n", b"e")).startswith(b"e OK")
    acked.add(12)
    answer = await imap.tagged(b"f STORE 1 +FLAGS (\\Flagged)\r\n", b"f")
    assert answer.startswith(b"f OK"), answer
    fetch = b"g FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n"
    imap.writer.write(fetch)
    await imap.writer.drain()
    seen = b""
    while not (line := await imap.line()).startswith(b"g "):
        seen += line
    assert line.startswith(b"g OK")
    for n in acked:
        assert b"Subject: fault-%d\r" % n in seen, (n, seen)
    # the POP3 deletion was not applied (temporary failure): message 1 is still there
    assert b"Subject: fault-1\r" in seen
    await imap.close()
