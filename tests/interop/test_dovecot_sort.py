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


# ---- THREAD (RFC 5256 §2.1, §2.2) ------------------------------------------------------------

# (Message-ID or None, References, In-Reply-To, Subject, day of January 2026 or None)
THREADED = [
    ("<a1@x>", "", "", "Plan", 1),
    ("<b1@x>", "<a1@x>", "", "Re: Plan", 2),
    ("<c1@x>", "<a1@x> <b1@x>", "", "Re: Plan", 3),
    ("<d1@x>", "<missing@x>", "", "Re: Lost parent", 5),
    ("<e1@x>", "<missing@x>", "", "Re: Lost parent", 4),
    ("<f1@x>", "", "", "Plan", 6),
    ("<g1@x>", "", "<b1@x>", "Re: Plan", 7),
    (None, "", "", "Solo", 8),
    ("<a1@x>", "", "", "Duplicate id", 9),
    ("<j1@x>", "<j1@x>", "", "Loop to itself", 10),
    ("<k1@x>", "<m1@x>", "", "Loop", 11),
    ("<m1@x>", "<k1@x>", "", "Re: Loop", 12),
    ("<n1@x>", "", "", "Fwd: Plan", 13),
    ("<o1@x>", "", "", "[list] Other", None),
    ("<p1@x>", "", "", "Re: [list] Other", 14),
    ("<q1@x>", "<zz@x> <yy@x>", "<ignored@x>", "Deep", 15),
    ("<r1@x>", "<zz@x>", "", "Deep too", 16),
]
THREADS = [
    "THREAD REFERENCES UTF-8 ALL",
    "UID THREAD REFERENCES UTF-8 ALL",
    "THREAD ORDEREDSUBJECT UTF-8 ALL",
    "UID THREAD ORDEREDSUBJECT US-ASCII ALL",
    "THREAD REFERENCES UTF-8 SUBJECT plan",
    "THREAD REFERENCES UTF-8 NOT SUBJECT plan",
    "THREAD REFERENCES UTF-8 DELETED",
]


def _threaded(n: int) -> bytes:
    message_id, refs, reply_to, subject, day = THREADED[n]
    header = f"From: t{n}@example.org\r\nSubject: {subject}\r\n"
    header += f"Message-ID: {message_id}\r\n" if message_id else ""
    header += f"References: {refs}\r\n" if refs else ""
    header += f"In-Reply-To: {reply_to}\r\n" if reply_to else ""
    header += f"Date: {day:02d} Jan 2026 10:00:00 +0000\r\n" if day else ""
    return f"{header}\r\nbody\r\n".encode()


def thread_scenario(port: int) -> dict[str, list[str]]:
    client = Client(port)
    client.command(f"LOGIN {USER} {PASSWORD}")
    client.command("CREATE Threads")
    for n in range(len(THREADED)):
        client.command(f'APPEND Threads "{20 - n:02d}-Feb-2026 12:00:00 +0000"', _threaded(n))
    client.command("SELECT Threads")
    answers = {}
    for command in THREADS:
        lines = client.command(command)
        answers[command] = [
            line if not line.startswith("TAG ") else line.split()[1] for line in lines
        ]
    client.close()
    return answers


async def test_thread_answers_match_dovecot(running: Running, dovecot: DovecotInstance) -> None:
    await running.service.accounts.add(USER, PASSWORD)
    ours = await asyncio.to_thread(thread_scenario, running.port("imap"))
    theirs = await asyncio.to_thread(thread_scenario, dovecot.imap_port)
    for command in THREADS:
        # with no thread Dovecot writes "* THREAD " (a space the ABNF of RFC 5256 §5 does not
        # have: thread-data = "THREAD" [SP 1*thread-list]); pobox writes "* THREAD"
        assert ours[command] == [line.rstrip() for line in theirs[command]], command
    assert ours["THREAD REFERENCES UTF-8 DELETED"][0] == "* THREAD"
