"""SAVEDATE (RFC 8514) with Python's imaplib: when a message was saved to its mailbox, as FETCH
SAVEDATE and the SAVEDBEFORE / SAVEDON / SAVEDSINCE / SAVEDATESUPPORTED search keys."""

from __future__ import annotations

import imaplib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from tests.helpers.servers import ServerProcess, server_process

pytestmark = pytest.mark.interop

ACCOUNT = "saver@localhost"
PASSWORD = "secret"
OLD = b"From: a@example.org\r\nSubject: from 1999\r\n\r\nold\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with server_process(tmp_path_factory.mktemp("imap-savedate")) as srv:
        srv.cli("user", "add", ACCOUNT, "--password-stdin", stdin=PASSWORD.encode() + b"\n")
        yield srv


def imap_day(day: datetime) -> str:
    return day.strftime("%d-%b-%Y")


def search(client: imaplib.IMAP4, *criteria: str) -> list[bytes]:
    typ, data = client.search(None, *criteria)
    assert typ == "OK", data
    return data[0].split() if data[0] else []


def test_save_dates_are_when_the_message_came_into_the_mailbox(server: ServerProcess) -> None:
    client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    try:
        client.login(ACCOUNT, PASSWORD)
        assert "SAVEDATE" in client.capability()[1][0].decode().split()
        before = datetime.now(UTC).replace(microsecond=0)
        # an internal date in 1999, saved now
        typ, _ = client.append("INBOX", None, '"01-Jan-1999 10:00:00 +0000"', OLD)
        assert typ == "OK"
        client.select("INBOX")
        typ, data = client.fetch("1", "(INTERNALDATE SAVEDATE)")
        assert typ == "OK"
        text = data[0].decode() if isinstance(data[0], bytes) else ""
        assert 'INTERNALDATE "01-Jan-1999 10:00:00 +0000"' in text
        match = re.search(r'SAVEDATE "([^"]+)"', text)
        assert match is not None, text
        saved = datetime.strptime(match.group(1), "%d-%b-%Y %H:%M:%S %z")
        assert before - timedelta(seconds=1) <= saved <= datetime.now(UTC) + timedelta(seconds=1)

        today, tomorrow = datetime.now(UTC), datetime.now(UTC) + timedelta(days=1)
        assert search(client, "BEFORE", "1-Jan-2000") == [b"1"]  # the internal date
        assert search(client, "SAVEDBEFORE", "1-Jan-2000") == []  # the save date
        assert search(client, "SAVEDSINCE", imap_day(today - timedelta(days=1))) == [b"1"]
        assert search(client, "SAVEDBEFORE", imap_day(tomorrow + timedelta(days=1))) == [b"1"]
        assert search(client, "SAVEDATESUPPORTED") == [b"1"]
        assert search(client, "NOT", "SAVEDATESUPPORTED") == []
        # a copy is saved anew (RFC 8514 §3: COPY and MOVE set the save date)
        assert client.create("Kept")[0] == "OK"
        assert client.copy("1", "Kept")[0] == "OK"
        client.select("Kept")
        typ, data = client.fetch("1", "(SAVEDATE)")
        copied = re.search(rb'SAVEDATE "([^"]+)"', data[0] if isinstance(data[0], bytes) else b"")
        assert copied is not None
        assert datetime.strptime(copied.group(1).decode(), "%d-%b-%Y %H:%M:%S %z") >= saved
    finally:
        client.logout()
