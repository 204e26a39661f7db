"""The delivery routine: trace headers, recipients, durability, temporary failures."""

from __future__ import annotations

import asyncio
import errno

import pytest

from pobox.mail.parse import parse_bytes
from pobox.service import delivery as delivery_module
from pobox.service.content import normalize_crlf, parse_pieces
from pobox.service.delivery import Envelope
from pobox.service.mail import MailService
from pobox.store.api import Spool, Store

MESSAGE = b"From: a@example.org\r\nSubject: hello\r\n\r\nbody line\r\n"


async def _inbox_contents(service: MailService, address: str) -> list[bytes]:
    account = await service.accounts.require(address)
    inbox = await service.store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    out = []
    for meta in await service.store.list_messages(inbox.id):
        content = await service.store.open_content(meta.blob)
        try:
            out.append(content.read(0, content.size))
        finally:
            content.close()
    return out


async def test_delivery_adds_return_path_and_received(service: MailService) -> None:
    await service.accounts.add("rcpt@example.com", "pw")
    envelope = Envelope("sender@example.org", ("rcpt@example.com",), "client.example", "192.0.2.1")
    (result,) = await service.delivery.deliver(envelope, MESSAGE)
    assert result.delivered and result.uid == 1
    (stored,) = await _inbox_contents(service, "rcpt@example.com")
    head = stored.split(b"\r\n")
    assert head[0] == b"Return-Path: <sender@example.org>"
    assert head[1] == b"Received: from client.example (192.0.2.1)"
    assert head[2].startswith(b"\tby localhost (pobox) with LMTP id ")
    assert head[3].startswith(b"\tfor <rcpt@example.com>; ")
    assert stored.endswith(MESSAGE)


async def test_bare_lf_is_stored_as_crlf(service: MailService) -> None:
    await service.accounts.add("rcpt@example.com", "pw")
    envelope = Envelope("", ("rcpt@example.com",))
    (result,) = await service.delivery.deliver(envelope, b"Subject: lf\n\nline one\nline two\n")
    assert result.delivered
    (stored,) = await _inbox_contents(service, "rcpt@example.com")
    assert stored.endswith(b"Subject: lf\r\n\r\nline one\r\nline two\r\n")
    assert b"\n" not in stored.replace(b"\r\n", b"")


async def test_alias_and_unknown_recipients(service: MailService) -> None:
    await service.accounts.add("rcpt@example.com", "pw")
    await service.accounts.add_alias("other@example.com", "rcpt@example.com")
    envelope = Envelope("", ("other@example.com", "nobody@example.com"))
    ok, unknown = await service.delivery.deliver(envelope, MESSAGE)
    assert ok.delivered
    assert not unknown.delivered and not unknown.temporary
    assert len(await _inbox_contents(service, "rcpt@example.com")) == 1


async def test_disk_full_is_temporary_and_stores_nothing(
    service: MailService, monkeypatch: pytest.MonkeyPatch
) -> None:
    await service.accounts.add("rcpt@example.com", "pw")
    store: Store = service.store
    real_new_spool = store.new_spool

    def full_spool():  # type: ignore[no-untyped-def]
        spool = real_new_spool()

        def write(data: bytes) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        spool.write = write  # type: ignore[method-assign]
        return spool

    monkeypatch.setattr(store, "new_spool", full_spool)
    (result,) = await service.delivery.deliver(Envelope("", ("rcpt@example.com",)), MESSAGE)
    assert not result.delivered and result.temporary
    monkeypatch.undo()
    assert await _inbox_contents(service, "rcpt@example.com") == []
    (again,) = await service.delivery.deliver(Envelope("", ("rcpt@example.com",)), MESSAGE)
    assert again.delivered  # service resumes once the fault clears


async def test_large_message_round_trips(service: MailService) -> None:
    await service.accounts.add("rcpt@example.com", "pw")
    body = b"".join(b"%08d %s\r\n" % (i, b"y" * 60) for i in range(100_000))  # ~7 MB
    message = b"Subject: big\r\n\r\n" + body
    (result,) = await service.delivery.deliver(Envelope("", ("rcpt@example.com",)), message)
    assert result.delivered
    (stored,) = await _inbox_contents(service, "rcpt@example.com")
    assert stored.endswith(message)


MULTIPART = (
    b"From: a@example.org\nSubject: parts\nMIME-Version: 1.0\n"
    b'Content-Type: multipart/mixed; boundary="b1"\n\n'
    b"preamble\n--b1\nContent-Type: text/plain\n\n.line with a dot\n--b1\n"
    b"Content-Type: application/octet-stream\n\n" + b"A" * 70 + b"\n--b1--\n"
)


@pytest.mark.parametrize(
    "message",
    [MESSAGE, MULTIPART, MULTIPART.replace(b"\n", b"\r\n"), MESSAGE + (b"y" * 100 + b"\r\n") * 700],
    ids=["simple", "multipart-lf", "multipart-crlf", "over-64k"],
)
async def test_structure_is_that_of_the_stored_file(service: MailService, message: bytes) -> None:
    """The message is parsed from memory while its file is written: the structure stored with
    it must be exactly what parsing the stored file gives."""
    await service.accounts.add("rcpt@example.com", "pw")
    envelope = Envelope("s@example.org", ("rcpt@example.com",), "client.example", "192.0.2.1")
    (result,) = await service.delivery.deliver(envelope, message)
    assert result.delivered
    account = await service.accounts.require("rcpt@example.com")
    inbox = await service.store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    (meta,) = await service.store.list_messages(inbox.id)
    (stored,) = await _inbox_contents(service, "rcpt@example.com")
    assert meta.size == len(stored)
    assert await service.store.get_structure(meta.blob) == parse_bytes(stored).to_bytes()


def test_pieces_are_parsed_as_one_message() -> None:
    whole = MULTIPART.replace(b"\n", b"\r\n")
    for cut in range(len(whole) + 1):
        assert parse_pieces((whole[:cut], whole[cut:])) == parse_bytes(whole)
    assert parse_pieces((b"", b"", whole)) == parse_bytes(whole)


def test_bare_lf_normalization() -> None:
    assert normalize_crlf(MESSAGE) is MESSAGE  # nothing to do: no copy
    assert normalize_crlf(b"a\nb\r\nc\n") == b"a\r\nb\r\nc\r\n"
    assert normalize_crlf(b"a\r\rb\n") == b"a\r\rb\r\n"
    assert normalize_crlf(b"") == b""


async def test_a_failed_parse_leaves_no_file(
    service: MailService, monkeypatch: pytest.MonkeyPatch
) -> None:
    await service.accounts.add("rcpt@example.com", "pw")
    store: Store = service.store
    real_new_spool = store.new_spool
    spools: list[Spool] = []
    discarded: list[Spool] = []

    def recorded_spool() -> Spool:
        spool = real_new_spool()
        real_discard = spool.discard

        def discard() -> None:
            discarded.append(spool)
            real_discard()

        spool.discard = discard  # type: ignore[method-assign]
        spools.append(spool)
        return spool

    def broken(pieces: object) -> None:
        raise RuntimeError("parser bug")

    monkeypatch.setattr(store, "new_spool", recorded_spool)
    monkeypatch.setattr(delivery_module, "parse_pieces", broken)
    (result,) = await service.delivery.deliver(Envelope("", ("rcpt@example.com",)), MESSAGE)
    assert not result.delivered and result.temporary
    for _ in range(100):  # the file is written in a thread: discarded once that is done
        if discarded:
            break
        await asyncio.sleep(0.02)
    assert len(spools) == 1 and discarded == spools
    assert await _inbox_contents(service, "rcpt@example.com") == []
