"""The POP3 session over real TCP (in-process server): limits, streaming, failures, STLS seam."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.conftest import make_config

from pobox.config import Config
from pobox.errors import Temporary
from pobox.pop3 import protocol as p
from pobox.pop3.session import make_handler
from pobox.server import Running
from pobox.service.delivery import Envelope
from pobox.service.mail import MailService
from pobox.service.maildrop import DropMessage, Maildrop
from pobox.store.api import SEEN, Content

ADDRESS = "s@example.org"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(
        tmp_path / "data",
        pop3={"auth_failure_delay": 0.3, "max_auth_failures": 2, "idle_timeout": 1},
    )


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> Client:
        client = cls(*await asyncio.open_connection("127.0.0.1", port, limit=1 << 24))
        assert (await client.line()).startswith(b"+OK")
        return client

    async def line(self) -> bytes:
        raw = await asyncio.wait_for(self.reader.readline(), 10)
        assert raw.endswith(b"\r\n"), raw
        return raw[:-2]

    async def command(self, text: str) -> bytes:
        self.writer.write(text.encode() + b"\r\n")
        await self.writer.drain()
        return await self.line()

    async def multi(self, text: str) -> tuple[bytes, bytes]:
        """Send a command with a multi-line answer; returns (status, raw dot-stuffed body)."""
        status = await self.command(text)
        assert status.startswith(b"+OK"), status
        body = await asyncio.wait_for(self.reader.readuntil(b"\r\n.\r\n"), 30)
        return status, body

    async def login(self, password: str = "pw") -> bytes:
        assert await self.command(f"USER {ADDRESS}") == b"+OK send PASS"
        return await self.command(f"PASS {password}")

    async def eof(self) -> bytes:
        return await asyncio.wait_for(self.reader.read(), 10)

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


async def deliver(service: MailService, content: bytes) -> None:
    envelope = Envelope("sender@example.org", (ADDRESS,))
    (result,) = await service.delivery.deliver(envelope, content)
    assert result.delivered


async def stored(service: MailService) -> list[bytes]:
    account = await service.accounts.require(ADDRESS)
    inbox = await service.store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    out = []
    for meta in await service.store.list_messages(inbox.id):
        content = await service.store.open_content(meta.blob)
        try:
            out.append(content.read(0, content.size))
        finally:
            content.close()
    return out


async def inbox_flags(service: MailService) -> list[frozenset[str]]:
    account = await service.accounts.require(ADDRESS)
    inbox = await service.store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    return [m.flags for m in await service.store.list_messages(inbox.id)]


@pytest.fixture
async def pop(running: Running) -> AsyncIterator[Running]:
    await running.service.accounts.add(ADDRESS, "pw")
    yield running
    await asyncio.sleep(0.05)  # let sessions finish their cleanup before the server stops


def big_message() -> bytes:
    """About 1 MB with dot lines everywhere, including across 64 KiB read boundaries."""
    lines = [b"Subject: big", b""]
    size = 0
    n = 0
    while size < 1_000_000:
        n += 1
        line = (b"." if n % 3 == 0 else b"") + (b"line %d " % n) + b"x" * (n % 97)
        if n % 50 == 0:
            line = b"."
        lines.append(line)
        size += len(line) + 2
    return b"\r\n".join(lines) + b"\r\n"


async def test_retr_streams_a_large_message_exactly(pop: Running) -> None:
    content = big_message()
    await deliver(pop.service, content)
    (expected,) = await stored(pop.service)
    assert expected.endswith(content)
    client = await Client.connect(pop.port("pop3"))
    assert (await client.login()).startswith(b"+OK")
    status, body = await client.multi("RETR 1")
    assert status == b"+OK %d octets" % len(expected)
    assert p.unstuff(body) == expected
    _, top = await client.multi("TOP 1 99999999")
    assert p.unstuff(top) == expected
    _, head = await client.multi("TOP 1 0")
    assert p.unstuff(head) == expected[: expected.index(b"\r\n\r\n") + 4]
    _, some = await client.multi("TOP 1 3")
    header_end = expected.index(b"\r\n\r\n") + 4
    three = expected[header_end:].split(b"\r\n")[:3]
    assert p.unstuff(some) == expected[:header_end] + b"\r\n".join(three) + b"\r\n"
    assert (
        await client.command("QUIT") == b"+OK localhost POP3 server signing off (1 messages left)"
    )
    await client.close()


async def test_drop_during_retr_keeps_mail_sets_seen_and_releases_lock(pop: Running) -> None:
    await deliver(pop.service, big_message() * 5)
    client = await Client.connect(pop.port("pop3"))
    await client.login()
    assert (await client.command("DELE 1")).startswith(b"+OK")
    assert await client.command("RSET")
    client.writer.write(b"DELE 1\r\nRETR 1\r\n")
    await client.writer.drain()
    assert await client.line() == b"+OK message 1 deleted"
    assert await client.line() == b"-ERR message 1 already deleted"
    client.writer.write(b"RSET\r\nRETR 1\r\n")
    await client.line()
    assert (await client.line()).startswith(b"+OK")
    await client.reader.read(1000)
    client.writer.transport.abort()  # the client goes away in the middle of the message
    second = None
    for _ in range(50):  # the lock is released as soon as the server notices
        second = await Client.connect(pop.port("pop3"))
        reply = await second.login()
        if reply.startswith(b"+OK"):
            break
        assert reply.startswith(b"-ERR [IN-USE]")
        await second.close()
        await asyncio.sleep(0.1)
    else:
        pytest.fail("the maildrop stayed locked")
    assert await second.command("STAT") == b"+OK 1 %d" % len((await stored(pop.service))[0])
    assert await second.command("QUIT")
    await second.close()
    assert await inbox_flags(pop.service) == [frozenset({SEEN})]


async def test_idle_timeout_closes_without_deleting(pop: Running) -> None:
    await deliver(pop.service, b"Subject: x\r\n\r\nx\r\n")
    client = await Client.connect(pop.port("pop3"))
    await client.login()
    assert (await client.command("DELE 1")).startswith(b"+OK")
    started = time.monotonic()
    assert await client.line() == b"-ERR disconnected for inactivity"
    assert await client.eof() == b""
    assert time.monotonic() - started >= 0.9
    await client.close()
    again = await Client.connect(pop.port("pop3"))
    assert (await again.login()).startswith(b"+OK maildrop has 1 messages")
    await again.command("QUIT")
    await again.close()


async def test_auth_failures_are_delayed_and_limited(pop: Running) -> None:
    client = await Client.connect(pop.port("pop3"))
    started = time.monotonic()
    assert await client.login("wrong") == b"-ERR [AUTH] authentication failed"
    assert time.monotonic() - started >= 0.3
    reply = await client.login("wrong again")
    assert reply == b"-ERR [AUTH] authentication failed; too many failures, closing"
    assert await client.eof() == b""
    await client.close()


async def test_unexpected_error_answers_sys_temp_and_releases_lock(
    pop: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Maildrop) -> tuple[int, int]:
        raise RuntimeError("boom")

    monkeypatch.setattr(Maildrop, "stat", broken)
    client = await Client.connect(pop.port("pop3"))
    assert await client.login() == b"-ERR [SYS/TEMP] internal server error, closing"
    assert await client.eof() == b""
    await client.close()
    monkeypatch.undo()
    again = await Client.connect(pop.port("pop3"))
    assert (await again.login()).startswith(b"+OK")
    await again.command("QUIT")
    await again.close()


async def test_listings_come_from_the_snapshot(
    pop: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(60):
        await deliver(pop.service, b"Subject: %d\r\n\r\nbody\r\n" % n)
    client = await Client.connect(pop.port("pop3"))
    assert (await client.login()).startswith(b"+OK maildrop has 60 messages")
    store = pop.service.store

    async def no_queries(*args: object, **kwargs: object) -> None:
        raise AssertionError("a listing touched the store")

    monkeypatch.setattr(store, "get_messages", no_queries)
    monkeypatch.setattr(store, "list_messages", no_queries)
    monkeypatch.setattr(store, "open_content", no_queries)
    status, body = await client.multi("LIST")
    assert status.startswith(b"+OK 60 messages")
    entries = body.split(b"\r\n")[:-2]
    assert len(entries) == 60 and all(len(e.split(b" ")) == 2 for e in entries)
    status, body = await client.multi("UIDL")
    uidls = [e.split(b" ")[1] for e in body.split(b"\r\n")[:-2]]
    assert len(set(uidls)) == 60
    assert (await client.command("STAT")).startswith(b"+OK 60 ")
    assert (await client.command("UIDL 60")).startswith(b"+OK 60 ")
    monkeypatch.undo()
    await client.command("QUIT")
    await client.close()


async def test_stls_seam(service: MailService, config: Config) -> None:
    calls: list[asyncio.StreamWriter] = []

    async def fake_tls(writer: asyncio.StreamWriter) -> None:
        calls.append(writer)

    server = await asyncio.start_server(
        make_handler(service, config, starttls=fake_tls), "127.0.0.1", 0
    )
    try:
        port = server.sockets[0].getsockname()[1]
        client = await Client.connect(port)
        _, caps = await client.multi("CAPA")
        assert b"\r\nSTLS\r\n" in caps
        # input pipelined after STLS is discarded (RFC 2595 §4)
        client.writer.write(b"STLS\r\nNOOP\r\n")
        await client.writer.drain()
        assert await client.line() == b"+OK begin TLS negotiation"
        assert len(calls) == 1
        await asyncio.sleep(0.1)
        _, caps = await client.multi("CAPA")
        assert b"STLS" not in caps
        assert await client.command("STLS") == b"-ERR TLS is already active"
        assert await client.command("QUIT") == b"+OK localhost POP3 server signing off"
        await client.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_auth_plain_utf8_credentials(pop: Running) -> None:
    await pop.service.accounts.add("jörg@example.org".replace("ö", "o"), "pässwörd")
    client = await Client.connect(pop.port("pop3"))
    assert await client.command("UTF8") == b"+OK UTF8 enabled"
    token = base64.b64encode("\0jorg@example.org\0pässwörd".encode()).decode()
    assert (await client.command(f"AUTH PLAIN {token}")).startswith(b"+OK maildrop")
    await client.command("QUIT")
    await client.close()
    client = await Client.connect(pop.port("pop3"))
    assert await client.command("USER jorg@example.org") == b"+OK send PASS"
    assert (await client.command("PASS pässwörd")).startswith(b"+OK maildrop")
    await client.command("QUIT")
    await client.close()


async def test_temporary_store_trouble_answers_sys_temp_and_goes_on(
    pop: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    await deliver(pop.service, b"Subject: x\r\n\r\nx\r\n")
    client = await Client.connect(pop.port("pop3"))
    await client.login()

    async def busy(self: Maildrop, message: object) -> None:
        raise Temporary("database is busy")

    monkeypatch.setattr(Maildrop, "open_content", busy)
    assert await client.command("RETR 1") == b"-ERR [SYS/TEMP] database is busy"
    monkeypatch.undo()
    assert (await client.command("RETR 1")).startswith(b"+OK")
    await asyncio.wait_for(client.reader.readuntil(b"\r\n.\r\n"), 10)
    assert await client.command("QUIT")
    await client.close()


async def test_failure_in_the_middle_of_a_message_closes_without_err(
    pop: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    await deliver(pop.service, big_message())
    client = await Client.connect(pop.port("pop3"))
    await client.login()
    real_open = Maildrop.open_content

    async def failing(self: Maildrop, message: DropMessage) -> Content:
        content = await real_open(self, message)
        real_read = content.read

        def read(offset: int, length: int) -> bytes:
            if offset > 0:
                raise OSError(5, "Input/output error")
            return real_read(offset, length)

        content.read = read  # type: ignore[method-assign]
        return content

    monkeypatch.setattr(Maildrop, "open_content", failing)
    assert (await client.command("RETR 1")).startswith(b"+OK")
    rest = await client.eof()
    assert b"-ERR" not in rest and not rest.endswith(b"\r\n.\r\n")
    await client.close()


async def test_a_client_that_stops_reading_is_dropped_after_the_idle_timeout(
    pop: Running,
) -> None:
    await deliver(pop.service, big_message() * 20)  # about 20 MB: more than socket buffers hold
    # the default stream limit: the client side stops reading from the socket at 128 KiB
    client = Client(*await asyncio.open_connection("127.0.0.1", pop.port("pop3")))
    assert (await client.line()).startswith(b"+OK")
    await client.login()
    client.writer.write(b"RETR 1\r\n")
    await client.writer.drain()
    await asyncio.sleep(2.5)  # read nothing: the server's writes block, then time out
    again = await Client.connect(pop.port("pop3"))
    assert (await again.login()).startswith(b"+OK maildrop has 1 messages")
    await again.command("QUIT")
    await again.close()
    client.writer.transport.abort()
