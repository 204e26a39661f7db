"""Two `pobox serve` processes (two nodes) on one PostgreSQL store.

Each node has its own ports and data directory (spool files only); `store` points both at the
same fresh schema. What one node writes, the other's sessions see: IDLE hears of a delivery
within a second, APPENDs through both nodes get unique ascending UIDs, and the POP3 maildrop lock
holds across nodes.
"""

from __future__ import annotations

import imaplib
import poplib
import re
import smtplib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from tests.helpers.postgres import session_database
from tests.helpers.servers import ServerProcess, postgres_nodes

pytestmark = pytest.mark.interop

USER = "shared@localhost"
PASSWORD = "secret"


@pytest.fixture(scope="module")
def nodes(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    database = session_database()
    schema, dsn = database.new_schema()
    try:
        with postgres_nodes(tmp_path_factory.mktemp("two-nodes"), dsn, {USER: PASSWORD}) as (a, b):
            yield a, b
    finally:
        database.drop_schema(schema)


def _imap(node: ServerProcess) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", node.ports["imap"], timeout=30)
    client.login(USER, PASSWORD)
    return client


def _deliver_lmtp(node: ServerProcess, subject: str) -> None:
    with smtplib.LMTP("127.0.0.1", node.ports["lmtp"], timeout=30) as lmtp:
        lmtp.sendmail(
            "sender@example.org",
            [USER],
            f"From: sender@example.org\r\nTo: {USER}\r\nSubject: {subject}\r\n\r\nhello\r\n",
        )


def _message_count(client: imaplib.IMAP4, mailbox: str = "INBOX") -> int:
    status, data = client.status(mailbox, "(MESSAGES)")
    assert status == "OK"
    match = re.search(rb"MESSAGES (\d+)", data[0] or b"")
    assert match is not None
    return int(match.group(1))


def test_idle_on_node_b_hears_a_delivery_through_node_a_within_a_second(
    nodes: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = nodes
    probe = _imap(b)
    before = _message_count(probe)
    probe.logout()
    sock = socket.create_connection(("127.0.0.1", b.ports["imap"]), timeout=10)
    reader = sock.makefile("rb")

    def command(line: bytes) -> list[bytes]:
        sock.sendall(line + b"\r\n")
        tag = line.split(b" ", 1)[0]
        lines = []
        while True:
            got = reader.readline()
            assert got, "connection closed"
            lines.append(got)
            if got.startswith(tag + b" "):
                assert got.split(b" ")[1] == b"OK", got
                return lines

    try:
        reader.readline()  # greeting
        command(f"a1 LOGIN {USER} {PASSWORD}".encode())
        command(b"a2 SELECT INBOX")
        sock.sendall(b"a3 IDLE\r\n")
        assert reader.readline().startswith(b"+")
        for round_ in range(3):
            started = time.monotonic()
            _deliver_lmtp(a, f"through node A, round {round_}")
            delivered = time.monotonic()
            expected = b"* %d EXISTS\r\n" % (before + round_ + 1)
            while True:
                line = reader.readline()
                assert line, "connection closed"
                if line == expected:
                    break
            heard = time.monotonic()
            assert heard - delivered < 1.0, f"EXISTS came {heard - delivered:.2f}s after delivery"
            assert heard - started < 5.0
        sock.sendall(b"DONE\r\n")
        while not reader.readline().startswith(b"a3 "):
            pass
    finally:
        reader.close()
        sock.close()


def test_concurrent_appends_through_both_nodes_get_unique_ascending_uids(
    nodes: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = nodes
    setup = _imap(a)
    setup.create("Both")
    setup.logout()
    per_client = 25
    results: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def appender(node: ServerProcess, name: str) -> None:
        try:
            client = _imap(node)
            uids: list[int] = []
            for n in range(per_client):
                body = f"Subject: {name} {n}\r\n\r\nfrom {name}\r\n".encode()
                status, data = client.append("Both", None, None, body)
                assert status == "OK", data
                match = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
                assert match is not None, data
                uids.append(int(match.group(1)))
            client.logout()
            results[name] = uids
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=appender, args=(node, f"{label}{i}"))
        for i in range(2)
        for label, node in (("a", a), ("b", b))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    every = [uid for uids in results.values() for uid in uids]
    assert sorted(every) == list(range(1, len(threads) * per_client + 1))
    for uids in results.values():
        assert uids == sorted(uids)  # each connection saw its UIDs ascend
    check = _imap(b)
    check.select("Both", readonly=True)
    status, data = check.uid("SEARCH", "ALL")
    assert status == "OK"
    assert [int(u) for u in (data[0] or b"").split()] == sorted(every)
    check.logout()


def test_pop3_on_node_b_is_refused_while_node_a_holds_the_maildrop(
    nodes: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = nodes
    holder = poplib.POP3("127.0.0.1", a.ports["pop3"], timeout=30)
    try:
        holder.user(USER)
        holder.pass_(PASSWORD)
        other = poplib.POP3("127.0.0.1", b.ports["pop3"], timeout=30)
        try:
            other.user(USER)
            with pytest.raises(poplib.error_proto) as refused:
                other.pass_(PASSWORD)
            assert refused.value.args[0].startswith(b"-ERR [IN-USE]")
        finally:
            other.close()
    finally:
        holder.quit()
    # released: node B gets it now
    again = poplib.POP3("127.0.0.1", b.ports["pop3"], timeout=30)
    try:
        again.user(USER)
        again.pass_(PASSWORD)
        count, _size = again.stat()
        assert count >= 0
    finally:
        again.quit()


def test_a_new_message_is_recent_in_one_session_of_all_nodes(
    nodes: tuple[ServerProcess, ServerProcess],
) -> None:
    """RFC 3501 §2.3.2: sessions on both nodes have the mailbox selected when a message
    arrives; the first to be told of it has it as \\Recent, the other does not, and STATUS
    (RECENT) elsewhere counts it no more (the store's watermark decides across nodes)."""
    a, b = nodes
    setup = _imap(a)
    assert setup.create("RecentAcross")[0] == "OK"
    one, two = _imap(a), _imap(b)
    try:
        assert one.select("RecentAcross")[0] == "OK"
        assert two.select("RecentAcross")[0] == "OK"
        status, _ = setup.append("RecentAcross", None, None, b"Subject: r\r\n\r\nhi\r\n")
        assert status == "OK"
        shown: list[bytes] = []
        for client in (one, two, one):
            deadline = time.monotonic() + 10
            while True:
                client.noop()
                status, data = client.fetch("1:*", "(FLAGS)")
                assert status == "OK", data
                if data and isinstance(data[0], bytes):
                    shown.append(data[0])
                    break
                assert time.monotonic() < deadline, "the message never reached the session"
                time.sleep(0.05)
        assert [b"\\Recent" in flags for flags in shown] == [True, False, True], shown
        status, data = setup.status("RecentAcross", "(MESSAGES RECENT)")
        assert status == "OK" and b"MESSAGES 1 RECENT 0" in (data[0] or b""), data
    finally:
        for client in (one, two, setup):
            client.logout()
