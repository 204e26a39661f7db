"""A full disk: the data directory on a tiny tmpfs, filled up under a running `pobox serve`.

Message files and the SQLite database both hit ENOSPC. Every protocol must answer with a
temporary failure only (SMTP/LMTP 4xx, IMAP ``NO [UNAVAILABLE]``/``[SERVERBUG]``, POP3
``-ERR [SYS/TEMP]``), nothing acknowledged may be lost, and once space is freed the server works
again by itself. The test mounts the tmpfs itself (it runs as root, as CI does) and unmounts it.
Also covered: ``pobox check`` reports a message file left without its message, ``--repair``
removes it.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import poplib
import re
import smtplib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers.servers import LISTENERS, ServerProcess, free_port, wait_port, write_config

ACCOUNT = "full@localhost"
PASSWORD = "pw"
SIZE_MB = 12

pytestmark = [
    pytest.mark.torture,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@contextlib.contextmanager
def tmpfs(path: Path, size_mb: int) -> Iterator[Path]:
    path.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, (
        "this test mounts a tmpfs and needs root (CAP_SYS_ADMIN): " + result.stderr.decode()
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def message(n: int, size: int) -> bytes:
    line = b"x" * 76 + b"\r\n"
    return b"Subject: full-%d\r\nMessage-ID: <full-%d@test>\r\n\r\n" % (n, n) + line * (size // 78)


def free_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def fill(mount: Path, leave: int) -> Path:
    """A file that takes all but *leave* bytes of the filesystem."""
    filler = mount / "filler"
    with open(filler, "ab") as fp:
        while free_bytes(mount) > leave + (1 << 20):
            fp.write(b"\0" * (1 << 20))
        remaining = max(free_bytes(mount) - leave, 0)
        with contextlib.suppress(OSError):
            fp.write(b"\0" * remaining)
    return filler


def stored(port: int) -> dict[int, bytes]:
    client = imaplib.IMAP4("127.0.0.1", port, timeout=30)
    try:
        client.login(ACCOUNT, PASSWORD)
        status, data = client.select("INBOX", readonly=True)
        assert status == "OK", data
        found: dict[int, bytes] = {}
        if int(data[0] or b"0"):
            status, items = client.fetch("1:*", "(BODY.PEEK[])")
            assert status == "OK", items
            for item in items:
                if isinstance(item, tuple):
                    number = re.search(rb"Subject: full-(\d+)", item[1])
                    assert number is not None
                    found[int(number.group(1))] = item[1]
        client.logout()
        return found
    finally:
        with contextlib.suppress(Exception):
            client.shutdown()


def test_disk_full_gives_temporary_failures_and_loses_nothing(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "mnt", SIZE_MB) as mount:
        data = mount / "data"
        ports = {name: free_port() for name in LISTENERS}
        config = write_config(tmp_path / "pobox.toml", data, ports)
        server = ServerProcess(data, config, ports, tmp_path / "server.log")  # log off the tmpfs
        server.cli("user", "add", ACCOUNT, "--password-stdin", stdin=PASSWORD.encode() + b"\n")
        server.start()
        try:
            for name in ("imap", "pop3", "smtp", "lmtp"):
                wait_port(ports[name], proc=server.proc)
            run_scenario(server, mount)
        finally:
            server.stop()


def run_scenario(server: ServerProcess, mount: Path) -> None:
    ports = server.ports
    acked: dict[int, bytes] = {}
    # some mail for POP3 to delete later, while there is room
    with smtplib.LMTP("127.0.0.1", ports["lmtp"], timeout=30) as lmtp:
        for n in range(5):
            content = message(n, 2000)
            assert lmtp.sendmail("a@test", [ACCOUNT], content) == {}
            acked[n] = content

    filler = fill(mount, leave=400_000)
    temporary = 0
    with smtplib.LMTP("127.0.0.1", ports["lmtp"], timeout=30) as lmtp:
        for n in range(100, 130):  # LMTP: per-recipient replies
            content = message(n, 60_000)
            try:
                refused = lmtp.sendmail("a@test", [ACCOUNT], content)
            except smtplib.SMTPRecipientsRefused as exc:
                refused = exc.recipients
            except smtplib.SMTPDataError as exc:
                refused = {ACCOUNT: (exc.smtp_code, exc.smtp_error)}
            if refused:
                code = refused[ACCOUNT][0]
                assert 400 <= code < 500, refused
                temporary += 1
            else:
                acked[n] = content
    assert temporary, "the disk never filled up"
    with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=30) as smtp:
        for n in range(200, 205):  # SMTP
            content = message(n, 60_000)
            try:
                smtp.sendmail("a@test", [ACCOUNT], content)
            except smtplib.SMTPDataError as exc:
                assert 400 <= exc.smtp_code < 500, exc
            else:
                acked[n] = content

    imap = imaplib.IMAP4("127.0.0.1", ports["imap"], timeout=30)
    try:
        imap.login(ACCOUNT, PASSWORD)
        for n in range(300, 305):  # IMAP APPEND
            content = message(n, 60_000)
            status, answer = imap.append("INBOX", None, None, content)
            if status == "OK":
                acked[n] = content
            else:
                text = answer[0] or b""
                assert b"[UNAVAILABLE]" in text or b"[SERVERBUG]" in text, answer
        imap.logout()
    finally:
        with contextlib.suppress(Exception):
            imap.shutdown()

    # POP3 DELE + QUIT on a full disk: either done (+OK) or a temporary -ERR, never half
    pop = poplib.POP3("127.0.0.1", ports["pop3"], timeout=30)
    pop.user(ACCOUNT)
    pop.pass_(PASSWORD)
    pop.dele(1)
    try:
        answer = pop.quit()
    except poplib.error_proto as exc:
        assert b"[SYS/TEMP]" in exc.args[0], exc
    else:
        assert answer.startswith(b"+OK")
        acked.pop(0)  # the first message delivered above
    with contextlib.suppress(Exception):
        pop.close()

    assert server.proc is not None and server.proc.poll() is None, "the server died"

    # space comes back: the server recovers by itself
    filler.unlink()
    deadline = time.monotonic() + 20
    while True:
        try:
            with smtplib.LMTP("127.0.0.1", ports["lmtp"], timeout=30) as lmtp:
                content = message(999, 60_000)
                assert lmtp.sendmail("a@test", [ACCOUNT], content) == {}
                acked[999] = content
            break
        except (smtplib.SMTPException, OSError):
            assert time.monotonic() < deadline, "delivery did not recover after space was freed"
            time.sleep(0.5)
    imap = imaplib.IMAP4("127.0.0.1", ports["imap"], timeout=30)
    imap.login(ACCOUNT, PASSWORD)
    assert imap.append("INBOX", None, None, message(998, 1000))[0] == "OK"
    acked[998] = message(998, 1000)
    imap.logout()

    found = stored(ports["imap"])
    missing = sorted(set(acked) - set(found))
    assert not missing, f"acknowledged but lost: {missing}"
    for n, content in acked.items():
        assert found[n].endswith(content), f"message {n} is not whole"
    check = server.cli("check", check=False)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()


def test_check_reports_and_repairs_an_orphaned_message_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ports = {name: free_port() for name in LISTENERS}
    config = write_config(tmp_path / "pobox.toml", data, ports)
    server = ServerProcess(data, config, ports, tmp_path / "server.log")
    server.cli("user", "add", ACCOUNT, "--password-stdin", stdin=PASSWORD.encode() + b"\n")
    server.cli("deliver", ACCOUNT, stdin=message(1, 1000))
    assert b"consistent" in server.cli("check").stdout
    # what a crash between writing a message file and committing it leaves behind
    orphan = data / "messages" / "ab" / ("ab" + "0" * 30)
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(message(2, 1000))
    old = time.time() - 3600
    os.utime(orphan, (old, old))
    report = server.cli("check", check=False)
    assert report.returncode == 1
    assert b"belongs to no message" in report.stdout
    repaired = server.cli("check", "--repair", check=False)
    assert repaired.returncode == 0, repaired.stdout
    assert not orphan.exists()
    assert b"consistent" in server.cli("check").stdout
    # the real message is untouched
    listing = server.cli("mailbox", "list", ACCOUNT).stdout.decode()
    assert any(line.split()[:2] == ["INBOX", "1"] for line in listing.splitlines()), listing
