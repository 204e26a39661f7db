"""Conformance: the bulk read of indexed header fields used by SEARCH and SORT."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.store.util import append, message_bytes

from pobox.store.api import MailboxId, SearchFields, Store, Uid

ENCODED = (
    b"From: =?utf-8?q?J=C3=A9r=C3=B4me?= <jerome@example.org>\r\n"
    b"To: a@example.com, b@example.com\r\nCc: c@example.com\r\nBcc: d@example.com\r\n"
    b"Subject: =?iso-8859-1?q?caf=E9?= au lait\r\nMessage-ID: <m1@example.org>\r\n"
    b"Date: Mon, 2 Feb 2026 23:30:00 -0500\r\n\r\nbody\r\n"
)


async def _mailbox(store: Store) -> MailboxId:
    account = await store.create_account("fields@example.com", "x")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    return inbox.id


async def test_fields_of_every_message(store: Store) -> None:
    mailbox = await _mailbox(store)
    first = await append(store, mailbox, ENCODED)
    second = await append(store, mailbox, message_bytes(2))
    fields = await store.search_fields(mailbox)
    assert set(fields) == {first.uid, second.uid}
    one = fields[first.uid]
    assert one.subject == "café au lait"
    assert one.from_ == "Jérôme <jerome@example.org>"
    assert one.to == "a@example.com, b@example.com"
    assert (one.cc, one.bcc) == ("c@example.com", "d@example.com")
    assert one.message_id == "<m1@example.org>"
    assert one.sent_date == datetime(2026, 2, 3, 4, 30, tzinfo=UTC)
    two = fields[second.uid]
    assert two == SearchFields(
        subject="message 2",
        from_="sender2@example.org",
        to="rcpt@example.com",
        message_id="<2@example.org>",
        sent_date=None,
    )


async def test_fields_of_chosen_uids_in_chunks(store: Store) -> None:
    mailbox = await _mailbox(store)
    metas = [await append(store, mailbox, message_bytes(n)) for n in range(12)]
    chosen = [m.uid for m in metas[::3]]
    fields = await store.search_fields(mailbox, chosen)
    assert sorted(fields) == chosen
    assert fields[chosen[1]].subject == "message 3"
    # unknown UIDs are left out; an empty list asks for nothing
    assert await store.search_fields(mailbox, [Uid(9999)]) == {}
    assert await store.search_fields(mailbox, []) == {}
    # a long list (more than one chunk of SQL parameters) still comes back whole
    many = [Uid(u) for u in range(1, 3000)]
    assert sorted(await store.search_fields(mailbox, many)) == [m.uid for m in metas]


async def test_fields_follow_the_mailbox(store: Store) -> None:
    mailbox = await _mailbox(store)
    meta = await append(store, mailbox, message_bytes(1))
    account = await store.get_account("fields@example.com")
    assert account is not None
    other = await store.create_mailbox(account.id, "Other")
    assert await store.search_fields(other.id) == {}
    ((_, copied),) = await store.copy(mailbox, [meta.uid], other.id)
    assert (await store.search_fields(other.id))[copied].subject == "message 1"
    await store.expunge(mailbox, [meta.uid])
    assert await store.search_fields(mailbox) == {}
