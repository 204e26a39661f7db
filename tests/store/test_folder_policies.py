"""Backend conformance for folder policies (docs/policies.md): the stored settings and the
selection of due messages, on every backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from tests.store.util import append, message_bytes

from pobox.errors import NotFound
from pobox.store.api import AccountId, FolderPolicy, Store


async def test_settings_are_stored_replaced_and_removed(store: Store) -> None:
    alice = await store.create_account("alice@example.org", "h")
    bob = await store.create_account("bob@example.org", "h")
    await store.set_folder_policy(alice.id, "Trash", "expunge-after", "30d")
    await store.set_folder_policy(alice.id, "\\Sent", "archive-after", "365d")
    await store.set_folder_policy(alice.id, "*", "archive-by", "year")
    await store.set_folder_policy(bob.id, "INBOX", "archive-after", "2w")
    await store.set_folder_policy(alice.id, "Trash", "expunge-after", "7d")  # replaces
    assert await store.list_folder_policies(alice.id) == [
        FolderPolicy(alice.id, "*", "archive-by", "year"),
        FolderPolicy(alice.id, "Trash", "expunge-after", "7d"),
        FolderPolicy(alice.id, "\\Sent", "archive-after", "365d"),
    ]
    everyone = await store.list_folder_policies()
    assert [p.account_id for p in everyone] == [alice.id] * 3 + [bob.id]
    await store.set_folder_policy(alice.id, "Trash", "expunge-after", None)
    await store.set_folder_policy(alice.id, "Trash", "expunge-after", None)  # gone already
    assert [p.folder for p in await store.list_folder_policies(alice.id)] == ["*", "\\Sent"]


async def test_settings_need_the_account_and_go_with_it(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.set_folder_policy(AccountId(999999), "INBOX", "expunge-after", "1d")
    carol = await store.create_account("carol@example.org", "h")
    await store.set_folder_policy(carol.id, "INBOX", "expunge-after", "1d")
    await store.delete_account(carol.id)
    assert await store.list_folder_policies() == []


async def test_due_messages_by_save_date_and_by_internal_date(store: Store) -> None:
    account = await store.create_account("dana@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    dates = [
        datetime(2021, 6, 1, tzinfo=UTC),
        datetime(2019, 3, 1, tzinfo=UTC),
        datetime(2030, 1, 1, tzinfo=UTC),
        datetime(2020, 12, 31, 23, 0, tzinfo=UTC),
    ]
    metas = [
        await append(store, inbox.id, message_bytes(n), internal_date=d)
        for n, d in enumerate(dates)
    ]
    before = datetime(2022, 1, 1, tzinfo=UTC)
    due = await store.due_messages(inbox.id, "internal_date", before, 10)
    # oldest first, with the internal dates in UTC
    assert due == [(metas[1].uid, dates[1]), (metas[3].uid, dates[3]), (metas[0].uid, dates[0])]
    assert all(d.utcoffset() == timedelta(0) for _, d in due)
    assert await store.due_messages(inbox.id, "internal_date", before, 2) == due[:2]
    # save dates are the time of the append: none is due before it, every one after it
    first_save = metas[0].save_date - timedelta(seconds=1)
    assert await store.due_messages(inbox.id, "save_date", first_save, 10) == []
    later = metas[-1].save_date + timedelta(seconds=1)
    saved = await store.due_messages(inbox.id, "save_date", later, 10)
    assert sorted(uid for uid, _ in saved) == [m.uid for m in metas]
    # an expunged message is due no more; other mailboxes are not looked at
    await store.expunge(inbox.id, [metas[1].uid])
    due = await store.due_messages(inbox.id, "internal_date", before, 10)
    assert [uid for uid, _ in due] == [metas[3].uid, metas[0].uid]
    sent = await store.get_mailbox(account.id, "Sent")
    assert sent is not None
    assert await store.due_messages(sent.id, "internal_date", before, 10) == []
