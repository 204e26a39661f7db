"""Quota usage and limits in the store, on every backend (docs/quota.md): the usage is exact
after every kind of write, and a checked write past a limit is refused whole."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

import pytest
from tests.store.util import append, message_bytes, new_message

from pobox.errors import OverQuota
from pobox.store.api import (
    AccountId,
    AccountImage,
    MailboxId,
    MessageImage,
    QuotaLimits,
    QuotaUsage,
    Store,
    Uid,
)


async def _real(store: Store, account_id: AccountId) -> tuple[int, int]:
    """What the account's mailboxes hold, counted from the messages."""
    octets = count = 0
    for mailbox in await store.list_mailboxes(account_id):
        for meta in await store.list_messages(mailbox.id):
            octets += meta.size
            count += 1
    return octets, count


async def _usage(store: Store, account_id: AccountId) -> tuple[int, int]:
    usage = await store.quota_usage(account_id)
    assert (usage.storage, usage.messages) == await _real(store, account_id)
    return usage.storage, usage.messages


async def _inbox(store: Store, account_id: AccountId) -> MailboxId:
    mailbox = await store.get_mailbox(account_id, "INBOX")
    assert mailbox is not None
    return mailbox.id


async def test_usage_is_exact_after_every_kind_of_write(store: Store) -> None:
    account = await store.create_account("q@example.org", "h")
    other = await store.create_account("r@example.org", "h")
    assert await store.quota_usage(account.id) == QuotaUsage(0, 0, 6)
    inbox = await _inbox(store, account.id)
    metas = [await append(store, inbox, message_bytes(n, 100 * n)) for n in range(1, 6)]
    total = sum(m.size for m in metas)
    assert await _usage(store, account.id) == (total, 5)
    many = [await new_message(store, message_bytes(n)) for n in range(6, 9)]
    added = await store.append_many(inbox, many)
    total += sum(m.size for m in added)
    assert await _usage(store, account.id) == (total, 8)
    # copy counts again, move within the account does not change it
    work = await store.create_mailbox(account.id, "Work")
    await store.copy(inbox, [metas[0].uid, metas[1].uid], work.id)
    total += metas[0].size + metas[1].size
    assert await _usage(store, account.id) == (total, 10)
    await store.copy(inbox, [metas[2].uid], work.id, move=True)
    assert await _usage(store, account.id) == (total, 10)
    # a move to another account's mailbox moves the usage too
    other_inbox = await _inbox(store, other.id)
    await store.copy(inbox, [metas[3].uid], other_inbox, move=True)
    total -= metas[3].size
    assert await _usage(store, account.id) == (total, 9)
    assert await _usage(store, other.id) == (metas[3].size, 1)
    # expunge, and a POP3 deletion kept for recovery: out of the mailbox, out of the usage
    await store.expunge(inbox, [metas[0].uid])
    total -= metas[0].size
    assert await _usage(store, account.id) == (total, 8)
    await store.expunge(inbox, [metas[1].uid], keep_recoverable=True)
    total -= metas[1].size
    assert await _usage(store, account.id) == (total, 7)
    # recovery brings it back
    items = await store.list_recoverable(account.id)
    await store.recover(account.id, [i.id for i in items])
    total += metas[1].size
    assert await _usage(store, account.id) == (total, 8)
    # hidden from POP3 (retention "keep"): still in the mailbox, still counted; swept: gone
    await store.pop3_hide(inbox, [metas[4].uid], datetime.now(UTC))
    assert await _usage(store, account.id) == (total, 8)
    await store.expunge(inbox, [metas[4].uid])
    total -= metas[4].size
    assert await _usage(store, account.id) == (total, 7)
    # deleting a mailbox takes its messages out
    await store.delete_mailbox(work.id)
    assert await _usage(store, account.id) == await _real(store, account.id)
    # deleting the account leaves nothing behind for the other
    await store.delete_account(account.id)
    assert await _usage(store, other.id) == (metas[3].size, 1)
    assert await store.check() == []


async def test_restore_counts_the_restored_messages(store: Store) -> None:
    source = await store.create_account("src@example.org", "h")
    meta = await append(store, await _inbox(store, source.id), message_bytes(1, 500))
    async with store.snapshot(["src@example.org"]) as snap:
        (image,) = await snap.accounts()
    inbox_image = next(m for m in image.mailboxes if m.name == "INBOX")
    image = dataclasses.replace(image, address="copy@example.org", mailboxes=())
    copy = await store.restore_account(image)
    mailbox = await store.restore_mailbox(copy.id, inbox_image)
    message: MessageImage = inbox_image.messages[0]
    await store.restore_messages(mailbox.id, [message], {message.content: meta.blob})
    assert await _usage(store, copy.id) == (meta.size, 1)
    assert isinstance(image, AccountImage)


async def test_append_past_a_limit_is_refused_and_stores_nothing(store: Store) -> None:
    account = await store.create_account("full@example.org", "h")
    inbox = await _inbox(store, account.id)
    first = await append(store, inbox, message_bytes(1, 1000))
    limit = QuotaLimits(storage=first.size * 2 + 10)
    second = await store.append(
        inbox, await new_message(store, message_bytes(2, 1000)), quota=limit
    )
    assert second.uid == first.uid + 1
    with pytest.raises(OverQuota):
        await store.append(inbox, await new_message(store, message_bytes(3, 1000)), quota=limit)
    big = message_bytes(4, 400_000)  # past one PostgreSQL chunk: the transaction path
    with pytest.raises(OverQuota):
        await store.append(inbox, await new_message(store, big), quota=limit)
    assert [m.uid for m in await store.list_messages(inbox)] == [first.uid, second.uid]
    assert await _usage(store, account.id) == (first.size + second.size, 2)
    # a smaller message still fits; message counts are limits too
    small = await new_message(store, b"Subject: s\r\n\r\nx\r\n")
    await store.append(inbox, small, quota=dataclasses.replace(limit, storage=None, messages=3))
    with pytest.raises(OverQuota):
        await store.append(
            inbox,
            await new_message(store, b"Subject: t\r\n\r\ny\r\n"),
            quota=QuotaLimits(messages=3),
        )
    # MULTIAPPEND: all or nothing
    batch = [await new_message(store, message_bytes(n, 10)) for n in (5, 6)]
    with pytest.raises(OverQuota):
        await store.append_many(inbox, batch, quota=QuotaLimits(messages=4))
    assert len(await store.list_messages(inbox)) == 3
    assert await store.check() == []


async def test_copy_past_a_limit_is_refused_but_a_move_within_is_not(store: Store) -> None:
    account = await store.create_account("c@example.org", "h")
    inbox = await _inbox(store, account.id)
    metas = [await append(store, inbox, message_bytes(n, 1000)) for n in range(3)]
    used = sum(m.size for m in metas)
    archive = await store.get_mailbox(account.id, "Archive")
    assert archive is not None
    tight = QuotaLimits(storage=used)  # full to the octet
    with pytest.raises(OverQuota):
        await store.copy(inbox, [metas[0].uid], archive.id, quota=tight)
    assert await store.list_messages(archive.id) == []
    moved = await store.copy(inbox, [metas[0].uid], archive.id, move=True, quota=tight)
    assert len(moved) == 1
    # over the limit already (lowered meanwhile): moving within is still allowed
    lowered = QuotaLimits(storage=used // 2)
    await store.copy(archive.id, [moved[0][1]], inbox, move=True, quota=lowered)
    assert await _usage(store, account.id) == (used, 3)


async def test_mailbox_count_limit(store: Store) -> None:
    account = await store.create_account("m@example.org", "h")
    await store.create_mailbox(account.id, "One", quota=QuotaLimits(mailboxes=7))
    with pytest.raises(OverQuota):
        await store.create_mailbox(account.id, "Two", quota=QuotaLimits(mailboxes=7))
    assert (await store.quota_usage(account.id)).mailboxes == 7


async def test_concurrent_appends_never_pass_the_limit(store: Store) -> None:
    account = await store.create_account("race@example.org", "h")
    inbox = await _inbox(store, account.id)
    content = message_bytes(1, 2000)
    probe = await append(store, inbox, content)
    limit = QuotaLimits(storage=probe.size * 10)
    messages = [await new_message(store, content) for _ in range(20)]

    async def one(message: object) -> bool:
        try:
            await store.append(inbox, message, quota=limit)  # type: ignore[arg-type]
        except OverQuota:
            return False
        return True

    results = await asyncio.gather(*(one(m) for m in messages))
    assert sum(results) == 9
    assert await _usage(store, account.id) == (probe.size * 10, 10)


async def test_warning_level_is_recorded_once(store: Store) -> None:
    account = await store.create_account("w@example.org", "h")
    inbox = await _inbox(store, account.id)
    meta = await append(store, inbox, message_bytes(1, 100))
    warning = await new_message(store, b"Subject: quota warning\r\n\r\n80%\r\n")
    assert await store.quota_warn(account.id, 0, 80, inbox, warning)
    usage = await store.quota_usage(account.id)
    assert usage.warned == 80
    assert (usage.storage, usage.messages) == await _real(store, account.id)
    assert (usage.low_storage, usage.low_messages) == (meta.size, 1)
    # someone else saw level 0: too late, nothing written
    again = await new_message(store, b"Subject: quota warning\r\n\r\n80%\r\n")
    assert not await store.quota_warn(account.id, 0, 80, inbox, again)
    assert len(await store.list_messages(inbox)) == 2
    # the low-water mark follows the usage down
    await store.expunge(inbox, [meta.uid])
    usage = await store.quota_usage(account.id)
    assert usage.low_messages == 1 and usage.messages == 1
    assert usage.low_storage == usage.storage
    assert await store.quota_warn(account.id, 80, 0)
    assert (await store.quota_usage(account.id)).warned == 0
    assert [m.uid for m in await store.list_messages(inbox)] == [Uid(2)]


async def test_check_finds_and_repairs_wrong_usage(store: Store) -> None:
    account = await store.create_account("chk@example.org", "h")
    inbox = await _inbox(store, account.id)
    await append(store, inbox, message_bytes(1, 100))
    await _damage(store, account.id)
    problems = await store.check()
    assert any("chk@example.org: quota usage" in p for p in problems)
    await store.check(repair=True)
    assert await store.check() == []
    await _usage(store, account.id)


async def _damage(store: Store, account_id: AccountId) -> None:
    """Set the usage wrong behind the store's back (what a bug or a manual edit would do)."""
    from pobox.store.postgres.store import PostgresStore
    from pobox.store.sqlite.store import SqliteStore

    if isinstance(store, SqliteStore):
        await store._db.write(
            lambda conn: conn.execute(
                "UPDATE quota_usage SET storage = 1, messages = 5 WHERE account_id = ?",
                (account_id,),
            )
        )
    else:
        assert isinstance(store, PostgresStore)

        async def run(tx: object) -> None:
            await tx.conn.execute(  # type: ignore[attr-defined]
                "UPDATE quota_usage SET storage = 1, messages = 5 WHERE account_id = $1",
                account_id,
            )

        await store._write(run)


async def test_the_migration_fills_the_usage_of_existing_mail(store: Store) -> None:
    """Schema 7 counts what a store of an older pobox already holds."""
    from pobox.store.postgres import schema as pg_schema
    from pobox.store.postgres.store import PostgresStore
    from pobox.store.sqlite import schema as sqlite_schema
    from pobox.store.sqlite.store import SqliteStore

    account = await store.create_account("old@example.org", "h")
    other = await store.create_account("empty@example.org", "h")
    inbox = await _inbox(store, account.id)
    for n in range(3):
        await append(store, inbox, message_bytes(n, 100 * n))
    expected = await _real(store, account.id)
    if isinstance(store, SqliteStore):
        migration = sqlite_schema.MIGRATIONS[6]

        def again(conn: object) -> None:
            conn.execute("DROP TABLE quota_usage")  # type: ignore[attr-defined]
            for statement in migration.split(";"):
                conn.execute(statement)  # type: ignore[attr-defined]

        await store._db.write(again)
    else:
        assert isinstance(store, PostgresStore)

        async def again_pg(tx: object) -> None:
            await tx.conn.execute("DROP TABLE quota_usage")  # type: ignore[attr-defined]
            await tx.conn.execute(pg_schema.MIGRATIONS[6])  # type: ignore[attr-defined]

        await store._write(again_pg)  # type: ignore[arg-type]
    usage = await store.quota_usage(account.id)
    assert (usage.storage, usage.messages) == expected
    assert (usage.low_storage, usage.low_messages, usage.warned) == (*expected, 0)
    assert await store.quota_usage(other.id) == QuotaUsage(0, 0, 6)
    assert await store.check() == []
