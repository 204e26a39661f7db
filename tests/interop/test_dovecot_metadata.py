"""Differential test: METADATA (RFC 5464) in pobox and in Dovecot 2.3 (``imap_metadata = yes``
with a file dictionary).

The same conversation runs against both: private and shared entries of INBOX, case-insensitive
names, MAXSIZE with LONGENTRIES, DEPTH 0, 1 and infinity, removal with NIL, and the names and
options RFC 5464 makes BAD. Compared: the status word of each command, LONGENTRIES, and the
entries each METADATA response gives, as a mapping of name to value. Normalised, where the RFC
leaves it to the server: status texts, quoted or literal strings, the order of entries, and
entries answered with NIL (Dovecot names every entry asked for, NIL when it has no value;
pobox leaves them out). Where the two differ on purpose, DIFFERENT says how and why.
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

USER = "md@example.org"
PASSWORD = "secret"
TIMEOUT = 30.0

METADATA_CONFIG = (
    "protocol imap {",
    "  imap_metadata = yes",
    "}",
    "mail_attribute_dict = file:%h/dovecot-attributes",
)

CONVERSATION = [
    'SETMETADATA INBOX (/shared/comment "Shared comment" /private/comment "My own comment")',
    "GETMETADATA INBOX (/shared/comment /private/comment)",
    "GETMETADATA INBOX /private/comment",
    "GETMETADATA INBOX (/Shared/Comment /private/nothing-here)",
    "GETMETADATA (MAXSIZE 5) INBOX (/shared/comment /private/comment)",
    "GETMETADATA (MAXSIZE 14) INBOX (/shared/comment /private/comment)",
    'SETMETADATA INBOX (/private/filters/values/small "SMALLER 5000"'
    ' /private/filters/values/boss "FROM \\"boss@example.com\\""'
    ' /private/filters/values/boss/deep "below boss")',
    "GETMETADATA (DEPTH 1) INBOX (/private/filters/values)",
    "GETMETADATA (DEPTH infinity) INBOX /private/filters",
    "GETMETADATA (DEPTH 0) INBOX /private/filters/values",
    "GETMETADATA (DEPTH infinity) INBOX (/private /shared)",
    "GETMETADATA (DEPTH 2) INBOX /private/filters/values",
    'SETMETADATA INBOX (/shared/bad//name "x")',
    'SETMETADATA INBOX (/shared/trailing/ "x")',
    'SETMETADATA INBOX (/comment "x")',
    'SETMETADATA INBOX (/private/comment "changed" /shared/bad% "x")',
    "GETMETADATA INBOX /private/comment",
    "SETMETADATA INBOX (/private/comment NIL)",
    "GETMETADATA INBOX (/private/comment /shared/comment)",
    "SETMETADATA INBOX (/private/vendor/example/setting {5+}\r\nab\r\nc)",
    "GETMETADATA INBOX /private/vendor/example/setting",
    # last: Dovecot 2.3.19 stores this under an empty key, and its index is corrupt from then on
    'SETMETADATA INBOX (/shared "x")',
]

#: Commands where the answers differ on purpose: the command's index, and why.
DIFFERENT = {
    # RFC 5464 §3.2: entries are below /private or /shared; pobox answers BAD to a SETMETADATA
    # of /shared itself, Dovecot 2.3 stores a value under that name
    len(CONVERSATION) - 1: "an entry named /shared",
}


@pytest.fixture
def dovecot(tmp_path: Path) -> Iterator[DovecotInstance]:
    # No skip: CI installs Dovecot, so its absence is a failure.
    assert dovecot_binary() is not None, "dovecot is not installed"
    instance = start_dovecot(
        tmp_path / "dovecot", {USER: PASSWORD}, fsync=False, extra_config=METADATA_CONFIG
    )
    try:
        yield instance
    finally:
        instance.stop()


class Client:
    """A blocking IMAP connection that returns each command's response as raw bytes."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.file = self.sock.makefile("rb")
        assert self.file.readline().startswith(b"* OK")
        self.tags = 0

    def command(self, text: str) -> bytes:
        self.tags += 1
        tag = b"t%d" % self.tags
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        out = b""
        while True:
            line = self.file.readline()
            assert line, out
            out += line
            literal = re.search(rb"\{(\d+)\}\r\n\Z", line)
            if literal:
                out += self.file.read(int(literal.group(1)))
                continue
            if line.startswith(tag + b" "):
                return out

    def close(self) -> None:
        self.sock.close()


def _tokens(data: bytes) -> list[bytes | None]:
    """The strings, atoms and NILs of a METADATA response's parenthesised part."""
    out: list[bytes | None] = []
    i = 0
    while i < len(data):
        c = data[i : i + 1]
        if c in b" ()":
            i += 1
        elif c == b'"':
            j, value = i + 1, bytearray()
            while data[j : j + 1] != b'"':
                if data[j : j + 1] == b"\\":
                    j += 1
                value += data[j : j + 1]
                j += 1
            out.append(bytes(value))
            i = j + 1
        elif c in (b"{", b"~"):
            m = re.match(rb"~?\{(\d+)\}\r\n", data[i:])
            assert m is not None, data[i:]
            start = i + m.end()
            out.append(data[start : start + int(m.group(1))])
            i = start + int(m.group(1))
        else:
            m = re.match(rb"[^ ()]+", data[i:])
            assert m is not None
            out.append(None if m.group().upper() == b"NIL" else m.group())
            i += m.end()
    return out


def summary(response: bytes) -> tuple[str, str | None, dict[str, bytes]]:
    """(status word, LONGENTRIES, the entries with a value) of one command's response."""
    entries: dict[str, bytes] = {}
    body, tagged = response.rsplit(b"\r\n", 2)[0], response.rsplit(b"\r\n", 2)[-2]
    for part in re.split(rb"(?:^|\r\n)\* METADATA ", b"\r\n" + body)[1:]:
        _mailbox, _, rest = part.partition(b" ")
        tokens = _tokens(rest)
        for name, value in zip(tokens[::2], tokens[1::2], strict=True):
            assert name is not None
            if value is not None:
                entries[name.decode().lower()] = value
    status = tagged.split(b" ")[1].decode()
    longentries = re.search(rb"\[METADATA LONGENTRIES (\d+)\]", tagged)
    return status, longentries.group(1).decode() if longentries else None, entries


def converse(port: int) -> list[tuple[str, str | None, dict[str, bytes]]]:
    client = Client(port)
    try:
        assert b" OK " in client.command(f"LOGIN {USER} {PASSWORD}")
        return [summary(client.command(text)) for text in CONVERSATION]
    finally:
        client.close()


async def test_metadata_answers_match_dovecot(running: Running, dovecot: DovecotInstance) -> None:
    await running.service.accounts.add(USER, PASSWORD)
    ours = await asyncio.to_thread(converse, running.port("imap"))
    theirs = await asyncio.to_thread(converse, dovecot.imap_port)
    assert ours[1] == (
        "OK",
        None,
        {"/shared/comment": b"Shared comment", "/private/comment": b"My own comment"},
    )
    wrong = []
    for index, (mine, dovecots) in enumerate(zip(ours, theirs, strict=True)):
        if index in DIFFERENT:
            if mine == dovecots:
                wrong.append(f"{CONVERSATION[index]}: now the same ({DIFFERENT[index]})")
        elif mine != dovecots:
            wrong.append(f"{CONVERSATION[index]}: pobox {mine}, Dovecot {dovecots}")
    assert wrong == []
