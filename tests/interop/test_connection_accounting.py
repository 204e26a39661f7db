"""Connection accounting of a real `pobox serve`: probes that connect and close must not use up
the per-address limit, a refusal is the protocol's answer, and `pobox status` shows the counts.

The regression: 60 connect-and-close probes on LMTP (or SMTP) left 50 connections half-closed
until the 300 s idle timeout; the 51st connection and all after it were dropped without an answer
(an AssertionError in the refusal path under uvloop). Both event loops are tested.
"""

from __future__ import annotations

import json
import re
import smtplib
import socket
import struct
import time

import pytest
from tests.helpers.servers import ServerProcess, server_process

ADDRESS = "probe@localhost"
PASSWORD = "probe-secret"
PROBES = 60  # more than the default limit of 50 connections per address

pytestmark = pytest.mark.interop

LOOPS = pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])


def open_connections(server: ServerProcess) -> dict[str, int]:
    result = server.cli("status", "--json")
    counts: dict[str, int] = {}
    for worker in json.loads(result.stdout):
        for name, values in worker["counters"].items():
            counts[name] = counts.get(name, 0) + values["open"]
    return counts


def wait_all_closed(server: ServerProcess, within: float = 10.0) -> dict[str, int]:
    deadline = time.monotonic() + within
    counts = open_connections(server)
    while time.monotonic() < deadline and any(counts.values()):
        time.sleep(0.1)
        counts = open_connections(server)
    return counts


def wait_open(server: ServerProcess, name: str, expected: int, within: float = 10.0) -> int:
    deadline = time.monotonic() + within
    count = open_connections(server).get(name, -1)
    while time.monotonic() < deadline and count != expected:
        time.sleep(0.1)
        count = open_connections(server).get(name, -1)
    return count


def probe(port: int, reset: bool) -> None:
    sock = socket.create_connection(("127.0.0.1", port), 5)
    if reset:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@LOOPS
def test_probes_do_not_stop_delivery(tmp_path, event_loop: str) -> None:  # type: ignore[no-untyped-def]
    extra = f'\n[server]\nevent_loop = "{event_loop}"\n'
    with server_process(tmp_path, {ADDRESS: PASSWORD}, extra_config=extra) as server:
        for round_ in range(2):
            for n in range(PROBES):
                probe(server.ports["lmtp"], reset=n % 2 == 1)
                probe(server.ports["smtp"], reset=n % 2 == 1)
            # the probes end as soon as the server reads their close (not after the idle
            # timeout); a burst of 60 is briefly 60 open connections, so wait for that moment
            assert wait_open(server, "lmtp", 0) == 0 and wait_open(server, "smtp", 0) == 0
            message = f"Subject: after probes {round_}\r\n\r\nhello\r\n".encode()
            with smtplib.LMTP("127.0.0.1", server.ports["lmtp"], timeout=10) as lmtp:
                assert lmtp.sendmail("a@example.org", [ADDRESS], message) == {}
            with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
                assert smtp.sendmail("a@example.org", [ADDRESS], message) == {}
        counts = wait_all_closed(server)
        assert counts["lmtp"] == 0 and counts["smtp"] == 0, counts
    log = server.log.read_text()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
    # one line per connection (a probe reset before the accept is never a connection)
    assert log.count("event=session proto=lmtp ") >= PROBES


REFUSALS = {
    "imap": b"* BYE [UNAVAILABLE] too many connections from 127.0.0.1 (2)",
    "pop3": b"-ERR [SYS/TEMP] too many connections from 127.0.0.1 (2)",
    "smtp": b"421 4.7.0 too many connections from 127.0.0.1 (2)",
    "lmtp": b"421 4.7.0 too many connections from 127.0.0.1 (2)",
}


@LOOPS
def test_a_refusal_is_an_answer(tmp_path, event_loop: str) -> None:  # type: ignore[no-untyped-def]
    extra = f'\n[server]\nevent_loop = "{event_loop}"\n\n[limits]\nmax_connections_per_ip = 2\n'
    with server_process(tmp_path, {ADDRESS: PASSWORD}, extra_config=extra) as server:
        for name, refusal in REFUSALS.items():
            held = [socket.create_connection(("127.0.0.1", server.ports[name]), 5) for _ in "ab"]
            for sock in held:
                assert sock.recv(1000)  # the greeting: both are counted
            over = socket.create_connection(("127.0.0.1", server.ports[name]), 5)
            answer = over.makefile("rb").readline()
            assert answer.startswith(refusal), (name, answer)
            assert over.recv(100) == b""  # and then the server closes
            over.close()
            assert wait_open(server, name, 2) == 2  # the two held; status follows within 0.5 s
            for sock in held:
                sock.close()
        assert not any(wait_all_closed(server).values())
        # everything works again
        with smtplib.LMTP("127.0.0.1", server.ports["lmtp"], timeout=10) as lmtp:
            assert lmtp.sendmail("a@example.org", [ADDRESS], b"Subject: x\r\n\r\ny\r\n") == {}
        table = server.cli("status").stdout.decode()
        assert "lmtp" in table and "refused" in table
        assert re.search(r"^memory: [1-9][0-9]* MiB resident, [1-9][0-9]* thousand", table, re.M)
        # counted at start (then every minute): the one account and its mailboxes
        assert re.search(r"^store: accounts 1, mailboxes [1-9][0-9]*, messages ", table, re.M)
        (worker,) = json.loads(server.cli("status", "--json").stdout)
        assert worker["memory"]["rss_mib"] > 0 and worker["memory"]["python_kblocks"] > 0
        assert worker["store"]["accounts"] == 1 and worker["store"]["messages"] >= 0
    log = server.log.read_text()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


def test_status_without_a_server(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with server_process(tmp_path, {ADDRESS: PASSWORD}) as server:
        assert wait_open(server, "imap", 0) == 0  # the running worker publishes its counters
    result = server.cli("status", check=False)
    assert result.returncode == 3
    assert b"not running" in result.stdout
    assert not list((server.data / "run").glob("status-*.json"))  # removed at shutdown
