"""What IMAP clients see of folder policies (docs/policies.md): an archive move is an ordinary
MOVE (EXPUNGE in the source, or VANISHED after ENABLE QRESYNC; EXISTS in the target, flags and
INTERNALDATE kept), an expunge-after an ordinary EXPUNGE. imaplib sessions stay selected while
the sweeper of the in-process server runs with a controllable clock."""

from __future__ import annotations

import asyncio
import imaplib
import re
from datetime import UTC, datetime, timedelta

import pytest
from tests.conftest import FakeClock

from pobox.server import Running

pytestmark = pytest.mark.interop

ADDRESS = "tidy@example.org"
PASSWORD = "secret"
TIMEOUT = 30.0


def message(n: int) -> bytes:
    return f"From: a@example.org\r\nSubject: message {n}\r\n\r\nbody {n}\r\n".encode()


def left_after(uids: list[int], expunges: list[bytes]) -> list[int]:
    """The UIDs a client keeps after applying EXPUNGE responses in the order they came."""
    kept = list(uids)
    for number in expunges:
        del kept[int(number) - 1]
    return kept


def untagged(imap: imaplib.IMAP4, kind: str) -> list[bytes]:
    return [bytes(x) for x in imap.untagged_responses.pop(kind, []) if x is not None]


def login(port: int) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", port, timeout=TIMEOUT)
    imap.login(ADDRESS, PASSWORD)
    return imap


def fill(port: int) -> None:
    imap = login(port)
    try:
        for n, year in enumerate([2019, 2025, 2019, 2024, 2026], start=1):
            when = datetime(year, 1, 10, 9, 30, tzinfo=UTC)
            flags = "(\\Flagged $Work)" if n == 3 else "(\\Seen)"
            typ, _ = imap.append("INBOX", flags, imaplib.Time2Internaldate(when), message(n))
            assert typ == "OK"
            typ, _ = imap.append("Trash", None, None, message(10 + n))
            assert typ == "OK"
    finally:
        imap.logout()


def selected(port: int, mailbox: str, *, qresync: bool = False) -> imaplib.IMAP4:
    imap = login(port)
    if qresync:
        typ, _ = imap._simple_command("ENABLE", "QRESYNC")
        assert typ == "OK"
    typ, _ = imap.select(mailbox)
    assert typ == "OK"
    imap.untagged_responses.clear()
    return imap


async def test_archive_and_expunge_look_like_move_and_expunge(
    running: Running, clock: FakeClock
) -> None:
    service = running.service
    port = running.port("imap")
    account = await service.accounts.add(ADDRESS, PASSWORD)
    await service.folder_policies.set_policy(
        account, "INBOX", {"archive-after": "365d", "archive-by": "year"}
    )
    await asyncio.to_thread(fill, port)
    plain = await asyncio.to_thread(selected, port, "INBOX")
    modern = await asyncio.to_thread(selected, port, "INBOX", qresync=True)
    trash = await asyncio.to_thread(selected, port, "Trash")
    try:
        # a year and a bit after 2025-01-10: the 2019, 2024 and 2025 messages are due, the
        # Trash (saved just now) is not
        clock.now = datetime(2026, 1, 11, tzinfo=UTC)
        outcome = await service.folder_policies.sweep()
        assert outcome is not None and outcome.total_archived == 4
        assert outcome.total_expunged == 0

        def after_archive() -> None:
            typ, _ = plain.noop()
            assert typ == "OK"
            # UIDs 1, 2, 3, 4 went (each EXPUNGE names a sequence number as it is then)
            assert left_after([1, 2, 3, 4, 5], untagged(plain, "EXPUNGE")) == [5]
            typ, _ = modern.noop()
            assert typ == "OK"
            assert untagged(modern, "VANISHED") == [b"1:4"]
            assert untagged(modern, "EXPUNGE") == []
            typ, _ = trash.noop()
            assert untagged(trash, "EXPUNGE") == []
            typ, data = plain.uid("FETCH", "1:*", "(UID)")
            assert typ == "OK" and [d for d in data if d] == [b"1 (UID 5)"]
            # the archive, with the messages' flags and internal dates
            typ, data = plain.list('""', "Archive*")
            names = sorted(re.sub(rb'.*"/" ', b"", d) for d in data if isinstance(d, bytes))
            assert names == [b"Archive", b"Archive/2019", b"Archive/2024", b"Archive/2025"]
            typ, data = plain.select("Archive/2019")
            assert typ == "OK" and data == [b"2"]
            typ, data = plain.fetch("1:*", "(FLAGS INTERNALDATE)")
            assert typ == "OK"
            found = [
                re.fullmatch(rb'(\d) \(FLAGS \(([^)]*)\) INTERNALDATE "([^"]+)"\)', d) for d in data
            ]
            assert all(found), data
            # flags kept (and \Recent in the new mailbox, as after any MOVE), dates kept
            assert [(m[1], set(m[2].split()), m[3]) for m in found if m] == [
                (b"1", {b"\\Seen", b"\\Recent"}, b"10-Jan-2019 09:30:00 +0000"),
                (b"2", {b"\\Flagged", b"$Work", b"\\Recent"}, b"10-Jan-2019 09:30:00 +0000"),
            ]

        await asyncio.to_thread(after_archive)

        # 30 days after the Trash was filled, the server's default expunges it
        clock.now = datetime.now(UTC) + timedelta(days=30, minutes=1)
        outcome = await service.folder_policies.sweep()
        assert outcome is not None and outcome.expunged == {(ADDRESS, "Trash"): 5}

        def after_expunge() -> None:
            typ, _ = trash.noop()
            assert typ == "OK"
            assert left_after([1, 2, 3, 4, 5], untagged(trash, "EXPUNGE")) == []
            typ, data = trash.status("Trash", "(MESSAGES)")
            assert typ == "OK" and b"MESSAGES 0" in data[0]  # type: ignore[operator]

        await asyncio.to_thread(after_expunge)
    finally:
        for imap in (plain, modern, trash):
            await asyncio.to_thread(imap.logout)
