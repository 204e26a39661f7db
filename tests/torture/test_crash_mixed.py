"""SIGKILL at random moments during mixed traffic on every protocol, several rounds.

While the server is killed and restarted, clients keep going: SMTP and LMTP deliveries,
IMAP APPEND / UID STORE / UID EXPUNGE / UID MOVE, POP3 DELE + QUIT. After each restart, what the
server acknowledged holds (DESIGN.md rule 5): every acknowledged message is present and whole,
every acknowledged flag is set, every acknowledged expunge and DELE + QUIT is gone, and
``pobox check`` finds the store consistent.
"""

from __future__ import annotations

import contextlib
import imaplib
import poplib
import random
import re
import smtplib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.helpers.servers import ServerProcess, server_process, wait_port

DELIVER = "deliver@localhost"
IMAP_USER = "imap@localhost"
POP_USER = "pop@localhost"
PASSWORD = "pw"
ROUNDS = 4


def body(tag: str) -> bytes:
    filler = b"".join(b"line %d of %s\r\n" % (i, tag.encode()) for i in range(30))
    return b"Subject: %s\r\nMessage-ID: <%s@test>\r\n\r\n" % (tag.encode(), tag.encode()) + filler


@dataclass
class Ledger:
    """What the server acknowledged, per account: tag → message; plus flags and removals."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    present: dict[str, dict[str, bytes]] = field(default_factory=dict)
    gone: dict[str, set[str]] = field(default_factory=dict)
    flagged: set[str] = field(default_factory=set)
    moved: set[str] = field(default_factory=set)  # in the imap account's "Archive"
    # removals asked for but not acknowledged (the kill came first): either outcome is right
    doubtful: dict[str, set[str]] = field(default_factory=dict)

    def doubt(self, account: str, tags: list[str]) -> None:
        with self.lock:
            self.doubtful.setdefault(account, set()).update(tags)

    def add(self, account: str, tag: str, content: bytes) -> None:
        with self.lock:
            self.present.setdefault(account, {})[tag] = content

    def remove(self, account: str, tags: list[str]) -> None:
        with self.lock:
            for tag in tags:
                self.present.get(account, {}).pop(tag, None)
                self.gone.setdefault(account, set()).add(tag)


class Traffic:
    def __init__(self, server: ServerProcess, ledger: Ledger, seed: int) -> None:
        self.ports = dict(server.ports)
        self.ledger = ledger
        self.rng = random.Random(seed)
        self.counter = seed * 100000
        self.count_lock = threading.Lock()
        self.stop = threading.Event()

    def tag(self, kind: str) -> str:
        with self.count_lock:
            self.counter += 1
            return f"{kind}-{self.counter}"

    def run(self, target: object) -> threading.Thread:
        def loop() -> None:
            while not self.stop.is_set():
                try:
                    target()  # type: ignore[operator]
                except (
                    OSError,
                    EOFError,
                    smtplib.SMTPException,
                    imaplib.IMAP4.error,
                    poplib.error_proto,
                ):
                    time.sleep(0.05)  # the server is down: try again

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        return thread

    # -- clients ---------------------------------------------------------------------------
    def smtp(self) -> None:
        with smtplib.SMTP("127.0.0.1", self.ports["smtp"], timeout=10) as client:
            for _ in range(20):
                tag = self.tag("smtp")
                content = body(tag)
                client.sendmail("x@test", [DELIVER], content)
                self.ledger.add(DELIVER, tag, content)

    def lmtp(self) -> None:
        with smtplib.LMTP("127.0.0.1", self.ports["lmtp"], timeout=10) as client:
            client.ehlo("test")
            for _ in range(20):
                tag = self.tag("lmtp")
                content = body(tag)
                recipients = [DELIVER, POP_USER]
                refused = client.sendmail("x@test", recipients, content)
                assert not refused
                self.ledger.add(DELIVER, tag, content)
                self.ledger.add(POP_USER, tag, content)

    def imap(self) -> None:
        client = imaplib.IMAP4("127.0.0.1", self.ports["imap"], timeout=10)
        try:
            client.login(IMAP_USER, PASSWORD)
            with contextlib.suppress(imaplib.IMAP4.error):
                client.create("Archive")
            client.select("INBOX")
            for _ in range(10):
                tag = self.tag("imap")
                content = body(tag)
                status, data = client.append("INBOX", None, None, content)
                assert status == "OK", data
                self.ledger.add(IMAP_USER, tag, content)
                match = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
                assert match, data
                uid = match.group(1).decode()
                action = self.rng.choice(["keep", "flag", "expunge", "move"])
                if action == "flag":
                    status, _ = client.uid("STORE", uid, "+FLAGS", "(\\Flagged)")
                    if status == "OK":
                        with self.ledger.lock:
                            self.ledger.flagged.add(tag)
                elif action == "expunge":
                    self.ledger.doubt(IMAP_USER, [tag])
                    client.uid("STORE", uid, "+FLAGS", "(\\Deleted)")
                    status, _ = client.uid("EXPUNGE", uid)
                    if status == "OK":
                        self.ledger.remove(IMAP_USER, [tag])
                elif action == "move":
                    status, _ = client.uid("MOVE", uid, "Archive")
                    if status == "OK":
                        with self.ledger.lock:
                            self.ledger.moved.add(tag)
            client.logout()
        finally:
            with contextlib.suppress(Exception):
                client.shutdown()

    def pop3(self) -> None:
        client = poplib.POP3("127.0.0.1", self.ports["pop3"], timeout=10)
        try:
            client.user(POP_USER)
            client.pass_(PASSWORD)
            _, listing, _ = client.list()
            deleted: list[str] = []
            for entry in listing[:5]:
                number = int(entry.split()[0])
                _, lines, _ = client.top(number, 0)
                subject = next(x for x in lines if x.startswith(b"Subject: "))
                client.dele(number)
                deleted.append(subject.removeprefix(b"Subject: ").decode())
            self.ledger.doubt(POP_USER, deleted)
            answer = client.quit()
            if answer.startswith(b"+OK"):
                self.ledger.remove(POP_USER, deleted)
        finally:
            with contextlib.suppress(Exception):
                client.close()
        time.sleep(0.05)


def mailbox_contents(port: int, account: str, mailbox: str) -> dict[str, tuple[bytes, bytes]]:
    """tag → (flags, content) of every message in a mailbox, read over IMAP."""
    client = imaplib.IMAP4("127.0.0.1", port, timeout=30)
    try:
        client.login(account, PASSWORD)
        status, data = client.select(mailbox, readonly=True)
        if status != "OK" and mailbox != "INBOX":
            return {}  # not created yet
        assert status == "OK", data
        found: dict[str, tuple[bytes, bytes]] = {}
        if int(data[0] or b"0") == 0:
            return found
        status, items = client.fetch("1:*", "(FLAGS BODY.PEEK[])")
        assert status == "OK"
        for item in items:
            if not isinstance(item, tuple):
                continue
            head, content = item
            flags = re.search(rb"FLAGS \(([^)]*)\)", head)
            subject = re.search(rb"Subject: (\S+)", content)
            assert subject is not None, content[:200]
            found[subject.group(1).decode()] = (flags.group(1) if flags else b"", content)
        client.logout()
        return found
    finally:
        with contextlib.suppress(Exception):
            client.shutdown()


def verify(server: ServerProcess, ledger: Ledger) -> None:
    port = server.ports["imap"]
    with ledger.lock:
        present = {a: dict(m) for a, m in ledger.present.items()}
        gone = {a: set(t) for a, t in ledger.gone.items()}
        flagged = set(ledger.flagged)
        moved = set(ledger.moved)
        doubtful = {a: set(t) for a, t in ledger.doubtful.items()}
    for account in (DELIVER, IMAP_USER, POP_USER):
        stored = mailbox_contents(port, account, "INBOX")
        if account == IMAP_USER:
            stored.update(mailbox_contents(port, account, "Archive"))
        expected = present.get(account, {})
        missing = sorted(set(expected) - set(stored) - doubtful.get(account, set()))
        assert not missing, f"{account}: acknowledged but lost: {missing[:10]}"
        for tag, content in expected.items():
            if tag not in stored:
                continue  # doubtful, see above
            assert stored[tag][1].endswith(content), f"{account}: {tag} is not whole"
        back = sorted(gone.get(account, set()) & set(stored))
        assert not back, f"{account}: acknowledged removal undone: {back[:10]}"
        if account == IMAP_USER:
            for tag in flagged & set(stored):
                assert b"\\Flagged" in stored[tag][0], f"{tag} lost its acknowledged flag"
    archive = mailbox_contents(port, IMAP_USER, "Archive")
    assert not (moved - set(archive)) - gone.get(IMAP_USER, set()), "a moved message is lost"
    check = server.cli("check")
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    assert b"consistent" in check.stdout


def restart(server: ServerProcess) -> None:
    server.log.write_bytes(b"")  # wait_serving counts the lines of this run only
    server.start()
    for name in ("imap", "pop3", "smtp", "lmtp"):
        wait_port(server.ports[name], proc=server.proc)


# clients cut off by SIGKILL leave sockets to the garbage collector (poplib, imaplib)
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.torture
def test_sigkill_during_mixed_traffic(tmp_path: Path) -> None:
    rng = random.Random(2024)
    ledger = Ledger()
    users = {DELIVER: PASSWORD, IMAP_USER: PASSWORD, POP_USER: PASSWORD}
    with server_process(tmp_path, users) as server:
        for round_ in range(ROUNDS):
            traffic = Traffic(server, ledger, round_)
            threads = [
                traffic.run(traffic.smtp),
                traffic.run(traffic.lmtp),
                traffic.run(traffic.imap),
                traffic.run(traffic.imap),
                traffic.run(traffic.pop3),
            ]
            try:
                time.sleep(rng.uniform(0.8, 2.5))
                server.kill()  # mid-traffic
            finally:
                traffic.stop.set()
                for thread in threads:
                    thread.join(30)
            time.sleep(0.1)
            restart(server)
            verify(server, ledger)
        with ledger.lock:
            acknowledged = sum(len(m) for m in ledger.present.values())
            removed = sum(len(t) for t in ledger.gone.values())
        assert acknowledged > 50 and removed > 5, (acknowledged, removed)
