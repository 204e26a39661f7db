"""Thousands of random and malformed inputs on every listener of a real `pobox serve`.

Raw random bytes, and hypothesis-built command lines from each protocol's vocabulary with hostile
arguments (huge literals, NULs, unbalanced parentheses, endless lines, 8-bit text), each on its
own connection. Meanwhile a watchdog logs in over IMAP and POP3 and greets SMTP/LMTP on fresh
connections every few tenths of a second: it must be answered promptly throughout. Afterwards the
server is still running and `pobox check` finds the store consistent.
"""

from __future__ import annotations

import contextlib
import imaplib
import poplib
import random
import smtplib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.helpers.servers import ServerProcess, server_process

ACCOUNT = "demo@localhost"
PASSWORD = "demo"
PROTOCOLS = ("imap", "pop3", "smtp", "lmtp")
RANDOM_CONNECTIONS = 250  # per listener
EXAMPLES = 200  # hypothesis examples per listener
MAX_LATENCY = 15.0  # generous: CI machines are small and shared

EXTRA_CONFIG = """
[auth]
penalty_max = 0.0
max_failures = 1000

[limits]
commands_per_second = 100000
"""

pytestmark = [
    pytest.mark.torture,
    # imaplib (in the watchdog thread) draws its tag prefix from the global `random` module,
    # which hypothesis, generating in the main thread at the same moment, takes for a strategy
    # that uses it
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
    # connections the server cuts off mid-way leave client sockets to the garbage collector
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("fuzz")
    with server_process(tmp, {ACCOUNT: PASSWORD}, extra_config=EXTRA_CONFIG) as running:
        yield running
    assert running.proc is not None


@dataclass
class Watchdog:
    """Normal clients on fresh connections, all the time; records failures and latency."""

    ports: dict[str, int]
    stop: threading.Event = field(default_factory=threading.Event)
    failures: list[str] = field(default_factory=list)
    rounds: int = 0
    worst: float = 0.0
    step: str = ""

    def check_once(self) -> None:
        started = time.monotonic()
        self.step = "imap"
        imap = imaplib.IMAP4("127.0.0.1", self.ports["imap"], timeout=MAX_LATENCY)
        try:
            imap.login(ACCOUNT, PASSWORD)
            assert imap.noop()[0] == "OK"
            imap.logout()
        finally:
            with contextlib.suppress(Exception):
                imap.shutdown()
        self.step = "pop3"
        for attempt in range(20):
            pop = poplib.POP3("127.0.0.1", self.ports["pop3"], timeout=MAX_LATENCY)
            try:
                pop.user(ACCOUNT)
                try:
                    pop.pass_(PASSWORD)
                except poplib.error_proto as exc:
                    # a fuzzed session that logged in holds the maildrop for a moment; a real
                    # client tries again (RFC 2449 [IN-USE])
                    if b"[IN-USE]" not in exc.args[0] or attempt == 19:
                        raise AssertionError(repr(exc.args[0])) from None
                    time.sleep(0.05)
                    continue
                pop.stat()
                pop.quit()
                break
            finally:
                with contextlib.suppress(Exception):
                    pop.close()
        self.step = "smtp"
        with smtplib.SMTP("127.0.0.1", self.ports["smtp"], timeout=MAX_LATENCY) as smtp:
            assert smtp.noop()[0] == 250
        self.step = "lmtp"
        with smtplib.LMTP("127.0.0.1", self.ports["lmtp"], timeout=MAX_LATENCY) as lmtp:
            assert lmtp.noop()[0] == 250
        self.worst = max(self.worst, time.monotonic() - started)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.check_once()
            except Exception as exc:
                self.failures.append(f"{self.step} {exc!r}")  # repr: str() of bytes warns under -bb
            self.rounds += 1
            self.stop.wait(0.3)


@pytest.fixture
def watchdog(server: ServerProcess) -> Iterator[Watchdog]:
    dog = Watchdog(dict(server.ports))
    thread = threading.Thread(target=dog.run, daemon=True)
    thread.start()
    yield dog
    dog.stop.set()
    thread.join(60)
    assert not dog.failures, dog.failures[:5]
    assert dog.rounds >= 2
    assert dog.worst < 2 * MAX_LATENCY
    assert server.proc is not None and server.proc.poll() is None, "the server died"


def poke(port: int, payload: bytes, read_for: float = 0.02) -> bytes:
    """Send *payload* on a fresh connection, read what comes back for a moment, hang up."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.settimeout(read_for)
        try:
            sock.sendall(payload)
            while len(received) < 1 << 16:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        except (TimeoutError, ConnectionError):
            pass
    return received


def random_payload(rng: random.Random) -> bytes:
    kind = rng.random()
    size = rng.choice([0, 1, 10, 100, 1000, 5000, 70000])
    data = rng.randbytes(size)
    if kind < 0.4:  # line-shaped garbage
        data = b"\r\n".join(rng.randbytes(rng.randint(0, 300)) for _ in range(rng.randint(1, 20)))
    elif kind < 0.5:
        data = b"\x00" * size
    elif kind < 0.6:
        data = b"A" * size  # no line end at all
    return data


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_random_bytes(server: ServerProcess, watchdog: Watchdog, protocol: str) -> None:
    rng = random.Random(f"bytes-{protocol}")
    port = server.ports[protocol]
    for _ in range(RANDOM_CONNECTIONS):
        with contextlib.suppress(ConnectionError):
            poke(port, random_payload(rng))


HOSTILE = [
    "",
    " ",
    "\x00",
    "{99999999999}",
    "{4294967296+}",
    "~{10}",
    "(",
    ")",
    "((((((((((((((((((((",
    '"',
    '"\\',
    "*",
    "%",
    "1:*",
    "4294967296",
    "-1",
    "0",
    "$",
    "INBOX",
    "../../etc/passwd",
    "/etc/passwd",
    "&AGEAYgBj-",
    "&-",
    "&Jjo!",
    "\u00e9t\u00e9",
    "A" * 2000,
    "<>",
    "<@x:y@z>",
    "SIZE=99999999999",
    "BODY=8BITMIME",
    "=",
    "AGRlbW8AZGVtbw==",
    "NIL",
    "\\Seen",
    "BODY[]<0.99999999999>",
    "(FLAGS BODY.PEEK[HEADER.FIELDS (",
]

WORDS = {
    "imap": [
        "CAPABILITY", "NOOP", "LOGOUT", "LOGIN", "AUTHENTICATE", "STARTTLS", "ENABLE",
        "SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "LIST", "LSUB",
        "STATUS", "APPEND", "IDLE", "CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH", "FETCH",
        "STORE", "COPY", "MOVE", "UID", "NAMESPACE", "ID", "GETQUOTAROOT", "DONE",
    ],
    "pop3": [
        "USER", "PASS", "APOP", "AUTH", "CAPA", "STLS", "UTF8", "QUIT", "STAT", "LIST",
        "UIDL", "RETR", "TOP", "DELE", "NOOP", "RSET", "LAST",
    ],
    "smtp": [
        "HELO", "EHLO", "MAIL FROM:", "RCPT TO:", "DATA", "RSET", "NOOP", "QUIT", "VRFY",
        "EXPN", "HELP", "AUTH", "STARTTLS", "BDAT", ".",
    ],
}  # fmt: skip
WORDS["lmtp"] = ["LHLO", *WORDS["smtp"]]

# text only: hypothesis's own caches compare bytes with ints under `python -bb`
argument = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(max_size=40),
    st.integers(-(2**40), 2**40).map(str),
)


def line_strategy(protocol: str) -> st.SearchStrategy[str]:
    tag = (
        st.sampled_from(["a", "A1", "*", "+", "", "x" * 100]) if protocol == "imap" else st.just("")
    )
    verb = st.one_of(st.sampled_from(WORDS[protocol]), st.text(max_size=12))
    return st.builds(
        lambda t, v, args: " ".join(x for x in (t, v, *args) if x),
        tag,
        verb,
        st.lists(argument, max_size=6),
    )


def session_strategy(protocol: str) -> st.SearchStrategy[bytes]:
    login = {
        "imap": f"l LOGIN {ACCOUNT} {PASSWORD}\r\nl2 SELECT INBOX\r\n",
        "pop3": f"USER {ACCOUNT}\r\nPASS {PASSWORD}\r\n",
        "smtp": "EHLO fuzz\r\nMAIL FROM:<f@example.org>\r\n",
        "lmtp": f"LHLO fuzz\r\nMAIL FROM:<f@example.org>\r\nRCPT TO:<{ACCOUNT}>\r\n",
    }[protocol]
    return st.builds(
        lambda first, lines, end: (
            (login if first else "") + "".join(x + end for x in lines)
        ).encode("utf-8", "surrogatepass"),
        st.booleans(),
        st.lists(line_strategy(protocol), min_size=1, max_size=8),
        st.sampled_from(["\r\n", "\n", "\r", ""]),
    )


def fuzz(server: ServerProcess, protocol: str) -> None:
    port = server.ports[protocol]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(session_strategy(protocol))
    def one(payload: bytes) -> None:
        with contextlib.suppress(ConnectionError):
            poke(port, payload)

    one()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_malformed_commands(server: ServerProcess, watchdog: Watchdog, protocol: str) -> None:
    fuzz(server, protocol)


def test_store_is_consistent_afterwards(server: ServerProcess) -> None:
    assert server.proc is not None and server.proc.poll() is None
    check = server.cli("check")
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    assert b"consistent" in check.stdout
