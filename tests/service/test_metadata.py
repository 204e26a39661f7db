"""pobox.service.metadata (RFC 5464) and its IMAP commands where a transcript cannot say it:
values with NUL bytes, values longer than the limit, the per-account limit."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from pobox.errors import NoPermission, NotFound
from pobox.server import Running
from pobox.service.mail import MailService
from pobox.service.mailboxes import Mailboxes
from pobox.service.metadata import (
    INFINITY,
    BadEntry,
    NoPrivate,
    ValueTooLarge,
    entry_name,
    select,
)
from pobox.store.api import TooManyAnnotations


def test_entry_names_follow_rfc_5464_section_3_2() -> None:
    assert entry_name("/Private/Vendor/Loupe/Smart-Mailboxes") == (
        "/private/vendor/loupe/smart-mailboxes"
    )
    assert entry_name("/shared/comment") == "/shared/comment"
    assert entry_name("/shared", scope=True) == "/shared"
    assert entry_name("/PRIVATE", scope=True) == "/private"
    assert entry_name("/shared/x\x1ay") == "/shared/x\x1ay"  # 0x1a is not 0x00-0x19
    for bad in (
        "/shared",
        "/private",
        "/other/comment",
        "comment",
        "",
        "/shared//comment",
        "/shared/comment/",
        "/shared/comm*nt",
        "/shared/comm%nt",
        "/shared/caf\u00e9",
        "/shared/tab\there",
        "/shared/nul\x00",
    ):
        with pytest.raises(BadEntry):
            entry_name(bad)


def test_depth_selects_the_entry_its_children_or_everything_below() -> None:
    stored = [
        ("/private/a", b"1"),
        ("/private/a/b", b"2"),
        ("/private/a/b/c", b"3"),
        ("/private/ab", b"4"),
        ("/shared/a", b"5"),
    ]
    assert select(stored, ["/private/a"], 0) == [("/private/a", b"1")]
    assert select(stored, ["/private/a"], 1) == [("/private/a", b"1"), ("/private/a/b", b"2")]
    assert select(stored, ["/private/a"], INFINITY) == stored[:3]
    assert select(stored, ["/shared/a", "/private/a", "/shared/a"], 0) == [
        ("/shared/a", b"5"),
        ("/private/a", b"1"),
    ]
    assert select(stored, ["/private"], INFINITY) == stored[:4]


async def test_values_are_limited_and_private_entries_can_be_switched_off(
    service: MailService,
) -> None:
    fred = await service.accounts.add("fred@example.org", "pw")
    meta = service.metadata
    meta.config = dataclasses.replace(meta.config, max_value_size=1024)
    await meta.set(fred, "INBOX", [("/shared/comment", b"x" * 1024)])
    with pytest.raises(ValueTooLarge) as caught:
        await meta.set(fred, "INBOX", [("/shared/small", b"ok"), ("/shared/comment", b"x" * 1025)])
    assert caught.value.limit == 1024
    found = await meta.get(fred, "INBOX", ["/shared"], depth=INFINITY)
    assert found.entries == [("/shared/comment", b"x" * 1024)]  # nothing of the refused write
    meta.config = dataclasses.replace(meta.config, private_entries=False)
    with pytest.raises(NoPrivate):
        await meta.set(fred, "", [("/private/x", b"1")])


async def test_rights_on_shared_folders(service: MailService) -> None:
    fred = await service.accounts.add("fred@example.org", "pw")
    chris = await service.accounts.add("chris@example.org", "pw")
    await Mailboxes(service.store, service.acl).create(fred, "Team")
    name = "Shared/fred@example.org/Team"
    with pytest.raises(NotFound):
        await service.metadata.get(chris, name, ["/shared/comment"])
    for rights, may_read in (("l", False), ("lr", True), ("ls", True), ("li", True), ("lp", True)):
        await service.acl.set_acl(fred, "Team", "chris@example.org", rights)
        if may_read:
            await service.metadata.get(chris, name, ["/shared/comment"])
            await service.metadata.set(chris, name, [("/private/comment", b"mine")])
            with pytest.raises(NoPermission):
                await service.metadata.set(chris, name, [("/shared/comment", b"ours")])
        else:
            with pytest.raises(NoPermission):
                await service.metadata.get(chris, name, ["/shared/comment"])
    await service.acl.set_acl(fred, "Team", "chris@example.org", "lw")
    await service.metadata.set(chris, name, [("/shared/comment", b"ours")])
    found = await service.metadata.get(fred, "Team", ["/shared/comment", "/private/comment"])
    assert found.entries == [("/shared/comment", b"ours")]  # chris's private entry is his


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes, tag: bytes
) -> bytes:
    writer.write(data)
    await writer.drain()
    out = b""
    while not out.startswith(tag + b" ") and b"\r\n" + tag + b" " not in out:
        line = await reader.readline()
        assert line, out
        out += line
    while not out.endswith(b"\r\n"):
        out += await reader.readline()
    return out


async def test_imap_binary_values_too_large_values_and_the_account_limit(
    running: Running,
) -> None:
    service = running.service
    await service.accounts.add("fred@example.org", "secret")
    meta = service.metadata
    meta.config = dataclasses.replace(meta.config, max_value_size=1024, max_entries_per_account=12)
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port("imap"))
    await reader.readline()
    out = await _exchange(reader, writer, b"a LOGIN fred@example.org secret\r\n", b"a")
    assert b"a OK" in out
    # a value with NUL bytes comes as literal8 and goes back as literal8 (RFC 5464 §5)
    out = await _exchange(
        reader, writer, b"b SETMETADATA INBOX (/private/blob ~{5+}\r\na\x00b\x00c)\r\n", b"b"
    )
    assert out == b"b OK SETMETADATA completed\r\n"
    out = await _exchange(reader, writer, b"c GETMETADATA INBOX /private/blob\r\n", b"c")
    assert out == (
        b"* METADATA INBOX (/private/blob ~{5}\r\na\x00b\x00c)\r\nc OK GETMETADATA completed\r\n"
    )
    big = b"y" * 1025
    out = await _exchange(
        reader, writer, b"d SETMETADATA INBOX (/shared/comment {1025+}\r\n" + big + b")\r\n", b"d"
    )
    assert out == b"d NO [METADATA MAXSIZE 1024] metadata values are limited to 1024 octets\r\n"
    # twelve entries for the account in all: the blob, five on INBOX and Drafts, one on the
    # server; a shared entry of its own mailbox is charged to it too
    for box, names in (
        (b"INBOX", range(1, 6)),
        (b"Drafts", range(6, 11)),
        (b'""', range(11, 12)),
    ):
        values = b" ".join(b'/private/e%d "v"' % n for n in names)
        out = await _exchange(reader, writer, b"e SETMETADATA %s (%s)\r\n" % (box, values), b"e")
        assert out == b"e OK SETMETADATA completed\r\n", (box, out)
    out = await _exchange(reader, writer, b'f SETMETADATA Sent (/shared/one "too many")\r\n', b"f")
    assert out == b"f NO [METADATA TOOMANY] at most 12 metadata entries per account\r\n"
    writer.close()
    await writer.wait_closed()


async def test_deleting_a_mailbox_deletes_its_entries(service: MailService) -> None:
    fred = await service.accounts.add("fred@example.org", "pw")
    await Mailboxes(service.store, service.acl).create(fred, "Old")
    await service.metadata.set(fred, "Old", [("/shared/comment", b"gone soon")])
    await Mailboxes(service.store, service.acl).delete(fred, "Old")
    await Mailboxes(service.store, service.acl).create(fred, "Old")
    assert (await service.metadata.get(fred, "Old", ["/shared/comment"])).entries == []
    with pytest.raises(TooManyAnnotations):
        meta = service.metadata
        meta.config = dataclasses.replace(meta.config, max_entries_per_mailbox=10)
        await meta.set(fred, "Old", [(f"/shared/e{n}", b"v") for n in range(11)])
