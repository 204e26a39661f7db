"""The Dovecot anchor starts, takes a message over LMTP and serves it over POP3 and IMAP."""

from __future__ import annotations

import imaplib
import poplib
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from tools.anchor_dovecot import DovecotInstance, dovecot_binary, start_dovecot

pytestmark = pytest.mark.interop

USER = "alice"
PASSWORD = "s3cret pass"
BODY_LINE = b"The anchor delivered this line."
MESSAGE = (
    b"From: Bob <bob@example.org>\r\n"
    b"To: Alice <alice@localhost>\r\n"
    b"Subject: anchor check\r\n"
    b"Message-ID: <anchor-1@example.org>\r\n"
    b"\r\n" + BODY_LINE + b"\r\n"
)


@pytest.fixture
def dovecot(tmp_path: Path) -> Iterator[DovecotInstance]:
    # No skip: CI installs Dovecot, so its absence is a failure.
    assert dovecot_binary() is not None, "dovecot is not installed"
    instance = start_dovecot(tmp_path / "dovecot", {USER: PASSWORD, "bob": "other"})
    try:
        yield instance
    finally:
        instance.stop()


def test_lmtp_then_pop3_and_imap(dovecot: DovecotInstance) -> None:
    lmtp = smtplib.LMTP(dovecot.host, dovecot.lmtp_port, timeout=10)
    try:
        refused = lmtp.sendmail("bob@example.org", [USER], MESSAGE)
    finally:
        lmtp.quit()
    assert refused == {}

    pop = poplib.POP3(dovecot.host, dovecot.pop3_port, timeout=10)
    try:
        pop.user(USER)
        pop.pass_(PASSWORD)
        count, _size = pop.stat()
        assert count == 1
        _resp, lines, octets = pop.retr(1)
        uidl = pop.uidl(1)
    finally:
        pop.quit()
    assert BODY_LINE in lines
    assert b"Subject: anchor check" in lines
    assert octets >= len(MESSAGE)
    # pop3_uidl_format = %08Xu%08Xv: sixteen hex digits.
    unique_id = uidl.split()[-1].decode()
    assert len(unique_id) == 16
    int(unique_id, 16)

    imap = imaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=10)
    try:
        imap.login(USER, PASSWORD)
        typ, data = imap.select("INBOX", readonly=True)
        assert typ == "OK"
        assert data[0] == b"1"
        typ, fetched = imap.fetch("1", "(BODY.PEEK[])")
        assert typ == "OK"
        first = fetched[0]
        assert isinstance(first, tuple)
        assert BODY_LINE in first[1]
        imap.close()
    finally:
        imap.logout()

    # The message is a file in the user's Maildir.
    files = list((dovecot.maildir(USER) / "cur").iterdir()) + list(
        (dovecot.maildir(USER) / "new").iterdir()
    )
    assert len(files) == 1
    assert BODY_LINE in files[0].read_bytes()


def test_wrong_password_is_refused_and_stop_frees_ports(dovecot: DovecotInstance) -> None:
    pop = poplib.POP3(dovecot.host, dovecot.pop3_port, timeout=10)
    try:
        pop.user(USER)
        with pytest.raises(poplib.error_proto):
            pop.pass_("wrong")
    finally:
        pop.close()

    imap = imaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=10)
    try:
        imap.login("bob", "other")
    finally:
        imap.logout()

    dovecot.stop()
    dovecot.stop()  # idempotent
    with pytest.raises(OSError):
        smtplib.LMTP(dovecot.host, dovecot.lmtp_port, timeout=2)
