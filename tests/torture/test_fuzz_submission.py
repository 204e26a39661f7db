"""Random and malformed input on the submission listener of a real `pobox serve`.

Raw random bytes, and hypothesis-built SMTP sessions (some logged in with AUTH PLAIN first) with
hostile arguments, each on its own connection. Every complete reply line is a reply (three
digits), never an internal error; afterwards the server still runs, its log has no traceback,
the store is consistent, and whatever reached the outbound queue was sent by the logged-in
account (nothing was relayed for a client that had not logged in).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.helpers.servers import ServerProcess, free_port, server_process
from tests.torture.test_fuzz_listeners import line_strategy, poke, random_payload

from pobox.store.factory import create_store

ACCOUNT = "demo@localhost"
PASSWORD = "demo"
EXAMPLES = 200
CONNECTIONS = 150
REPLY = re.compile(rb"^\d{3}([ -]|$)")

pytestmark = [
    pytest.mark.torture,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("fuzz-submission")
    extra = (
        "\n[tls]\nallow_plaintext_auth = true\n"
        "[auth]\npenalty_max = 0.0\nmax_failures = 1000\n"
        "[limits]\ncommands_per_second = 100000\n"
        # a smarthost that refuses connections: what is queued stays queued
        f'[relay]\nhost = "127.0.0.1"\nport = {free_port()}\ntls = "none"\n'
    )
    with server_process(tmp, {ACCOUNT: PASSWORD}, extra) as running:
        yield running


def _check_replies(received: bytes) -> None:
    lines = received.split(b"\r\n")[:-1]  # the last piece may be cut off
    for line in lines:
        assert REPLY.match(line), received[:2000]
        assert b"internal error" not in line, line


def test_random_bytes(server: ServerProcess) -> None:
    rng = random.Random("bytes-submission")
    for _ in range(CONNECTIONS):
        with contextlib.suppress(ConnectionError):
            _check_replies(poke(server.ports["submission"], random_payload(rng)))


LOGIN = (
    "EHLO fuzz\r\nAUTH PLAIN "
    + base64.b64encode(f"\0{ACCOUNT}\0{PASSWORD}".encode()).decode()
    + f"\r\nMAIL FROM:<{ACCOUNT}>\r\n"
)


def _session() -> st.SearchStrategy[bytes]:
    return st.builds(
        lambda first, lines, end: (
            (LOGIN if first else "") + "".join(x + end for x in lines)
        ).encode("utf-8", "surrogatepass"),
        st.booleans(),
        st.lists(line_strategy("smtp"), min_size=1, max_size=8),
        st.sampled_from(["\r\n", "\n", ""]),
    )


def test_malformed_sessions(server: ServerProcess) -> None:
    port = server.ports["submission"]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(_session())
    def one(payload: bytes) -> None:
        with contextlib.suppress(ConnectionError):
            _check_replies(poke(port, payload, read_for=0.05))

    one()


async def _queued_senders(data: Path) -> set[str]:
    store = create_store("sqlite", data)
    await store.open()
    try:
        return {item.sender for item in await store.queue_list()}
    finally:
        await store.close()


def test_afterwards(server: ServerProcess) -> None:
    assert server.proc is not None and server.proc.poll() is None, "the server died"
    log = server.log.read_text(errors="replace")
    assert "Traceback" not in log, log[log.find("Traceback") - 2000 :][:6000]
    assert asyncio.run(_queued_senders(server.data)) <= {ACCOUNT}
    check = server.cli("check")
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
