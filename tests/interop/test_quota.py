"""Quotas against a real `pobox serve` (docs/quota.md): the LMTP and SMTP reply codes with
Python's smtplib and with swaks, imapclient's quota calls, and deliveries and APPENDs at once
close to the limit, on the embedded store (two workers) and on two PostgreSQL nodes."""

from __future__ import annotations

import imaplib
import re
import smtplib
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imapclient
import pytest
from tests.helpers.postgres import session_database
from tests.helpers.servers import ServerProcess, postgres_nodes, server_process

USER = "full@localhost"
ADMIN = "admin@localhost"
PASSWORD = "secret"
MESSAGE = b"From: a@example.org\r\nTo: full@localhost\r\nSubject: hi\r\n\r\nhello\r\n"
NO_WARNINGS = "\n[quota]\nwarn = []\n"

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = f'\n[quota]\nadmins = ["{ADMIN}"]\n'
    users = {USER: PASSWORD, ADMIN: PASSWORD, "roomy@localhost": PASSWORD}
    with server_process(tmp_path_factory.mktemp("quota"), users, config) as running:
        running.cli("user", "set", USER, "quota.messages=1")
        with smtplib.LMTP("127.0.0.1", running.ports["lmtp"], timeout=30) as lmtp:
            assert lmtp.sendmail("a@example.org", [USER], MESSAGE) == {}
        yield running


def _lmtp_reply(server: ServerProcess, recipients: list[str]) -> list[tuple[int, bytes]]:
    with smtplib.LMTP("127.0.0.1", server.ports["lmtp"], timeout=30) as lmtp:
        lmtp.ehlo("client.test")
        lmtp.mail("a@example.org")
        for rcpt in recipients:
            assert lmtp.rcpt(rcpt)[0] == 250
        lmtp.putcmd("data")
        assert lmtp.getreply()[0] == 354
        lmtp.send(MESSAGE + b".\r\n")
        return [lmtp.getreply() for _ in recipients]


def test_lmtp_answers_552_5_2_2_for_the_full_recipient_only(server: ServerProcess) -> None:
    (full, roomy) = _lmtp_reply(server, [USER, "roomy@localhost"])
    assert full[0] == 552 and full[1].startswith(b"5.2.2 ") and USER.encode() in full[1]
    assert roomy[0] == 250


def test_pobox_deliver_exits_73_for_a_full_mailbox(server: ServerProcess) -> None:
    result = server.cli("deliver", USER, stdin=MESSAGE, check=False)
    assert result.returncode == 73, result.stderr
    assert b"mailbox" in result.stderr and b"quota" in result.stderr


def test_smtp_refuses_a_full_recipient_at_rcpt(server: ServerProcess) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
        smtp.ehlo("client.test")
        smtp.mail("a@example.org")
        code, text = smtp.rcpt(USER)
        assert (code, text[:6]) == (552, b"5.2.2 ")
        assert smtp.rcpt("roomy@localhost")[0] == 250


def _swaks(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["swaks", "--timeout", "30", "--helo", "client.test", "--from", "a@example.org", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_swaks_hears_552_5_2_2_over_lmtp_and_smtp(server: ServerProcess) -> None:
    lmtp = _swaks(
        server, "--protocol", "LMTP", "--server", f"127.0.0.1:{server.ports['lmtp']}", "--to", USER
    )
    assert lmtp.returncode != 0
    assert re.search(r"<\*\* +552 5\.2\.2 ", lmtp.stdout), lmtp.stdout
    smtp = _swaks(server, "--server", f"127.0.0.1:{server.ports['smtp']}", "--to", USER)
    assert smtp.returncode != 0
    assert re.search(r"<\*\* +552 5\.2\.2 ", smtp.stdout), smtp.stdout


def test_tempfail_answers_452_4_2_2(tmp_path: Path) -> None:
    config = "\n[quota]\nover_quota_tempfail = true\n"
    with server_process(tmp_path, {USER: PASSWORD}, config) as running:
        running.cli("user", "set", USER, "quota.messages=1")
        assert _lmtp_reply(running, [USER])[0][0] == 250
        code, text = _lmtp_reply(running, [USER])[0]
        assert (code, text[:6]) == (452, b"4.2.2 ")
        swaks = _swaks(
            running, "--protocol", "LMTP", "--server", f"127.0.0.1:{running.ports['lmtp']}",
            "--to", USER,
        )  # fmt: skip
        assert re.search(r"<\*\* +452 4\.2\.2 ", swaks.stdout), swaks.stdout
        with smtplib.SMTP("127.0.0.1", running.ports["smtp"], timeout=30) as smtp:
            smtp.ehlo("client.test")
            smtp.mail("a@example.org")
            assert smtp.rcpt(USER)[:1] == (452,)


def test_imapclient_quota_calls(server: ServerProcess) -> None:
    client = imapclient.IMAPClient("127.0.0.1", port=server.ports["imap"], ssl=False)
    try:
        client.login(USER, PASSWORD)
        assert client.has_capability("QUOTA")
        roots, quotas = client.get_quota_root("INBOX")
        assert roots.mailbox == "INBOX" and roots.quota_roots == [""]
        # the message, and the warning that came with it (100 % full), which no limit refuses
        assert [(q.quota_root, q.resource, q.usage, q.limit) for q in quotas] == [
            ("", "MESSAGE", 2, 1)
        ]
        assert [(q.resource, q.usage, q.limit) for q in client.get_quota()] == [("MESSAGE", 2, 1)]
        client.select_folder("INBOX", readonly=True)
        envelope = client.fetch("2", ["ENVELOPE"])[2][b"ENVELOPE"]
        assert envelope.subject == b"Your mailbox is 100% full"
        with pytest.raises(imapclient.exceptions.IMAPClientError, match="NOPERM"):
            client.set_quota([imapclient.imapclient.Quota("", "MESSAGE", 0, 5)])
    finally:
        client.logout()
    admin = imapclient.IMAPClient("127.0.0.1", port=server.ports["imap"], ssl=False)
    try:
        admin.login(ADMIN, PASSWORD)
        admin.set_quota(
            [
                imapclient.imapclient.Quota("roomy@localhost", "STORAGE", 0, 1024),
                imapclient.imapclient.Quota("roomy@localhost", "MESSAGE", 0, 500),
            ]
        )
        quotas = admin.get_quota(mailbox="INBOX")  # the admin's own: no limit, no root
        assert quotas == []
    finally:
        admin.logout()
    listed = server.cli("user", "list").stdout.decode()
    assert "quota.storage=1048576" in listed and "quota.messages=500" in listed


def _append(port: int, n: int) -> bool:
    imap = imaplib.IMAP4("127.0.0.1", port, timeout=60)
    try:
        imap.login(USER, PASSWORD)
        body = MESSAGE.replace(b"hi", b"append %d" % n)
        status, data = imap.append("INBOX", "", None, body)
        if status != "OK":
            assert b"[OVERQUOTA]" in data[0], data
        return status == "OK"
    finally:
        imap.logout()


def _deliver(port: int, n: int) -> bool:
    with smtplib.LMTP("127.0.0.1", port, timeout=60) as lmtp:
        lmtp.ehlo("client.test")
        lmtp.mail("a@example.org")
        assert lmtp.rcpt(USER)[0] == 250
        lmtp.putcmd("data")
        assert lmtp.getreply()[0] == 354
        lmtp.send(MESSAGE.replace(b"hi", b"lmtp %d" % n) + b".\r\n")
        code, text = lmtp.getreply()
        assert code in (250, 552), (code, text)
        return code == 250


def _race(imap_ports: list[int], lmtp_ports: list[int], limit: int) -> int:
    """20 LMTP deliveries and 20 APPENDs at once, spread over the servers' listeners."""
    with ThreadPoolExecutor(max_workers=40) as pool:
        jobs = [pool.submit(_deliver, lmtp_ports[n % len(lmtp_ports)], n) for n in range(20)]
        jobs += [pool.submit(_append, imap_ports[n % len(imap_ports)], n) for n in range(20)]
        accepted = sum(job.result() for job in jobs)
    return accepted


def _usage(port: int) -> tuple[int, int, int]:
    """(messages, octets) as FETCH counts them, and STORAGE as GETQUOTA reports it."""
    client = imapclient.IMAPClient("127.0.0.1", port=port, ssl=False)
    try:
        client.login(USER, PASSWORD)
        octets = count = 0
        for name in [f[2] for f in client.list_folders()]:
            client.select_folder(name, readonly=True)
            uids = client.search("ALL")
            sizes = client.fetch(uids, ["RFC822.SIZE"]) if uids else {}
            octets += sum(v[b"RFC822.SIZE"] for v in sizes.values())
            count += len(sizes)
        (storage,) = [q.usage for q in client.get_quota() if q.resource == "STORAGE"]
        return count, octets, storage
    finally:
        client.logout()


def _check_race(servers: list[ServerProcess]) -> None:
    first = servers[0]
    limit_octets = 4 * 1024  # about 20 of the 40 messages
    first.cli("user", "set", USER, f"quota.storage={limit_octets}")
    before_count, _, _ = _usage(first.ports["imap"])
    accepted = _race(
        [s.ports["imap"] for s in servers], [s.ports["lmtp"] for s in servers], limit_octets
    )
    count, octets, storage = _usage(first.ports["imap"])
    assert count == before_count + accepted
    assert 0 < accepted < 40
    assert octets <= limit_octets  # no overshoot at all: each write is checked in its transaction
    assert limit_octets - octets < 400  # and full: no accepted message would have fitted more
    assert storage == (octets + 1023) // 1024  # usage exact, as IMAP reports it
    assert b"problem" not in first.cli("check").stdout.lower()
    assert first.cli("check").returncode == 0


def test_concurrent_deliveries_and_appends_stay_within_the_limit(tmp_path: Path) -> None:
    with server_process(tmp_path, {USER: PASSWORD}, NO_WARNINGS, workers=2) as running:
        _check_race([running])


def test_concurrent_deliveries_and_appends_on_two_postgresql_nodes(tmp_path: Path) -> None:
    database = session_database()
    schema, dsn = database.new_schema()
    try:
        with postgres_nodes(tmp_path, dsn, {USER: PASSWORD}, NO_WARNINGS) as nodes:
            _check_race(nodes)
    finally:
        database.drop_schema(schema)
