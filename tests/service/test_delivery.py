"""The delivery routine: trace headers, recipients, durability, temporary failures."""

from __future__ import annotations

import errno

import pytest

from pobox.service.delivery import Envelope
from pobox.service.mail import MailService
from pobox.store.api import Store

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
