"""Differential test: SORT (RFC 5256), SORT=DISPLAY (RFC 5957) and ESORT (RFC 5267) in pobox
and in Dovecot, on the same messages.

Both servers get the same twelve messages by APPEND (with internal dates), built so that every
key has ties, reply and forward prefixes, list tags, missing Date: and Cc: headers, display
names and bare addresses. Every SORT below must be answered the same, number for number.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.interop.test_dovecot_condstore import Client
from tools.anchor_dovecot import DovecotInstance, dovecot_binary, start_dovecot

from pobox.server import Running

pytestmark = pytest.mark.interop

USER = "sorter@example.org"
PASSWORD = "secret"

# (From, To, Cc, Subject, Date or None, internal date, body size)
MESSAGES = [
    (
        "Alice Martin <alice@example.org>",
        "bob@example.org",
        "",
        "Re: Plan",
        "Mon, 05 Jan 2026 10:00:00 +0000",
        "05-Jan-2026 12:00:00 +0000",
        10,
    ),
    (
        "bob@example.org",
        "Carol <carol@example.org>",
        "dave@example.org",
        "plan",
        "Sun, 04 Jan 2026 10:00:00 +0100",
        "04-Jan-2026 12:00:00 +0000",
        300,
    ),
    (
        '"Zed, Zoe" <zoe@example.org>',
        "alice@example.org",
        "",
        "[team] Budget",
        None,
        "03-Jan-2026 12:00:00 +0000",
        50,
    ),
    (
        "Carol <carol@example.org>",
        "Alice Martin <alice@example.org>",
        "bob@example.org",
        "Fwd: budget (fwd)",
        "Sat, 03 Jan 2026 09:00:00 -0500",
        "06-Jan-2026 12:00:00 +0000",
        50,
    ),
    (
        "dave@example.org",
        "Zoe <zoe@example.org>",
        "",
        "[Fwd: Re: zebra]",
        "Fri, 02 Jan 2026 10:00:00 +0000",
        "02-Jan-2026 12:00:00 +0000",
        1000,
    ),
    (
        "Alice Martin <alice@example.org>",
        "dave@example.org",
        "carol@example.org",
        "apple",
        "Fri, 02 Jan 2026 10:00:00 +0000",
        "07-Jan-2026 12:00:00 +0000",
        10,
    ),
    (
        "bob@example.org",
        "bob@example.org",
        "",
        "RE: re: Apple",
        "Thu, 01 Jan 2026 10:00:00 +0000",
        "08-Jan-2026 12:00:00 +0000",
        700,
    ),
    (
        "Zoe <zoe@example.org>",
        "Carol <carol@example.org>",
        "",
        "Re [team]: Plan",
        "Wed, 07 Jan 2026 10:00:00 +0000",
        "01-Jan-2026 12:00:00 +0000",
        20,
    ),
    (
        "carol@example.org",
        "alice@example.org",
        "alice@example.org",
        "zebra",
        None,
        "09-Jan-2026 12:00:00 +0000",
        20,
    ),
    (
        "Dave <dave@example.org>",
        "Bob <bob@example.org>",
        "",
        "Budget",
        "Tue, 06 Jan 2026 10:00:00 +0000",
        "10-Jan-2026 12:00:00 +0000",
        5,
    ),
    (
        "alice@example.org",
        "zoe@example.org",
        "zoe@example.org",
        "Hello   there",
        "Tue, 06 Jan 2026 10:00:00 +0000",
        "11-Jan-2026 12:00:00 +0000",
        5,
    ),
    (
        "Bob <bob@example.org>",
        "Dave <dave@example.org>",
        "",
        "hello there",
        "Mon, 05 Jan 2026 10:00:00 +0000",
        "12-Jan-2026 12:00:00 +0000",
        400,
    ),
]

SORTS = [
    "SORT (ARRIVAL) UTF-8 ALL",
    "SORT (REVERSE ARRIVAL) UTF-8 ALL",
    "SORT (DATE) UTF-8 ALL",
    "SORT (REVERSE DATE) UTF-8 ALL",
    "SORT (SUBJECT) UTF-8 ALL",
    "SORT (SUBJECT REVERSE DATE) UTF-8 ALL",
    "SORT (FROM) UTF-8 ALL",
    "SORT (TO ARRIVAL) UTF-8 ALL",
    "SORT (CC) UTF-8 ALL",
    "SORT (SIZE) UTF-8 ALL",
    "SORT (REVERSE SIZE SUBJECT) UTF-8 ALL",
    "SORT (DISPLAYFROM) UTF-8 ALL",
    "SORT (DISPLAYTO) UTF-8 ALL",
    "UID SORT (SUBJECT) US-ASCII FROM alice",
    "SORT (DATE) UTF-8 SEEN",
    "SORT (DATE) UTF-8 UNSEEN LARGER 15",
    "UID SORT RETURN (MIN MAX COUNT) (SUBJECT) UTF-8 ALL",
    "SORT RETURN (ALL) (REVERSE DATE) UTF-8 ALL",
    "SORT RETURN () (SIZE) UTF-8 ALL",
    "SORT RETURN (COUNT) (ARRIVAL) UTF-8 SUBJECT nothing-like-this",
    "SORT (ARRIVAL) KOI8-R ALL",
    "SORT (ARRIVAL) X-NO-SUCH-CHARSET ALL",
    "SORT (NOSUCHKEY) UTF-8 ALL",
]


def _message(n: int) -> bytes:
    sender, to, cc, subject, date, _, size = MESSAGES[n]
    header = f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
    header += f"Cc: {cc}\r\n" if cc else ""
    header += f"Date: {date}\r\n" if date else ""
    header += f"Message-ID: <sort-{n}@example.org>\r\n"
    return f"{header}\r\n{'x' * size}\r\n".encode()


def scenario(port: int) -> dict[str, list[str]]:
    client = Client(port)
    client.command(f"LOGIN {USER} {PASSWORD}")
    for n in range(len(MESSAGES)):
        client.command(f'APPEND INBOX "{MESSAGES[n][5]}"', _message(n))
    client.command("SELECT INBOX")
    client.command("STORE 2,5,9 +FLAGS.SILENT (\\Seen)")
    answers = {}
    for command in SORTS:
        lines = client.command(command)
        # status texts and response codes are each server's own wording
        answers[command] = [
            line if not line.startswith("TAG ") else line.split()[1] for line in lines
        ]
    client.close()
    return answers


@pytest.fixture
def dovecot(tmp_path: Path) -> Iterator[DovecotInstance]:
    assert dovecot_binary() is not None, "dovecot is not installed"  # CI installs it
    instance = start_dovecot(tmp_path / "dovecot", {USER: PASSWORD}, fsync=False)
    try:
        yield instance
    finally:
        instance.stop()


async def test_sort_answers_match_dovecot(running: Running, dovecot: DovecotInstance) -> None:
    await running.service.accounts.add(USER, PASSWORD)
    ours = await asyncio.to_thread(scenario, running.port("imap"))
    theirs = await asyncio.to_thread(scenario, dovecot.imap_port)
    for command in SORTS:
        assert ours[command] == theirs[command], command
