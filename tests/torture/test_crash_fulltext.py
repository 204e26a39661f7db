"""SIGKILL of the server and its indexer in the middle of deliveries and indexing: afterwards the
full-text index holds exactly the committed contents, and SEARCH over IMAP answers what a client
reading every message would find (docs/decisions/full-text-search.md)."""

from __future__ import annotations

import asyncio
import imaplib
import smtplib
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from tests.helpers.servers import server_process

from pobox.store.factory import create_store

USER, PASSWORD = "crash@example.org", "crash-pw"
WORDS = ("aubergine", "brioche", "cardamom", "dumpling")


def message(n: int) -> bytes:
    words = " ".join(WORDS[i] for i in range(len(WORDS)) if n % (i + 2) == 0)
    filler = "".join(f"line {i} of message {n}\r\n" for i in range(40))
    return f"Subject: crash {n}\r\n\r\n{words or 'plain'}\r\n{filler}".encode()


def deliver(port: int, start: int, stop: threading.Event) -> None:
    try:
        with smtplib.LMTP("127.0.0.1", port, timeout=20) as lmtp:
            n = start
            while not stop.is_set():
                lmtp.sendmail("a@example.org", [USER], message(n))
                n += 4
    except (OSError, smtplib.SMTPException):
        return  # the server died under us: expected


def unindexed(data: Path) -> int:
    async def count() -> int:
        store = create_store("sqlite", data)
        await store.open()
        try:
            return len(await store.unindexed_contents(10_000))
        finally:
            await store.close()

    return asyncio.run(count())


@pytest.mark.torture
def test_index_holds_exactly_the_committed_contents_after_a_crash(tmp_path: Path) -> None:
    with server_process(tmp_path, {USER: PASSWORD}) as server:
        stop = threading.Event()
        clients = [
            threading.Thread(target=deliver, args=(server.ports["lmtp"], n, stop), daemon=True)
            for n in range(4)
        ]
        for thread in clients:
            thread.start()
        time.sleep(2.5)  # deliveries and indexing under way
        server.kill()  # SIGKILL to the whole process group: workers and indexer
        stop.set()
        for thread in clients:
            thread.join(30)
        server.start()
        deadline = time.monotonic() + 60
        while unindexed(server.data) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert unindexed(server.data) == 0, "the indexer did not catch up after the restart"
        with sqlite3.connect(server.data / "pobox.db") as db:
            indexed = {r[0] for r in db.execute("SELECT id FROM blobs WHERE text_state = 1")}
            rows = [r[0] for r in db.execute("SELECT rowid FROM text_index")]
            fields = [r[0] for r in db.execute("SELECT rowid FROM field_index")]
        assert sorted(rows) == sorted(indexed) == sorted(fields)  # nothing more, nothing less
        imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"])
        imap.login(USER, PASSWORD)
        imap.select("INBOX", readonly=True)
        _, data = imap.uid("FETCH", "1:*", "(BODY.PEEK[TEXT])")
        bodies: dict[int, bytes] = {}
        for item in data:
            if isinstance(item, tuple):
                uid = int(item[0].split(b"UID ")[1].split()[0])
                bodies[uid] = item[1]
        assert len(bodies) > 50
        for word in WORDS:
            _, found = imap.uid("SEARCH", "BODY", word.upper())
            got = sorted(int(u) for u in (found[0] or b"").split())
            assert got == sorted(u for u, body in bodies.items() if word.encode() in body), word
        imap.logout()
