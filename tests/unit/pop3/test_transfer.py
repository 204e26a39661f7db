"""RETR and TOP at wire speed: few large writes, TCP_NODELAY, TOP with various n, no pacing of
per-message commands, \\Seen written in groups (docs/pop3.md)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import make_config

from pobox.config import Config
from pobox.pop3 import protocol as p
from pobox.pop3.session import CONTENT_CHUNK, make_handler
from pobox.service.delivery import Envelope
from pobox.service.mail import MailService
from pobox.store.api import SEEN, Content

ADDRESS = "t@example.org"
RATE = 5  # commands per second: low, so pacing shows


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(
        tmp_path / "data",
        pop3={"auth_failure_delay": 0.0, "idle_timeout": 10},
        limits={"commands_per_second": RATE},
    )


@dataclass
class Server:
    port: int
    writes: list[int] = field(default_factory=list)  # sizes of the session's writes
    nodelay: list[int] = field(default_factory=list)


@pytest.fixture
async def server(service: MailService, config: Config) -> AsyncIterator[Server]:
    await service.accounts.add(ADDRESS, "pw")
    handle = make_handler(service, config)
    state = Server(0)

    async def counting(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        state.nodelay.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        real_write = writer.write

        def write(data: bytes | bytearray | memoryview) -> None:
            state.writes.append(len(data))
            real_write(data)

        writer.write = write  # type: ignore[method-assign]
        await handle(reader, writer)

    listener = await asyncio.start_server(counting, "127.0.0.1", 0)
    state.port = listener.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        listener.close()
        await listener.wait_closed()
        await asyncio.sleep(0.05)


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def login(cls, port: int) -> Client:
        client = cls(*await asyncio.open_connection("127.0.0.1", port, limit=1 << 24))
        assert (await client.line()).startswith(b"+OK")
        assert (await client.command(f"USER {ADDRESS}")).startswith(b"+OK")
        assert (await client.command("PASS pw")).startswith(b"+OK")
        return client

    async def line(self) -> bytes:
        raw = await asyncio.wait_for(self.reader.readline(), 10)
        assert raw.endswith(b"\r\n"), raw
        return raw[:-2]

    async def command(self, text: str) -> bytes:
        self.writer.write(text.encode() + b"\r\n")
        await self.writer.drain()
        return await self.line()

    async def multi(self, text: str) -> bytes:
        status = await self.command(text)
        assert status.startswith(b"+OK"), status
        return p.unstuff(await asyncio.wait_for(self.reader.readuntil(b"\r\n.\r\n"), 10))

    async def quit(self) -> None:
        assert (await self.command("QUIT")).startswith(b"+OK")
        self.writer.close()
        await self.writer.wait_closed()


async def deliver(service: MailService, content: bytes) -> bytes:
    """Deliver *content*; returns the stored form (trace headers in front, CRLF line ends)."""
    (result,) = await service.delivery.deliver(Envelope("s@example.org", (ADDRESS,)), content)
    assert result.delivered
    account = await service.accounts.require(ADDRESS)
    inbox = await service.store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    (meta,) = await service.store.get_messages(inbox.id, [result.uid or 0])
    stored = await service.store.open_content(meta.blob)
    try:
        return stored.read(0, stored.size)
    finally:
        stored.close()


def body_line(n: int) -> bytes:
    return b".dot line %d" % n if n % 4 == 0 else b"line %d" % n


def expected_top(stored: bytes, n: int) -> bytes:
    head, _, body = stored.partition(b"\r\n\r\n")
    lines = body.split(b"\r\n")[:-1]
    return head + b"\r\n\r\n" + b"".join(line + b"\r\n" for line in lines[:n])


@pytest.mark.parametrize("n", [0, 1, 2, 5, 9, 10, 11, 99999999])
async def test_top_sends_the_header_and_n_lines(
    service: MailService, server: Server, n: int
) -> None:
    text = b"Subject: top\r\nX-Dots: .\r\n\r\n" + b"".join(
        body_line(i) + b"\r\n" for i in range(10)
    )
    stored = await deliver(service, text)
    client = await Client.login(server.port)
    assert await client.multi(f"TOP 1 {n}") == expected_top(stored, n)
    await client.quit()


async def test_top_of_a_message_with_a_large_header(service: MailService, server: Server) -> None:
    """A header longer than TOP's first read: the blank line is found in a later read."""
    fields = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"v" * 70) for i in range(600))
    stored = await deliver(service, b"Subject: big head\r\n" + fields + b"\r\n.one\r\ntwo\r\n")
    assert stored.index(b"\r\n\r\n") > 16 * 1024
    client = await Client.login(server.port)
    assert await client.multi("TOP 1 0") == expected_top(stored, 0)
    assert await client.multi("TOP 1 1") == expected_top(stored, 1)
    await client.quit()


async def test_top_of_a_message_without_a_body(service: MailService, server: Server) -> None:
    stored = await deliver(service, b"Subject: only a header\r\n")
    client = await Client.login(server.port)
    assert await client.multi("TOP 1 0") == stored
    assert await client.multi("TOP 1 3") == stored
    await client.quit()


async def test_retr_goes_out_in_one_write_and_without_nagle(
    service: MailService, server: Server
) -> None:
    text = b"Subject: one write\r\n\r\n" + b"".join(
        body_line(i) + b" " + b"x" * 60 + b"\r\n" for i in range(700)
    )
    stored = await deliver(service, text)
    assert 40_000 < len(stored) < CONTENT_CHUNK
    client = await Client.login(server.port)
    before = len(server.writes)
    assert await client.multi("RETR 1") == stored
    assert len(server.writes) - before == 1  # status line, message and final dot together
    before = len(server.writes)
    assert await client.multi("TOP 1 0") == expected_top(stored, 0)
    assert len(server.writes) - before == 1
    await client.quit()
    assert server.nodelay and all(server.nodelay)


async def test_a_large_message_goes_out_in_large_writes(
    service: MailService, server: Server
) -> None:
    line = b"." + b"y" * 98 + b"\r\n"
    stored = await deliver(service, b"Subject: large\r\n\r\n" + line * 12_000)  # 1.2 MB
    client = await Client.login(server.port)
    before = len(server.writes)
    assert await client.multi("RETR 1") == stored
    writes = server.writes[before:]
    assert len(writes) <= len(stored) // CONTENT_CHUNK + 1
    assert all(size >= CONTENT_CHUNK for size in writes[:-1])
    await client.quit()


async def test_per_message_commands_are_not_paced(service: MailService, server: Server) -> None:
    for i in range(8):
        await deliver(service, b"Subject: %d\r\n\r\nbody\r\n" % i)
    client = await Client.login(server.port)  # USER, PASS: 2 of the burst of 2 x RATE
    started = time.monotonic()
    for _ in range(4):  # 160 commands on one message: paced, they would take half a minute
        for n in range(1, 9):
            assert (await client.command(f"LIST {n}")).startswith(b"+OK")
            assert (await client.command(f"UIDL {n}")).startswith(b"+OK")
            await client.multi(f"TOP {n} 0")
            await client.multi(f"RETR {n}")
            assert (await client.command(f"DELE {n}")).startswith(b"+OK")
        assert (await client.command("RSET")).startswith(b"+OK")  # paced: 4 more of the burst
    assert time.monotonic() - started < 3.0
    started = time.monotonic()
    for _ in range(3 * RATE):  # other commands are paced: at most a burst of 2 x RATE, then
        assert await client.command("NOOP") == b"+OK"  # one every 1/RATE s
    assert time.monotonic() - started >= 0.8
    await client.quit()


async def test_seen_is_written_in_groups_and_durable_at_quit(
    service: MailService, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(30):
        await deliver(service, b"Subject: %d\r\n\r\nbody\r\n" % i)
    calls: list[int] = []
    real = service.store.set_flags

    async def slow_set_flags(mailbox_id, uids, op, flags, unchanged_since=None):  # type: ignore[no-untyped-def]
        uids = list(uids)
        calls.append(len(uids))
        await asyncio.sleep(0.05)  # a commit that takes a while: the next RETRs wait and group
        return await real(mailbox_id, uids, op, flags, unchanged_since)

    monkeypatch.setattr(service.store, "set_flags", slow_set_flags)
    client = await Client.login(server.port)
    client.writer.write(b"".join(b"RETR %d\r\n" % n for n in range(1, 31)))
    for _ in range(30):
        assert (await client.line()).startswith(b"+OK")
        await client.reader.readuntil(b"\r\n.\r\n")
    await client.quit()
    assert sum(calls) == 30
    assert len(calls) < 30
    account = await service.accounts.require(ADDRESS)
    inbox = await service.store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    assert all(SEEN in m.flags for m in await service.store.list_messages(inbox.id))


async def test_seen_write_survives_a_dropped_client(
    service: MailService, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    await deliver(service, b"Subject: x\r\n\r\nbody\r\n")
    real = service.store.set_flags

    async def slow_set_flags(mailbox_id, uids, op, flags, unchanged_since=None):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.3)
        return await real(mailbox_id, uids, op, flags, unchanged_since)

    monkeypatch.setattr(service.store, "set_flags", slow_set_flags)
    client = await Client.login(server.port)
    await client.multi("RETR 1")
    client.writer.transport.abort()
    account = await service.accounts.require(ADDRESS)
    inbox = await service.store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    for _ in range(50):
        if all(SEEN in m.flags for m in await service.store.list_messages(inbox.id)):
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("\\Seen was not written")


async def test_contents_are_opened_ahead_in_batches_and_closed(
    service: MailService, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(20):
        await deliver(service, b"Subject: %d\r\n\r\n.body %d\r\n" % (i, i))
    store = service.store
    calls = {"open_message": 0, "get_messages": 0, "open_contents": 0}
    opened: list[Content] = []
    closed: list[Content] = []

    def counted(name: str) -> Any:
        real = getattr(store, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            result = await real(*args, **kwargs)
            if name == "open_contents":
                for content in result.values():
                    opened.append(content)
                    real_close = content.close

                    def close(content: Content = content, real_close: Any = real_close) -> None:
                        closed.append(content)
                        real_close()

                    content.close = close
            return result

        return call

    for name in calls:
        monkeypatch.setattr(store, name, counted(name))
    client = await Client.login(server.port)
    for n in range(1, 21):
        assert (await client.multi(f"TOP {n} 1")).endswith(b"\r\n\r\n.body %d\r\n" % (n - 1))
    assert calls["open_contents"] == 3 and calls["get_messages"] == 3  # 20 messages, 8 at a time
    assert calls["open_message"] == 0
    await client.multi("TOP 1 0")  # opened again, with the next 7: left open until QUIT
    await client.quit()
    await asyncio.sleep(0.1)
    assert len(opened) == 28 and sorted(map(id, closed)) == sorted(map(id, opened))


async def test_a_message_opened_ahead_then_expunged_is_not_served(
    service: MailService, server: Server
) -> None:
    for i in range(3):
        await deliver(service, b"Subject: %d\r\n\r\nbody\r\n" % i)
    client = await Client.login(server.port)
    await client.multi("RETR 1")  # opens 2 and 3 ahead
    account = await service.accounts.require(ADDRESS)
    inbox = await service.store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    metas = await service.store.list_messages(inbox.id)
    await service.store.expunge(inbox.id, [metas[1].uid])  # as an IMAP session would
    assert await client.command("RETR 2") == b"-ERR message 2 was removed by another session"
    assert (await client.multi("TOP 3 0")).startswith(b"Return-Path:")
    await client.quit()


async def test_a_long_pipeline_is_answered_in_order(service: MailService, server: Server) -> None:
    """Pipelined commands answered from the buffer (with a turn for other connections every
    few dozen) come back complete and in order."""
    for i in range(3):
        await deliver(service, b"Subject: %d\r\n\r\nbody\r\n" % i)
    client = await Client.login(server.port)
    other = Client(*await asyncio.open_connection("127.0.0.1", server.port))
    assert (await other.line()).startswith(b"+OK")
    client.writer.write(
        b"".join(b"LIST %d\r\nUIDL %d\r\n" % ((n % 3 + 1,) * 2) for n in range(150))
    )
    assert (await other.command("CAPA")).startswith(b"+OK")  # served meanwhile
    for n in range(150):
        assert (await client.line()).startswith(b"+OK %d " % (n % 3 + 1))
        assert (await client.line()).startswith(b"+OK %d " % (n % 3 + 1))
    await client.quit()
    other.writer.close()
