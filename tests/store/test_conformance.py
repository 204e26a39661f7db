"""Backend conformance: the invariants every storage backend keeps (DESIGN.md rule 8)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from tests.store.util import append, message_bytes, new_message

from pobox.errors import AlreadyExists, InvalidInput, NotFound
from pobox.service.content import IncomingMessage
from pobox.store.api import (
    DEFAULT_MAILBOXES,
    BlobId,
    FlagOp,
    MailboxId,
    ModSeq,
    Rendered,
    SearchText,
    Store,
    TextMatches,
    Uid,
)


async def test_new_account_gets_default_mailboxes_with_special_use(store: Store) -> None:
    account = await store.create_account("alice@example.org", "hash")
    mailboxes = {m.name: m for m in await store.list_mailboxes(account.id)}
    assert set(mailboxes) == {name for name, _ in DEFAULT_MAILBOXES}
    assert mailboxes["Sent"].special_use == "\\Sent"
    assert mailboxes["Trash"].special_use == "\\Trash"
    assert mailboxes["INBOX"].special_use is None
    assert all(m.subscribed for m in mailboxes.values())
    # every mailbox its own UIDVALIDITY, nothing stored yet
    assert len({m.uidvalidity for m in mailboxes.values()}) == len(mailboxes)
    assert all(m.uidnext == 1 for m in mailboxes.values())


async def test_accounts_are_unique_case_insensitively(store: Store) -> None:
    await store.create_account("bob@example.org", "h")
    with pytest.raises(AlreadyExists):
        await store.create_account("BOB@example.org", "h")
    assert (await store.get_account("Bob@Example.org")) is not None


async def test_alias_resolves_and_cannot_shadow_an_account(store: Store) -> None:
    bob = await store.create_account("bob@example.org", "h")
    await store.create_account("carol@example.org", "h")
    await store.add_alias("robert@example.org", bob.id)
    resolved = await store.resolve_address("robert@example.org")
    assert resolved is not None and resolved.id == bob.id
    with pytest.raises(AlreadyExists):
        await store.add_alias("carol@example.org", bob.id)
    assert await store.resolve_address("nobody@example.org") is None


async def test_uids_ascend_and_are_unique_under_concurrent_appends(store: Store) -> None:
    account = await store.create_account("a@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    metas = await asyncio.gather(*(append(store, inbox.id, message_bytes(n)) for n in range(200)))
    uids = [m.uid for m in metas]
    assert sorted(uids) == list(range(1, 201))
    listed = await store.list_messages(inbox.id)
    assert [m.uid for m in listed] == list(range(1, 201))
    mailbox = await store.get_mailbox_by_id(inbox.id)
    assert mailbox is not None and mailbox.uidnext == 201


async def test_append_many_stores_all_in_order_with_consecutive_uids(store: Store) -> None:
    account = await store.create_account("a@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    await append(store, inbox.id, message_bytes(0))
    messages = [await new_message(store, message_bytes(n), flags={"\\Seen"}) for n in (1, 2, 3)]
    metas = await store.append_many(inbox.id, messages)
    assert [m.uid for m in metas] == [2, 3, 4]
    assert metas[0].modseq < metas[1].modseq < metas[2].modseq
    listed = await store.list_messages(inbox.id)
    assert [m.uid for m in listed] == [1, 2, 3, 4]
    assert all("\\Seen" in m.flags for m in listed[1:])
    for meta, n in zip(metas, (1, 2, 3), strict=True):
        content = await store.open_content(meta.blob)
        try:
            assert content.read(0, content.size) == message_bytes(n)
        finally:
            content.close()


async def test_append_many_is_all_or_nothing(store: Store) -> None:
    account = await store.create_account("a@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    good = await new_message(store, message_bytes(1))
    bad = await new_message(store, message_bytes(2), flags={"\\Bogus"})  # refused while writing
    with pytest.raises(InvalidInput):
        await store.append_many(inbox.id, [good, bad])
    assert await store.list_messages(inbox.id) == []
    mailbox = await store.get_mailbox_by_id(inbox.id)
    assert mailbox is not None and mailbox.uidnext == 1
    gone = await store.create_mailbox(account.id, "Gone")
    await store.delete_mailbox(gone.id)
    messages = [await new_message(store, message_bytes(n)) for n in (3, 4)]
    with pytest.raises(NotFound):
        await store.append_many(gone.id, messages)


async def test_totals_count_the_whole_store(store: Store) -> None:
    empty = await store.totals()
    assert (empty.accounts, empty.messages, empty.octets) == (0, 0, 0)
    a = await store.create_account("a@example.org", "h")
    await store.create_account("b@example.org", "h")
    inbox = await store.get_mailbox(a.id, "INBOX")
    assert inbox is not None
    first = await append(store, inbox.id, message_bytes(1))
    second = await append(store, inbox.id, message_bytes(2, size=1000))
    kept = await store.create_mailbox(a.id, "Kept")
    await store.copy(inbox.id, [first.uid], kept.id)  # a copy counts again
    totals = await store.totals()
    mailboxes = len(await store.list_mailboxes(a.id)) + len(
        await store.list_mailboxes((await store.get_account("b@example.org")).id)  # type: ignore[union-attr]
    )
    assert totals.accounts == 2 and totals.mailboxes == mailboxes
    assert totals.messages == 3
    assert totals.octets == 2 * first.size + second.size
    await store.expunge(inbox.id, [second.uid])
    assert (await store.totals()).messages == 2


async def test_uids_are_never_reused_after_expunge(store: Store) -> None:
    account = await store.create_account("a@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    first = await append(store, inbox.id, message_bytes(1))
    second = await append(store, inbox.id, message_bytes(2))
    await store.expunge(inbox.id, [second.uid])
    third = await append(store, inbox.id, message_bytes(3))
    assert first.uid < second.uid < third.uid


async def test_modseq_grows_with_every_change(store: Store) -> None:
    account = await store.create_account("a@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    meta = await append(store, inbox.id, message_bytes(1))
    before = await store.get_mailbox_by_id(inbox.id)
    assert before is not None and before.highest_modseq >= meta.modseq
    changed = await store.set_flags(inbox.id, [meta.uid], FlagOp.ADD, frozenset({"\\Seen"}))
    assert len(changed) == 1 and changed[0].modseq > meta.modseq
    assert changed[0].flags == frozenset({"\\Seen"})
    # a no-op change changes nothing, not even the MODSEQ
    again = await store.set_flags(inbox.id, [meta.uid], FlagOp.ADD, frozenset({"\\seen"}))
    assert again == []
    after = await store.get_mailbox_by_id(inbox.id)
    assert after is not None and after.highest_modseq == changed[0].modseq
    batch = await store.changes_since(inbox.id, meta.modseq)
    assert [m.uid for m in batch.changed] == [meta.uid]


async def test_flags_keywords_and_unchanged_since(store: Store) -> None:
    account = await store.create_account("a@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    meta = await append(store, inbox.id, message_bytes(1), flags=frozenset({"\\Flagged", "$Work"}))
    assert meta.flags == frozenset({"\\Flagged", "$Work"})
    changed = await store.set_flags(inbox.id, [meta.uid], FlagOp.REPLACE, frozenset({"\\Draft"}))
    assert changed[0].flags == frozenset({"\\Draft"})
    skipped = await store.set_flags(
        inbox.id, [meta.uid], FlagOp.ADD, frozenset({"\\Seen"}), unchanged_since=meta.modseq
    )
    assert skipped == []
    removed = await store.set_flags(inbox.id, [meta.uid], FlagOp.REMOVE, frozenset({"\\Draft"}))
    assert removed[0].flags == frozenset()
    with pytest.raises(InvalidInput):
        await store.set_flags(inbox.id, [meta.uid], FlagOp.ADD, frozenset({"\\Recent"}))


async def test_expunge_log_records_uid_and_modseq(store: Store) -> None:
    account = await store.create_account("a@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    metas = [await append(store, inbox.id, message_bytes(n)) for n in range(3)]
    mark = (await store.get_mailbox_by_id(inbox.id)).highest_modseq  # type: ignore[union-attr]
    gone = await store.expunge(inbox.id, [metas[0].uid, metas[2].uid])
    assert [g.uid for g in gone] == [metas[0].uid, metas[2].uid]
    assert all(g.modseq > mark for g in gone)
    batch = await store.changes_since(inbox.id, ModSeq(mark))
    assert [e.uid for e in batch.expunged] == [metas[0].uid, metas[2].uid]
    assert [m.uid for m in await store.list_messages(inbox.id)] == [metas[1].uid]
    # expunging what is gone is a no-op
    assert await store.expunge(inbox.id, [metas[0].uid]) == []


async def test_expunged_since_lists_every_expunge_for_the_life_of_the_mailbox(
    store: Store,
) -> None:
    # VANISHED (EARLIER) comes from here: every expunged UID above a MODSEQ, ascending, however
    # old the MODSEQ; a MOVE expunges too; the log goes with the mailbox, not with a rename
    account = await store.create_account("a@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    box = await store.create_mailbox(account.id, "Box")
    start = inbox.highest_modseq
    metas = [await append(store, inbox.id, message_bytes(n)) for n in range(6)]
    assert await store.expunged_since(inbox.id, start) == []
    await store.expunge(inbox.id, [metas[4].uid, metas[1].uid])
    mark = (await store.get_mailbox_by_id(inbox.id)).highest_modseq  # type: ignore[union-attr]
    await store.set_flags(inbox.id, [metas[0].uid], FlagOp.ADD, frozenset({"\\Seen"}))
    await store.copy(inbox.id, [metas[2].uid], box.id, move=True)
    assert await store.expunged_since(inbox.id, ModSeq(0)) == [
        metas[1].uid,
        metas[2].uid,
        metas[4].uid,
    ]
    assert await store.expunged_since(inbox.id, start) == [metas[1].uid, metas[2].uid, metas[4].uid]
    assert await store.expunged_since(inbox.id, mark) == [metas[2].uid]
    now = (await store.get_mailbox_by_id(inbox.id)).highest_modseq  # type: ignore[union-attr]
    assert await store.expunged_since(inbox.id, now) == []
    assert await store.expunged_since(box.id, ModSeq(0)) == []
    await store.rename_mailbox(box.id, "Other")
    await store.expunge(box.id, [Uid(1)])
    assert await store.expunged_since(box.id, ModSeq(0)) == [Uid(1)]
    await store.delete_mailbox(box.id)
    with pytest.raises(NotFound):
        await store.expunged_since(box.id, ModSeq(0))


async def test_content_is_stored_whole_and_shared_by_copies(store: Store) -> None:
    account = await store.create_account("a@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    archive = await store.get_mailbox(account.id, "Archive")
    assert inbox is not None and archive is not None
    content = message_bytes(7, size=300_000)
    meta = await append(store, inbox.id, content)
    assert meta.size == len(content)
    pairs = await store.copy(inbox.id, [meta.uid], archive.id)
    assert pairs == [(meta.uid, Uid(1))]
    await store.expunge(inbox.id, [meta.uid])
    (copied,) = await store.list_messages(archive.id)
    body = await store.open_content(copied.blob)
    try:
        assert body.read(0, body.size) == content
        assert body.read(len(content) - 4, 100) == content[-4:]
    finally:
        body.close()
    assert await store.get_structure(copied.blob)


async def test_move_expunges_the_source(store: Store) -> None:
    account = await store.create_account("a@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    trash = await store.get_mailbox(account.id, "Trash")
    assert inbox is not None and trash is not None
    meta = await append(store, inbox.id, message_bytes(1), flags=frozenset({"\\Seen"}))
    pairs = await store.copy(inbox.id, [meta.uid], trash.id, move=True)
    assert len(pairs) == 1
    assert await store.list_messages(inbox.id) == []
    (moved,) = await store.list_messages(trash.id)
    assert moved.flags == frozenset({"\\Seen"})


async def test_mailbox_hierarchy_rename_keeps_uidvalidity(store: Store) -> None:
    account = await store.create_account("a@example.org", "h")
    parent = await store.create_mailbox(account.id, "Projects")
    child = await store.create_mailbox(account.id, "Projects/pobox")
    with pytest.raises(AlreadyExists):
        await store.create_mailbox(account.id, "Projects")
    renamed = await store.rename_mailbox(parent.id, "Work")
    assert renamed.name == "Work" and renamed.uidvalidity == parent.uidvalidity
    moved_child = await store.get_mailbox_by_id(child.id)
    assert moved_child is not None and moved_child.name == "Work/pobox"
    await store.delete_mailbox(child.id)
    assert await store.get_mailbox(account.id, "Work/pobox") is None
    with pytest.raises(NotFound):
        await store.delete_mailbox(child.id)


async def test_subscriptions(store: Store) -> None:
    account = await store.create_account("a@example.org", "h")
    await store.set_subscribed(account.id, "Lists/python", True)
    assert "Lists/python" in await store.list_subscriptions(account.id)
    await store.set_subscribed(account.id, "Lists/python", False)
    assert "Lists/python" not in await store.list_subscriptions(account.id)


async def test_status_counts(store: Store) -> None:
    account = await store.create_account("a@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    a = await append(store, inbox.id, message_bytes(1), flags=frozenset({"\\Seen"}))
    b = await append(store, inbox.id, message_bytes(2), flags=frozenset({"\\Deleted"}))
    status = await store.mailbox_status(inbox.id)
    assert (status.messages, status.unseen, status.deleted) == (2, 1, 1)
    assert status.size == a.size + b.size
    assert status.first_unseen_uid == b.uid
    assert status.recent == 2
    assert await store.claim_recent(inbox.id) == 1
    assert (await store.mailbox_status(inbox.id)).recent == 0


async def test_claim_recent_moves_a_watermark_once(store: Store) -> None:
    """RFC 3501 §2.3.2: \\Recent belongs to one session. A claim moves the mailbox's recent
    floor up to the UID given (never down, never past UIDNEXT) and returns the floor before, so
    of two sessions claiming the same messages only the first gets them."""
    account = await store.create_account("a@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    for n in range(4):
        await append(store, inbox.id, message_bytes(n))
    # the first session sees messages 1 and 2: they are its own
    assert await store.claim_recent(inbox.id, Uid(3)) == 1
    assert (await store.mailbox_status(inbox.id)).recent == 2
    # a second session seeing the same messages gets none of them
    assert await store.claim_recent(inbox.id, Uid(3)) == 3
    assert await store.claim_recent(inbox.id, Uid(2)) == 3
    # one that sees all four gets 3 and 4; a claim beyond UIDNEXT stops at UIDNEXT
    assert await store.claim_recent(inbox.id, Uid(99)) == 3
    assert (await store.mailbox_status(inbox.id)).recent == 0
    fifth = await append(store, inbox.id, message_bytes(5))
    assert (await store.mailbox_status(inbox.id)).recent == 1
    claims = await asyncio.gather(*(store.claim_recent(inbox.id) for _ in range(4)))
    assert sorted(claims) == [fifth.uid] + [Uid(fifth.uid + 1)] * 3
    with pytest.raises(NotFound):
        await store.claim_recent(MailboxId(999999), Uid(1))


async def test_append_claiming_claims_recent_in_the_same_write(store: Store) -> None:
    """An APPEND into the selected mailbox: the new message, and any not claimed before it,
    are \\Recent for the appending session alone."""
    account = await store.create_account("a@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    first = await append(store, inbox.id, message_bytes(1))  # delivered, nobody saw it yet
    meta, floor = await store.append_claiming(inbox.id, await new_message(store, message_bytes(2)))
    assert (floor, meta.uid) == (first.uid, first.uid + 1)
    assert (await store.mailbox_status(inbox.id)).recent == 0
    assert await store.claim_recent(inbox.id) == meta.uid + 1  # nothing left for another
    again, floor = await store.append_claiming(inbox.id, await new_message(store, message_bytes(3)))
    assert floor == again.uid
    assert [m.uid for m in await store.list_messages(inbox.id)] == [first.uid, meta.uid, again.uid]
    with pytest.raises(NotFound):
        await store.append_claiming(MailboxId(999999), await new_message(store, message_bytes(4)))


async def test_append_seals_a_spool_that_is_not_sealed(store: Store) -> None:
    """APPEND hands the store a spool that is whole but not fsync'd: the store seals it before
    the commit that makes the message visible, and the content is as written."""
    account = await store.create_account("a@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    content = message_bytes(7, size=70000)
    incoming = IncomingMessage(store.new_spool())
    incoming.write(content)
    incoming.complete()
    message = incoming.describe()
    assert not message.spool.sealed
    meta = await store.append(inbox.id, message)
    assert message.spool.sealed
    assert meta.size == len(content)
    stored = await store.open_content(meta.blob)
    try:
        assert stored.read(0, stored.size) == content
    finally:
        stored.close()


async def test_recoverable_expunge_and_recover_keep_the_uidl(store: Store) -> None:
    account = await store.create_account("a@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    meta = await append(store, inbox.id, message_bytes(1), flags=frozenset({"\\Seen"}))
    await store.expunge(inbox.id, [meta.uid], keep_recoverable=True)
    (item,) = await store.list_recoverable(account.id)
    assert item.uid == meta.uid and not item.still_present
    expected_uidl = f"{meta.uid:08x}{inbox.uidvalidity:08x}"
    assert item.uidl == expected_uidl
    (restored,) = await store.recover(account.id, [item.id])
    assert restored.uid > meta.uid  # a new UID for IMAP, the old UIDL for POP3
    assert restored.pop3_uidl == expected_uidl
    assert restored.flags == frozenset({"\\Seen"})
    content = await store.open_content(restored.blob)
    try:
        assert content.read(0, content.size) == message_bytes(1)
    finally:
        content.close()
    assert await store.list_recoverable(account.id) == []


async def test_pop3_hide_and_sweep_window(store: Store) -> None:
    account = await store.create_account("a@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    meta = await append(store, inbox.id, message_bytes(1))
    at = datetime(2026, 1, 1, tzinfo=UTC)
    assert len(await store.pop3_hide(inbox.id, [meta.uid], at)) == 1
    (listed,) = await store.list_messages(inbox.id)
    assert listed.pop3_hidden
    assert await store.hidden_before(account.id, at) == []
    assert await store.hidden_before(account.id, at + timedelta(seconds=1)) == [
        (inbox.id, meta.uid)
    ]
    (item,) = await store.list_recoverable(account.id)
    assert item.still_present
    # swept: the recovery row now holds the content
    await store.expunge(inbox.id, [meta.uid], keep_recoverable=True)
    (item,) = await store.list_recoverable(account.id)
    assert not item.still_present
    assert await store.purge_recoverable(at + timedelta(days=1)) == 1
    assert await store.list_recoverable(account.id) == []


async def test_lock_is_exclusive_until_released(store: Store) -> None:
    account = await store.create_account("a@example.org", "h")
    lock = await store.try_lock(account.id, "pop3")
    assert lock is not None
    assert await store.try_lock(account.id, "pop3") is None
    await lock.release()
    again = await store.try_lock(account.id, "pop3")
    assert again is not None
    await again.release()


async def test_listeners_hear_of_changes(store: Store) -> None:
    account = await store.create_account("a@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    heard: list[int] = []
    store.add_listener(heard.append)
    try:
        await append(store, inbox.id, message_bytes(1))
        assert inbox.id in heard
    finally:
        store.remove_listener(heard.append)


async def test_delete_account_removes_everything(store: Store) -> None:
    account = await store.create_account("a@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    await append(store, inbox.id, message_bytes(1))
    await store.delete_account(account.id)
    assert await store.get_account("a@example.org") is None
    assert await store.list_accounts() == []


async def test_renderings_are_kept_with_the_content(store: Store) -> None:
    account = await store.create_account("rendered@example.com", "x")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    kept = Rendered(b'("date" "subject" NIL NIL NIL NIL NIL NIL NIL NIL)', b'("TEXT" "PLAIN")')
    message = await new_message(store, message_bytes(1))
    first = await store.append(inbox.id, dataclasses.replace(message, rendered=kept))
    second = await append(store, inbox.id, message_bytes(2))
    got = await store.get_rendered([first.blob, second.blob, BlobId(999999)])
    assert got == {first.blob: kept, second.blob: Rendered()}
    await store.set_rendered({second.blob: kept, first.blob: Rendered(b"other", b"other")})
    got = await store.get_rendered([first.blob, second.blob])
    assert got == {first.blob: kept, second.blob: kept}  # fills only what was missing
    structures = await store.get_structures([first.blob, second.blob, BlobId(999999)])
    assert set(structures) == {first.blob, second.blob}
    contents = await store.open_contents([first.blob, second.blob, BlobId(999999)])
    try:
        assert set(contents) == {first.blob, second.blob}
        assert contents[first.blob].read(0, 6) == b"From: "
    finally:
        for content in contents.values():
            content.close()


async def test_message_columns_match_list_messages(store: Store) -> None:
    account = await store.create_account("columns@example.com", "x")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    for n in range(3):
        await append(store, inbox.id, message_bytes(n), flags=frozenset({"$Label", "\\Seen"}))
    await store.set_flags(inbox.id, [Uid(2)], FlagOp.REPLACE, frozenset({"\\Flagged"}))
    await store.expunge(inbox.id, [Uid(3)])
    columns = await store.message_columns(inbox.id)
    metas = await store.list_messages(inbox.id)
    assert columns.mailbox.highest_modseq == max(m.modseq for m in metas) + 1
    assert list(columns.uids) == [m.uid for m in metas] == [1, 2]
    assert list(columns.modseqs) == [m.modseq for m in metas]
    assert list(columns.keywords) == ["$Label", ""]
    assert list(columns.flags) == [1, 4]  # \\Seen, \\Flagged (pobox.store.rows bits)
    assert list(columns.sizes) == [m.size for m in metas]
    assert list(columns.blobs) == [m.blob for m in metas]
    assert [round(d) for d in columns.internal_dates] == [
        round(m.internal_date.timestamp()) for m in metas
    ]
    assert not columns.hidden and not columns.uidls
    with pytest.raises(NotFound):
        await store.message_columns(MailboxId(999999))


async def test_auth_blocks_are_recorded_listed_and_lifted(store: Store) -> None:
    """Failed-login blocks kept in the store: every node lists them, an unblock on any node
    lifts them (docs/decisions/admin-control.md)."""
    from pobox.store.api import AuthBlock

    now = 1_900_000_000.0
    await store.save_auth_block(AuthBlock("address", "192.0.2.7", 10, now + 300))
    await store.save_auth_block(AuthBlock("account", "bob@example.org", 10, now + 60))
    await store.save_auth_block(AuthBlock("address", "192.0.2.8", 10, now - 1))  # ended
    # a block that starts again is extended, never shortened
    await store.save_auth_block(AuthBlock("address", "192.0.2.7", 11, now + 100))
    listed = await store.list_auth_blocks(now)
    assert listed == [
        AuthBlock("account", "bob@example.org", 10, now + 60),
        AuthBlock("address", "192.0.2.7", 11, now + 300),
    ]
    assert await store.get_auth_block("address", "192.0.2.8") is not None  # ended, recorded
    assert await store.get_auth_block("address", "198.51.100.1") is None
    lifted = await store.delete_auth_blocks(
        [("address", "192.0.2.7"), ("account", "192.0.2.7"), ("address", "nobody")]
    )
    assert lifted == [AuthBlock("address", "192.0.2.7", 11, now + 300)]
    assert await store.get_auth_block("address", "192.0.2.7") is None
    assert [b.key for b in await store.list_auth_blocks(now)] == ["bob@example.org"]


# the outbound queue (docs/decisions/outbound-queue.md) ---------------------------------------


async def test_queue_add_get_content_list_and_delete(store: Store) -> None:
    from pobox.store.api import QUEUE_PENDING

    now = 1_900_000_000.0
    body = b"From: a@example.org\r\n\r\n" + bytes(range(256)) * 4
    added = await store.queue_add("Q1", "a@example.org", ["b@x.example", "c@y.example"], body, now)
    assert added.id == "Q1" and added.size == len(body)
    await store.queue_add("Q2", "", ["d@z.example"], b"bounce\r\n", now + 1)
    with pytest.raises(AlreadyExists):
        await store.queue_add("Q1", "a@example.org", ["e@x.example"], b"x", now)
    got = await store.queue_get("Q1")
    assert got is not None and got.sender == "a@example.org" and not got.warned
    assert [(r.address, r.state, r.attempts) for r in got.recipients] == [
        ("b@x.example", QUEUE_PENDING, 0),
        ("c@y.example", QUEUE_PENDING, 0),
    ]
    assert got.next_attempt == now and got.created == now
    assert await store.queue_content("Q1") == body
    assert [m.id for m in await store.queue_list()] == ["Q1", "Q2"]
    assert (await store.queue_list())[1].sender == ""
    assert await store.queue_length() == 2
    assert await store.queue_delete("Q1") is True
    assert await store.queue_delete("Q1") is False
    assert await store.queue_get("Q1") is None
    with pytest.raises(NotFound):
        await store.queue_content("Q1")
    assert await store.queue_length() == 1


async def test_queue_claim_leases_due_messages_once(store: Store) -> None:
    now = 1_900_000_000.0
    for n in range(5):
        await store.queue_add(f"Q{n}", "a@example.org", ["b@x.example"], b"m\r\n", now + n)
    # only due messages, earliest first, up to the limit
    first = await store.queue_claim("node-a", now + 2, 600, 2)
    assert [m.id for m in first] == ["Q0", "Q1"]
    # leased: another claim (another node) does not get them while the lease runs
    second = await store.queue_claim("node-b", now + 10, 600, 10)
    assert [m.id for m in second] == ["Q2", "Q3", "Q4"]
    assert await store.queue_claim("node-c", now + 20, 600, 10) == []
    # a lease that ran out (its node died) makes the message claimable again
    again = await store.queue_claim("node-c", now + 700, 600, 10)
    assert sorted(m.id for m in again) == ["Q0", "Q1", "Q2", "Q3", "Q4"]
    # a runner starting again frees the leases its dead predecessor (same owner) held
    assert await store.queue_release("node-c") == 5
    assert await store.queue_release("node-c") == 0
    assert len(await store.queue_claim("node-d", now + 701, 600, 10)) == 5
    # a round still at work renews its leases: claims meanwhile do not take them
    assert await store.queue_renew("node-d", ["Q0", "Q1", "Q9"], now + 5000) == 2
    assert await store.queue_renew("node-x", ["Q2"], now + 5000) == 0  # not its lease
    later = await store.queue_claim("node-e", now + 1400, 600, 10)
    assert sorted(m.id for m in later) == ["Q2", "Q3", "Q4"]


async def test_queue_concurrent_claims_never_share_a_message(store: Store) -> None:
    now = 1_900_000_000.0
    for n in range(40):
        await store.queue_add(f"Q{n:02}", "a@example.org", ["b@x.example"], b"m\r\n", now)
    claims = await asyncio.gather(*(store.queue_claim(f"node-{k}", now, 600, 7) for k in range(8)))
    ids = [m.id for claim in claims for m in claim]
    assert len(ids) == len(set(ids)) == 40


async def test_queue_record_per_recipient_results(store: Store) -> None:
    from pobox.store.api import (
        QUEUE_DELIVERED,
        QUEUE_FAILED,
        QUEUE_PENDING,
        RecipientResult,
    )

    now = 1_900_000_000.0
    rcpts = ["b@x.example", "c@x.example", "d@y.example"]
    await store.queue_add("Q1", "a@example.org", rcpts, b"m\r\n", now)
    claimed = await store.queue_claim("node-a", now, 600, 10)
    assert [m.id for m in claimed] == ["Q1"]
    left = await store.queue_record(
        "Q1",
        [
            RecipientResult("b@x.example", QUEUE_DELIVERED, "250 ok"),
            RecipientResult("c@x.example", QUEUE_FAILED, "550 5.1.1 no such user"),
            RecipientResult("d@y.example", QUEUE_PENDING, "451 4.3.0 later", now + 300),
        ],
        now,
    )
    assert left is not None
    states = {r.address: (r.state, r.attempts, r.last_error) for r in left.recipients}
    assert states == {
        "b@x.example": (QUEUE_DELIVERED, 1, "250 ok"),
        "c@x.example": (QUEUE_FAILED, 1, "550 5.1.1 no such user"),
        "d@y.example": (QUEUE_PENDING, 1, "451 4.3.0 later"),
    }
    assert left.next_attempt == now + 300
    # the lease is released, but the message is not due before its next attempt
    assert await store.queue_claim("node-b", now + 299, 600, 10) == []
    # a result for a recipient that is done already changes nothing
    left = await store.queue_record(
        "Q1", [RecipientResult("b@x.example", QUEUE_FAILED, "x")], now, warned=True
    )
    assert left is not None and left.warned
    assert {r.address: r.state for r in left.recipients}["b@x.example"] == QUEUE_DELIVERED
    # retry makes it due now; the last pending recipient delivered: the message leaves
    assert await store.queue_retry("Q1", now + 1) == 1
    assert [m.id for m in await store.queue_claim("node-b", now + 1, 600, 10)] == ["Q1"]
    done = await store.queue_record(
        "Q1", [RecipientResult("d@y.example", QUEUE_DELIVERED, "250 ok")], now + 2
    )
    assert done is None
    assert await store.queue_get("Q1") is None and await store.queue_length() == 0
    assert await store.queue_record("Q1", [], now) is None
    assert await store.queue_retry(None, now) == 0


async def test_dkim_keys_are_kept_per_domain(store: Store) -> None:
    from pobox.store.api import DkimKey

    assert await store.get_dkim_key("example.org") is None
    await store.save_dkim_key(DkimKey("Example.ORG", "s1", b"-----KEY 1-----", 1.0))
    await store.save_dkim_key(DkimKey("example.org", "s2", b"-----KEY 2-----", 2.0))
    key = await store.get_dkim_key("EXAMPLE.org")
    assert key == DkimKey("example.org", "s2", b"-----KEY 2-----", 2.0)


# -- backup snapshots and restores (docs/backup.md) ------------------------------------------


async def _restore_content(store: Store, data: bytes) -> object:
    from pobox.store.api import RestoreContent

    message = await new_message(store, data)
    return RestoreContent(message.spool, message.structure, message.fields)


async def test_snapshot_images_an_account_as_of_one_moment(store: Store) -> None:
    account = await store.create_account("img@example.org", "hash-1")
    await store.add_alias("alias@example.org", account.id)
    await store.set_account_setting(account.id, "pop3.retention", "keep")
    await store.set_subscribed(account.id, "Gone", True)
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    first = await append(store, inbox.id, message_bytes(1), flags={"\\Seen", "$Label1"})
    second = await append(store, inbox.id, message_bytes(2), pop3_uidl="UIDL-2")
    await store.copy(inbox.id, [first.uid], inbox.id)  # a copy shares the content
    await store.expunge(inbox.id, [second.uid], keep_recoverable=True)
    async with store.snapshot(["IMG@example.org"]) as snap:
        # written after the snapshot began: not in it
        await append(store, inbox.id, message_bytes(3))
        (image,) = await snap.accounts()
        box = {m.name: m for m in image.mailboxes}["INBOX"]
        contents = {m.uid: await snap.read_content(m.content) for m in box.messages}
        keys = [m.content for m in box.messages]
        assert await snap.read_contents(keys) == [contents[m.uid] for m in box.messages]
        recovered = await snap.read_content(image.recoverable[0].content or "")
    assert image.address == "img@example.org" and image.password_hash == "hash-1"
    assert image.aliases == ("alias@example.org",)
    assert image.settings == {"pop3.retention": "keep"}
    assert "Gone" in image.subscriptions and "INBOX" in image.subscriptions
    assert [m.uid for m in box.messages] == [1, 3]
    assert box.messages[0].flags == {"\\Seen", "$Label1"}
    assert box.messages[0].content == box.messages[1].content
    assert contents[1] == message_bytes(1)
    assert box.uidnext == 4 and box.uidvalidity == inbox.uidvalidity
    assert [(e.uid, e.modseq) for e in box.expunged] == [(2, box.highest_modseq)]
    (item,) = image.recoverable
    assert (item.mailbox_name, item.uid, item.uidl) == ("INBOX", 2, "UIDL-2")
    assert recovered == message_bytes(2)
    with pytest.raises(NotFound):
        async with store.snapshot(["nobody@example.org"]) as snap:
            await snap.accounts()


async def test_restore_keeps_ids_and_refuses_a_taken_address(store: Store) -> None:
    from pobox.store.api import AccountImage, MailboxImage, MessageImage, RecoverableImage

    size_a, size_b = len(message_bytes(1)), len(message_bytes(2))

    def msg(uid: int, modseq: int, flags: set[str], tz: int, key: str, size: int) -> MessageImage:
        return MessageImage(uid, modseq, frozenset(flags), 1.6e9 + uid, tz, 1.7e9, size, key)

    messages = (
        msg(3, 7, {"\\Flagged", "work"}, 120, "a", size_a),
        dataclasses.replace(
            msg(9, 11, set(), -300, "b", size_b), pop3_uidl="X-UIDL", pop3_hidden_at=1.8e9
        ),
        msg(10, 12, {"\\Seen"}, 0, "a", size_a),
    )
    image = AccountImage(
        address="back@example.org",
        password_hash="$argon2id$x",
        created=1_500_000_000.0,
        settings={"pop3.retention": "keep-days:3"},
        aliases=("b2@example.org",),
        subscriptions=("INBOX", "Work/2024"),
        mailboxes=(
            MailboxImage("INBOX", 4_000_000_000, 12, 13, 10, None, messages),
            MailboxImage("Work/2024", 77, 1, 1, 1, "\\Archive"),
        ),
        recoverable=(
            RecoverableImage(
                "INBOX", 5, "old-uidl", 1.75e9, False, "b", frozenset(), 1.6e9, 0, size_b
            ),
        ),
    )
    account = await store.restore_account(image)
    boxes = {m.name: m for m in await store.list_mailboxes(account.id)}
    assert set(boxes) == {"INBOX", "Work/2024"}
    inbox = boxes["INBOX"]
    assert (inbox.uidvalidity, inbox.uidnext, inbox.highest_modseq) == (4_000_000_000, 12, 13)
    assert boxes["Work/2024"].special_use == "\\Archive"
    a = await _restore_content(store, message_bytes(1))
    b = await _restore_content(store, message_bytes(2))
    blobs = await store.restore_messages(inbox.id, messages, {"a": a, "b": b})  # type: ignore[dict-item]
    await store.restore_recoverable(account.id, image.recoverable, {"b": blobs["b"]})
    listed = await store.list_messages(inbox.id)
    assert [(m.uid, m.modseq) for m in listed] == [(3, 7), (9, 11), (10, 12)]
    assert listed[0].flags == {"\\Flagged", "work"} and listed[0].blob == listed[2].blob
    assert listed[0].internal_date.utcoffset() == timedelta(minutes=120)
    assert listed[1].pop3_uidl == "X-UIDL" and listed[1].pop3_hidden
    content = await store.open_message(inbox.id, Uid(9))
    try:
        assert content.read(0, content.size) == message_bytes(2)
    finally:
        content.close()
    assert await store.expunged_since(inbox.id, ModSeq(0)) == []
    (recoverable,) = await store.list_recoverable(account.id)
    assert (recoverable.uid, recoverable.uidl) == (5, "old-uidl")
    resolved = await store.resolve_address("b2@example.org")
    assert resolved is not None and resolved.id == account.id
    assert (await store.get_account_by_id(account.id)).settings == {  # type: ignore[union-attr]
        "pop3.retention": "keep-days:3"
    }
    assert set(await store.list_subscriptions(account.id)) == {"INBOX", "Work/2024"}
    # new mailboxes get a UIDVALIDITY above every restored one
    later = await store.create_mailbox(account.id, "Later")
    assert later.uidvalidity > 4_000_000_000
    # a UID at UIDNEXT or above, or one already there, is refused
    c = await _restore_content(store, message_bytes(3))
    with pytest.raises(InvalidInput):
        await store.restore_messages(
            inbox.id,
            [msg(12, 13, set(), 0, "c", len(message_bytes(3)))],
            {"c": c},  # type: ignore[dict-item]
        )
    with pytest.raises(InvalidInput):
        await store.restore_messages(
            inbox.id,
            [msg(3, 13, set(), 0, "a", size_a)],
            {"a": blobs["a"]},
        )
    # the account exists: refused, unless replacing it
    with pytest.raises(AlreadyExists):
        await store.restore_account(image)
    replaced = await store.restore_account(
        dataclasses.replace(image, password_hash="new"), replace=True
    )
    assert replaced.password_hash == "new"
    boxes = {m.name: m for m in await store.list_mailboxes(replaced.id)}
    assert await store.list_messages(boxes["INBOX"].id) == []
    assert await store.list_recoverable(replaced.id) == []


# ---- the full-text index (docs/decisions/full-text-search.md) ---------------------------------


def _text(body: str, subject: str = "", header: str = "") -> SearchText:
    return SearchText(header=header, body=body, subject=subject)


async def test_full_text_index_answers_exact_substrings_per_column(store: Store) -> None:
    account = await store.create_account("fts@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    metas = [await append(store, inbox.id, message_bytes(n)) for n in range(4)]
    pending = await store.unindexed_contents(100)
    assert set(pending) == {m.blob for m in metas}
    assert pending[metas[0].blob].subject == "message 0"  # the header fields come along
    found = await store.search_text(inbox.id, ["body"], "quarterly")
    assert found.uids == [] and found.unindexed == [m.uid for m in metas]

    texts = {
        metas[0].blob: _text("the quarterly report", subject="q3 figures"),
        metas[1].blob: _text("quart\uffffer ly", header="subject: quarterly"),
        metas[2].blob: _text("QUARTERLY in capitals"),  # stored as given: no folding here
        metas[3].blob: _text('a 100% match_ with \\ and "quotes"'),
    }
    await store.set_search_text(texts)
    assert await store.unindexed_contents(100) == {}
    body = await store.search_text(inbox.id, ["body"], "quarterly")
    assert body == TextMatches([metas[0].uid], [])
    both = await store.search_text(inbox.id, ["header", "body"], "quarterly")
    assert both.uids == [metas[0].uid, metas[1].uid]
    assert (await store.search_text(inbox.id, ["subject"], "q3 fig")).uids == [metas[0].uid]
    assert (await store.search_text(inbox.id, ["from_"], "q3 fig")).uids == []
    # characters that mean something to FTS5 or LIKE are plain characters here
    for needle in ("100% match_", '"quotes"', "\\ and", "0% m"):
        assert (await store.search_text(inbox.id, ["body"], needle)).uids == [metas[3].uid]
    assert (await store.search_text(inbox.id, ["body"], "100%_match")).uids == []
    # every trigram present, the string itself not: no match
    assert (await store.search_text(inbox.id, ["body"], "report quarterly")).uids == []
    # indexing again changes nothing; another mailbox's messages are not answered for
    await store.set_search_text({metas[0].blob: _text("replaced")})
    assert (await store.search_text(inbox.id, ["body"], "quarterly")).uids == [metas[0].uid]
    other = await store.get_mailbox(account.id, "Archive")
    assert other is not None
    assert (await store.search_text(other.id, ["body"], "quarterly")) == TextMatches([], [])


async def test_full_text_index_follows_copies_expunges_and_resets(store: Store) -> None:
    account = await store.create_account("fts2@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    archive = await store.get_mailbox(account.id, "Archive")
    assert inbox is not None and archive is not None
    first = await append(store, inbox.id, message_bytes(1))
    second = await append(store, inbox.id, message_bytes(2))
    await store.set_search_text({first.blob: _text("needle here"), second.blob: _text("hay")})
    pairs = await store.copy(inbox.id, [first.uid], archive.id)
    copied = pairs[0][1]
    assert (await store.search_text(archive.id, ["body"], "needle")).uids == [copied]
    await store.set_flags(inbox.id, [first.uid], FlagOp.ADD, frozenset({"\\Deleted"}))
    await store.expunge(inbox.id, [first.uid])
    assert (await store.search_text(inbox.id, ["body"], "needle")).uids == []
    assert (await store.search_text(archive.id, ["body"], "needle")).uids == [copied]
    await store.set_flags(archive.id, [copied], FlagOp.ADD, frozenset({"\\Deleted"}))
    await store.expunge(archive.id, [copied])  # the content goes, and its entry with it
    assert (await store.search_text(archive.id, ["body"], "needle")).uids == []
    # a reset takes one account's contents out of the index, to be indexed again
    other = await store.create_account("fts3@example.org", "h")
    other_inbox = await store.get_mailbox(other.id, "INBOX")
    assert other_inbox is not None
    theirs = await append(store, other_inbox.id, message_bytes(3))
    await store.set_search_text({theirs.blob: _text("hay")})
    assert await store.reset_search_text(account.id) == 1
    assert set(await store.unindexed_contents(10)) == {second.blob}
    assert set(await store.unindexed_contents(10, other.id)) == set()
    found = await store.search_text(inbox.id, ["body"], "hay")
    assert found == TextMatches([], [second.uid])
    assert await store.reset_search_text() == 2
    assert set(await store.unindexed_contents(10)) == {second.blob, theirs.blob}


async def test_restore_mailbox_creates_or_takes_over_an_unused_one(store: Store) -> None:
    from pobox.store.api import AccountId, Expunged, MailboxImage, MessageImage

    account = await store.create_account("moving@example.org", "h")
    image = MailboxImage("INBOX", 1234, 50, 60, 1, None, (), (Expunged(Uid(7), ModSeq(40)),))
    inbox = await store.restore_mailbox(account.id, image)  # the new account's INBOX
    assert (inbox.name, inbox.uidvalidity, inbox.uidnext, inbox.highest_modseq) == (
        "INBOX",
        1234,
        50,
        60,
    )
    assert await store.expunged_since(inbox.id, ModSeq(0)) == [7]
    work = await store.restore_mailbox(
        account.id, MailboxImage("Work/Old", 99, 3, 3, 1, "\\Archive")
    )
    assert (work.uidvalidity, work.uidnext, work.special_use) == (99, 3, "\\Archive")
    data = await _restore_content(store, message_bytes(1))
    image_2 = MessageImage(2, 3, frozenset({"\\Seen"}), 1.6e9, 0, 1.7e9, len(message_bytes(1)), "k")
    await store.restore_messages(work.id, [image_2], {"k": data})  # type: ignore[dict-item]
    assert [(m.uid, m.modseq) for m in await store.list_messages(work.id)] == [(2, 3)]
    # a mailbox that has held messages keeps its ids
    with pytest.raises(AlreadyExists):
        await store.restore_mailbox(account.id, MailboxImage("Work/Old", 5, 9, 9, 1, None))
    later = await store.create_mailbox(account.id, "Later")
    assert later.uidvalidity > 1234
    with pytest.raises(NotFound):
        await store.restore_mailbox(AccountId(account.id + 999_999), image)


async def test_seal_spools_makes_a_batch_of_contents_storable(store: Store) -> None:
    from pobox.store.api import MailboxImage, MessageImage, RestoreContent

    account = await store.create_account("batch@example.org", "h")
    box = await store.restore_mailbox(account.id, MailboxImage("Batch", 5, 3, 2, 1, None))
    contents = {}
    for uid in (1, 2):
        data = message_bytes(uid)
        spool = store.new_spool()
        spool.write(data)
        template = await new_message(store, data)  # only for its parsed structure and fields
        template.spool.discard()
        contents[f"k{uid}"] = RestoreContent(spool, template.structure, template.fields)
    await store.seal_spools([c.spool for c in contents.values()])
    images = [
        MessageImage(uid, uid, frozenset(), 1.6e9, 0, 1.7e9, len(message_bytes(uid)), f"k{uid}")
        for uid in (1, 2)
    ]
    await store.restore_messages(box.id, images, contents)  # type: ignore[arg-type]
    for uid in (1, 2):
        content = await store.open_message(box.id, Uid(uid))
        try:
            assert content.read(0, content.size) == message_bytes(uid)
        finally:
            content.close()
