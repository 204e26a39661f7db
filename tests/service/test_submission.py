"""pobox.service.submission: sender and From checks, Date/Message-ID, routing, and the order
that keeps a client's retry from delivering a local copy twice."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from pobox.errors import Temporary
from pobox.service.domains import ServedDomains
from pobox.service.mail import MailService
from pobox.service.submission import (
    BadMessage,
    NoRelay,
    NoSuchRecipient,
    NotYourAddress,
    Submission,
    complete_headers,
    from_addresses,
    header_fields,
    split_head,
)
from pobox.store.api import Account

ME = "me@example.com"
LOCAL = "friend@example.com"
REMOTE = "someone@elsewhere.test"


class FakeQueue:
    """OutboundQueue.enqueue's signature; fails while *failing* is set."""

    def __init__(self) -> None:
        self.queued: list[tuple[str, list[str], bytes]] = []
        self.failing = False

    async def enqueue(self, sender: str, recipients: Sequence[str], message: bytes) -> str:
        if self.failing:
            raise Temporary("queue unavailable")
        self.queued.append((sender, list(recipients), message))
        return f"Q{len(self.queued)}"


def _submission(service: MailService, queue: FakeQueue | None) -> Submission:
    domains = ServedDomains(service.store, ["extra.test"])
    return Submission(
        service.store, service.accounts, service.delivery, domains, "mail.example.com", queue
    )


async def _setup(service: MailService) -> Account:
    account = await service.accounts.add(ME, "pw")
    await service.accounts.add_alias("alias@example.com", ME)
    await service.accounts.add(LOCAL, "pw")
    return account


async def _inbox_count(service: MailService, address: str) -> int:
    account = await service.accounts.require(address)
    inbox = await service.store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    return len(await service.store.list_messages(inbox.id))


def _message(sender: str = ME, extra: str = "") -> bytes:
    return f"From: Me <{sender}>\r\nSubject: t\r\n{extra}\r\nbody\r\n".encode()


async def test_local_and_remote_recipients(service: MailService) -> None:
    account = await _setup(service)
    queue = FakeQueue()
    submission = _submission(service, queue)
    done = await submission.submit(account, ME, [LOCAL, REMOTE], _message())
    assert done.local == (LOCAL,) and done.remote == (REMOTE,) and done.queue_id == "Q1"
    assert await _inbox_count(service, LOCAL) == 1
    ((sender, rcpts, queued),) = queue.queued
    assert (sender, rcpts) == (ME, [REMOTE])
    fields = dict(header_fields(split_head(queued)[0]))
    assert fields["message-id"] == done.message_id and done.message_id.endswith(
        "@mail.example.com>"
    )
    assert "date" in fields


async def test_a_failed_enqueue_delivers_nothing(service: MailService) -> None:
    """The queue goes first: when it fails, no local copy exists, so the client's retry after
    451 delivers each recipient once."""
    account = await _setup(service)
    queue = FakeQueue()
    queue.failing = True
    submission = _submission(service, queue)
    with pytest.raises(Temporary):
        await submission.submit(account, ME, [LOCAL, REMOTE], _message())
    assert await _inbox_count(service, LOCAL) == 0
    queue.failing = False
    await submission.submit(account, ME, [LOCAL, REMOTE], _message())
    assert await _inbox_count(service, LOCAL) == 1
    assert len(queue.queued) == 1


async def test_sender_and_from_must_be_the_accounts(service: MailService) -> None:
    account = await _setup(service)
    submission = _submission(service, FakeQueue())
    await submission.check_sender(account, "ALIAS@example.com")
    for forged in (LOCAL, "me@elsewhere.test", ""):
        with pytest.raises(NotYourAddress):
            await submission.check_sender(account, forged)
    with pytest.raises(NotYourAddress):
        await submission.submit(account, ME, [LOCAL], _message(LOCAL))
    with pytest.raises(NotYourAddress):
        await submission.submit(account, LOCAL, [LOCAL], _message())
    with pytest.raises(BadMessage):
        await submission.submit(account, ME, [LOCAL], b"Subject: no from\r\n\r\nhi\r\n")
    assert await _inbox_count(service, LOCAL) == 0
    await submission.submit(account, "alias@example.com", [LOCAL], _message("alias@example.com"))
    assert await _inbox_count(service, LOCAL) == 1


async def test_routing(service: MailService) -> None:
    await _setup(service)
    submission = _submission(service, FakeQueue())
    assert await submission.route(LOCAL) == "local"
    assert await submission.route("alias@example.com") == "local"
    assert await submission.route(REMOTE) == "remote"
    for unknown in ("nobody@example.com", "nobody@extra.test"):
        with pytest.raises(NoSuchRecipient):
            await submission.route(unknown)
    with pytest.raises(NoRelay):
        await _submission(service, None).route(REMOTE)


def test_complete_headers_adds_only_what_is_missing() -> None:
    message = b"From: a@b.test\r\nSubject: x\r\n\r\nbody\r\n"
    completed, message_id = complete_headers(message, "host.test", now=0.0)
    head, body = split_head(completed)
    assert body == b"\r\nbody\r\n"
    names = [name for name, _ in header_fields(head)]
    assert names == ["from", "subject", "date", "message-id"]
    assert message_id.startswith("<") and message_id.endswith("@host.test>")
    kept = b"Date: Thu, 1 Jan 1970 00:00:00 +0000\r\nMessage-ID: <x@y>\r\n\r\nb\r\n"
    assert complete_headers(kept, "host.test") == (kept, "<x@y>")
    headers_only, _ = complete_headers(b"From: a@b.test\r\n", "h")
    assert headers_only.endswith(b"\r\n\r\n")


def test_from_addresses_unfolds_and_lists_all() -> None:
    head = b'From: "A, B" <a@b.test>,\r\n\tc@d.test\r\nTo: x@y.test\r\n'
    assert from_addresses(header_fields(head)) == ["a@b.test", "c@d.test"]


async def test_a_full_local_recipient_is_told_to_the_sender(service: MailService) -> None:
    """The sender heard 250 for every recipient; a local one whose mailbox is full gets
    nothing, and the sender a notice in their INBOX (docs/quota.md)."""
    account = await _setup(service)
    await service.accounts.set_setting(LOCAL, "quota.messages", "1")
    submission = _submission(service, FakeQueue())
    await submission.submit(account, ME, [LOCAL], _message())
    await submission.submit(account, ME, [LOCAL], _message(extra="X-Second: yes\r\n"))
    assert await _inbox_count(service, LOCAL) == 2  # the first message and the quota warning
    inbox = await service.store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    (notice,) = (await service.store.search_fields(inbox.id)).values()
    assert notice.subject == "Undelivered Mail: mailbox full"
    assert "MAILER-DAEMON@" in notice.from_
