"""Inbound SMTP and LMTP behave as an MX (issue 13 part 1), against a real `pobox serve`.

No AUTH offered or accepted on the inbound listeners; recipients in domains pobox does not serve
are a relay attempt (554 5.7.1), from 127.0.0.1 and from another local address alike; MAIL
FROM and RCPT TO syntax is checked (501 / 553); octets that are not UTF-8 get a 5xx and the
session goes on; EHLO and LHLO advertise what RFC 2033 §5 and the issue ask for.
"""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Iterator

import pytest
from tests.helpers.servers import ServerProcess, server_process

ACCOUNT = "demo@localhost"
EXTRA = """
[delivery]
domains = ["example.test"]
"""
MESSAGE = b"From: a@example.org\r\nTo: demo@localhost\r\nSubject: mx\r\n\r\nhello\r\n"

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("mx")
    with server_process(tmp, {ACCOUNT: "demo", "owner@served.test": "pw"}, EXTRA) as running:
        running.cli("alias", "add", "info@aliased.test", ACCOUNT)
        running.cli("alias", "add", "postmaster@localhost", ACCOUNT)
        yield running


class Raw:
    """A line-at-a-time SMTP/LMTP client that can send any octets."""

    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), 30, (source, 0))
        self.file = self.sock.makefile("rb")
        self.greeting = self.reply()

    def reply(self) -> list[bytes]:
        lines = []
        while True:
            line = self.file.readline()
            assert line, "connection closed"
            lines.append(line.rstrip(b"\r\n"))
            if line[3:4] != b"-":
                return lines

    def send(self, line: bytes) -> list[bytes]:
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def _keywords(reply: list[bytes]) -> set[str]:
    return {line[4:].decode().split()[0] for line in reply[1:]}


@pytest.mark.parametrize("protocol", ["smtp", "lmtp"])
def test_greeting_keywords(server: ServerProcess, protocol: str) -> None:
    client = Raw(server.ports[protocol])
    try:
        hello = b"EHLO client.test" if protocol == "smtp" else b"LHLO client.test"
        reply = client.send(hello)
        assert reply[0].startswith(b"250-")
        keywords = _keywords(reply)
        assert {"PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "SMTPUTF8", "SIZE"} <= keywords
        assert "AUTH" not in keywords
        assert b"250-SIZE 52428800" in reply
        # AUTH is neither offered nor accepted, nor listed by HELP
        assert client.send(b"AUTH PLAIN AGRlbW8AZGVtbw==")[0].startswith(b"502 5.5.1")
        help_reply = client.send(b"HELP")[0]
        assert help_reply.startswith(b"250") and b"AUTH" not in help_reply
        # every reply after the greeting carries an enhanced status code
        assert client.send(b"NOOP") == [b"250 2.0.0 OK"]
        assert client.send(b"RSET") == [b"250 2.0.0 OK"]
    finally:
        client.close()


def test_lmtp_refuses_helo_and_ehlo(server: ServerProcess) -> None:
    client = Raw(server.ports["lmtp"])
    try:
        assert client.send(b"HELO x")[0].startswith(b"500 5.5.1")
        assert client.send(b"EHLO x")[0].startswith(b"500 5.5.1")
    finally:
        client.close()


def test_smtplib_sees_the_extensions(server: ServerProcess) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
        smtp.ehlo("client.test")
        for name in ("pipelining", "enhancedstatuscodes", "8bitmime", "smtputf8", "size"):
            assert smtp.has_extn(name), name
        assert not smtp.has_extn("auth")


@pytest.mark.parametrize("source", ["127.0.0.1", "127.0.0.2"])
def test_relay_is_refused(server: ServerProcess, source: str) -> None:
    client = Raw(server.ports["smtp"], source)
    try:
        client.send(b"EHLO client.test")
        assert client.send(b"MAIL FROM:<a@example.org>") == [b"250 2.1.0 OK"]
        reply = client.send(b"RCPT TO:<victim@elsewhere.example>")
        assert reply[0].startswith(b"554 5.7.1"), reply
        # the session goes on: a served recipient is still accepted
        assert client.send(b"RCPT TO:<demo@localhost>")[0].startswith(b"250 2.1.5")
    finally:
        client.close()


def test_served_domains(server: ServerProcess) -> None:
    """Domains of accounts, of aliases and of [delivery] domains are ours: an unknown address
    there is 550 5.1.1 (no such user), not a relay attempt."""
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
        smtp.ehlo("client.test")
        smtp.mail("a@example.org")
        for address in ("nobody@served.test", "nobody@aliased.test", "nobody@example.test"):
            code, text = smtp.rcpt(address)
            assert (code, text[:5]) == (550, b"5.1.1"), (address, code, text)
        assert smtp.rcpt("info@aliased.test")[0] == 250
        assert smtp.rcpt("OWNER@Served.Test")[0] == 250
        assert smtp.rcpt("x@other.test")[0] == 554


def test_postmaster_without_domain(server: ServerProcess) -> None:
    """RFC 5321 §4.5.1: RCPT TO:<Postmaster> is postmaster@ the configured hostname
    (``localhost`` here, an alias of demo@localhost)."""
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
        smtp.ehlo("client.test")
        smtp.mail("a@example.org")
        assert smtp.rcpt("<Postmaster>") == (250, b"2.1.5 OK")
        code, text = smtp.data(MESSAGE.replace(b"Subject: mx", b"Subject: to postmaster"))
        assert code == 250, text
    delivered = [
        line
        for line in server.log.read_text().splitlines()
        if "event=delivery" in line and "to=postmaster@localhost" in line
    ]
    assert len(delivered) == 1 and "result=delivered" in delivered[0], delivered


def test_lmtp_refuses_relay_too(server: ServerProcess) -> None:
    with smtplib.LMTP("127.0.0.1", server.ports["lmtp"], timeout=30) as lmtp:
        lmtp.ehlo("client.test")
        lmtp.mail("a@example.org")
        code, text = lmtp.rcpt("x@elsewhere.example")
        assert code == 554 and text.startswith(b"5.7.1")


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (b"MAIL FROM:garbage", b"501 5.5.4"),
        (b"MAIL FROM:", b"501 5.5.4"),
        (b"MAIL TO:<a@example.org>", b"501 5.5.4"),
        (b"MAIL FROM:<a@example.org", b"501 5.5.4"),
        (b"MAIL FROM:<garbage>", b"553 5.1.7"),
        (b"MAIL FROM:<a@>", b"553 5.1.7"),
        (b"MAIL FROM:<a..b@example.org>", b"553 5.1.7"),
        (b"MAIL FROM:<a@example.org> FOO=BAR", b"555 5.5.4"),
        (b"MAIL FROM:<a@example.org> BODY=9BIT", b"501 5.5.4"),
        (b"MAIL FROM:<\xc3\xa9@example.org>", b"553 5.6.7"),
        (b"MAIL FROM:<\xff\xfe@example.org> SMTPUTF8", b"501 5.6.7"),
        (b"MAIL FROM:<a@example.org> SIZE=999999999999", b"552 5.3.4"),
    ],
)
def test_mail_from_syntax(server: ServerProcess, command: bytes, expected: bytes) -> None:
    client = Raw(server.ports["smtp"])
    try:
        client.send(b"EHLO client.test")
        reply = client.send(command)
        assert reply[0].startswith(expected), reply
        # the session goes on
        assert client.send(b"MAIL FROM:<a@example.org>") == [b"250 2.1.0 OK"]
    finally:
        client.close()


@pytest.mark.parametrize(
    "sender",
    [b"<>", b"a@example.org", b"<a@example.org> BODY=8BITMIME SIZE=100", b"<@relay.test:a@b.test>"],
)
def test_mail_from_accepted(server: ServerProcess, sender: bytes) -> None:
    client = Raw(server.ports["smtp"])
    try:
        client.send(b"EHLO client.test")
        assert client.send(b"MAIL FROM:" + sender) == [b"250 2.1.0 OK"]
        assert client.send(b"RCPT TO:<demo@localhost>")[0].startswith(b"250 2.1.5")
    finally:
        client.close()


@pytest.mark.parametrize("protocol", ["smtp", "lmtp"])
def test_invalid_utf8_in_rcpt_is_refused_and_the_session_goes_on(
    server: ServerProcess, protocol: str
) -> None:
    client = Raw(server.ports[protocol])
    try:
        client.send(b"EHLO client.test" if protocol == "smtp" else b"LHLO client.test")
        assert client.send(b"MAIL FROM:<a@example.org> SMTPUTF8") == [b"250 2.1.0 OK"]
        for bad in (b"RCPT TO:<\xff@localhost>", b"RCPT TO:<demo@\xc3(>", b"RCPT TO:\xfe\xff"):
            reply = client.send(bad)
            assert reply[0][:1] == b"5", reply
        assert client.send(b"VRFY \xff\xfe")[0].startswith(b"252")
        assert client.send(b"HELP \xff")[0][:1] in (b"2", b"5")
        assert client.send(b"RCPT TO:<demo@localhost>")[0].startswith(b"250 2.1.5")
        assert client.send(b"DATA")[0].startswith(b"354")
        reply = client.send(MESSAGE + b".")
        assert all(line.startswith(b"250 2.0.0") for line in reply), reply
    finally:
        client.close()
    log = server.log.read_text(errors="replace")
    assert "Traceback" not in log and "internal error" not in log


def test_null_sender_is_delivered(server: ServerProcess) -> None:
    """A bounce (MAIL FROM:<>) reaches the mailbox, with an empty Return-Path."""
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
        smtp.ehlo("client.test")
        assert smtp.sendmail("<>", ["owner@served.test"], MESSAGE) == {}
    out = server.cli("mailbox", "list", "owner@served.test").stdout.decode()
    assert any(line.split()[:2] == ["INBOX", "1"] for line in out.splitlines()), out
