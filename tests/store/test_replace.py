"""Store.replace (IMAP REPLACE, RFC 8508) on every backend: the new message in and the old one
out in one transaction, both or neither."""

from __future__ import annotations

import pytest
from tests.store.util import append, message_bytes, new_message

from pobox.errors import Expunged, OverQuota
from pobox.store.api import MailboxId, QuotaLimits, Store, Uid


async def _inbox(store: Store, address: str) -> tuple[int, MailboxId]:
    account = await store.create_account(address, "h")
    mailbox = await store.get_mailbox(account.id, "INBOX")
    assert mailbox is not None
    return account.id, mailbox.id


async def test_replace_in_the_same_mailbox(store: Store) -> None:
    _, inbox = await _inbox(store, "r@example.org")
    old = await append(store, inbox, message_bytes(1))
    keep = await append(store, inbox, message_bytes(2))
    meta, gone = await store.replace(
        inbox, await new_message(store, message_bytes(3)), inbox, old.uid
    )
    assert gone.uid == old.uid and gone.modseq > keep.modseq
    assert meta.uid == keep.uid + 1 and meta.modseq > gone.modseq
    assert [m.uid for m in await store.list_messages(inbox)] == [keep.uid, meta.uid]
    assert old.uid in await store.expunged_since(inbox, keep.modseq)
    content = await store.open_content(meta.blob)
    try:
        assert content.read(0, meta.size) == message_bytes(3)
    finally:
        content.close()


async def test_replace_into_another_mailbox(store: Store) -> None:
    account, inbox = await _inbox(store, "r@example.org")
    drafts = await store.create_mailbox(account, "Drafts2")
    old = await append(store, inbox, message_bytes(1))
    meta, gone = await store.replace(
        drafts.id, await new_message(store, message_bytes(2)), inbox, old.uid
    )
    assert gone.uid == old.uid and meta.mailbox_id == drafts.id
    assert await store.list_messages(inbox) == []
    assert [m.uid for m in await store.list_messages(drafts.id)] == [meta.uid]


async def test_replace_of_a_message_gone_stores_nothing(store: Store) -> None:
    _, inbox = await _inbox(store, "r@example.org")
    old = await append(store, inbox, message_bytes(1))
    await store.expunge(inbox, [old.uid])
    with pytest.raises(Expunged):
        await store.replace(inbox, await new_message(store, message_bytes(2)), inbox, old.uid)
    with pytest.raises(Expunged):
        await store.replace(inbox, await new_message(store, message_bytes(2)), inbox, Uid(99))
    assert await store.list_messages(inbox) == []


async def test_replace_over_quota_keeps_the_old_message(store: Store) -> None:
    account, inbox = await _inbox(store, "r@example.org")
    old = await append(store, inbox, message_bytes(1))
    limits = QuotaLimits(storage=old.size + 10)
    with pytest.raises(OverQuota):
        await store.replace(
            inbox, await new_message(store, message_bytes(2, 100)), inbox, old.uid, quota=limits
        )
    assert [m.uid for m in await store.list_messages(inbox)] == [old.uid]
    # the limit counts what is left after both: a replacement of the same size fits
    meta, _ = await store.replace(
        inbox, await new_message(store, message_bytes(2)), inbox, old.uid, quota=limits
    )
    assert [m.uid for m in await store.list_messages(inbox)] == [meta.uid]
    usage = await store.quota_usage(account)
    assert (usage.storage, usage.messages) == (meta.size, 1)
