"""Connection limits, failed-login blocks, command pacing, timeouts and line bounds over TCP.

The listeners run in-process (the ``running`` fixture) with small limits, so every refusal can be
seen on the wire: IMAP ``* BYE [UNAVAILABLE]``/``NO [UNAVAILABLE]``, POP3 ``-ERR [SYS/TEMP]``,
SMTP/LMTP ``421``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from tests.conftest import make_config

from pobox.config import Config
from pobox.server import Running
from pobox.service.auth import Blocked
from pobox.service.mail import MailService

ADDRESS = "limits@example.org"
PASSWORD = "secret"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(
        tmp_path / "data",
        imap={"idle_timeout": 2},
        pop3={"idle_timeout": 2, "auth_failure_delay": 0.0, "max_auth_failures": 5},
        smtp={"timeout": 2},
        lmtp={"timeout": 2},
        auth={"max_failures": 2, "block_seconds": 60, "penalty_max": 0.0},
        limits={
            "max_connections_per_ip": 2,
            "max_connections": 3,
            "max_imap_sessions_per_account": 1,
            "commands_per_second": 10,
        },
    )


@pytest.fixture
async def server(running: Running) -> Running:
    await running.service.accounts.add(ADDRESS, PASSWORD)
    return running


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> tuple[Conn, bytes]:
        conn = cls(*await asyncio.open_connection("127.0.0.1", port))
        return conn, await conn.line()

    async def line(self, timeout: float = 10) -> bytes:
        return await asyncio.wait_for(self.reader.readline(), timeout)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def ask(self, text: str) -> bytes:
        await self.send(text.encode() + b"\r\n")
        return await self.line()

    async def until_tagged(self, tag: bytes) -> bytes:
        while True:
            line = await self.line()
            assert line, "connection closed before the tagged answer"
            if line.startswith(tag + b" "):
                return line

    async def closed(self, timeout: float = 10) -> bytes:
        """Everything up to the server closing the connection."""
        return await asyncio.wait_for(self.reader.read(), timeout)

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


def test_safe_defaults() -> None:
    config = Config()
    assert config.imap.idle_timeout == 1800
    assert config.pop3.idle_timeout == 600
    assert config.smtp.timeout == 300 and config.lmtp.timeout == 300
    assert config.limits.max_connections_per_ip <= config.limits.max_connections
    assert config.auth.max_failures >= 3 and config.auth.penalty_max > 0


@pytest.mark.parametrize(
    ("listener", "refusal"),
    [("imap", b"* BYE [UNAVAILABLE]"), ("pop3", b"-ERR [SYS/TEMP]"), ("smtp", b"421 4.7.0")],
)
async def test_connections_per_ip(server: Running, listener: str, refusal: bytes) -> None:
    port = server.port(listener)
    first, _ = await Conn.open(port)
    second, _ = await Conn.open(port)
    third, greeting = await Conn.open(port)
    assert greeting.startswith(refusal), greeting
    assert await third.closed() == b""
    await first.close()
    await third.close()
    for _ in range(100):  # the slot comes back once the server has seen the close
        if server.limiters[listener].total < 2:
            break
        await asyncio.sleep(0.02)
    fourth, greeting = await Conn.open(port)
    assert not greeting.startswith(refusal), greeting
    await second.close()
    await fourth.close()


async def test_connection_limit_is_per_listener(server: Running) -> None:
    imap = [await Conn.open(server.port("imap")) for _ in range(2)]
    pop3, greeting = await Conn.open(server.port("pop3"))
    assert greeting.startswith(b"+OK")
    for conn, _ in imap:
        await conn.close()
    await pop3.close()


async def test_imap_sessions_per_account(server: Running) -> None:
    one, _ = await Conn.open(server.port("imap"))
    assert (await one.ask(f"a LOGIN {ADDRESS} {PASSWORD}")).startswith(b"a OK")
    two, _ = await Conn.open(server.port("imap"))
    answer = await two.ask(f"a LOGIN {ADDRESS} {PASSWORD}")
    assert answer.startswith(b"a NO [UNAVAILABLE]"), answer
    assert (await one.ask("b LOGOUT")).startswith(b"* BYE")
    await one.until_tagged(b"b")
    await one.close()
    for _ in range(100):
        answer = await two.ask(f"c LOGIN {ADDRESS} {PASSWORD}")
        if answer.startswith(b"c OK"):
            break
        await asyncio.sleep(0.05)
    assert answer.startswith(b"c OK"), answer
    await two.close()


async def test_imap_blocked_login(server: Running) -> None:
    conn, _ = await Conn.open(server.port("imap"))
    for tag in ("a", "b"):
        answer = await conn.ask(f"{tag} LOGIN {ADDRESS} wrong")
        assert answer.startswith(f"{tag} NO [AUTHENTICATIONFAILED]".encode()), answer
    answer = await conn.ask(f"c LOGIN {ADDRESS} {PASSWORD}")  # blocked: right password or not
    assert answer.startswith(b"c NO [UNAVAILABLE]"), answer
    assert (await conn.line()).startswith(b"* BYE")  # the third failure in the session
    await conn.close()


async def test_pop3_blocked_login(server: Running) -> None:
    conn, _ = await Conn.open(server.port("pop3"))
    for _ in range(2):
        assert (await conn.ask(f"USER {ADDRESS}")).startswith(b"+OK")
        assert (await conn.ask("PASS wrong")).startswith(b"-ERR [AUTH]")
    assert (await conn.ask(f"USER {ADDRESS}")).startswith(b"+OK")
    answer = await conn.ask(f"PASS {PASSWORD}")
    assert answer.startswith(b"-ERR [SYS/TEMP]"), answer
    await conn.close()


async def test_block_spares_other_accounts_from_elsewhere(server: Running) -> None:
    """127.0.0.1 is blocked for every account; the account over ::1 is not affected."""
    service: MailService = server.service
    for n in range(2):
        assert (
            await service.auth.authenticate(f"x{n}@example.org", "bad", remote="127.0.0.1") is None
        )
    with pytest.raises(Blocked):
        await service.auth.authenticate(ADDRESS, PASSWORD, remote="127.0.0.1")
    assert await service.auth.authenticate(ADDRESS, PASSWORD, remote="::1") is not None


async def test_commands_are_paced_not_dropped(server: Running) -> None:
    conn, _ = await Conn.open(server.port("imap"))
    started = time.monotonic()
    await conn.send(b"".join(b"n%d NOOP\r\n" % n for n in range(40)))
    for n in range(40):
        assert (await conn.until_tagged(b"n%d" % n)).startswith(b"n%d OK" % n)
    # a burst of 20 goes at once, the other 20 at 10 per second
    assert time.monotonic() - started >= 1.5
    await conn.close()


async def test_imap_inactivity_timeout(server: Running) -> None:
    conn, _ = await Conn.open(server.port("imap"))
    rest = await conn.closed(10)
    assert rest.startswith(b"* BYE"), rest
    await conn.close()


async def test_pop3_inactivity_timeout(server: Running) -> None:
    conn, _ = await Conn.open(server.port("pop3"))
    rest = await conn.closed(10)
    assert rest.startswith(b"-ERR"), rest
    await conn.close()


@pytest.mark.parametrize("listener", ["smtp", "lmtp"])
async def test_smtp_inactivity_timeout(server: Running, listener: str) -> None:
    conn, _ = await Conn.open(server.port(listener))
    started = time.monotonic()
    rest = await conn.closed(10)  # aiosmtpd closes the connection (it may say 421 first)
    assert rest in (b"",) or rest.startswith(b"421"), rest
    assert 1.5 <= time.monotonic() - started < 10
    await conn.close()


@pytest.mark.parametrize("listener", ["imap", "pop3", "smtp", "lmtp"])
async def test_endless_line_is_bounded(server: Running, listener: str) -> None:
    """Megabytes without a line end: the server answers with an error and stays up."""
    conn, _ = await Conn.open(server.port(listener))
    chunk = b"A" * 65536
    try:
        for _ in range(64):  # 4 MiB
            await conn.send(chunk)
    except ConnectionError:
        pass  # the server may hang up on such a client; it must not buffer it all
    await conn.close()
    other, greeting = await Conn.open(server.port(listener))
    assert greeting[:1] in (b"*", b"+", b"2"), greeting
    await other.close()


async def test_smtp_data_size_limit(server: Running) -> None:
    """SIZE is advertised and DATA beyond it is refused (memory per connection is bounded)."""
    conn, _ = await Conn.open(server.port("smtp"))
    await conn.send(b"EHLO test\r\n")
    lines = []
    while True:
        line = await conn.line()
        lines.append(line)
        if line.startswith(b"250 "):
            break
    limit = server.service.config.delivery.max_message_size
    assert any(line.startswith(b"250-SIZE %d" % limit) for line in lines), lines
    answer = await conn.ask(f"MAIL FROM:<a@example.org> SIZE={limit + 1}")
    assert answer.startswith(b"552"), answer
    await conn.close()
