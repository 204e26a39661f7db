"""Each mailbox's counters (schema 13, docs/decisions/mailbox-counters.md), on every backend:
STATUS answers from them, and they equal a count of the messages after every kind of write,
also when writes run at once (and, on PostgreSQL, from two stores: two nodes)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable
from pathlib import Path

from tests.store.util import append, message_bytes, new_message

from pobox.store.api import (
    FlagOp,
    MailboxId,
    MailboxStatus,
    Store,
)
from pobox.store.factory import create_store

SEEN = frozenset({"\\Seen"})
DELETED = frozenset({"\\Deleted"})


async def _scanned(store: Store, mailbox_id: MailboxId) -> tuple[int, int, int, int, int, object]:
    """What STATUS must say, counted from the messages: (messages, octets, unseen, deleted,
    deleted octets, first unseen UID)."""
    metas = await store.list_messages(mailbox_id)
    unseen = [m for m in metas if "\\Seen" not in m.flags]
    deleted = [m for m in metas if "\\Deleted" in m.flags]
    return (
        len(metas),
        sum(m.size for m in metas),
        len(unseen),
        len(deleted),
        sum(m.size for m in deleted),
        unseen[0].uid if unseen else None,
    )


def _counted(status: MailboxStatus) -> tuple[int, int, int, int, int, object]:
    return (
        status.messages,
        status.size,
        status.unseen,
        status.deleted,
        status.deleted_size,
        status.first_unseen_uid,
    )


async def _agrees(store: Store, *mailboxes: MailboxId) -> None:
    for mailbox_id in mailboxes:
        assert _counted(await store.mailbox_status(mailbox_id)) == await _scanned(store, mailbox_id)
    assert not [p for p in await store.check() if "counters" in p]


async def test_counters_follow_every_kind_of_write(store: Store) -> None:
    account = await store.create_account("count@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    other = await store.create_mailbox(account.id, "Other")
    await _agrees(store, inbox.id, other.id)
    metas = [await append(store, inbox.id, message_bytes(n, 37 * n)) for n in range(6)]
    seen = await append(store, inbox.id, message_bytes(6, 5), flags=SEEN | DELETED)
    await _agrees(store, inbox.id)
    many = await store.append_many(
        other.id, [await new_message(store, message_bytes(10 + n, 11 * n)) for n in range(4)]
    )
    await _agrees(store, inbox.id, other.id)
    await store.set_flags(inbox.id, [metas[0].uid, metas[1].uid], FlagOp.ADD, SEEN)
    await store.set_flags(inbox.id, [metas[1].uid, metas[2].uid], FlagOp.ADD, DELETED)
    await store.set_flags(inbox.id, [metas[3].uid], FlagOp.ADD, frozenset({"$Label1"}))
    await _agrees(store, inbox.id)
    await store.set_flags(inbox.id, [metas[1].uid], FlagOp.REPLACE, frozenset({"\\Flagged"}))
    await store.set_flags(inbox.id, [seen.uid], FlagOp.REMOVE, SEEN)
    await _agrees(store, inbox.id)
    await store.expunge(inbox.id, [metas[2].uid, metas[4].uid])
    await _agrees(store, inbox.id)
    await store.copy(inbox.id, [metas[0].uid, metas[1].uid], other.id)
    await store.copy(inbox.id, [metas[3].uid, seen.uid], other.id, move=True)
    await _agrees(store, inbox.id, other.id)
    replacement = await new_message(store, message_bytes(99, 500), flags=SEEN)
    await store.replace(inbox.id, replacement, other.id, many[0].uid)
    await _agrees(store, inbox.id, other.id)
    await store.rename_mailbox(other.id, "Renamed")
    await _agrees(store, inbox.id, other.id)
    await store.delete_mailbox(other.id)
    await _agrees(store, inbox.id)
    everything = [m.uid for m in await store.list_messages(inbox.id)]
    await store.expunge(inbox.id, everything)
    status = await store.mailbox_status(inbox.id)
    assert _counted(status) == (0, 0, 0, 0, 0, None)
    assert status.recent == 0


async def test_recent_counts_either_side_of_the_floor(store: Store) -> None:
    account = await store.create_account("recent@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    metas = [await append(store, inbox.id, message_bytes(n)) for n in range(10)]
    await store.expunge(inbox.id, [metas[1].uid, metas[8].uid])
    assert (await store.mailbox_status(inbox.id)).recent == 8  # nobody claimed any
    await store.claim_recent(inbox.id, metas[3].uid)  # the floor low: the side above it counted
    assert (await store.mailbox_status(inbox.id)).recent == 6
    await store.claim_recent(inbox.id, metas[7].uid)  # high: the side below it counted
    assert (await store.mailbox_status(inbox.id)).recent == 2
    await store.claim_recent(inbox.id)
    assert (await store.mailbox_status(inbox.id)).recent == 0


async def _writer(store: Store, mailbox_id: MailboxId, seed: int) -> None:
    """Random appends, flag changes and expunges, one at a time."""
    rng = random.Random(seed)
    for n in range(25):
        action = rng.random()
        uids = [m.uid for m in await store.list_messages(mailbox_id)]
        if action < 0.4 or not uids:
            flags = rng.choice([frozenset(), SEEN, DELETED, SEEN | DELETED])
            await append(
                store, mailbox_id, message_bytes(seed * 100 + n, rng.randint(0, 300)), flags=flags
            )
        elif action < 0.8:
            chosen = rng.sample(uids, min(len(uids), rng.randint(1, 4)))
            op = rng.choice([FlagOp.ADD, FlagOp.REMOVE, FlagOp.REPLACE])
            await store.set_flags(
                mailbox_id, chosen, op, rng.choice([SEEN, DELETED, SEEN | DELETED])
            )
        else:
            await store.expunge(mailbox_id, rng.sample(uids, min(len(uids), 2)))


async def test_counters_are_exact_under_concurrent_writes(store: Store) -> None:
    account = await store.create_account("busy@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    other = await store.create_mailbox(account.id, "Other")
    for n in range(10):
        await append(store, inbox.id, message_bytes(n))
    jobs: list[Awaitable[object]] = [_writer(store, inbox.id, seed) for seed in range(4)]
    jobs.append(_writer(store, other.id, 9))

    async def mover(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(10):
            src, dst = (inbox.id, other.id) if rng.random() < 0.5 else (other.id, inbox.id)
            uids = [m.uid for m in await store.list_messages(src)]
            if uids:
                await store.copy(src, rng.sample(uids, min(2, len(uids))), dst, move=True)

    jobs += [mover(20), mover(21)]
    await asyncio.gather(*jobs)
    await _agrees(store, inbox.id, other.id)


async def test_counters_are_exact_with_two_postgres_nodes(tmp_path: Path) -> None:
    """Two stores on one PostgreSQL database (two nodes) write into one mailbox at once."""
    from tests.helpers.postgres import session_database

    database = session_database()
    schema, spec = database.new_schema()
    first = create_store(spec, tmp_path / "one")
    second = create_store(spec, tmp_path / "two")
    await first.open()
    await second.open()
    try:
        account = await first.create_account("nodes@example.org", "h")
        inbox = await first.get_mailbox(account.id, "INBOX")
        assert inbox is not None
        await asyncio.gather(
            *(_writer(node, inbox.id, seed) for seed, node in enumerate([first, second] * 2))
        )
        await _agrees(first, inbox.id)
        await _agrees(second, inbox.id)
    finally:
        await first.close()
        await second.close()
        database.drop_schema(schema)


async def _execute(store: Store, sqlite_sql: str, pg_sql: str) -> None:
    """Run SQL behind the store's back (what a bug or a manual edit would do)."""
    from pobox.store.postgres.store import PostgresStore
    from pobox.store.sqlite.store import SqliteStore

    if isinstance(store, SqliteStore):

        def run(conn: object) -> None:
            for statement in sqlite_sql.split(";;"):
                conn.execute(statement)  # type: ignore[attr-defined]

        await store._db.write(run)
    else:
        assert isinstance(store, PostgresStore)

        async def run_pg(tx: object) -> None:
            await tx.conn.execute(pg_sql)  # type: ignore[attr-defined]

        await store._write(run_pg)  # type: ignore[arg-type]


async def test_check_finds_and_repairs_wrong_counters(store: Store) -> None:
    account = await store.create_account("chk@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    await append(store, inbox.id, message_bytes(1, 100))
    await append(store, inbox.id, message_bytes(2, 10), flags=SEEN)
    damage = "UPDATE mailboxes SET n_unseen = 7, n_octets = 1"
    await _execute(store, damage, damage)
    problems = await store.check()
    assert [p for p in problems if "mailbox INBOX of chk@example.org: counters" in p]
    await store.check(repair=True)
    assert await store.check() == []
    await _agrees(store, inbox.id)


async def test_the_migration_counts_existing_mail(store: Store) -> None:
    """Schema 13 fills the counters of mailboxes a store of an older pobox already holds."""
    from pobox.store.postgres import schema as pg_schema
    from pobox.store.sqlite import schema as sqlite_schema

    account = await store.create_account("old@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    for n in range(5):
        flags = [frozenset(), SEEN, DELETED, SEEN | DELETED, frozenset()][n]
        await append(store, inbox.id, message_bytes(n, 50 * n), flags=flags)
    expected = await _scanned(store, inbox.id)
    columns = ["n_messages", "n_octets", "n_unseen", "n_deleted", "n_deleted_octets"]
    sqlite_migration = next(m for m in sqlite_schema.MIGRATIONS if "n_unseen" in m)
    pg_migration = next(m for m in pg_schema.MIGRATIONS if "n_unseen" in m)
    undo_sqlite = ";;".join(
        [f"DROP TRIGGER messages_count_{kind}" for kind in ("insert", "delete", "update")]
        + ["DROP INDEX messages_unseen"]
        + [f"ALTER TABLE mailboxes DROP COLUMN {c}" for c in columns]
        + sqlite_schema._statements(sqlite_migration)
    )
    undo_pg = (
        "DROP FUNCTION pobox_count_messages() CASCADE; DROP INDEX messages_unseen;"
        f" ALTER TABLE mailboxes {', '.join(f'DROP COLUMN {c}' for c in columns)};" + pg_migration
    )
    await _execute(store, undo_sqlite, undo_pg)
    assert _counted(await store.mailbox_status(inbox.id)) == expected
    await _agrees(store, inbox.id)
