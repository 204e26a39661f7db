"""QRESYNC resynchronisation (RFC 7162 §3.2.5) over the wire, and real clients' CONDSTORE calls.

* The resync test: a client knows a mailbox of a few thousand messages; another session flags 5
  and expunges 5; the client reconnects with ``SELECT ... (QRESYNC ...)`` and receives exactly 5
  FETCH and one VANISHED (EARLIER), and the whole conversation is under 10 KB on the wire.
* imapclient (``enable``, ``select_folder(readonly=True)``, ``fetch(..., modifiers=[...])``)
  and Python's imaplib, against the in-process server (run in threads).
"""

from __future__ import annotations

import asyncio
import imaplib
import re
from datetime import UTC, datetime

import imapclient
import pytest

from pobox.server import Running
from pobox.service.content import spool_message
from pobox.service.mailboxes import Mailboxes

pytestmark = pytest.mark.interop

ADDRESS = "sync@example.org"
PASSWORD = "secret"
MESSAGES = 3000
TIMEOUT = 30.0


def _message(number: int) -> bytes:
    return (
        f"From: Sender <sender@example.org>\r\nTo: <{ADDRESS}>\r\n"
        f"Subject: message {number}\r\nDate: Thu, 15 Jan 2026 12:00:00 +0000\r\n"
        f"Message-ID: <sync-{number}@example.org>\r\n\r\nThis is message {number}.\r\n"
    ).encode()


async def _fill(running: Running, count: int) -> None:
    """*count* messages in the account's INBOX, appended through the store in concurrent groups
    (each group shares commits)."""
    service = running.service
    account = await service.accounts.add(ADDRESS, PASSWORD)
    store = service.store
    inbox = await Mailboxes(store).get(account, "INBOX")
    when = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)

    async def one(number: int) -> None:
        message = await asyncio.to_thread(
            lambda: spool_message(store.new_spool(), [_message(number)], internal_date=when)
        )
        await store.append(inbox.id, message)

    for start in range(1, count + 1, 250):
        await asyncio.gather(*(one(n) for n in range(start, min(start + 250, count + 1))))


class Wire:
    """A raw IMAP connection that counts every octet both ways."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.sent = 0
        self.received = 0

    @classmethod
    async def open(cls, port: int) -> Wire:
        wire = cls(*await asyncio.open_connection("127.0.0.1", port))
        assert (await wire.line()).startswith(b"* OK")
        return wire

    async def line(self) -> bytes:
        data = await asyncio.wait_for(self.reader.readline(), TIMEOUT)
        self.received += len(data)
        return data

    async def command(self, tag: str, text: str) -> list[bytes]:
        """Send a command; the untagged lines before its tagged OK (the tagged line last)."""
        data = f"{tag} {text}\r\n".encode()
        self.writer.write(data)
        self.sent += len(data)
        lines: list[bytes] = []
        while True:
            line = await self.line()
            lines.append(line)
            if line.startswith(tag.encode() + b" "):
                assert line.startswith(tag.encode() + b" OK"), line
                return lines

    async def close(self) -> None:
        await self.command("z", "LOGOUT")
        self.writer.close()
        await self.writer.wait_closed()


def _code(lines: list[bytes], name: bytes) -> int:
    for line in lines:
        m = re.search(rb"\[" + name + rb" (\d+)\]", line)
        if m:
            return int(m.group(1))
    raise AssertionError(f"no {name!r} in {lines!r}")


async def test_resync_after_five_flags_and_five_expunges_is_small(running: Running) -> None:
    await _fill(running, MESSAGES)
    port = running.port("imap")

    # the client syncs the whole mailbox once and remembers UIDVALIDITY and HIGHESTMODSEQ
    first = await Wire.open(port)
    await first.command("a1", f"LOGIN {ADDRESS} {PASSWORD}")
    await first.command("a2", "ENABLE QRESYNC")
    selected = await first.command("a3", "SELECT INBOX")
    uidvalidity = _code(selected, b"UIDVALIDITY")
    modseq = _code(selected, b"HIGHESTMODSEQ")
    fetched = await first.command("a4", "UID FETCH 1:* (FLAGS)")
    assert len(fetched) == MESSAGES + 1
    await first.close()

    # another session flags 5 messages and expunges 5 others
    other = await Wire.open(port)
    await other.command("b1", f"LOGIN {ADDRESS} {PASSWORD}")
    await other.command("b2", "SELECT INBOX")
    flagged = [11, 500, 1234, 2000, 2999]
    expunged = [7, 8, 9, 1500, 3000]
    await other.command("b3", "UID STORE " + ",".join(map(str, flagged)) + r" +FLAGS (\Flagged)")
    await other.command("b4", "UID STORE " + ",".join(map(str, expunged)) + r" +FLAGS (\Deleted)")
    await other.command("b5", "EXPUNGE")
    await other.close()

    # the client comes back: exactly 5 FETCH and one VANISHED (EARLIER), under 10 KB in all
    again = await Wire.open(port)
    await again.command("c1", f"LOGIN {ADDRESS} {PASSWORD}")
    await again.command("c2", "ENABLE QRESYNC")
    answer = await again.command(
        "c3", f"SELECT INBOX (QRESYNC ({uidvalidity} {modseq} 1:{MESSAGES}))"
    )
    await again.close()
    fetches = [line for line in answer if re.match(rb"\* \d+ FETCH ", line)]
    vanished = [line for line in answer if line.startswith(b"* VANISHED")]
    assert vanished == [b"* VANISHED (EARLIER) 7:9,1500,3000\r\n"]
    assert len(fetches) == 5
    for uid, line in zip(flagged, fetches, strict=True):
        expected = rb"\* \d+ FETCH \(UID %d FLAGS \(\\Flagged\) MODSEQ \(\d+\)\)\r\n" % uid
        assert re.match(expected, line), line
    assert _code(answer, b"HIGHESTMODSEQ") > modseq
    assert again.sent + again.received < 10 * 1024, (again.sent, again.received)


# --------------------------------------------------------------------------- real clients


def _imapclient_session(port: int) -> None:
    c = imapclient.IMAPClient("127.0.0.1", port=port, ssl=False, timeout=TIMEOUT)
    try:
        c.login(ADDRESS, PASSWORD)
        assert b"CONDSTORE" in c.capabilities() and b"QRESYNC" in c.capabilities()
        assert c.enable("QRESYNC") == [b"QRESYNC"]
        info = c.select_folder("INBOX", readonly=True)
        assert info[b"READ-ONLY"] == [b""]
        highest = info[b"HIGHESTMODSEQ"]
        assert isinstance(highest, int) and highest > 0
        everything = c.fetch([1, 2, 3], ["FLAGS"], modifiers=[f"CHANGEDSINCE {highest - 3}"])
        assert len(everything) == 3  # the last three messages' appends
        assert all(b"MODSEQ" in data for data in everything.values())
        assert c.fetch([1, 2, 3], ["FLAGS"], modifiers=[f"CHANGEDSINCE {highest}"]) == {}
        c.select_folder("INBOX")
        c.add_flags([2], [imapclient.SEEN])
        changed = c.fetch([1, 2, 3], ["FLAGS", "MODSEQ"], modifiers=[f"CHANGEDSINCE {highest}"])
        assert list(changed) == [2]
        assert changed[2][b"MODSEQ"] == (highest + 1,)
        assert c.search(["MODSEQ", highest + 1]) == [2]
        status = c.folder_status("INBOX", ["HIGHESTMODSEQ", "MESSAGES"])
        assert status[b"HIGHESTMODSEQ"] == highest + 1
    finally:
        c.logout()


def _imaplib_session(port: int) -> None:
    imap = imaplib.IMAP4("127.0.0.1", port, timeout=TIMEOUT)
    try:
        imap.login(ADDRESS, PASSWORD)
        typ, data = imap._simple_command("ENABLE", "CONDSTORE")
        assert typ == "OK"
        assert imap.untagged_responses.pop("ENABLED", None) == [b"CONDSTORE"]
        typ, data = imap.select("INBOX")
        assert typ == "OK"
        highest = int(imap.untagged_responses.pop("HIGHESTMODSEQ")[0])
        typ, data = imap.store("1", "+FLAGS", "(\\Answered)")
        assert typ == "OK"
        assert data == [b"1 (FLAGS (\\Answered) MODSEQ (%d))" % (highest + 1)]
        typ, data = imap.fetch("1:*", f"(FLAGS) (CHANGEDSINCE {highest})")
        assert data == [b"1 (FLAGS (\\Answered) MODSEQ (%d))" % (highest + 1)]
        typ, data = imap._simple_command(
            "STORE", "1", f"(UNCHANGEDSINCE {highest})", "+FLAGS.SILENT", "(\\Flagged)"
        )
        assert typ == "OK" and b"[MODIFIED 1]" in data[-1]
        typ, data = imap.search(None, "MODSEQ", str(highest + 1))
        assert data == [b"1 (MODSEQ %d)" % (highest + 1)]
    finally:
        imap.logout()


async def test_imapclient_and_imaplib_use_condstore(running: Running) -> None:
    await _fill(running, 3)
    port = running.port("imap")
    await asyncio.to_thread(_imapclient_session, port)
    await asyncio.to_thread(_imaplib_session, port)
