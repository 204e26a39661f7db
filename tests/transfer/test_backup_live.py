"""A backup of a running server while four LMTP connections deliver, restored into an empty
data directory and into PostgreSQL: real `pobox serve`s on the restored stores serve the same
UIDVALIDITY, UIDs, flags, MODSEQs and FETCH BODY[] bytes over IMAP, and the same UIDLs over
POP3."""

from __future__ import annotations

import imaplib
import json
import poplib
import re
import smtplib
import threading
from pathlib import Path
from typing import Any

import pytest
from tests.helpers.servers import (
    LISTENERS,
    ServerProcess,
    free_port,
    pobox,
    server_process,
    write_config,
)

pytestmark = pytest.mark.interop

USER = "alice@example.org"
PASSWORD = "secret"
PER_CONNECTION = 30


def _message(n: int, conn: int) -> bytes:
    return (
        f"From: sender{conn}@example.net\r\nTo: {USER}\r\nSubject: live {conn}/{n}\r\n"
        f"Message-ID: <live-{conn}-{n}@example.net>\r\n\r\nbody {n} of {conn}\r\n"
        + "line of text\r\n"
        * (n % 7)
    ).encode()


def _deliver(port: int, conn: int, errors: list[BaseException]) -> None:
    try:
        with smtplib.LMTP("127.0.0.1", port, timeout=60) as lmtp:
            for n in range(PER_CONNECTION):
                refused = lmtp.sendmail(f"sender{conn}@example.net", [USER], _message(n, conn))
                assert refused == {}
    except BaseException as exc:
        errors.append(exc)


def _prepare(port: int) -> None:
    """Folders, flags, keywords and an expunge, so that UIDs and MODSEQs are not trivial."""
    imap = imaplib.IMAP4("127.0.0.1", port, timeout=30)
    try:
        imap.login(USER, PASSWORD)
        assert imap.create("Work")[0] == "OK"
        for n in range(6):
            body = _message(n, 9)
            assert imap.append("Work", "(\\Seen $Project)" if n % 2 else "", None, body)[0] == "OK"
        imap.select("Work")
        imap.uid("STORE", "2", "+FLAGS", "(\\Deleted)")
        imap.expunge()
        imap.uid("STORE", "3", "+FLAGS", "(\\Flagged $Urgent)")
        imap.logout()
    except BaseException:
        imap.shutdown()
        raise


_ITEM = re.compile(rb"(UID|MODSEQ) \(?(\d+)\)?")
_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")


def _imap_view(port: int) -> dict[str, Any]:
    imap = imaplib.IMAP4("127.0.0.1", port, timeout=30)
    view: dict[str, Any] = {}
    try:
        imap.login(USER, PASSWORD)
        imap._simple_command("ENABLE", "CONDSTORE")  # type: ignore[attr-defined]
        _status, listing = imap.list()
        names = sorted(
            line.rsplit(b' "/" ', 1)[1].strip(b'"').decode()
            for line in listing
            if isinstance(line, bytes)
        )
        for name in names:
            assert imap.select(name, readonly=True)[0] == "OK"
            uidvalidity = imap.response("UIDVALIDITY")[1][0]
            highest = imap.response("HIGHESTMODSEQ")[1][0]
            _status, data = imap.uid("FETCH", "1:*", "(UID FLAGS MODSEQ BODY.PEEK[])")
            messages = {}
            for item in data:
                if not isinstance(item, tuple):
                    continue
                head, body = item
                fields = {k.decode(): int(v) for k, v in _ITEM.findall(head)}
                flags = _FLAGS.search(head)
                assert flags is not None, head
                messages[fields["UID"]] = (
                    fields["MODSEQ"],
                    sorted(set(flags.group(1).decode().split()) - {"\\Recent"}),
                    body,
                )
            view[name] = (uidvalidity, highest, messages)
            imap.close()
        imap.logout()
    except BaseException:
        imap.shutdown()
        raise
    return view


def _pop_view(port: int) -> list[bytes]:
    pop = poplib.POP3("127.0.0.1", port, timeout=30)
    try:
        pop.user(USER)
        pop.pass_(PASSWORD)
        _resp, lines, _octets = pop.uidl()
        return list(lines)
    finally:
        pop.quit()


def _serve(root: Path, data: Path, store: str | None = None) -> ServerProcess:
    root.mkdir(exist_ok=True)
    ports = {listener: free_port() for listener in LISTENERS}
    config = write_config(root / "pobox.toml", data, ports)
    if store is not None:
        config.write_text(f'store = "{store}"\n' + config.read_text())
    server = ServerProcess(data, config, ports, root / "server.log")
    server.start()
    return server


def test_backup_under_delivery_and_restore_everywhere(tmp_path: Path, pg_dsn: str) -> None:
    dest = tmp_path / "backup"
    (tmp_path / "origin").mkdir()
    with server_process(tmp_path / "origin", users={USER: PASSWORD}) as server:
        _prepare(server.ports["imap"])
        errors: list[BaseException] = []
        threads = [
            threading.Thread(target=_deliver, args=(server.ports["lmtp"], conn, errors))
            for conn in range(4)
        ]
        for thread in threads:
            thread.start()
        counts = []
        for _ in range(2):  # backups while the four connections deliver
            out = server.cli("backup", str(dest))
            assert b"message(s)" in out.stdout
            assert server.cli("backup", "verify", str(dest)).returncode == 0
            manifest = json.loads((dest / "pobox-backup.json").read_text())
            counts.append(manifest["messages"])
        for thread in threads:
            thread.join(120)
        assert errors == []
        assert counts == sorted(counts)
        final = server.cli("backup", str(dest))
        manifest = json.loads((dest / "pobox-backup.json").read_text())
        assert manifest["messages"] == 5 + 4 * PER_CONNECTION
        assert server.cli("backup", "verify", str(dest)).returncode == 0
        written = re.search(rb"(\d+) of (\d+) content", final.stdout)
        assert written is not None and int(written[1]) < int(written[2])  # incremental
        before = _imap_view(server.ports["imap"])
        uidls = _pop_view(server.ports["pop3"])
    assert len(before["INBOX"][2]) == 4 * PER_CONNECTION
    work = before["Work"][2]
    assert sorted(work) == [1, 3, 4, 5, 6] and set(work[3][1]) >= {"\\Flagged", "$Urgent"}
    assert work[3][0] > work[1][0] and work[1][2] == _message(0, 9)
    assert len(uidls) == 4 * PER_CONNECTION

    restored = tmp_path / "restored" / "data"
    pobox("restore", str(dest), "--to", str(restored), data=tmp_path / "unused")
    again = _serve(tmp_path / "restored", restored)
    try:
        assert _imap_view(again.ports["imap"]) == before
        assert _pop_view(again.ports["pop3"]) == uidls
    finally:
        again.stop()

    pobox("restore", str(dest), "--to", pg_dsn, data=tmp_path / "unused")
    on_pg = _serve(tmp_path / "pg", tmp_path / "pg" / "data", store=pg_dsn)
    try:
        assert _imap_view(on_pg.ports["imap"]) == before
        assert _pop_view(on_pg.ports["pop3"]) == uidls
    finally:
        on_pg.stop()
