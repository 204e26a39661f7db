"""The running server fills the full-text index by itself, in a niced process of its own that
ends with the server (docs/decisions/full-text-search.md)."""

from __future__ import annotations

import asyncio
import imaplib
import os
import signal
import smtplib
import time
from pathlib import Path

from tests.helpers.servers import server_process

from pobox.store.factory import create_store

USER, PASSWORD = "idx@example.org", "secret-pw"


def _children(pid: int) -> list[int]:
    """The processes *pid* spawned through multiprocessing."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            cmdline = (entry / "cmdline").read_bytes()
            # spawned workers, not multiprocessing's resource tracker
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"spawn_main" in cmdline:
                found.append(int(entry.name))
    return found


def _nice(pid: int) -> int:
    return int((Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1]).split()[16])


def _alive(pid: int) -> bool:
    try:
        state = (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1]).split()[0]
    except OSError:
        return False
    return state != "Z"


def _unindexed(data: Path) -> int:
    async def count() -> int:
        store = create_store("sqlite", data)
        await store.open()
        try:
            return len(await store.unindexed_contents(1000))
        finally:
            await store.close()

    return asyncio.run(count())


def _wait(condition: object, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def test_the_server_indexes_new_mail_in_a_niced_process_that_ends_with_it(tmp_path: Path) -> None:
    with server_process(tmp_path, {USER: PASSWORD}) as server:
        assert server.proc is not None
        pid = server.proc.pid
        assert _wait(lambda: _children(pid)), "no indexer process"
        indexers = _children(pid)
        assert len(indexers) == 1, indexers  # the indexer (one worker: no other children)
        assert _wait(lambda: _nice(indexers[0]) >= 10), "the indexer runs at the server's priority"
        with smtplib.LMTP("127.0.0.1", server.ports["lmtp"]) as lmtp:
            for n in range(120):
                word = "marmalade" if n % 40 == 7 else "toast"
                lmtp.sendmail(
                    "a@example.org",
                    [USER],
                    f"Subject: breakfast {n}\r\n\r\nwith {word} number {n}\r\n".encode(),
                )
        assert _wait(lambda: _unindexed(server.data) == 0), "the indexer did not catch up"
        imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"])
        imap.login(USER, PASSWORD)
        imap.select("INBOX", readonly=True)
        _, data = imap.uid("SEARCH", "BODY", "MARMALADE")
        assert data[0] is not None and len(data[0].split()) == 3
        imap.logout()
        # the server dies without a word: the indexer notices and goes too
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(10)
        assert _wait(lambda: not _alive(indexers[0]), 15.0), "the indexer outlived the server"


def test_reindex_rebuilds_one_account_or_says_what_is_wrong(tmp_path: Path) -> None:
    with server_process(tmp_path, {USER: PASSWORD, "other@example.org": "pw-other"}) as server:
        with smtplib.LMTP("127.0.0.1", server.ports["lmtp"]) as lmtp:
            for n in range(5):
                lmtp.sendmail("a@example.org", [USER], f"Subject: s{n}\r\n\r\nbody {n}\r\n")
            lmtp.sendmail("a@example.org", ["other@example.org"], b"Subject: x\r\n\r\nother\r\n")
        assert _wait(lambda: _unindexed(server.data) == 0)
        done = server.cli("reindex", USER)
        assert "reindex: done, 5/5 messages (100%)" in done.stderr.decode()
        missing = server.cli("reindex", "--missing")
        assert "reindex: done, 0 messages" in missing.stderr.decode()
        unknown = server.cli("reindex", "nobody@example.org", check=False)
        assert unknown.returncode == 1
        assert unknown.stderr.decode().strip() == "pobox: no account nobody@example.org"
