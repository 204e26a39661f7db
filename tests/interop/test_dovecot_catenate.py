"""Differential test: APPEND with CATENATE (RFC 4469) in pobox and in Dovecot.

The same messages are appended to both servers, then the same CATENATE commands put new
messages together from TEXT literals and URLs of those (whole messages, HEADER, TEXT, part
numbers, MIME headers, partial ranges, with and without UIDVALIDITY, URLs only and MULTIAPPEND);
every new message must be the same octets in both, and a URL that names nothing must be
refused by both with BADURL.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from tools.anchor_dovecot import DovecotInstance, dovecot_binary, start_dovecot

from pobox.server import Running

pytestmark = pytest.mark.interop

USER = "cat@example.org"
PASSWORD = "secret"
TIMEOUT = 30.0

DRAFT = (
    b"From: joe@example.org\r\nSubject: draft\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\npreamble\r\n--b1\r\n'
    b"Content-Type: text/plain; charset=utf-8\r\n\r\nHello there\r\n--b1\r\n"
    b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\nFrom: x@example.org\r\n\r\n"
    b"inner body\r\n--b1--\r\nepilogue\r\n"
)
NOTE = b"Subject: note\r\nContent-Type: text/plain\r\n\r\nline one\r\nline two\r\n"

#: (name, CATENATE list with {V} for the UIDVALIDITY); TEXT parts are written as TEXT "..."
#: here and sent as literals
CASES = [
    ("whole", 'URL "/INBOX;UIDVALIDITY={V}/;UID=2"'),
    ("no-uidvalidity", 'URL "/INBOX/;UID=1"'),
    (
        "rfc4469",
        'URL "/INBOX;UIDVALIDITY={V}/;UID=1/;SECTION=HEADER" TEXT "\\r\\n--b2\\r\\n" '
        'URL "/INBOX/;UID=1/;SECTION=1.MIME" URL "/INBOX/;UID=1/;SECTION=1" '
        'TEXT "\\r\\n--b2\\r\\n" URL "/INBOX/;UID=2" TEXT "\\r\\n--b2--\\r\\n"',
    ),
    ("text", 'URL "/INBOX/;UID=2/;SECTION=HEADER" URL "/INBOX/;UID=1/;SECTION=TEXT"'),
    ("inner", 'URL "/INBOX/;UID=1/;SECTION=2.HEADER" URL "/INBOX/;UID=1/;SECTION=2.TEXT"'),
    ("partial", 'URL "/INBOX/;UID=2/;PARTIAL=8.20" TEXT "!\\r\\n"'),
    ("partial-open", 'TEXT "Subject: p\\r\\n\\r\\n" URL "/INBOX/;UID=2/;SECTION=TEXT/;PARTIAL=5"'),
]


@pytest.fixture
def dovecot(tmp_path: Path) -> Iterator[DovecotInstance]:
    # No skip: CI installs Dovecot, so its absence is a failure.
    assert dovecot_binary() is not None, "dovecot is not installed"
    instance = start_dovecot(tmp_path / "dovecot", {USER: PASSWORD}, fsync=False)
    try:
        yield instance
    finally:
        instance.stop()


class Client:
    """A blocking IMAP connection: each command's response, literals included, as bytes."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.file = self.sock.makefile("rb")
        assert self.file.readline().startswith(b"* OK")
        self.tags = 0

    def command(self, data: bytes) -> tuple[bytes, bytes]:
        """(untagged data, tagged line) of one command sent as it is (LITERAL+ only)."""
        self.tags += 1
        tag = b"t%d" % self.tags
        self.sock.sendall(tag + b" " + data + b"\r\n")
        out = b""
        while True:
            line = self.file.readline()
            assert line, "connection closed"
            if line.startswith(tag + b" "):
                return out, line.rstrip(b"\r\n")
            out += line
            m = re.search(rb"\{(\d+)\}\r\n$", line)
            if m:
                out += self.file.read(int(m.group(1)))


def _catenate(spec: str, validity: int) -> bytes:
    """The CATENATE list of *spec*, TEXT "..." parts as non-synchronizing literals."""
    spec = spec.replace("{V}", str(validity))
    out = b""
    for m in re.finditer(r'(URL|TEXT) "((?:[^"\\]|\\.)*)"', spec):
        if m.group(1) == "URL":
            out += b' URL "' + m.group(2).encode() + b'"'
        else:
            text = m.group(2).encode().decode("unicode_escape").encode("latin-1")
            out += b" TEXT {%d+}\r\n" % len(text) + text
    return b"CATENATE (" + out[1:] + b")"


def scenario(port: int) -> dict[str, object]:
    c = Client(port)
    assert c.command(f"LOGIN {USER} {PASSWORD}".encode())[1].split()[1] == b"OK"
    for message in (DRAFT, NOTE):
        _, done = c.command(b"APPEND INBOX {%d+}\r\n" % len(message) + message)
        assert done.split()[1] == b"OK", done
    untagged, _ = c.command(b"STATUS INBOX (UIDVALIDITY)")
    validity = int(re.search(rb"UIDVALIDITY (\d+)", untagged).group(1))  # type: ignore[union-attr]
    c.command(b"SELECT INBOX")
    results: dict[str, object] = {}
    for name, spec in CASES:
        _, done = c.command(b"APPEND INBOX " + _catenate(spec, validity))
        m = re.search(rb"APPENDUID \d+ (\d+)", done)
        assert m is not None, (name, done)
        body, fetched = c.command(b"UID FETCH " + m.group(1) + b" BODY.PEEK[]")
        assert fetched.split()[1] == b"OK", fetched
        results[name] = body[body.index(b"}\r\n") + 3 : body.rindex(b")")]
    # MULTIAPPEND of a CATENATE and a plain message
    note = b"Subject: plain\r\n\r\nx\r\n"
    _, done = c.command(
        b"APPEND INBOX "
        + _catenate('URL "/INBOX/;UID=2"', validity)
        + b" {%d+}\r\n" % len(note)
        + note
    )
    results["multiappend"] = done.split()[1:3]
    # URLs that name nothing
    for name, url in (("no-uid", "/INBOX/;UID=99"), ("stale", "/INBOX;UIDVALIDITY=1/;UID=1")):
        _, done = c.command(b'APPEND INBOX CATENATE (URL "' + url.encode() + b'")')
        results[name] = done.split()[1:3]
    c.command(b"LOGOUT")
    c.file.close()
    c.sock.close()
    return results


async def test_catenate_matches_dovecot(running: Running, dovecot: DovecotInstance) -> None:
    await running.service.accounts.add(USER, PASSWORD)
    ours = await asyncio.to_thread(scenario, running.port("imap"))
    theirs = await asyncio.to_thread(scenario, dovecot.imap_port)
    assert ours["no-uid"] == [b"NO", b"[BADURL"]
    assert ours["whole"] == NOTE and ours["no-uidvalidity"] == DRAFT
    assert ours["multiappend"] == [b"OK", b"[APPENDUID"]
    assert ours == theirs
