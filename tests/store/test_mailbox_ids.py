"""A mailbox id names one mailbox for the life of the store: never handed out again after a
DELETE, so the change journal, a process's mailbox index and a selected session cannot take a
new mailbox for a deleted one (both backends)."""

from __future__ import annotations

from tests.store.util import append, message_bytes

from pobox.store.api import MailboxImage, Store


async def test_a_deleted_mailbox_id_is_never_reused(store: Store) -> None:
    account = await store.create_account("a@example.org", "h")
    first = await store.create_mailbox(account.id, "Reused")
    await append(store, first.id, message_bytes(1))
    seen = {first.id}
    # the newest mailbox deleted each time: the case a plain SQLite rowid would reuse
    current = first
    for _ in range(3):
        await store.delete_mailbox(current.id)
        current = await store.create_mailbox(account.id, "Reused")
        assert current.id not in seen
        assert current.uidvalidity != first.uidvalidity
        assert list((await store.message_columns(current.id)).uids) == []
        seen.add(current.id)
    found = await store.get_mailbox(account.id, "Reused")
    assert found is not None and found.id == current.id and found.uidnext == 1
    # restore_mailbox creates a mailbox too
    await store.delete_mailbox(current.id)
    restored = await store.restore_mailbox(
        account.id, MailboxImage("Restored", 4242, 1, 1, 1, None)
    )
    assert restored.id not in seen
