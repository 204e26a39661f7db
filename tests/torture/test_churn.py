"""Connection churn on every listener: nothing a client does to a connection may leak a slot.

A real ``pobox serve`` with every listener (IMAP, IMAPS, POP3, POP3S, SMTP, LMTP), low limits and
short timeouts takes thousands of connections of mixed shapes: connect-and-close, connect-and-reset
(SO_LINGER 0), idle until the server's timeout, one byte at a time (a slow drip) until the timeout,
TLS handshakes aborted half-way (on the implicit-TLS ports and after STARTTLS), garbage, a close in
the middle of an IMAP literal, of SMTP/LMTP DATA and of a POP3 RETR. Ordinary sessions run among
them and must all succeed. Afterwards a normal session works on every listener, ``pobox status``
reads zero open connections everywhere, the server's open file descriptors and the blocks Python
has allocated are back within 10 % of where they were after the warm-up rounds, and the log holds
no traceback and no error.

Memory is judged by Python's allocated blocks (``pobox status``), which move with every object a
session leaves behind. The resident set is a coarse check only: native allocations (OpenSSL's
buffers, SQLite's caches, malloc's arenas) fragment, and under the standard event loop the RSS
was measured drifting by about 1.5 KiB per connection over six rounds while Python's blocks
stayed level (140 to 155 thousand, no trend).

Run with one worker on uvloop, with two workers, and with the standard library's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import ssl
import struct
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.helpers.servers import LISTENERS, ServerProcess, free_port

from pobox.net.tls import generate_certificate

pytestmark = [
    pytest.mark.torture,
    pytest.mark.slow,
    pytest.mark.timeout(600),
    # the client side cuts connections off on purpose and leaves them to the garbage collector
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

ACCOUNT = "churn@localhost"  # IMAP sessions; its INBOX keeps the few messages it starts with
SINK = "sink@localhost"  # where the SMTP and LMTP sessions deliver
PASSWORD = "churn-secret"
POP3_ACCOUNTS = [f"drop{n}@localhost" for n in range(4)]  # one maildrop lock each
TIMEOUT = 3  # the server's idle timeouts, seconds
CONCURRENCY = 24  # client connections at once: below the per-IP limit, so nothing is refused
PER_IP = 40
CONNECTIONS = 1200  # churn connections per round, all listeners together
WARM_UP_ROUNDS = 2  # rounds before the file descriptors and RSS are taken as the baseline
BIG = 2 * 1024 * 1024  # the message a POP3 RETR is cut off in

#: per listener: what the config says besides its port
LISTENER_SETTINGS = {
    "imap": f"idle_timeout = {TIMEOUT}",
    "pop3": f"idle_timeout = {TIMEOUT}\nauth_failure_delay = 0.0",
    "smtp": f"timeout = {TIMEOUT}",
    "lmtp": f"timeout = {TIMEOUT}",
}
EXTRA = f"""
[auth]
penalty_max = 0.0
max_failures = 1000

[limits]
max_connections = 60
max_connections_per_ip = {PER_IP}
commands_per_second = 100000
"""


# -- the server ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cert, _key = generate_certificate(tmp_path_factory.mktemp("certs"))
    return cert


@contextlib.contextmanager
def churn_server(tmp: Path, cert: Path, workers: int, event_loop: str) -> Iterator[ServerProcess]:
    data = tmp / "data"
    ports = {name: free_port() for name in (*LISTENERS, "imaps", "pop3s")}
    lines = [f'data_dir = "{data}"', EXTRA, f'[server]\nevent_loop = "{event_loop}"']
    lines.append(f'[tls]\ncert = "{cert}"\nkey = "{cert.with_name("key.pem")}"')
    for name, port in ports.items():
        lines.append(f"[{name}]\nport = {port}\n{LISTENER_SETTINGS.get(name, '')}")
    config = tmp / "pobox.toml"
    config.write_text("\n\n".join(lines) + "\n")
    server = ServerProcess(data, config, ports, tmp / "server.log")
    for address in (ACCOUNT, SINK, *POP3_ACCOUNTS):
        server.cli("user", "add", address, "--password-stdin", stdin=PASSWORD.encode() + b"\n")
    for n in range(3):
        server.cli("deliver", ACCOUNT, stdin=f"Subject: {n}\r\n\r\nhello\r\n".encode())
    big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * (BIG // 1000)
    for address in POP3_ACCOUNTS:
        server.cli("deliver", address, stdin=big)
    server.start(workers)
    try:
        yield server
    finally:
        server.stop()


def status(server: ServerProcess) -> list[dict[str, object]]:
    result = server.cli("status", "--json", check=False)
    workers: list[dict[str, object]] = json.loads(result.stdout)
    return workers


def open_counts(server: ServerProcess) -> dict[str, int]:
    counts: dict[str, int] = {}
    for worker in status(server):
        counters = worker["counters"]
        assert isinstance(counters, dict)
        for name, values in counters.items():
            counts[name] = counts.get(name, 0) + int(values["open"])
    return counts


def server_pids(server: ServerProcess, workers: int) -> list[int]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        pids = [int(str(w["pid"])) for w in status(server)]
        if len(pids) == workers:
            return pids
        time.sleep(0.2)
    raise AssertionError(f"expected {workers} status files: {status(server)}")


def resources(server: ServerProcess, pids: list[int]) -> tuple[int, int, int]:
    """Open file descriptors, RSS (MiB) and Python's allocated blocks (thousands), summed over
    the server's worker processes."""
    fds = sum(len(list(Path(f"/proc/{pid}/fd").iterdir())) for pid in pids)
    time.sleep(1.5)  # the status files are rewritten every half second
    memories = [w["memory"] for w in status(server) if w["pid"] in pids]
    assert len(memories) == len(pids), memories
    rss = sum(int(m["rss_mib"]) for m in memories)  # type: ignore[index]
    blocks = sum(int(m["python_kblocks"]) for m in memories)  # type: ignore[index]
    return fds, rss, blocks


# -- a small asyncio client ---------------------------------------------------------------------
def client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def client_hello() -> bytes:
    """The first flight of a real TLS handshake (a ClientHello), without a socket."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_tls().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


HELLO = client_hello()


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, tls: bool = False) -> Conn:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                "127.0.0.1", port, ssl=client_tls() if tls else None, limit=1 << 22
            ),
            20,
        )
        return cls(reader, writer)

    async def line(self) -> bytes:
        got = await asyncio.wait_for(self.reader.readline(), 20)
        assert got, "the server closed the connection"
        return got

    async def until(self, prefix: bytes) -> bytes:
        while True:
            got = await self.line()
            if got.startswith(prefix):
                return got

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def ask(self, data: bytes, prefix: bytes) -> bytes:
        await self.send(data)
        return await self.until(prefix)

    async def closed_by_server(self, within: float) -> None:
        """Wait for the server to close; fail if it keeps the connection beyond *within*."""
        try:
            while await asyncio.wait_for(self.reader.read(65536), within):
                pass
        except ConnectionError:
            pass

    def reset(self) -> None:
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    def close(self) -> None:
        """Go away, one way or the other: a reset (RST) or an orderly close (FIN)."""
        if random.random() < 0.5:
            self.reset()
        else:
            self.writer.close()


# -- the shapes of churn ------------------------------------------------------------------------
Shape = Callable[["Churn", str], Awaitable[None]]
PLAIN = ("imap", "pop3", "smtp", "lmtp")
STARTTLS = {
    "imap": (b"a STARTTLS\r\n", b"a OK"),
    "pop3": (b"STLS\r\n", b"+OK"),
    "smtp": (b"EHLO churn\r\nSTARTTLS\r\n", b"220 "),
}


@dataclass
class Churn:
    server: ServerProcess
    done: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    pop3_locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def port(self, listener: str) -> int:
        return self.server.ports[listener]

    async def greeting(self, listener: str) -> Conn:
        conn = await Conn.open(self.port(listener), tls=listener in ("imaps", "pop3s"))
        await conn.line()
        return conn

    # connect and go, in several ways
    async def close_at_once(self, listener: str) -> None:
        _reader, writer = await asyncio.open_connection("127.0.0.1", self.port(listener))
        writer.close()

    async def reset_at_once(self, listener: str) -> None:
        Conn(*await asyncio.open_connection("127.0.0.1", self.port(listener))).reset()

    async def close_after_greeting(self, listener: str) -> None:
        (await self.greeting(listener)).close()

    async def idle(self, listener: str) -> None:
        conn = await Conn.open(self.port(listener))
        await conn.closed_by_server(TIMEOUT + 10)

    async def drip(self, listener: str) -> None:
        conn = await Conn.open(self.port(listener))
        started = time.monotonic()
        with contextlib.suppress(ConnectionError):
            for byte in b"a NOOP but very slowly":
                if conn.reader.at_eof() or time.monotonic() - started > TIMEOUT + 10:
                    break
                await conn.send(bytes([byte]))
                await asyncio.sleep(0.4)
        await conn.closed_by_server(TIMEOUT + 10)
        if time.monotonic() - started > TIMEOUT + 10:
            raise AssertionError(f"{listener}: a slow drip was not timed out")

    async def garbage(self, listener: str) -> None:
        conn = await Conn.open(self.port(listener))
        junk = bytes(random.getrandbits(8) for _ in range(random.randint(1, 3000)))
        with contextlib.suppress(ConnectionError):
            await conn.send(junk + random.choice([b"", b"\r\n", b"\n\r\n\x00"]))
            await asyncio.sleep(random.random() * 0.2)
        conn.close()

    async def tls_abort(self, listener: str) -> None:
        """Half a ClientHello, then gone: on an implicit-TLS port or after STARTTLS."""
        if listener in ("imaps", "pop3s"):
            conn = await Conn.open(self.port(listener))
        else:
            conn = await self.greeting(listener)
            command, answer = STARTTLS[listener]
            await conn.ask(command, answer)
        with contextlib.suppress(ConnectionError):
            await conn.send(HELLO[: random.randint(1, len(HELLO) - 1)])
        conn.close()

    async def mid_literal(self, listener: str) -> None:
        conn = await self.greeting(listener)
        await conn.ask(f"a LOGIN {ACCOUNT} {PASSWORD}\r\n".encode(), b"a OK")
        await conn.ask(b"b APPEND INBOX {100000}\r\n", b"+")
        with contextlib.suppress(ConnectionError):
            await conn.send(b"Subject: cut\r\n\r\n" + b"y" * random.randint(0, 50000))
        conn.close()

    async def mid_data(self, listener: str) -> None:
        conn = await self.greeting(listener)
        hello = b"LHLO" if listener == "lmtp" else b"EHLO"
        await conn.ask(hello + b" churn\r\n", b"250 ")
        await conn.ask(b"MAIL FROM:<a@example.org>\r\n", b"250")
        await conn.ask(f"RCPT TO:<{SINK}>\r\n".encode(), b"250")
        await conn.ask(b"DATA\r\n", b"354")
        with contextlib.suppress(ConnectionError):
            await conn.send(b"Subject: cut\r\n\r\n" + b"z\r\n" * random.randint(0, 20000))
        conn.close()

    async def pop3_login(self, listener: str, account: str) -> Conn:
        """A POP3 session on *account*. The maildrop lock of a session that just ended may be
        released a moment after its client went away: try again then, as clients do."""
        for _ in range(50):
            conn = await self.greeting(listener)
            await conn.ask(f"USER {account}\r\n".encode(), b"+OK")
            await conn.send(f"PASS {PASSWORD}\r\n".encode())
            answer = await conn.line()
            if answer.startswith(b"+OK"):
                return conn
            conn.close()
            assert b"[IN-USE]" in answer, answer
            await asyncio.sleep(0.1)
        raise AssertionError(f"the maildrop of {account} stayed locked")

    async def mid_retr(self, listener: str) -> None:
        account = random.choice(POP3_ACCOUNTS)
        async with self.pop3_locks.setdefault(account, asyncio.Lock()):
            conn = await self.pop3_login(listener, account)
            await conn.ask(b"RETR 1\r\n", b"+OK")
            await conn.reader.read(random.randint(1, 200000))
            conn.close()

    # ordinary sessions, which must succeed
    async def ordinary(self, listener: str) -> None:
        conn = await self.greeting(listener)
        try:
            if listener in ("imap", "imaps"):
                await conn.ask(f"a LOGIN {ACCOUNT} {PASSWORD}\r\n".encode(), b"a OK")
                await conn.ask(b"b SELECT INBOX\r\n", b"b OK")
                await conn.ask(b"c FETCH 1:* (FLAGS)\r\n", b"c OK")
                await conn.ask(b"d LOGOUT\r\n", b"d OK")
            elif listener in ("pop3", "pop3s"):
                account = random.choice(POP3_ACCOUNTS)
                conn.close()
                async with self.pop3_locks.setdefault(account, asyncio.Lock()):
                    conn = await self.pop3_login(listener, account)
                    await conn.ask(b"STAT\r\n", b"+OK")
                    await conn.ask(b"QUIT\r\n", b"+OK")
            else:
                hello = b"LHLO" if listener == "lmtp" else b"EHLO"
                await conn.ask(hello + b" churn\r\n", b"250 ")
                await conn.ask(b"MAIL FROM:<a@example.org>\r\n", b"250")
                await conn.ask(f"RCPT TO:<{SINK}>\r\n".encode(), b"250")
                await conn.ask(b"DATA\r\n", b"354")
                await conn.ask(b"Subject: ordinary\r\n\r\nhello\r\n.\r\n", b"250")
                await conn.ask(b"QUIT\r\n", b"221")
        finally:
            conn.close()

    def plan(self, count: int) -> list[tuple[str, Shape, str]]:
        """*count* connections of every shape on every listener where it applies, shuffled;
        one in eight is an ordinary session."""
        kinds: list[tuple[str, Shape, tuple[str, ...]]] = [
            ("close", Churn.close_at_once, (*PLAIN, "imaps", "pop3s")),
            ("reset", Churn.reset_at_once, (*PLAIN, "imaps", "pop3s")),
            ("greeting", Churn.close_after_greeting, (*PLAIN, "imaps", "pop3s")),
            ("garbage", Churn.garbage, (*PLAIN, "imaps", "pop3s")),
            ("tls-abort", Churn.tls_abort, ("imaps", "pop3s", "imap", "pop3", "smtp")),
            ("literal", Churn.mid_literal, ("imap", "imaps")),
            ("data", Churn.mid_data, ("smtp", "lmtp")),
            ("retr", Churn.mid_retr, ("pop3", "pop3s")),
            ("ordinary", Churn.ordinary, (*PLAIN, "imaps", "pop3s")),
        ]
        slow: list[tuple[str, Shape, tuple[str, ...]]] = [
            ("idle", Churn.idle, PLAIN),
            ("drip", Churn.drip, PLAIN),
        ]
        rng = random.Random(17)
        out: list[tuple[str, Shape, str]] = []
        for n in range(count):
            if n % 60 == 0:  # the slow ones hold a connection for seconds: fewer of them
                name, shape, listeners = slow[(n // 60) % len(slow)]
            elif n % 8 == 0:
                name, shape, listeners = kinds[-1]
            else:
                name, shape, listeners = rng.choice(kinds[:-1])
            out.append((name, shape, rng.choice(listeners)))
        rng.shuffle(out)
        return out

    async def run(self, count: int) -> None:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(name: str, shape: Shape, listener: str) -> None:
            async with gate:
                try:
                    await shape(self, listener)
                except Exception as exc:
                    # ordinary sessions and timeouts must work exactly; the rest may see the
                    # server close first (a reset mid-way), but nothing else
                    strict = name in ("ordinary", "idle", "drip")
                    if strict or not isinstance(exc, ConnectionError | asyncio.IncompleteReadError):
                        self.failures.append(f"{name} on {listener}: {exc!r}")
                key = f"{name}/{listener}"
                self.done[key] = self.done.get(key, 0) + 1

        await asyncio.gather(*(one(*item) for item in self.plan(count)))


def run_churn(server: ServerProcess, count: int) -> Churn:
    churn = Churn(server)
    asyncio.run(churn.run(count))
    return churn


def wait_for_zero(server: ServerProcess, within: float = 20.0) -> dict[str, int]:
    deadline = time.monotonic() + within
    counts = open_counts(server)
    while time.monotonic() < deadline:
        counts = open_counts(server)
        if counts and not any(counts.values()):
            return counts
        time.sleep(0.25)
    raise AssertionError(f"connections still counted as open: {counts}")


@pytest.mark.parametrize(
    ("workers", "event_loop"),
    [(1, "uvloop"), (2, "uvloop"), (1, "asyncio")],
    ids=["one-worker", "two-workers", "asyncio-loop"],
)
def test_churn_leaks_nothing(tmp_path: Path, certs: Path, workers: int, event_loop: str) -> None:
    with churn_server(tmp_path, certs, workers, event_loop) as server:
        pids = server_pids(server, workers)
        # first rounds: pools, caches and the memory allocator's arenas reach their working
        # size (measured: RSS grows over the first two rounds, then stays within a few per
        # cent over further rounds; a leak per connection would grow with every round)
        for _ in range(WARM_UP_ROUNDS):
            warm = run_churn(server, CONNECTIONS)
            assert not warm.failures, "\n".join(warm.failures[:20])
            wait_for_zero(server)
        fds_before, rss_before, blocks_before = resources(server, pids)

        churn = run_churn(server, CONNECTIONS)
        assert not churn.failures, "\n".join(churn.failures[:20])
        assert sum(churn.done.values()) == CONNECTIONS
        shapes = {key.split("/")[0] for key in churn.done}
        assert shapes >= {"close", "reset", "idle", "drip", "tls-abort", "literal", "data", "retr"}

        counts = wait_for_zero(server)
        assert set(counts) >= {"imap", "imaps", "pop3", "pop3s", "smtp", "lmtp", "imap-sessions"}
        after = run_churn_ordinary(server)
        assert not after.failures, after.failures
        wait_for_zero(server)
        fds_after, rss_after, blocks_after = resources(server, pids)
        assert server.proc is not None and server.proc.poll() is None
        assert fds_after <= fds_before * 1.1, (fds_before, fds_after)
        # a session object left behind per connection is a few dozen blocks: 1,200 of them
        # would be 20 % and more
        assert blocks_after <= blocks_before * 1.1, (blocks_before, blocks_after)
        assert rss_after <= rss_before * 1.3, (rss_before, rss_after)  # MiB
    log = server.log.read_text(errors="replace")
    assert "Traceback" not in log, log[log.index("Traceback") - 2000 :][:6000]
    assert " ERROR " not in log, [line for line in log.splitlines() if " ERROR " in line][:10]


def run_churn_ordinary(server: ServerProcess) -> Churn:
    """One ordinary session on every listener."""
    churn = Churn(server)

    async def every() -> None:
        for listener in (*PLAIN, "imaps", "pop3s"):
            try:
                await churn.ordinary(listener)
            except Exception as exc:
                churn.failures.append(f"ordinary on {listener} afterwards: {exc!r}")

    asyncio.run(every())
    return churn
