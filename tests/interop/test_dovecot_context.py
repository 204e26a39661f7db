"""Differential test: PARTIAL (RFC 9394, the positive ranges Dovecot 2.3 knows from RFC 5267),
CONTEXT=SEARCH updates (RFC 5267 §4) and NOTIFY (RFC 5465) in pobox and in Dovecot.

Both servers get the same eight messages and the same changes from a second connection; every
answer of the first connection must be the same, line for line (status texts aside, and the
UIDVALIDITY each server picks). Negative PARTIAL ranges, SORT contexts and FETCH (PARTIAL) are
newer than Dovecot 2.3: the transcripts in tests/transcripts/imap/context/ cover them.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tools.anchor_dovecot import DovecotInstance, dovecot_binary, start_dovecot

from pobox.server import Running

pytestmark = pytest.mark.interop

USER = "context@example.org"
PASSWORD = "secret"
TIMEOUT = 30.0

PARTIAL = [
    "SEARCH RETURN (PARTIAL 1:3) ALL",
    "UID SEARCH RETURN (PARTIAL 5:2 COUNT MIN) UNSEEN",
    "SEARCH RETURN (MAX PARTIAL 4:6) UNSEEN",
    "SEARCH RETURN (PARTIAL 20:30) ALL",
    "SEARCH RETURN (PARTIAL 1:3 ALL) ALL",
    "SEARCH RETURN (PARTIAL 0:3) ALL",
    "SEARCH RETURN (PARTIAL 1:*) ALL",
    "SORT RETURN (PARTIAL 2:4) (SUBJECT) UTF-8 ALL",
    "SEARCH RETURN (CONTEXT) UNSEEN",
    "SEARCH RETURN (CONTEXT COUNT) ALL",
    "SEARCH RETURN (SAVE PARTIAL 2:3) UNSEEN",
    "FETCH $ (UID)",
]


class Client:
    """A blocking IMAP connection that keeps what the server sends between commands."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.file = self.sock.makefile("rb")
        assert self.file.readline().startswith(b"* OK")
        self.tags = 0

    def line(self) -> str:
        line = self.file.readline().decode().rstrip("\r\n")
        assert line, "connection closed"
        return line

    def command(self, text: str, literal: bytes | None = None) -> list[str]:
        self.tags += 1
        tag = f"t{self.tags}"
        data = f"{tag} {text}".encode()
        if literal is not None:
            data += b" {%d+}\r\n" % len(literal) + literal
        self.sock.sendall(data + b"\r\n")
        lines: list[str] = []
        while True:
            line = self.line()
            if line.startswith(tag + " "):
                lines.append(line.split()[1])  # OK/NO/BAD: the texts are each server's own
                return lines
            lines.append(line)

    def wait_for(self, prefix: str) -> list[str]:
        """The lines the server sends unasked, up to one that starts with *prefix*."""
        lines: list[str] = []
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            line = self.line()
            lines.append(line)
            if line.startswith(prefix):
                return lines
        raise AssertionError(f"no {prefix!r} within {TIMEOUT}s: {lines}")

    def close(self) -> None:
        self.command("LOGOUT")
        self.sock.close()


def _message(n: int) -> bytes:
    subject = ["plan", "budget", "apple", "zebra"][n % 4]
    return f"From: a@example.org\r\nSubject: {subject} {n}\r\n\r\nbody {n}\r\n".encode()


_UIDVALIDITY = re.compile(r"UIDVALIDITY \d+")


def _clean(lines: list[str]) -> list[str]:
    return [_UIDVALIDITY.sub("UIDVALIDITY x", line) for line in lines if "RECENT" not in line]


def scenario(port: int) -> dict[str, list[str]]:
    a = Client(port)
    b = Client(port)
    answers: dict[str, list[str]] = {}
    a.command(f"LOGIN {USER} {PASSWORD}")
    b.command(f"LOGIN {USER} {PASSWORD}")
    a.command("CREATE Work")
    for n in range(8):
        a.command("APPEND INBOX", _message(n))
    a.command("SELECT INBOX")
    a.command("STORE 2,5 +FLAGS.SILENT (\\Seen)")
    for command in PARTIAL:
        answers[command] = _clean(a.command(command))

    # RFC 5267 §4: results kept up to date
    answers["update"] = _clean(a.command("SEARCH RETURN (UPDATE) UNSEEN"))
    answers["update uid count"] = _clean(a.command("UID SEARCH RETURN (COUNT UPDATE) SEEN"))
    answers["update min max"] = _clean(a.command("SEARCH RETURN (UPDATE MIN MAX) DELETED"))
    answers["own store"] = _clean(a.command("STORE 3 +FLAGS (\\Seen)"))
    b.command("SELECT INBOX")
    b.command("STORE 4 +FLAGS (\\Seen)")
    answers["other's store"] = _clean(a.command("NOOP"))
    b.command("STORE 1,6 +FLAGS (\\Deleted)")
    answers["deleted"] = _clean(a.command("NOOP"))
    b.command("EXPUNGE")
    answers["expunge"] = _clean(a.command("NOOP"))
    b.command("APPEND INBOX", _message(9))
    answers["arrival"] = _clean(a.command("NOOP"))
    answers["cancel"] = _clean(a.command('CANCELUPDATE "t12"'))
    answers["cancel unknown"] = _clean(a.command('CANCELUPDATE "nosuch"'))
    answers["cancel atom"] = _clean(a.command("CANCELUPDATE t13"))

    # RFC 5465: STATUS of another mailbox, sent unasked
    answers["notify"] = _clean(
        a.command("NOTIFY SET STATUS (MAILBOXES Work (MessageNew MessageExpunge))")
    )
    b.command("APPEND Work", _message(10))
    answers["notify new"] = _clean(a.wait_for("* STATUS Work"))
    answers["notify noop"] = _clean(a.command("NOOP"))
    answers["notify none"] = _clean(a.command("NOTIFY NONE"))
    answers["notify grammar"] = [
        a.command("NOTIFY SET (SELECTED (MessageNew))")[-1],
        a.command("NOTIFY SET (SELECTED (FlagChange))")[-1],
        a.command("NOTIFY SET (PERSONAL (MessageNew (UID) MessageExpunge))")[-1],
        a.command("NOTIFY SET (SELECTED (MessageNew MessageExpunge)) (SELECTED NONE)")[-1],
        a.command("NOTIFY SET (SELECTED (MessageNew MessageExpunge AnnotationChange))")[-1],
        a.command("NOTIFY SET (MAILBOXES nosuch (MessageNew MessageExpunge))")[-1],
    ]
    b.close()
    a.close()
    return answers


@pytest.fixture
def dovecot(tmp_path: Path) -> Iterator[DovecotInstance]:
    assert dovecot_binary() is not None, "dovecot is not installed"  # CI installs it
    instance = start_dovecot(tmp_path / "dovecot", {USER: PASSWORD}, fsync=False)
    try:
        yield instance
    finally:
        instance.stop()


async def test_context_partial_notify_match_dovecot(
    running: Running, dovecot: DovecotInstance
) -> None:
    await running.service.accounts.add(USER, PASSWORD)
    ours = await asyncio.to_thread(scenario, running.port("imap"))
    theirs = await asyncio.to_thread(scenario, dovecot.imap_port)
    assert ours.keys() == theirs.keys()
    for step in ours:
        assert ours[step] == theirs[step], step
