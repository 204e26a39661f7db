"""Real IMAP clients against a real `pobox serve`.

Libraries: imaplib, imapclient, aioimaplib. Programs (from Debian; `make test` installs them, a
missing one is a failure, not a skip): curl (`imap://` URLs), offlineimap3 and mbsync (two-way
sync of flags, deletions and a new folder), neomutt (driven under tmux: open a message, quit,
then \\Seen must be on the server).

What each client sends is in docs/research (clients.md §1.9-1.17); the assertions here are the
RFC 9051/3501 behaviour those clients depend on.
"""

from __future__ import annotations

import asyncio
import email
import imaplib
import os
import re
import shutil
import smtplib
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aioimaplib
import imapclient
import pytest
from tests.helpers.servers import ServerProcess

ADDRESS = "demo@localhost"
PASSWORD = "demo"
HOST = "127.0.0.1"
TIMEOUT = 30  # seconds, for every socket and every client program run

pytestmark = pytest.mark.interop


# helpers -----------------------------------------------------------------------------------------
def message(n: int, subject: str | None = None, body: str | None = None) -> bytes:
    subject = subject if subject is not None else f"message {n}"
    body = body if body is not None else f"body of message {n}"
    return (
        f"From: Sender <sender@example.org>\r\nTo: {ADDRESS}\r\n"
        f"Subject: {subject}\r\nDate: Thu, 01 Jan 2026 00:00:{n % 60:02d} +0000\r\n"
        f"Message-ID: <m{n}@example.org>\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


def deliver(server: ServerProcess, *numbers: int) -> None:
    with smtplib.LMTP(HOST, server.ports["lmtp"], timeout=TIMEOUT) as lmtp:
        for n in numbers:
            assert lmtp.sendmail("sender@example.org", [ADDRESS], message(n)) == {}


def program(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} is not installed (make test installs it from Debian)"
    return path


def run(
    cmd: list[str], env: dict[str, str] | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def client(server: ServerProcess) -> imapclient.IMAPClient:
    c = imapclient.IMAPClient(HOST, port=server.ports["imap"], ssl=False, timeout=TIMEOUT)
    c.login(ADDRESS, PASSWORD)
    return c


def message_ids(header: bytes) -> str:
    return email.message_from_bytes(header).get("Message-ID", "").strip()


def server_state(server: ServerProcess, mailbox: str = "INBOX") -> dict[str, frozenset[bytes]]:
    """Message-ID -> flags (without \\Recent) of every message in *mailbox*, read with EXAMINE."""
    c = client(server)
    try:
        c.select_folder(mailbox, readonly=True)
        uids = c.search("ALL")
        data = c.fetch(uids, ["FLAGS", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]) if uids else {}
        state = {}
        for item in data.values():
            header = item[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"]
            state[message_ids(header)] = frozenset(item[b"FLAGS"]) - {b"\\Recent"}
        return state
    finally:
        c.logout()


def folders(server: ServerProcess) -> set[str]:
    c = client(server)
    try:
        return {name for _flags, _delim, name in c.list_folders()}
    finally:
        c.logout()


def private_file(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def client_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {**os.environ, "HOME": str(home), "TERM": "xterm-256color", "LC_ALL": "C.UTF-8"}


# imaplib -----------------------------------------------------------------------------------------
def ok(result: tuple[str, list[object]]) -> list[object]:
    typ, data = result
    assert typ == "OK", data
    return data


def no(result: tuple[str, list[object]]) -> list[object]:
    typ, data = result
    assert typ == "NO", data
    return data


def imaplib_login(server: ServerProcess) -> imaplib.IMAP4:
    m = imaplib.IMAP4(HOST, server.ports["imap"], timeout=TIMEOUT)
    assert "IMAP4REV1" in m.capabilities
    typ, _ = m.login(ADDRESS, PASSWORD)
    assert typ == "OK"
    return m


LIST_LINE = re.compile(rb'^\((?P<attrs>[^)]*)\) (?:NIL|"(?P<delim>\\?.)") (?P<name>.+)$')


def parse_list(data: list[bytes | None]) -> dict[str, set[str]]:
    """imaplib LIST/LSUB data -> {name: {attributes}}."""
    out = {}
    for line in data:
        if line is None:
            continue
        match = LIST_LINE.match(line)
        assert match, line
        name = match["name"]
        if name.startswith(b'"'):
            name = name[1:-1].replace(b'\\"', b'"').replace(b"\\\\", b"\\")
        out[name.decode()] = set(match["attrs"].decode().split())
    return out


def test_imaplib_mailboxes(pobox_server: ServerProcess) -> None:
    m = imaplib_login(pobox_server)
    try:
        typ, data = m.list('""', '""')  # the delimiter query every client starts with
        assert typ == "OK" and len(data) == 1, data
        match = LIST_LINE.match(data[0])  # type: ignore[arg-type]
        assert match and "\\Noselect" in match["attrs"].decode() and match["delim"], data
        delim = match["delim"].decode()
        ok(m.create("Projects"))
        ok(m.create(f"Projects{delim}2026"))
        no(m.create("Projects"))  # exists
        boxes = parse_list(m.list()[1])
        assert {"INBOX", "Projects", f"Projects{delim}2026"} <= set(boxes), boxes
        assert "\\HasChildren" in boxes["Projects"], boxes
        assert "\\HasNoChildren" in boxes[f"Projects{delim}2026"], boxes
        assert set(parse_list(m.list('""', "Proj%")[1])) == {"Projects"}
        typ, data = m.status("Projects", "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN)")
        assert typ == "OK" and re.search(rb"MESSAGES 0\b", data[0]), data  # type: ignore[arg-type]
        assert re.search(rb"UNSEEN 0\b", data[0]), data  # type: ignore[arg-type]
        ok(m.rename(f"Projects{delim}2026", "Old"))
        ok(m.subscribe("Old"))
        assert "Old" in parse_list(m.lsub()[1])
        ok(m.unsubscribe("Old"))
        assert "Old" not in parse_list(m.lsub()[1])
        ok(m.delete("Old"))
        assert m.list('""', "Old")[1] == [None]
        no(m.select("Nope"))
        no(m.delete("INBOX"))
    finally:
        m.logout()


def test_imaplib_fetch_store_search(pobox_server: ServerProcess) -> None:
    deliver(pobox_server, 1, 2, 3)
    m = imaplib_login(pobox_server)
    try:
        typ, data = m.select("INBOX")
        assert (typ, data) == ("OK", [b"3"])
        assert m.untagged_responses.get("UIDVALIDITY"), m.untagged_responses
        typ, data = m.fetch("1:*", "(UID FLAGS RFC822.SIZE)")
        assert typ == "OK" and len(data) == 3, data
        sizes = [int(re.search(rb"RFC822.SIZE (\d+)", line).group(1)) for line in data]  # type: ignore[union-attr]
        uids = [int(re.search(rb"UID (\d+)", line).group(1)) for line in data]  # type: ignore[union-attr]
        assert uids == sorted(uids)
        # RFC822.SIZE is the size of the message as delivered (plus trace headers LMTP adds)
        typ, data = m.fetch("1", "(BODY.PEEK[])")
        assert typ == "OK" and isinstance(data[0], tuple), data
        body = data[0][1]
        assert len(body) == sizes[0] and body.endswith(message(1).split(b"\r\n\r\n", 1)[1])
        typ, data = m.fetch("2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert data[0][1] == b"Subject: message 2\r\n\r\n", data  # type: ignore[index]
        typ, data = m.fetch("3", "(BODY.PEEK[TEXT]<0.4>)")
        assert data[0][0].endswith(b"BODY[TEXT]<0> {4}") and data[0][1] == b"body", data  # type: ignore[index]
        # PEEK left everything unseen; a non-PEEK BODY[] sets \Seen and reports FLAGS
        assert m.search(None, "UNSEEN") == ("OK", [b"1 2 3"])
        typ, data = m.fetch("1", "(BODY[TEXT])")
        flat = b" ".join(x if isinstance(x, bytes) else x[0] for x in data)
        assert b"\\Seen" in flat, data
        assert m.search(None, "SEEN") == ("OK", [b"1"])
        typ, data = m.store("2", "+FLAGS", "(\\Flagged $Label1)")
        assert typ == "OK" and b"\\Flagged" in data[0] and b"$Label1" in data[0], data
        typ, data = m.store("2", "-FLAGS.SILENT", "($Label1)")
        assert typ == "OK"
        assert m.fetch("2", "(FLAGS)")[1][0].count(b"$Label1") == 0
        assert m.search(None, "FLAGGED") == ("OK", [b"2"])
        assert m.search(None, 'SUBJECT "message 3"') == ("OK", [b"3"])
        assert m.search(None, "OR SEEN FLAGGED") == ("OK", [b"1 2"])
        assert m.search(None, "BODY", '"of message 2"') == ("OK", [b"2"])
        assert m.search(None, 'HEADER Message-ID "<m3@example.org>"') == ("OK", [b"3"])
        assert m.uid("SEARCH", "ALL") == ("OK", [" ".join(map(str, uids)).encode()])
        assert m.uid("SEARCH", f"UID {uids[1]}:*") == ("OK", [f"{uids[1]} {uids[2]}".encode()])
        # UID FETCH beyond the last UID still returns the last message (n:* semantics)
        typ, data = m.uid("FETCH", f"{uids[2] + 10}:*", "(UID)")
        assert typ == "OK" and f"UID {uids[2]}".encode() in data[0], data
        typ, data = m.uid("FETCH", f"{uids[2] + 10}", "(UID)")
        assert typ == "OK" and data == [None], data
    finally:
        m.logout()


def test_imaplib_append_copy_move_expunge(pobox_server: ServerProcess) -> None:
    m = imaplib_login(pobox_server)
    try:
        ok(m.create("Target"))
        big = message(9, body="x" * 76 + "\r\n") * 1  # small; the literal path is what counts
        date = imaplib.Time2Internaldate(time.time())
        for n in (1, 2, 3, 4):
            typ, data = m.append("INBOX", "(\\Seen)" if n == 1 else None, date, message(n))
            assert typ == "OK" and b"APPENDUID" in data[0], data
        ok(m.append("INBOX", None, None, big))
        refused = no(m.append("Nope", None, None, big))
        assert b"[TRYCREATE]" in refused[0], refused  # type: ignore[operator]
        typ, data = m.select("INBOX")
        assert data == [b"5"]
        typ, data = m.copy("1:2", "Target")
        assert typ == "OK" and b"COPYUID" in data[0], data
        typ, data = m.uid("MOVE", "3", "Target")  # UID 3 == message 3 in a fresh mailbox
        assert typ == "OK", data
        assert m.response("EXPUNGE") == ("EXPUNGE", [b"3"])  # MOVE's own EXPUNGE
        assert m.status("Target", "(MESSAGES)")[1][0].endswith(b"(MESSAGES 3)")
        ok(m.store("1", "+FLAGS.SILENT", "(\\Deleted)"))
        typ, data = m.expunge()
        assert (typ, data) == ("OK", [b"1"]), (typ, data)
        typ, data = m.fetch("1:*", "(UID)")
        assert [int(re.search(rb"UID (\d+)", d).group(1)) for d in data] == [2, 4, 5]  # type: ignore[union-attr]
        ok(m.uid("STORE", "2,5", "+FLAGS.SILENT", "(\\Deleted)"))
        typ, data = m.uid("EXPUNGE", "5")
        assert typ == "OK", data
        ok(m.close())  # expunges UID 2
        assert m.select("INBOX", readonly=True)[1] == [b"1"]
        ok(m.unselect())  # type: ignore[attr-defined]
    finally:
        m.logout()
    assert set(server_state(pobox_server, "Target")) == {
        "<m1@example.org>",
        "<m2@example.org>",
        "<m3@example.org>",
    }


# imapclient --------------------------------------------------------------------------------------
def test_imapclient_utf7_folders_and_utf8_search(pobox_server: ServerProcess) -> None:
    c = client(pobox_server)
    try:
        c.create_folder("Entwürfe")
        c.create_folder("日本語")
        names = {name for _flags, _delim, name in c.list_folders()}
        assert {"INBOX", "Entwürfe", "日本語"} <= names, names
        c.append("Entwürfe", message(1, subject="Grüße aus Köln"), flags=[b"\\Draft"])
        info = c.select_folder("Entwürfe")
        assert info[b"EXISTS"] == 1 and info[b"UIDVALIDITY"] and info[b"UIDNEXT"] == 2, info
        assert b"READ-WRITE" in info and b"\\Draft" in info[b"FLAGS"], info
        # 8-bit search argument: imapclient sends CHARSET UTF-8 and a literal
        assert c.search(["SUBJECT", "Köln"], charset="UTF-8") == [1]
        assert c.search(["SUBJECT", "Paris"], charset="UTF-8") == []
        # SORT (RFC 5256) through imapclient, and a Latin-1 search string (CHARSET ISO-8859-1)
        c.append("Entwürfe", message(2, subject="Re: Aachen"))
        c.append("Entwürfe", message(3, subject="Zürich"))
        assert c.sort(["SUBJECT"]) == [2, 1, 3]  # Aachen, Grüße, Zürich (base subjects)
        assert c.sort(["REVERSE", "ARRIVAL"], ["NOT", "SUBJECT", "Köln"], "UTF-8") == [3, 2]
        assert c.search(["SUBJECT", "Zürich".encode("latin-1")], charset="ISO-8859-1") == [3]
        fetched = c.fetch([1], ["ENVELOPE", "BODYSTRUCTURE", "INTERNALDATE", "FLAGS"])[1]
        assert fetched[b"ENVELOPE"].subject == "Grüße aus Köln".encode(), fetched
        assert fetched[b"BODYSTRUCTURE"][0:2] == (b"text", b"plain"), fetched
        assert b"\\Draft" in fetched[b"FLAGS"]
        c.rename_folder("日本語", "Renamed")
        assert "Renamed" in {n for _f, _d, n in c.list_folders()}
        status = c.folder_status("Entwürfe", ["MESSAGES", "UIDNEXT", "UNSEEN"])
        assert status[b"MESSAGES"] == 3 and status[b"UIDNEXT"] == 4, status
        c.close_folder()
        c.delete_folder("Entwürfe")
        assert "Entwürfe" not in {n for _f, _d, n in c.list_folders()}
    finally:
        c.logout()


def test_imapclient_move_and_uid_expunge(pobox_server: ServerProcess) -> None:
    deliver(pobox_server, 1, 2, 3)
    c = client(pobox_server)
    try:
        assert c.has_capability("MOVE") and c.has_capability("UIDPLUS")
        if not c.folder_exists("Trash"):  # pobox may create the special-use folders itself
            c.create_folder("Trash")
        c.select_folder("INBOX")
        uids = c.search("ALL")
        assert len(uids) == 3
        c.move([uids[0]], "Trash")
        assert c.search("ALL") == uids[1:]
        c.add_flags([uids[1], uids[2]], [b"\\Deleted"])
        c.uid_expunge([uids[1]])
        assert c.search("ALL") == [uids[2]]
        assert c.search("DELETED") == [uids[2]]
        c.remove_flags([uids[2]], [b"\\Deleted"])
        assert set(c.get_flags([uids[2]])[uids[2]]) <= {b"\\Recent"}
    finally:
        c.logout()
    assert set(server_state(pobox_server, "Trash")) == {"<m1@example.org>"}
    assert set(server_state(pobox_server)) == {"<m3@example.org>"}


def idle_collect(
    c: imapclient.IMAPClient, wanted: Callable[[tuple[Any, ...]], bool], timeout: float = 5
) -> list[tuple[Any, ...]]:
    """idle_check until a response matches *wanted* or *timeout* passes; all responses seen."""
    seen: list[tuple[Any, ...]] = []
    deadline = time.monotonic() + timeout
    while not any(wanted(r) for r in seen) and time.monotonic() < deadline:
        seen += c.idle_check(timeout=max(0.1, deadline - time.monotonic()))
    return seen


def test_imapclient_idle_sees_delivery_flags_and_expunge(pobox_server: ServerProcess) -> None:
    deliver(pobox_server, 1)
    idler = client(pobox_server)
    other = client(pobox_server)
    try:
        idler.select_folder("INBOX")
        other.select_folder("INBOX")
        idler.idle()  # raises unless the first reply is a "+" continuation
        started = time.monotonic()
        deliver(pobox_server, 2)
        responses = idle_collect(idler, lambda r: r == (2, b"EXISTS"))
        assert (2, b"EXISTS") in responses, responses
        assert time.monotonic() - started < 5
        other.add_flags([1], [b"\\Flagged"])
        responses = idle_collect(idler, lambda r: len(r) > 2 and r[1] == b"FETCH")
        fetches = [r for r in responses if len(r) > 2 and r[1] == b"FETCH"]
        assert fetches and fetches[0][0] == 1, responses
        assert b"\\Flagged" in fetches[0][2][fetches[0][2].index(b"FLAGS") + 1], responses
        other.add_flags([1], [b"\\Deleted"])
        other.expunge()
        responses = idle_collect(idler, lambda r: r == (1, b"EXPUNGE"))
        assert (1, b"EXPUNGE") in responses, responses
        text, _ = idler.idle_done()
        assert text.startswith(b"IDLE") or text, text
        assert idler.search("ALL") == [2]
    finally:
        idler.logout()
        other.logout()


# aioimaplib --------------------------------------------------------------------------------------
# aioimaplib formats bytes into its debug log with '%s' (BytesWarning under `python -bb`)
@pytest.mark.filterwarnings("ignore::BytesWarning:aioimaplib.*")
async def test_aioimaplib_session_and_idle(pobox_server: ServerProcess) -> None:
    deliver(pobox_server, 1, 2)
    imap = aioimaplib.IMAP4(host=HOST, port=pobox_server.ports["imap"], timeout=TIMEOUT)
    await imap.wait_hello_from_server()
    assert imap.has_capability("IMAP4REV1") or "IMAP4rev1" in imap.protocol.capabilities
    response = await imap.login(ADDRESS, PASSWORD)
    assert response.result == "OK", response
    response = await imap.select("INBOX")
    assert response.result == "OK" and any(b"2 EXISTS" in line for line in response.lines)
    response = await imap.append(message(3), mailbox="INBOX", flags="(\\Flagged)")
    assert response.result == "OK", response
    response = await imap.fetch("1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert response.result == "OK", response
    assert b"Subject: message 3" in b"".join(
        line for line in response.lines if isinstance(line, bytes | bytearray)
    )
    response = await imap.uid_search("FLAGGED")
    assert response.result == "OK" and response.lines[0] == b"3", response
    idle = await imap.idle_start(timeout=10)
    await asyncio.to_thread(deliver, pobox_server, 4)
    pushed = await asyncio.wait_for(imap.wait_server_push(), 5)
    assert any(b"EXISTS" in line for line in pushed), pushed
    imap.idle_done()
    await asyncio.wait_for(idle, 5)
    response = await imap.search("ALL")
    assert response.result == "OK" and response.lines[0] == b"1 2 3 4", response
    response = await imap.logout()
    assert response.result == "OK", response


# curl --------------------------------------------------------------------------------------------
def curl_base(server: ServerProcess) -> list[str]:
    return [program("curl"), "-sS", "--max-time", str(TIMEOUT), "-u", f"{ADDRESS}:{PASSWORD}"]


def test_curl_list_fetch_search(pobox_server: ServerProcess) -> None:
    deliver(pobox_server, 1, 2)
    url = f"imap://{HOST}:{pobox_server.ports['imap']}"
    base = curl_base(pobox_server)

    listing = run([*base, url + "/"])
    assert listing.returncode == 0, listing.stderr
    assert re.search(r'^\* LIST \(.*\) "[./]" "?INBOX"?\r?$', listing.stdout, re.M), listing.stdout

    # curl sends a non-PEEK `UID FETCH 1 BODY[]`: the whole message, and \Seen is set
    fetched = run([*base, url + "/INBOX;UID=1"])
    assert fetched.returncode == 0, fetched.stderr
    assert "Subject: message 1" in fetched.stdout and "body of message 1" in fetched.stdout
    section = run([*base, url + "/INBOX;UID=2;SECTION=HEADER.FIELDS%20(SUBJECT)"])
    assert section.returncode == 0, section.stderr
    assert section.stdout.strip() == "Subject: message 2", section.stdout
    state = server_state(pobox_server)
    assert b"\\Seen" in state["<m1@example.org>"], state

    found = run([*base, "-X", 'SEARCH SUBJECT "message 2"', url + "/INBOX"])
    assert found.returncode == 0, found.stderr
    assert re.search(r"^\* SEARCH 2\r?$", found.stdout, re.M), found.stdout
    # both messages are \\Seen now: curl's FETCH of a header section was not a PEEK either
    query = run([*base, url + "/INBOX?SEEN"])
    assert query.returncode == 0, query.stderr
    assert re.search(r"^\* SEARCH 1 2\r?$", query.stdout, re.M), query.stdout
    examine = run([*base, "-X", "EXAMINE INBOX", url + "/"])
    assert examine.returncode == 0 and "2 EXISTS" in examine.stdout, examine

    upload_file = pobox_server.data.parent / "upload.eml"
    upload_file.write_bytes(message(7))
    upload = run([*base, "-T", str(upload_file), url + "/INBOX"])
    assert upload.returncode == 0, upload.stderr
    assert "<m7@example.org>" in server_state(pobox_server)


# offlineimap3 ------------------------------------------------------------------------------------
def maildir_messages(folder: Path) -> dict[str, tuple[Path, str]]:
    """Message-ID -> (file, maildir flag letters) in one Maildir folder."""
    out = {}
    for sub in ("cur", "new"):
        for path in (folder / sub).glob("*"):
            mid = message_ids(path.read_bytes().split(b"\n\n", 1)[0].replace(b"\r", b""))
            flags = path.name.split(":2,", 1)[1] if ":2," in path.name else ""
            out[mid] = (path, flags)
    return out


def set_maildir_flags(path: Path, flags: str) -> None:
    base = path.name.split(":2,", 1)[0]
    path.rename(path.parent.parent / "cur" / f"{base}:2,{''.join(sorted(flags))}")


def add_maildir_message(folder: Path, n: int) -> None:
    for sub in ("cur", "new", "tmp"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "new" / f"{int(time.time())}.local{n}.host").write_bytes(
        message(n).replace(b"\r\n", b"\n")
    )


def imap_change_server(server: ServerProcess) -> None:
    """The server side of the two-way tests: flag m1, delete m2 (expunged), deliver m4."""
    c = client(server)
    try:
        c.select_folder("INBOX")
        by_mid = {
            message_ids(v[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"]): uid
            for uid, v in c.fetch(
                c.search("ALL"), ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]
            ).items()
        }
        c.add_flags([by_mid["<m1@example.org>"]], [b"\\Flagged"])
        c.add_flags([by_mid["<m2@example.org>"]], [b"\\Deleted"])
        c.expunge()
    finally:
        c.logout()
    deliver(server, 4)


def check_two_way(server: ServerProcess, inbox: Path, local_new: Path) -> None:
    """After the second sync, both sides agree (see the two tests below for the changes)."""
    local = maildir_messages(inbox)
    remote = server_state(server)
    # m2 deleted on the server, m3 deleted locally, m4 new on the server
    assert set(local) == {"<m1@example.org>", "<m4@example.org>"}, local
    assert set(remote) == set(local), remote
    assert "F" in local["<m1@example.org>"][1]  # server flag reached the client
    assert b"\\Seen" in remote["<m1@example.org>"]  # client flag reached the server
    assert b"\\Flagged" in remote["<m1@example.org>"]
    # the folder made on the client exists on the server, with its message
    assert "<m5@example.org>" in server_state(server, "LocalNew")
    assert set(maildir_messages(local_new)) == {"<m5@example.org>"}


def test_offlineimap_two_way_sync(pobox_server: ServerProcess, tmp_path: Path) -> None:
    offlineimap = program("offlineimap")
    deliver(pobox_server, 1, 2, 3)
    mail = tmp_path / "offlineimap-mail"
    rc = private_file(
        tmp_path / "offlineimaprc",
        "[general]\n"
        "accounts = test\n"
        f"metadata = {tmp_path / 'offlineimap-meta'}\n"
        "\n[Account test]\n"
        "localrepository = local\n"
        "remoterepository = remote\n"
        "\n[Repository local]\n"
        "type = Maildir\n"
        f"localfolders = {mail}\n"
        "\n[Repository remote]\n"
        "type = IMAP\n"
        f"remotehost = {HOST}\n"
        f"remoteport = {pobox_server.ports['imap']}\n"
        f"remoteuser = {ADDRESS}\n"
        f"remotepass = {PASSWORD}\n"
        "ssl = no\n"
        "starttls = no\n"
        "maxconnections = 1\n"
        "holdconnectionopen = no\n",
    )
    env = client_env(tmp_path)
    cmd = [offlineimap, "-c", str(rc), "-o", "-u", "basic"]

    first = run(cmd, env)
    assert first.returncode == 0 and "ERROR" not in first.stdout + first.stderr, (
        first.stdout + first.stderr
    )
    inbox = mail / "INBOX"
    local = maildir_messages(inbox)
    assert set(local) == {"<m1@example.org>", "<m2@example.org>", "<m3@example.org>"}, local

    # client side: read m1, delete m3, make a new folder with a message
    set_maildir_flags(local["<m1@example.org>"][0], "S")
    local["<m3@example.org>"][0].unlink()
    add_maildir_message(mail / "LocalNew", 5)
    imap_change_server(pobox_server)

    second = run(cmd, env)
    assert second.returncode == 0 and "ERROR" not in second.stdout + second.stderr, (
        second.stdout + second.stderr
    )
    check_two_way(pobox_server, inbox, mail / "LocalNew")


# mbsync ------------------------------------------------------------------------------------------
def test_mbsync_two_way_sync(pobox_server: ServerProcess, tmp_path: Path) -> None:
    mbsync = program("mbsync")
    deliver(pobox_server, 1, 2, 3)
    mail = tmp_path / "mbsync-mail"
    mail.mkdir()
    rc = private_file(
        tmp_path / "mbsyncrc",
        "IMAPAccount pobox\n"
        f"Host {HOST}\n"
        f"Port {pobox_server.ports['imap']}\n"
        f"User {ADDRESS}\n"
        f"Pass {PASSWORD}\n"
        "SSLType None\n"
        "AuthMechs LOGIN\n"
        "Timeout 20\n"
        "\nIMAPStore remote\n"
        "Account pobox\n"
        "\nMaildirStore local\n"
        f"Path {mail}/\n"
        f"Inbox {mail}/INBOX\n"
        "SubFolders Verbatim\n"
        "\nChannel sync\n"
        "Far :remote:\n"
        "Near :local:\n"
        "Patterns *\n"
        "Create Both\n"
        "Expunge Both\n"
        "SyncState *\n",
    )
    env = client_env(tmp_path)
    cmd = [mbsync, "-c", str(rc), "-V", "sync"]

    first = run(cmd, env)
    assert first.returncode == 0, first.stdout + first.stderr
    inbox = mail / "INBOX"
    local = maildir_messages(inbox)
    assert set(local) == {"<m1@example.org>", "<m2@example.org>", "<m3@example.org>"}, local

    set_maildir_flags(local["<m1@example.org>"][0], "S")
    local["<m3@example.org>"][0].unlink()
    add_maildir_message(mail / "LocalNew", 5)
    imap_change_server(pobox_server)

    second = run(cmd, env)
    assert second.returncode == 0, second.stdout + second.stderr
    check_two_way(pobox_server, inbox, mail / "LocalNew")
    # a third run changes nothing and still succeeds
    third = run(cmd, env)
    assert third.returncode == 0, third.stdout + third.stderr
    check_two_way(pobox_server, inbox, mail / "LocalNew")


# neomutt -----------------------------------------------------------------------------------------
def tmux(sock: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run([program("tmux"), "-S", str(sock), *args], timeout=TIMEOUT)


def run_neomutt(server: ServerProcess, tmp_path: Path, keys: str, name: str) -> str:
    """Start neomutt in a detached tmux session with *keys* pushed; wait until it quits.

    Returns the last screen seen (for failure messages).
    """
    neomutt = program("neomutt")
    env = client_env(tmp_path)
    rc = private_file(
        tmp_path / f"{name}.muttrc",
        f'set folder = "imap://{ADDRESS.replace("@", "%40")}@{HOST}:{server.ports["imap"]}/"\n'
        'set spoolfile = "+INBOX"\n'
        f'set imap_user = "{ADDRESS}"\n'
        f'set imap_pass = "{PASSWORD}"\n'
        "set ssl_starttls = no\n"
        "set ssl_force_tls = no\n"
        "set imap_peek = yes\n"
        "set imap_idle = no\n"
        'set header_cache = ""\n'
        'set message_cachedir = ""\n'
        "set mark_old = no\n"
        "set move = no\n"
        "set delete = yes\n"
        "set quit = yes\n"
        'set record = ""\n'
        "set wait_key = no\n"
        "set sleep_time = 0\n"
        f'push "{keys}"\n',
    )
    sock = tmp_path / f"{name}.tmux"
    tmux_bin = program("tmux")
    started = subprocess.run(
        [tmux_bin, "-S", str(sock), "-f", "/dev/null", "new-session", "-d", "-x", "120", "-y",
         "40", f"{neomutt} -n -F {rc} 2> {tmp_path / name}.stderr"],
        env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    screen = ""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            shot = tmux(sock, "capture-pane", "-p")
            if shot.returncode != 0:  # the session is gone: neomutt quit
                return screen
            screen = shot.stdout
            time.sleep(0.3)
        raise AssertionError(f"neomutt did not finish within 60 s; last screen:\n{screen}")
    finally:
        tmux(sock, "kill-server")


def test_neomutt_reads_and_deletes(pobox_server: ServerProcess, tmp_path: Path) -> None:
    deliver(pobox_server, 1)
    screen = run_neomutt(
        pobox_server, tmp_path, "<display-message><exit><sync-mailbox><quit>", "read"
    )
    state = server_state(pobox_server)
    assert set(state) == {"<m1@example.org>"}, (state, screen)
    assert b"\\Seen" in state["<m1@example.org>"], (state, screen)

    deliver(pobox_server, 2)
    screen = run_neomutt(
        pobox_server,
        tmp_path,
        "<search>~s 'message 1'<enter><delete-message><sync-mailbox><quit>",
        "delete",
    )
    state = server_state(pobox_server)
    assert set(state) == {"<m2@example.org>"}, (state, screen)
