"""SIGKILL in the middle of a burst of LMTP deliveries: every message that got its 250 survives.

DESIGN.md rule 5: durable before acknowledged. The server runs as a subprocess; four LMTP clients
deliver uniquely numbered messages; the server is killed with SIGKILL mid-burst; after a restart
every acknowledged message is in the store, byte for byte, and `pobox check` finds no problem.
"""

from __future__ import annotations

import random
import smtplib
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from tests.helpers.servers import server_process

TOTAL = 1000
CLIENTS = 4


def message(n: int) -> bytes:
    filler = b"".join(b"line %d of message %d\r\n" % (i, n) for i in range(20))
    return b"Subject: crash %d\r\nMessage-ID: <crash-%d@test>\r\n\r\n" % (n, n) + filler


def client(port: int, numbers: list[int], acked: set[int], lock: threading.Lock) -> None:
    try:
        lmtp = smtplib.LMTP("127.0.0.1", port, timeout=20)
        lmtp.ehlo("crash.test")
        for n in numbers:
            lmtp.sendmail("crash@test", ["demo@localhost"], message(n))
            with lock:
                acked.add(n)
    except (OSError, smtplib.SMTPException):
        return  # the server died under us: expected


def stored_messages(data: Path) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    with sqlite3.connect(data / "pobox.db") as db:
        rows = db.execute(
            "SELECT b.name FROM messages m JOIN blobs b ON b.id = m.blob"
            " JOIN mailboxes x ON x.id = m.mailbox_id WHERE x.name = 'INBOX'"
        ).fetchall()
    for (name,) in rows:
        content = (data / "messages" / name[:2] / name).read_bytes()
        marker = content.index(b"Subject: crash ") + len(b"Subject: crash ")
        number = int(content[marker : content.index(b"\r\n", marker)])
        found[number] = content
    return found


@pytest.mark.torture
@pytest.mark.parametrize("round_", range(3))
def test_sigkill_during_lmtp_burst_loses_nothing_acknowledged(tmp_path: Path, round_: int) -> None:
    rng = random.Random(round_)
    acked: set[int] = set()
    lock = threading.Lock()
    with server_process(tmp_path, {"demo@localhost": "demo"}) as server:
        port = server.ports["lmtp"]
        share = [list(range(i, TOTAL, CLIENTS)) for i in range(CLIENTS)]
        threads = [
            threading.Thread(target=client, args=(port, nums, acked, lock)) for nums in share
        ]
        for thread in threads:
            thread.start()
        # kill once a random share of the burst has been acknowledged
        target = rng.randint(50, 600)
        deadline = time.monotonic() + 60
        while len(acked) < target and time.monotonic() < deadline:
            time.sleep(0.002)
        server.kill()
        for thread in threads:
            thread.join(30)
        killed_at = len(acked)
        assert 0 < killed_at < TOTAL, "the kill did not land mid-burst"

        # restart on the same data: the store opens, and holds every acknowledged message
        server.start()
        found = stored_messages(server.data)
        missing = sorted(acked - set(found))
        assert not missing, f"acknowledged but lost: {missing[:10]}"
        for n, content in found.items():
            assert content.endswith(message(n)), f"message {n} is not whole"
        check = server.cli("check")
        assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
        assert b"consistent" in check.stdout
