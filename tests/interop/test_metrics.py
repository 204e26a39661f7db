"""The Prometheus endpoint of a real `pobox serve --workers 2` (docs/decisions/metrics.md).

IMAP (imaplib), POP3 (poplib) and LMTP (smtplib) traffic, then scrapes of /metrics with urllib,
parsed with prometheus-client's own parser: every counter moved by exactly what the clients did,
added up over both workers, whichever worker answered the scrape.
"""

from __future__ import annotations

import contextlib
import imaplib
import poplib
import smtplib
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.helpers.servers import LISTENERS, ServerProcess, free_port, write_config

pytestmark = pytest.mark.interop

ANN = ("ann@localhost", "ann's password")
BOB = ("bob@localhost", "bob's password")
Labels = frozenset[tuple[str, str]]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    data = tmp_path / "data"
    ports = {name: free_port() for name in LISTENERS}
    ports["metrics"] = free_port()
    config = write_config(
        tmp_path / "pobox.toml",
        data,
        ports,
        # no failure delays and no blocks: the failed logins here are counted, not punished
        "\n[auth]\npenalty_max = 0.0\nmax_failures = 1000\n"
        f'\n[metrics]\nlisten = "127.0.0.1:{ports["metrics"]}"\n',
    )
    # a failed POP3 login waits auth_failure_delay (2 s by default) before its -ERR
    config.write_text(config.read_text().replace("[pop3]\n", "[pop3]\nauth_failure_delay = 0.0\n"))
    process = ServerProcess(data, config, ports, tmp_path / "server.log")
    for address, password in (ANN, BOB):
        process.cli("user", "add", address, "--password-stdin", stdin=password.encode() + b"\n")
    process.start(workers=2)
    try:
        yield process
    finally:
        process.stop()


class Scrape:
    """One scrape: every sample by name and labels."""

    def __init__(self, text: str) -> None:
        self.samples: dict[tuple[str, Labels], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def total(self, name: str, **labels: str) -> float:
        """The sum over every series of *name* with *labels* (and any others: ``worker``)."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= ls)

    def workers(self, name: str, **labels: str) -> set[str]:
        wanted = set(labels.items())
        return {
            dict(ls)["worker"]
            for (n, ls), v in self.samples.items()
            if n == name and wanted <= ls and v > 0
        }


def scrape(server: ServerProcess) -> Scrape:
    url = f"http://127.0.0.1:{server.ports['metrics']}/metrics"
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return Scrape(response.read().decode())


def until(server: ServerProcess, check: str, condition: Callable[[Scrape], bool]) -> Scrape:
    """Scrape until *condition(scrape)* holds (gauges follow connections that are closing)."""
    for _ in range(200):
        result = scrape(server)
        if condition(result):
            return result
        time.sleep(0.05)
    raise AssertionError(f"never: {check}")


def imap_session(server: ServerProcess, password: str) -> bool:
    client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=60)
    try:
        try:
            client.login(ANN[0], password)
        except imaplib.IMAP4.error:
            return False
        client.select("INBOX")
        client.noop()
        client.uid("FETCH", "1:*", "(FLAGS)")
        return True
    finally:
        client.logout()


def test_counters_add_up_over_both_workers(server: ServerProcess) -> None:
    # LMTP: two connections, each with a message for ann (and a recipient that does not
    # exist) and one for bob (smtplib reads one DATA reply: one good recipient per message)
    for _ in range(2):
        with smtplib.LMTP("127.0.0.1", server.ports["lmtp"], timeout=60) as lmtp:
            message = b"Subject: counted\r\n\r\nhello\r\n"
            refused = lmtp.sendmail("sender@example.org", [ANN[0], "nobody@localhost"], message)
            assert list(refused) == ["nobody@localhost"]
            assert lmtp.sendmail("sender@example.org", [BOB[0]], message) == {}

    # IMAP: good logins until both workers have served some, then two bad ones
    good = 0
    while good < 4 or scrape(server).workers("pobox_logins_total", protocol="imap") != {"0", "1"}:
        assert imap_session(server, ANN[1])
        good += 1
        assert good < 60, "one worker got no IMAP connection"
    assert not imap_session(server, "wrong")
    assert not imap_session(server, "wrong again")
    # a line that is no command at all
    imap_port = server.ports["imap"]
    with (
        socket.create_connection(("127.0.0.1", imap_port), timeout=60) as raw,
        raw.makefile("rb") as reader,
    ):
        reader.readline()
        raw.sendall(b"x1 FROBNICATE\r\nx2 LOGOUT\r\n")
        while not reader.readline().startswith(b"x2 "):
            pass

    # POP3: three downloads and a failed login
    for _ in range(3):
        pop = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=60)
        pop.user(ANN[0])
        pop.pass_(ANN[1])
        assert pop.stat()[0] == 2
        pop.retr(1)
        pop.quit()
    pop = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=60)
    pop.user(ANN[0])
    with pytest.raises(poplib.error_proto):
        pop.pass_("wrong")
    pop.quit()

    imap_connections = good + 3
    metrics = until(
        server,
        "every connection closed",
        lambda s: (
            s.total("pobox_connections_total", listener="imap") == imap_connections
            and s.total("pobox_connections_open") == 0
            and s.total("pobox_sessions_open") == 0
        ),
    )
    for _ in range(3):  # whichever worker answers, the same numbers
        again = scrape(server)
        counted = {k: v for k, v in again.samples.items() if k[0].endswith("_total")}
        assert counted == {k: v for k, v in metrics.samples.items() if k[0].endswith("_total")}

    total = metrics.total
    # connections and sessions
    assert total("pobox_connections_total", listener="lmtp") == 2
    assert total("pobox_connections_total", listener="pop3") == 4
    assert total("pobox_sessions_total", protocol="imap") == good
    assert total("pobox_sessions_total", protocol="pop3") == 3
    # logins
    assert total("pobox_logins_total", protocol="imap", result="ok") == good
    assert total("pobox_logins_total", protocol="imap", result="failed") == 2
    assert total("pobox_logins_total", protocol="pop3", result="ok") == 3
    assert total("pobox_logins_total", protocol="pop3", result="failed") == 1
    # the store, as worker 0 counted it when it started (then every minute): ann and bob
    assert total("pobox_store_objects", kind="accounts") == 2
    assert total("pobox_store_objects", kind="mailboxes") >= 2
    # deliveries, per recipient
    assert total("pobox_deliveries_total", result="delivered", reason="ok") == 4
    assert total("pobox_deliveries_total", result="rejected", reason="unknown_recipient") == 2
    assert total("pobox_deliveries_total") == 6

    # commands, by name and result
    def imap(name: str, result: str = "OK") -> float:
        return total("pobox_commands_total", protocol="imap", command=name, result=result)

    assert imap("LOGIN") == good
    assert imap("LOGIN", "NO") == 2
    assert imap("SELECT") == imap("NOOP") == imap("UID FETCH") == good
    assert imap("LOGOUT") == imap_connections
    assert imap("INVALID", "BAD") == 1

    def pop3(name: str, result: str = "+OK") -> float:
        return total("pobox_commands_total", protocol="pop3", command=name, result=result)

    assert pop3("USER") == 4
    assert pop3("PASS") == 3
    assert pop3("PASS", "-ERR") == 1
    assert pop3("STAT") == pop3("RETR") == 3
    assert pop3("QUIT") == 4

    def lmtp(name: str, result: str = "2xx") -> float:
        return total("pobox_commands_total", protocol="lmtp", command=name, result=result)

    assert lmtp("LHLO") == lmtp("QUIT") == 2
    assert lmtp("MAIL") == lmtp("DATA") == lmtp("RCPT") == 4
    assert lmtp("RCPT", "5xx") == 2

    # every answered command has its latency, except the line that was no command
    for protocol in ("imap", "pop3", "lmtp"):
        answered = total("pobox_commands_total", protocol=protocol)
        if protocol == "imap":
            answered -= 1
        assert total("pobox_command_duration_seconds_count", protocol=protocol) == answered
        assert total("pobox_command_duration_seconds_bucket", protocol=protocol, le="+Inf") == (
            answered
        )

    # per worker: each worker's own series, both present
    assert metrics.workers("pobox_process_resident_memory_bytes") == {"0", "1"}
    assert metrics.workers("pobox_connections_total", listener="imap") == {"0", "1"}
    # the retention sweeper runs in worker 0, once at startup
    assert metrics.workers("pobox_sweeps_total", result="ok") == {"0"}


def test_blocks_in_force_and_other_paths(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ports = {name: free_port() for name in LISTENERS}
    ports["metrics"] = free_port()
    config = write_config(
        tmp_path / "pobox.toml",
        data,
        ports,
        "\n[auth]\npenalty_max = 0.0\nmax_failures = 2\n"
        f'\n[metrics]\nlisten = "127.0.0.1:{ports["metrics"]}"\n',
    )
    server = ServerProcess(data, config, ports, tmp_path / "server.log")
    server.cli("user", "add", ANN[0], "--password-stdin", stdin=ANN[1].encode() + b"\n")
    server.start(workers=1)
    try:
        for _ in range(3):
            assert not imap_session(server, "wrong")
        metrics = until(
            server,
            "a block in force",
            lambda s: s.total("pobox_auth_blocks") >= 1,
        )
        assert metrics.total("pobox_logins_total", protocol="imap", result="failed") == 2
        assert metrics.total("pobox_logins_total", protocol="imap", result="blocked") == 1
        base = f"http://127.0.0.1:{ports['metrics']}"
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(f"{base}/other", timeout=30)
        assert error.value.code == 404
        error.value.close()
        request = urllib.request.Request(f"{base}/metrics", method="POST", data=b"x")
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(request, timeout=30)
        assert error.value.code == 405
        error.value.close()
        with contextlib.closing(socket.create_connection(("127.0.0.1", ports["metrics"]))) as raw:
            raw.sendall(b"nonsense\r\n\r\n")
            assert raw.recv(100).startswith(b"HTTP/1.1 400 ")
    finally:
        server.stop()
