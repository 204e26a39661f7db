"""Moving in from Dovecot without clients noticing.

Debian's Dovecot on loopback (tools/anchor_dovecot.py) is filled over LMTP and given folders,
flags and keywords over IMAP; a POP3 client that leaves mail on the server records the UIDLs,
an IMAP client every folder's UIDVALIDITY and every message's UID and flags. pobox imports the
account three times: from Dovecot's Maildir, over IMAP, and over POP3. The same clients pointed
at pobox find nothing new: same UIDLs, same UIDVALIDITY, UIDs and flags, same bytes.
"""

from __future__ import annotations

import imaplib
import poplib
import re
import shutil
import smtplib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.helpers.servers import ServerProcess, server_process
from tools.anchor_dovecot import DovecotInstance, dovecot_binary, start_dovecot

pytestmark = pytest.mark.interop

USER = "alice"
PASSWORD = "s3cret pass"
TARGETS = ("maildir@example.org", "imap@example.org", "pop3@example.org")


@pytest.fixture
def dovecot() -> Iterator[DovecotInstance]:
    assert dovecot_binary() is not None, "dovecot is not installed"
    # outside pytest's base directory: another pytest run resets that one to mode 0700, which
    # would lock out Dovecot's unprivileged mail processes midway
    root = Path(tempfile.mkdtemp(prefix="pobox-dovecot-"))
    instance = start_dovecot(root / "dovecot", {USER: PASSWORD})
    try:
        yield instance
    finally:
        instance.stop()
        shutil.rmtree(root, ignore_errors=True)


def _message(n: int) -> bytes:
    return (
        f"From: Sender {n} <s{n}@example.net>\r\nTo: alice@localhost\r\n"
        f"Subject: corpus message {n}\r\nMessage-ID: <corpus-{n}@example.net>\r\n"
        f"Date: Mon, 1 Jun 2026 10:{n % 60:02d}:00 +0200\r\n\r\n" + f"line {n}\r\n" * (1 + n % 9)
    ).encode()


def _fill(dovecot: DovecotInstance) -> None:
    with smtplib.LMTP(dovecot.host, dovecot.lmtp_port, timeout=30) as lmtp:
        for n in range(24):
            assert lmtp.sendmail(f"s{n}@example.net", [USER], _message(n)) == {}
    imap = imaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=30)
    imap.login(USER, PASSWORD)
    for folder in ("Work", "Work.Reports", "Lists"):
        assert imap.create(folder)[0] == "OK"
        imap.subscribe(folder)
    imap.select("INBOX")
    imap.uid("STORE", "1:6", "+FLAGS", "(\\Seen)")
    imap.uid("STORE", "2,4", "+FLAGS", "(\\Flagged $Label1)")
    imap.uid("STORE", "3", "+FLAGS", "(\\Answered work)")
    imap.uid("COPY", "7:10", "Work")
    imap.uid("COPY", "11", "Work.Reports")
    imap.uid("STORE", "12", "+FLAGS", "(\\Deleted)")
    imap.expunge()
    for n in range(3):
        imap.append("Lists", "(\\Seen)", '"02-Jun-2026 08:00:00 +0000"', _message(100 + n))
    imap.logout()


def _imap_state(port: int, host: str, user: str, password: str, delim: str) -> dict[str, Any]:
    imap = imaplib.IMAP4(host, port, timeout=30)
    imap.login(user, password)
    state: dict[str, Any] = {}
    for folder in ("INBOX", "Work", "Work.Reports", "Lists"):
        name = folder.replace(".", delim)
        assert imap.select(f'"{name}"', readonly=True)[0] == "OK", name
        uidvalidity = int(imap.response("UIDVALIDITY")[1][0] or 0)
        _status, data = imap.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
        messages = {}
        for item in data:
            if isinstance(item, tuple):
                uid = re.search(rb"UID (\d+)", item[0])
                flags = re.search(rb"FLAGS \(([^)]*)\)", item[0])
                assert uid is not None and flags is not None
                names = set(flags[1].decode().split()) - {"\\Recent"}
                messages[int(uid[1])] = (sorted(names), item[1])
        state[folder] = (uidvalidity, messages)
        imap.close()
    imap.logout()
    return state


def _uidls(port: int, host: str, user: str, password: str) -> list[bytes]:
    pop = poplib.POP3(host, port, timeout=30)
    try:
        pop.user(user)
        pop.pass_(password)
        _resp, lines, _octets = pop.uidl()
        return [line.split()[1] for line in lines]
    finally:
        pop.quit()


def _import(server: ServerProcess, *args: str, stdin: bytes | None = None) -> bytes:
    return server.cli("import", *args, stdin=stdin).stdout


def test_move_from_dovecot(tmp_path: Path, dovecot: DovecotInstance) -> None:
    _fill(dovecot)
    host = dovecot.host
    uidls = _uidls(dovecot.pop3_port, host, USER, PASSWORD)
    before = _imap_state(dovecot.imap_port, host, USER, PASSWORD, ".")
    assert len(uidls) == 23 and re.fullmatch(rb"[0-9a-f]{16}", uidls[0])
    assert len(before["Work"][1]) == 4 and len(before["Lists"][1]) == 3

    users = {address: PASSWORD for address in TARGETS}
    (tmp_path / "pobox").mkdir()
    with server_process(tmp_path / "pobox", users=users) as server:
        out = _import(server, "maildir", str(dovecot.maildir(USER)), "--to", TARGETS[0])
        assert b"UIDVALIDITY and UIDs kept in: INBOX" in out
        url = f"imap://{USER}@{host}:{dovecot.imap_port}"
        _import(server, url, "--to", TARGETS[1], stdin=PASSWORD.encode() + b"\n")
        # interrupted and run again: nothing is imported twice
        again = _import(server, url, "--to", TARGETS[1], stdin=PASSWORD.encode() + b"\n")
        assert b"imported 0 message(s)" in again and b"31 were there already" in again
        pop_url = f"pop3://{USER}@{host}:{dovecot.pop3_port}"
        _import(server, pop_url, "--to", TARGETS[2], stdin=PASSWORD.encode() + b"\n")
        again = _import(server, pop_url, "--to", TARGETS[2], stdin=PASSWORD.encode() + b"\n")
        assert b"imported 0 message(s)" in again

        port = server.ports["imap"]
        for target in TARGETS[:2]:
            # the IMAP client finds its cache valid: same UIDVALIDITY, UIDs, flags and bytes
            assert _imap_state(port, "127.0.0.1", target, PASSWORD, "/") == before, target
        for target in TARGETS:
            # the POP3 client with leave-on-server sees nothing new
            assert _uidls(server.ports["pop3"], "127.0.0.1", target, PASSWORD) == uidls, target

    # and Dovecot still holds everything (the imports only read)
    assert _uidls(dovecot.pop3_port, host, USER, PASSWORD) == uidls
