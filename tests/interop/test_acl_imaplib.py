"""Shared folders with a real client (RFC 4314, RFC 8440): Anna shares a folder with Ben over
IMAP with imaplib; Ben finds it under the shared namespace that NAMESPACE announces, reads it,
and can do what the rights say and nothing more. imapclient's ACL calls read the same lists."""

from __future__ import annotations

import asyncio
import imaplib

import pytest
from imapclient import IMAPClient

from pobox.server import Running

pytestmark = pytest.mark.interop

ANNA = "anna@example.org"
BEN = "ben@example.org"
CARL = "carl@example.org"
PASSWORD = "secret"
TIMEOUT = 30.0
SHARED = f"Shared/{ANNA}/Projects"
MESSAGE = b"From: anna@example.org\r\nSubject: plan\r\n\r\nthe plan\r\n"


def login(port: int, address: str) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", port, timeout=TIMEOUT)
    imap.login(address, PASSWORD)
    return imap


def ok(result: tuple[str, list[object]]) -> list[object]:
    typ, data = result
    assert typ == "OK", data
    return data


def refused(imap: imaplib.IMAP4, code: str, *command: object) -> None:
    """The command is answered NO [code] (imaplib raises IMAP4.error on NO)."""
    name = str(command[0])
    with pytest.raises(imaplib.IMAP4.error, match=rf"\[{code}\]"):
        typ, data = getattr(imap, name)(*command[1:])
        if typ == "NO":
            raise imaplib.IMAP4.error(data[0].decode() if isinstance(data[0], bytes) else data)


def share(port: int) -> None:
    anna = login(port, ANNA)
    try:
        ok(anna.create("Projects"))
        ok(anna.append("Projects", "(\\Flagged)", None, MESSAGE))
        ok(anna._simple_command("SETACL", "Projects", BEN, "lrs"))
        typ, _data = anna._simple_command("GETACL", "Projects")
        assert typ == "OK"
        acl = anna.untagged_responses.pop("ACL")
        assert acl == [f"Projects {ANNA} lrswipkxteacd {BEN} lrs".encode()]
    finally:
        anna.logout()


def ben_reads(port: int) -> None:
    ben = login(port, BEN)
    try:
        typ, data = ben.namespace()
        assert data == [b'(("" "/")) (("Shared/" "/")) NIL']
        names = ok(ben.list('""', "*"))
        assert any(SHARED.encode() in bytes(n) for n in names if isinstance(n, bytes)), names
        # RFC 8440: the rights with the list
        typ, data = ben._simple_command("LIST", '""', '"Shared/*"', "RETURN", "(MYRIGHTS)")
        assert typ == "OK"
        assert ben.untagged_responses.pop("MYRIGHTS") == [f"{SHARED} lrs".encode()]
        typ, data = ben.select(f'"{SHARED}"')
        assert typ == "OK" and data == [b"1"]
        # lrs has none of i, e, w, t... but s: RFC 4314 §5.2 says READ-WRITE
        assert ben.untagged_responses.pop("READ-WRITE", None) is not None
        # FETCH BODY[] sets \Seen: the s right
        ok(ben.fetch("1", "(BODY[])"))
        flags = ok(ben.fetch("1", "(FLAGS)"))
        assert b"\\Seen" in bytes(flags[0]) and b"\\Flagged" in bytes(flags[0])  # type: ignore[arg-type]
        # no w: \Flagged cannot be removed; no t: no \Deleted; no e: no EXPUNGE
        refused(ben, "NOPERM", "store", "1", "-FLAGS", "(\\Flagged)")
        refused(ben, "NOPERM", "store", "1", "+FLAGS", "(\\Deleted)")
        refused(ben, "NOPERM", "expunge")
        # no i: no APPEND, COPY or MOVE into it
        refused(ben, "NOPERM", "append", f'"{SHARED}"', None, None, MESSAGE)
        ok(ben.select("INBOX"))
        ok(ben.append("INBOX", None, None, MESSAGE))
        refused(ben, "NOPERM", "copy", "1", f'"{SHARED}"')
        # no a: the list is not Ben's to read or change; no k, no x
        refused(ben, "NOPERM", "_simple_command", "GETACL", f'"{SHARED}"')
        refused(ben, "NOPERM", "_simple_command", "SETACL", f'"{SHARED}"', BEN, "+a")
        refused(ben, "NOPERM", "create", f'"{SHARED}/Sub"')
        refused(ben, "NOPERM", "delete", f'"{SHARED}"')
        typ, _ = ben._simple_command("MYRIGHTS", f'"{SHARED}"')
        assert typ == "OK"
        assert ben.untagged_responses.pop("MYRIGHTS") == [f"{SHARED} lrs".encode()]
    finally:
        ben.logout()


def carl_sees_nothing(port: int) -> None:
    carl = login(port, CARL)
    try:
        names = ok(carl.list('""', "*"))
        assert not any(b"Shared" in bytes(n) for n in names if isinstance(n, bytes))
        for command in (
            ("select", f'"{SHARED}"'),
            ("status", f'"{SHARED}"', "(MESSAGES)"),
            ("_simple_command", "MYRIGHTS", f'"{SHARED}"'),
            ("_simple_command", "GETACL", f'"{SHARED}"'),
            ("delete", f'"{SHARED}"'),
        ):
            refused(carl, "NONEXISTENT", *command)
    finally:
        carl.logout()


def imapclient_reads_lists(port: int) -> None:
    with IMAPClient("127.0.0.1", port=port, ssl=False, timeout=TIMEOUT) as client:
        client.login(ANNA, PASSWORD)
        assert client.has_capability("ACL")
        client.setacl("Projects", CARL, "lr")
        acl = dict(client.getacl("Projects"))
        assert acl[CARL.encode()] == b"lr"
        assert acl[BEN.encode()] == b"lrs"
        client.setacl("Projects", CARL, "-lr")  # nothing left: the entry goes
        assert CARL.encode() not in dict(client.getacl("Projects"))


async def test_a_shared_folder_with_imaplib(running: Running) -> None:
    service = running.service
    port = running.port("imap")
    for address in (ANNA, BEN, CARL):
        await service.accounts.add(address, PASSWORD)
    await asyncio.to_thread(share, port)
    await asyncio.to_thread(ben_reads, port)
    await asyncio.to_thread(carl_sees_nothing, port)
    await asyncio.to_thread(imapclient_reads_lists, port)
