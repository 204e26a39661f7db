"""FETCH, STORE, COPY, MOVE and SEARCH with real client libraries (imaplib, imapclient).

One `pobox serve` subprocess per module; every test gets an account of its own, fills it with
messages from tests/data/messages over APPEND and works on it as a mail client would.
"""

from __future__ import annotations

import imaplib
import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from imapclient import IMAPClient
from tests.helpers.servers import ServerProcess, server_process

pytestmark = pytest.mark.interop

PASSWORD = "secret"
CORPUS = Path(__file__).parent.parent / "data" / "messages"
_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with server_process(tmp_path_factory.mktemp("imap-messages")) as srv:
        yield srv


@pytest.fixture
def account(server: ServerProcess) -> str:
    address = f"user{next(_numbers)}@localhost"
    server.cli("user", "add", address, "--password-stdin", stdin=PASSWORD.encode() + b"\n")
    return address


def connect(server: ServerProcess, account: str) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    client.login(account, PASSWORD)
    return client


@pytest.fixture
def imap(server: ServerProcess, account: str) -> Iterator[imaplib.IMAP4]:
    client = connect(server, account)
    try:
        yield client
    finally:
        client.logout()


def message(n: int, subject: str | None = None) -> bytes:
    return (
        b"From: Sender <sender@example.org>\r\nTo: demo@localhost\r\n"
        b"Subject: %s\r\nMessage-ID: <m%d@example.org>\r\n"
        b"Date: Mon, 5 Jan 2026 10:00:00 +0000\r\n\r\nbody of message %d\r\n"
        % ((subject or f"message {n}").encode(), n, n)
    )


def append(client: imaplib.IMAP4, mailbox: str, *messages: bytes, flags: str = "") -> None:
    for data in messages:
        typ, _ = client.append(mailbox, flags or None, None, data)
        assert typ == "OK"


def ok(result: tuple[str, list[object]]) -> list[object]:
    typ, data = result
    assert typ == "OK", data
    return data


def select(client: imaplib.IMAP4, mailbox: str, *, readonly: bool = False) -> int:
    """SELECT/EXAMINE; returns EXISTS and forgets the untagged responses of the SELECT."""
    count = int(ok(client.select(mailbox, readonly))[0])  # type: ignore[arg-type]
    client.untagged_responses.clear()
    return count


def untagged(client: imaplib.IMAP4, name: str) -> list[object]:
    """The untagged responses of a kind collected since the last look (and forget them)."""
    return client.untagged_responses.pop(name, [])


def flags_in(line: object) -> set[str]:
    assert isinstance(line, bytes), line
    found = re.search(rb"FLAGS \(([^)]*)\)", line)
    assert found is not None, line
    return set(found.group(1).decode().split())


# --------------------------------------------------------------------------- STORE


def test_store_modes_and_responses(imap: imaplib.IMAP4) -> None:
    append(imap, "INBOX", message(1), message(2), message(3))
    select(imap, "INBOX")
    data = ok(imap.store("1:2", "+FLAGS", "(\\Seen $Label1)"))
    assert [flags_in(d) for d in data] == [{"\\Seen", "$Label1", "\\Recent"}] * 2
    assert data[0].startswith(b"1 (FLAGS")  # type: ignore[union-attr]
    data = ok(imap.store("2", "-FLAGS", "($Label1)"))
    assert flags_in(data[0]) == {"\\Seen", "\\Recent"}
    data = ok(imap.store("3", "FLAGS", "(\\Flagged \\Answered)"))
    assert flags_in(data[0]) == {"\\Flagged", "\\Answered", "\\Recent"}
    # an unparenthesised flag, as sent by some clients (research/clients.md P9)
    data = ok(imap._simple_command("STORE", "3", "+FLAGS", "\\seen"))
    assert flags_in(untagged(imap, "FETCH")[0]) == {
        "\\Flagged",
        "\\Answered",
        "\\Seen",
        "\\Recent",
    }
    # .SILENT: no FETCH for our own change
    ok(imap.store("1:3", "+FLAGS.SILENT", "(\\Deleted)"))
    assert untagged(imap, "FETCH") == []
    # UID STORE: the FETCH responses carry the UID
    typ, data = imap.uid("STORE", "2", "-FLAGS", "(\\Deleted)")
    assert typ == "OK"
    assert re.match(rb"2 \(UID 2 FLAGS \(", data[0])  # type: ignore[arg-type]
    # adding what is there already still answers with the flags
    data = ok(imap.store("2", "+FLAGS", "(\\Seen)"))
    assert flags_in(data[0]) == {"\\Seen", "\\Recent"}


def test_store_errors(imap: imaplib.IMAP4) -> None:
    append(imap, "INBOX", message(1))
    select(imap, "INBOX")
    for flag in ("\\Recent", "\\Bogus", "\\*"):
        with pytest.raises(imaplib.IMAP4.error, match="invalid system flag"):
            imap.store("1", "+FLAGS", f"({flag})")
    with pytest.raises(imaplib.IMAP4.error, match="BAD"):
        imap.store("2", "+FLAGS", "(\\Seen)")  # no message 2
    with pytest.raises(imaplib.IMAP4.error, match="unknown STORE modifier"):
        imap._simple_command("STORE", "1", "(UNCHANGEDSIN 5)", "+FLAGS", "(\\Seen)")
    typ, data = imap.uid("STORE", "99", "+FLAGS", "(\\Seen)")
    assert (typ, untagged(imap, "FETCH")) == ("OK", [])
    select(imap, "INBOX", readonly=True)
    typ, data = imap.store("1", "+FLAGS", "(\\Seen)")
    assert typ == "NO" and b"[READ-ONLY]" in data[0]  # type: ignore[operator]


def test_two_sessions_see_flag_changes(server: ServerProcess, account: str) -> None:
    one, two = connect(server, account), connect(server, account)
    try:
        append(one, "INBOX", message(1), message(2))
        select(one, "INBOX")
        select(two, "INBOX")
        ok(one.store("1", "+FLAGS", "(\\Flagged)"))
        ok(two.noop())
        assert [flags_in(d) for d in untagged(two, "FETCH")] == [{"\\Flagged"}]
        # a silent store still reports what the other session changed meanwhile
        ok(one.store("2", "+FLAGS", "($Work)"))
        untagged(one, "FETCH")
        data = ok(two.store("2", "+FLAGS.SILENT", "(\\Seen)"))
        assert [flags_in(d) for d in data] == [{"$Work", "\\Seen"}]
        ok(two.noop())
        assert untagged(two, "FETCH") == []
        ok(one.noop())
        assert [flags_in(d) for d in untagged(one, "FETCH")] == [{"$Work", "\\Seen", "\\Recent"}]
    finally:
        one.logout()
        two.logout()


def test_expunge_announced_only_where_allowed(server: ServerProcess, account: str) -> None:
    """RFC 9051 §7.5.1: no EXPUNGE during STORE by number; UID STORE and NOOP may send it."""
    one, two = connect(server, account), connect(server, account)
    try:
        append(one, "INBOX", message(1), message(2), message(3))
        select(one, "INBOX")
        select(two, "INBOX")
        ok(one.store("1", "+FLAGS.SILENT", "(\\Deleted)"))
        ok(one.expunge())
        data = ok(two.store("3", "+FLAGS", "(\\Seen)"))  # message 3 keeps its number
        assert untagged(two, "EXPUNGE") == []
        assert data[0].startswith(b"3 (FLAGS")  # type: ignore[union-attr]
        data = ok(two.uid("STORE", "3", "-FLAGS", "(\\Seen)"))
        assert untagged(two, "EXPUNGE") == [b"1"]  # after the FETCH with the old number
        assert data[0].startswith(b"3 (UID 3 FLAGS ()")  # type: ignore[union-attr]
    finally:
        one.logout()
        two.logout()


# --------------------------------------------------------------------------- COPY / MOVE


def test_copy(imap: imaplib.IMAP4) -> None:
    append(imap, "INBOX", message(1), message(2), message(3))
    append(imap, "Archive", message(9))
    select(imap, "INBOX")
    ok(imap.store("2", "+FLAGS", "(\\Flagged $Keep)"))
    typ, data = imap.copy("2:3", "Archive")
    assert typ == "OK"
    code = re.match(rb"\[COPYUID (\d+) 2:3 2:3\] ", data[0])  # type: ignore[arg-type]
    assert code is not None, data
    typ, data = imap._simple_command("UID", "COPY", "1,3", "Trash")
    assert typ == "OK" and b"COPYUID" in data[0]  # type: ignore[operator]
    typ, data = imap.copy("1", '"No such folder"')
    assert typ == "NO" and data[0].startswith(b"[TRYCREATE]")  # type: ignore[union-attr]
    typ, data = imap._simple_command("UID", "COPY", "50:60", "Trash")
    assert typ == "OK" and b"COPYUID" not in data[0]  # type: ignore[operator]
    with pytest.raises(imaplib.IMAP4.error, match="BAD"):
        imap.copy("4", "Trash")
    # the copies keep flags, and the source is untouched
    assert select(imap, "INBOX") == 3
    assert select(imap, "Archive") == 3
    data = ok(imap.store("2", "+FLAGS", "(\\Seen)"))
    assert {"\\Flagged", "$Keep"} <= flags_in(data[0])
    # COPY into the selected mailbox announces the new message before the OK
    ok(imap.copy("1", "Archive"))
    assert untagged(imap, "EXISTS") == [b"4"]


def test_move(imap: imaplib.IMAP4) -> None:
    append(imap, "INBOX", message(1), message(2), message(3), message(4))
    select(imap, "INBOX")
    typ, _ = imap._simple_command("MOVE", "2:3", "Trash")
    assert typ == "OK"
    [copyuid] = untagged(imap, "OK")
    assert re.fullmatch(rb"\[COPYUID \d+ 2:3 1:2\] .+", copyuid)  # type: ignore[arg-type]
    assert untagged(imap, "EXPUNGE") == [b"3", b"2"]
    typ, _ = imap.uid("MOVE", "4", "Trash")
    assert typ == "OK"
    assert re.fullmatch(rb"\[COPYUID \d+ 4 3\] .+", untagged(imap, "OK")[0])  # type: ignore[arg-type]
    assert untagged(imap, "EXPUNGE") == [b"2"]
    typ, data = imap._simple_command("MOVE", "1", "Nowhere")
    assert typ == "NO" and data[0].startswith(b"[TRYCREATE]")  # type: ignore[union-attr]
    typ, _ = imap.uid("MOVE", "100", "Trash")
    assert typ == "OK" and untagged(imap, "EXPUNGE") == []
    select(imap, "INBOX", readonly=True)
    typ, data = imap._simple_command("MOVE", "1", "Trash")
    assert typ == "NO" and b"[READ-ONLY]" in data[0]  # type: ignore[operator]
    assert select(imap, "Trash") == 3


def test_move_seen_by_other_session(server: ServerProcess, account: str) -> None:
    one, two = connect(server, account), connect(server, account)
    try:
        append(one, "INBOX", message(1), message(2))
        select(one, "INBOX")
        select(two, "Trash")
        ok(one._simple_command("MOVE", "1", "Trash"))
        ok(two.noop())
        assert untagged(two, "EXISTS") == [b"1"]
        assert select(one, "INBOX") == 1
    finally:
        one.logout()
        two.logout()


# --------------------------------------------------------------------------- imapclient


def test_imapclient_flags_copy_move(server: ServerProcess, account: str) -> None:
    client = IMAPClient("127.0.0.1", port=server.ports["imap"], ssl=False, timeout=30)
    try:
        client.login(account, PASSWORD)
        for n in (1, 2, 3):
            client.append("INBOX", message(n))
        client.select_folder("INBOX")
        assert client.add_flags([1, 2], [b"\\Seen", b"$Todo"]) == {
            1: (b"\\Seen", b"\\Recent", b"$Todo"),
            2: (b"\\Seen", b"\\Recent", b"$Todo"),
        }
        assert client.remove_flags([2], [b"$Todo"]) == {2: (b"\\Seen", b"\\Recent")}
        assert client.set_flags([3], [b"\\Flagged"], silent=True) is None
        client.copy([1], "Archive")
        client.move([2, 3], "Trash")
        assert client.select_folder("INBOX")[b"EXISTS"] == 1
        assert client.select_folder("Trash")[b"EXISTS"] == 2
        assert client.select_folder("Archive")[b"EXISTS"] == 1
    finally:
        client.logout()


# --------------------------------------------------------------------------- SEARCH


def corpus() -> list[bytes]:
    """tests/data/messages/*.eml in name order (so message N is file NN-...), with CRLF."""
    return [
        p.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        for p in sorted(CORPUS.glob("*.eml"))
    ]


def search(client: imaplib.IMAP4, *criteria: str, uid: bool = False) -> list[int]:
    data = ok(client.uid("SEARCH", *criteria) if uid else client.search(None, *criteria))
    assert len(data) == 1, data
    return [int(n) for n in data[0].split()]  # type: ignore[union-attr]


def esearch(client: imaplib.IMAP4, *args: str) -> bytes:
    """The one ESEARCH response of a SEARCH with RETURN, without its (TAG "...") part."""
    typ, _ = client._simple_command(*args)
    assert typ == "OK"
    [line] = untagged(client, "ESEARCH")
    assert isinstance(line, bytes)
    tag = re.match(rb'\(TAG "[^"]+"\) ?', line)
    assert tag is not None, line
    return line[tag.end() :]


def test_search_flags_sets_and_esearch(imap: imaplib.IMAP4) -> None:
    assert select(imap, "INBOX") == 0
    assert search(imap, "ALL", uid=True) == []  # an empty mailbox answers "* SEARCH"
    ok(imap.unselect())  # appended with INBOX not selected: \Recent for the next SELECT
    append(imap, "INBOX", *(message(n) for n in range(1, 7)))
    append(imap, "INBOX", message(7, "x" * 3000), flags="(\\Seen $Work)")
    assert select(imap, "INBOX") == 7
    ok(imap.store("1,3", "+FLAGS", "(\\Seen)"))
    ok(imap.store("2", "+FLAGS", "(\\Deleted \\Flagged)"))
    ok(imap.store("4", "+FLAGS", "($work)"))
    assert search(imap, "ALL") == [1, 2, 3, 4, 5, 6, 7]
    assert search(imap, "SEEN") == [1, 3, 7]
    assert search(imap, "UNSEEN", "UNDELETED") == [4, 5, 6]
    assert search(imap, "KEYWORD", "$Work") == [4, 7]
    assert search(imap, "OR", "FLAGGED", "NOT", "UNSEEN") == [1, 2, 3, 7]
    assert search(imap, "LARGER", "1000") == [7]
    assert search(imap, "NEW") == [2, 4, 5, 6]  # recent (this SELECT saw them first) and unseen
    assert search(imap, "OLD") == []
    assert search(imap, "2:3,6:*") == [2, 3, 6, 7]
    assert search(imap, "UID", "3:4") == [3, 4]
    # K-9: a message-number range inside UID SEARCH (research/clients.md P14)
    ok(imap.expunge())  # message 2 (UID 2) goes
    untagged(imap, "EXPUNGE")
    assert search(imap, "2:3", "NOT", "DELETED", uid=True) == [3, 4]
    assert search(imap, "*:*", uid=True) == [7]
    assert search(imap, "SUBJECT", "message", "SMALLER", "1000") == [1, 2, 3, 4, 5]
    assert search(imap, "HEADER", "Message-ID", "<m5@example.org>", uid=True) == [5]
    # ESEARCH (RFC 4731)
    assert esearch(imap, "SEARCH", "RETURN", "(MIN MAX COUNT ALL)", "UNSEEN") == (
        b"MIN 3 MAX 5 ALL 3:5 COUNT 3"
    )
    assert esearch(imap, "SEARCH", "RETURN", "()", "ALL") == b"ALL 1:6"
    assert esearch(imap, "UID", "SEARCH", "RETURN", "(COUNT MAX)", "SEEN") == b"UID MAX 7 COUNT 3"
    assert esearch(imap, "SEARCH", "RETURN", "(MIN ALL COUNT)", "DELETED") == b"COUNT 0"
    assert esearch(imap, "UID", "SEARCH", "RETURN", "(MIN)", "UID", "100") == b"UID"
    # CHARSET
    assert search(imap, "CHARSET", "UTF-8", "SUBJECT", "message") == [1, 2, 3, 4, 5]
    assert search(imap, "CHARSET", "us-ascii", "ALL") == [1, 2, 3, 4, 5, 6]
    # other charsets Python knows decode the search strings (Dovecot takes what iconv knows)
    assert search(imap, "CHARSET", "ISO-8859-1", "SUBJECT", "message") == [1, 2, 3, 4, 5]
    typ, data = imap.search("X-NO-SUCH-CHARSET", "ALL")
    assert typ == "NO" and data[0].startswith(b"[BADCHARSET (UTF-8 US-ASCII)]")  # type: ignore[union-attr]
    with pytest.raises(imaplib.IMAP4.error, match="BAD"):
        imap.search(None, "FROBNICATE")


def test_searchres_save_and_dollar(imap: imaplib.IMAP4) -> None:
    """RFC 5182: RETURN (SAVE) keeps the result for "$" in later commands."""
    append(imap, "INBOX", *(message(n) for n in range(1, 6)))
    select(imap, "INBOX")
    assert search(imap, "$") == []  # nothing saved yet
    ok(imap.store("2,4", "+FLAGS", "(\\Flagged)"))
    # SAVE alone: no ESEARCH response at all
    typ, _ = imap._simple_command("SEARCH", "RETURN", "(SAVE)", "FLAGGED")
    assert typ == "OK" and untagged(imap, "ESEARCH") == [] and untagged(imap, "SEARCH") == []
    assert search(imap, "$") == [2, 4]
    assert search(imap, "UID", "$", uid=True) == [2, 4]
    data = ok(imap.store("$", "+FLAGS", "(\\Seen)"))
    assert [d[:1] for d in data] == [b"2", b"4"]  # type: ignore[index]
    typ, data = imap._simple_command("COPY", "$", "Archive")
    assert typ == "OK" and b"COPYUID" in data[0]  # type: ignore[operator]
    # SAVE with MIN (and not ALL or COUNT) keeps just the smallest (RFC 5182 §2.4)
    assert esearch(imap, "SEARCH", "RETURN", "(SAVE MIN)", "UNSEEN") == b"MIN 1"
    assert search(imap, "$") == [1]
    assert esearch(imap, "SEARCH", "RETURN", "(SAVE MIN MAX)", "UNSEEN") == b"MIN 1 MAX 5"
    assert search(imap, "$") == [1, 5]
    assert esearch(imap, "SEARCH", "RETURN", "(SAVE COUNT MIN)", "UNSEEN") == b"MIN 1 COUNT 3"
    assert search(imap, "$") == [1, 3, 5]
    # a failed SEARCH ... SAVE empties "$" (RFC 5182 §2.1)
    typ, _ = imap._simple_command("SEARCH", "RETURN", "(SAVE)", "CHARSET", "X-UNKNOWN", "ALL")
    assert typ == "NO"
    assert search(imap, "$") == []
    # the saved UIDs follow renumbering and expunges
    imap._simple_command("SEARCH", "RETURN", "(SAVE)", "4:5")
    ok(imap.store("1", "+FLAGS.SILENT", "(\\Deleted)"))
    ok(imap.expunge())
    assert search(imap, "$") == [3, 4]


def test_search_rev2_always_esearch(imap: imaplib.IMAP4) -> None:
    append(imap, "INBOX", message(1), message(2))
    ok(imap._simple_command("ENABLE", "IMAP4rev2"))
    select(imap, "INBOX")
    assert esearch(imap, "SEARCH", "ALL") == b"ALL 1:2"
    assert esearch(imap, "UID", "SEARCH", "UID", "2") == b"UID ALL 2"
    assert esearch(imap, "SEARCH", "SEEN") == b""


def test_search_and_expunges_of_another_session(server: ServerProcess, account: str) -> None:
    one, two = connect(server, account), connect(server, account)
    try:
        append(one, "INBOX", message(1), message(2), message(3))
        select(one, "INBOX")
        select(two, "INBOX")
        ok(one.store("2", "+FLAGS.SILENT", "(\\Deleted)"))
        ok(one.expunge())
        assert search(two, "ALL") == [1, 2, 3]  # no EXPUNGE during SEARCH by number
        assert untagged(two, "EXPUNGE") == []
        assert search(two, "ALL", uid=True) == [1, 2, 3]  # UID SEARCH: EXPUNGE after it
        assert untagged(two, "EXPUNGE") == [b"2"]
        assert search(two, "ALL") == [1, 2]
    finally:
        one.logout()
        two.logout()


def test_imapclient_search_corpus(server: ServerProcess, account: str) -> None:
    client = IMAPClient("127.0.0.1", port=server.ports["imap"], ssl=False, timeout=30)
    try:
        client.login(account, PASSWORD)
        for data in corpus():
            client.append("INBOX", data)
        client.select_folder("INBOX")
        assert client.search(["SUBJECT", "Lunch"]) == [1]
        assert client.search(["FROM", "grace@example.org"]) == [5]
        assert client.search(["HEADER", "Message-ID", "<20230314101500.1@example.org>"]) == [1]
        # only the top-level header: 08 carries <orig@example.org> in an attached message
        assert client.search(["HEADER", "Message-ID", "orig@example.org"]) == []
        # decoded text: RFC 2047 words, quoted-printable and base64 bodies (imapclient sends the
        # UTF-8 string as a literal with CHARSET UTF-8)
        assert client.search(["SUBJECT", "Köln"], "UTF-8") == [9]
        # 14 has a raw ISO-8859-1 "Jörg" in its From: header
        assert client.search(["FROM", "Jörg"], "UTF-8") == [9, 14]
        assert client.search(["BODY", "Grüße"], "UTF-8") == [5]
        assert client.search(["TEXT", "GRÜßE"], "UTF-8") == [5, 9]
        assert client.search(["TEXT", "grüsse"], "UTF-8") == [5, 9]  # full case folding: ß = ss
        assert client.search(["TEXT", "grüse"], "UTF-8") == []
        assert client.search(["BODY", "Hallo Welt"]) == [9]
        # sent dates are the day written in the Date: header, in its own zone
        assert client.search(["SENTON", "19-Mar-2023"]) == [12]
        assert client.search(["SENTSINCE", "20-Mar-2023"]) == [13, 14, 15, 20, 23, 28]
        uids = client.search(["OR", "SUBJECT", "digest", "SUBJECT", "nested"])
        assert uids == [7, 21]
        assert client.search(["NOT", "ALL"]) == []
    finally:
        client.logout()


# --------------------------------------------------------------------------- FETCH


def fetch_parts(data: list[object]) -> dict[int, dict[bytes, object]]:
    """imaplib FETCH data → {msn: {item name: value}} for simple values and literals."""
    out: dict[int, dict[bytes, object]] = {}
    text = b""
    literals: list[bytes] = []
    for piece in data:
        if isinstance(piece, tuple):
            text += piece[0] + b"\0%d\0" % len(literals)
            literals.append(piece[1])
        elif isinstance(piece, bytes):
            text += piece
    for match in re.finditer(rb"(\d+) \((.*?)\)(?=\d+ \(|$)", text, re.S):
        items: dict[bytes, object] = {}
        body = match.group(2)
        for item in re.finditer(
            rb"([A-Z0-9.]+(?:\[[^\]]*\](?:<\d+>)?)?) "
            rb"(\d+|\([^()]*(?:\([^()]*\)[^()]*)*\)|\"[^\"]*\"|\{\d+\}\0(\d+)\0)",
            body,
        ):
            value: object = item.group(2)
            if item.group(3) is not None:
                value = literals[int(item.group(3))]
            items[item.group(1)] = value
        out[int(match.group(1))] = items
    return out


def test_fetch_items(imap: imaplib.IMAP4) -> None:
    messages = corpus()
    append(imap, "INBOX", messages[0], messages[4])  # 01-plain, 05-mixed-attachments
    select(imap, "INBOX")
    data = ok(imap.fetch("1:2", "(UID RFC822.SIZE FLAGS INTERNALDATE BODY.PEEK[])"))
    got = fetch_parts(data)
    assert got[1][b"BODY[]"] == messages[0] and got[2][b"BODY[]"] == messages[4]
    assert got[1][b"RFC822.SIZE"] == b"%d" % len(messages[0])
    assert got[1][b"UID"] == b"1" and got[1][b"FLAGS"] == b"(\\Recent)"
    assert re.fullmatch(
        rb'"\d\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d [+-]\d{4}"', got[1][b"INTERNALDATE"]
    )  # type: ignore[arg-type]
    # items come back in the order asked; the section label is echoed as the client wrote it
    data = ok(imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (subject from)] FLAGS)"))
    assert data[0][0].startswith(b"1 (BODY[HEADER.FIELDS (subject from)] {")  # type: ignore[index]
    assert data[0][1] == (  # type: ignore[index]
        b"From: Alice Example <alice@example.org>\r\nSubject: Lunch on Friday?\r\n\r\n"
    )
    assert data[1] == b" FLAGS (\\Recent))"
    data = ok(imap.fetch("2", "(BODY.PEEK[1] BODY.PEEK[2.MIME] BINARY.SIZE[1] BODY.PEEK[1]<7.6>)"))
    got = fetch_parts(data)[2]
    # a part's body ends before the CRLF that belongs to the boundary line
    assert got[b"BODY[1]"] == b"Please find the report attached. Gr=C3=BC=C3=9Fe"
    assert got[b"BODY[2.MIME]"].startswith(b"Content-Type: application/pdf")  # type: ignore[union-attr]
    assert got[b"BINARY.SIZE[1]"] == b"%d" % len("Please find the report attached. Grüße".encode())
    assert got[b"BODY[1]<7>"] == b"find t"
    data = ok(imap.fetch("2", "(BINARY.PEEK[1])"))
    assert data[0][1] == "Please find the report attached. Grüße".encode()  # type: ignore[index]
    # structure items
    data = ok(imap.fetch("1", "(ENVELOPE)"))
    assert data[0] == (  # type: ignore[comparison-overlap]
        b'1 (ENVELOPE ("Tue, 14 Mar 2023 10:15:00 +0100" "Lunch on Friday?" '
        b'(("Alice Example" NIL "alice" "example.org")) (("Alice Example" NIL "alice" '
        b'"example.org")) (("Alice Example" NIL "alice" "example.org")) '
        b'(("Bob" NIL "bob" "example.net")) NIL NIL NIL "<20230314101500.1@example.org>"))'
    )
    data = ok(imap.fetch("2", "(BODYSTRUCTURE)"))
    assert data[0].startswith(b'2 (BODYSTRUCTURE (("text" "plain" ("charset" "utf-8") NIL NIL')  # type: ignore[union-attr]
    assert b'"mixed" ("boundary" "mix42")' in data[0]  # type: ignore[operator]
    # macros
    data = ok(imap.fetch("1", "FAST"))
    assert re.fullmatch(rb'1 \(FLAGS \(\\Recent\) INTERNALDATE "[^"]+" RFC822.SIZE \d+\)', data[0])  # type: ignore[arg-type]
    # nothing above was a non-PEEK fetch
    assert search(imap, "SEEN") == []


def test_fetch_sets_seen(server: ServerProcess, account: str) -> None:
    one, two = connect(server, account), connect(server, account)
    try:
        append(one, "INBOX", message(1), message(2), message(3), message(4))
        select(one, "INBOX")
        select(two, "INBOX")
        data = ok(one.fetch("1", "(BODY[TEXT])"))
        # FLAGS comes with the data that set \Seen (RFC 9051 §6.4.5), after the literal
        assert data[0][0] == b"1 (BODY[TEXT] {19}"  # type: ignore[index]
        assert data[1] == b" FLAGS (\\Seen \\Recent))"
        data = ok(one.fetch("1", "(BODY[TEXT])"))  # already seen: no FLAGS
        assert data[1] == b")"
        data = ok(one.fetch("2", "(RFC822)"))
        assert data[1] == b" FLAGS (\\Seen \\Recent))"
        ok(one.fetch("3", "(BODY.PEEK[] RFC822.HEADER BINARY.PEEK[1] RFC822.SIZE)"))
        assert search(one, "SEEN") == [1, 2]
        data = ok(one.uid("FETCH", "4", "(BODY[]<0.10>)"))
        assert data[0][0] == b"4 (UID 4 BODY[]<0> {10}"  # type: ignore[index]
        assert data[1] == b" FLAGS (\\Seen \\Recent))"
        # the other session hears of it
        ok(two.noop())
        assert sorted(untagged(two, "FETCH")) == [  # type: ignore[type-var]
            b"1 (FLAGS (\\Seen))",
            b"2 (FLAGS (\\Seen))",
            b"4 (FLAGS (\\Seen))",
        ]
        # EXAMINE never sets \Seen
        select(two, "INBOX", readonly=True)
        data = ok(two.fetch("3", "(BODY[])"))
        assert data[1] == b")"
        assert search(two, "UNSEEN") == [3]
    finally:
        one.logout()
        two.logout()


def test_fetch_sets_and_large_messages(imap: imaplib.IMAP4) -> None:
    big = message(1) + b"".join(b"line %06d of a long message\r\n" % n for n in range(20000))
    append(imap, "INBOX", big, message(2))
    select(imap, "INBOX")
    data = ok(imap.fetch("1", "(BODY.PEEK[])"))
    assert data[0][1] == big  # type: ignore[index]  # streamed in chunks
    data = ok(imap.fetch("1", "(BODY.PEEK[TEXT]<100000.200000>)"))
    assert data[0][1] == big[big.index(b"\r\n\r\n") + 4 :][100000:300000]  # type: ignore[index]
    data = ok(imap.fetch("1", "(BODY.PEEK[]<700000.100>)"))
    assert data == [(b"1 (BODY[]<700000> {0}", b""), b")"]
    # UID ranges: nothing there is OK with no data; n:* past the end still names the last
    typ, data = imap.uid("FETCH", "10:20", "(FLAGS)")
    assert (typ, data) == ("OK", [None])
    typ, data = imap.uid("FETCH", "10:*", "(FLAGS)")
    assert data == [b"2 (UID 2 FLAGS (\\Recent))"]
    with pytest.raises(imaplib.IMAP4.error, match="BAD"):
        imap.fetch("3", "(FLAGS)")
    with pytest.raises(imaplib.IMAP4.error, match="BAD"):
        imap.fetch("1", "(FLAGS) (CHANGEDSINCE x)")
    with pytest.raises(imaplib.IMAP4.error, match="BAD"):
        imap.fetch("1", "(FLAGS) (FROB 1)")


def test_fetch_expunged_by_another_session(server: ServerProcess, account: str) -> None:
    one, two = connect(server, account), connect(server, account)
    try:
        append(one, "INBOX", message(1), message(2), message(3))
        select(one, "INBOX")
        select(two, "INBOX")
        ok(two.store("2", "+FLAGS.SILENT", "(\\Deleted)"))
        ok(two.expunge())
        ok(one.noop())  # one learns of the expunge only now... it may announce it
        assert untagged(one, "EXPUNGE") == [b"2"]
        ok(two.store("2", "+FLAGS.SILENT", "(\\Deleted)"))  # message 3
        ok(two.expunge())
        # FETCH by number: no EXPUNGE; what is known is answered, content that is gone is not
        data = ok(one.fetch("1:2", "(UID FLAGS)"))
        assert data == [b"1 (UID 1 FLAGS (\\Recent))", b"2 (UID 3 FLAGS (\\Recent))"]
        assert untagged(one, "EXPUNGE") == []
        typ, data = one.fetch("1:2", "(BODY.PEEK[TEXT])")
        assert typ == "NO" and data[0].startswith(b"[EXPUNGEISSUED]")  # type: ignore[union-attr]
        assert untagged(one, "FETCH") == [(b"1 (BODY[TEXT] {19}", b"body of message 1\r\n"), b")"]
        assert untagged(one, "EXPUNGE") == []
        # UID FETCH may announce it, after its own data
        data = ok(one.uid("FETCH", "1:*", "(FLAGS)"))
        assert data == [b"1 (UID 1 FLAGS (\\Recent))", b"2 (UID 3 FLAGS (\\Recent))"]
        assert untagged(one, "EXPUNGE") == [b"2"]
    finally:
        one.logout()
        two.logout()


def test_imapclient_fetch(server: ServerProcess, account: str) -> None:
    client = IMAPClient("127.0.0.1", port=server.ports["imap"], ssl=False, timeout=30)
    try:
        client.login(account, PASSWORD)
        messages = corpus()
        for data in messages:
            client.append("Archive", data)
        client.select_folder("Archive", readonly=True)
        result = client.fetch(
            client.search(), ["ENVELOPE", "BODYSTRUCTURE", "RFC822.SIZE", "FLAGS"]
        )
        assert sorted(result) == list(range(1, len(messages) + 1))
        for uid, data in result.items():
            assert data[b"RFC822.SIZE"] == len(messages[uid - 1])
            # EXAMINE claims no \Recent, but shows it (RFC 3501 §6.3.2; as Dovecot does)
            assert data[b"FLAGS"] == (b"\\Recent",)
        assert result[1][b"ENVELOPE"].subject == b"Lunch on Friday?"
        assert result[9][b"ENVELOPE"].subject.startswith(b"=?utf-8?Q?Gr=C3=BC")
        assert result[5][b"BODYSTRUCTURE"].is_multipart
        whole = client.fetch([3, 8], ["BODY[]", "BODY.PEEK[HEADER]"])
        assert whole[3][b"BODY[]"] == messages[2]
        assert messages[7].startswith(whole[8][b"BODY[HEADER]"])
        size = len(messages[29])
        assert client.fetch([30], ["RFC822.SIZE"]) == {30: {b"RFC822.SIZE": size, b"SEQ": 30}}
    finally:
        client.logout()
