"""Each message's sort date (schema 14, ``messages.sort_date``;
docs/decisions/webmail-first-page.md) on both backends: ``date_page`` gives the page the join
over the content's sent date gave before, for messages stored by every path that inserts a
message row (append, append_many, append_claiming, replace, copy, move, recover, restore,
``pobox store copy``), and the migration fills the column of messages stored before it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from tests.helpers.postgres import session_database
from tests.store.util import append, new_message

from pobox.store.api import MailboxId, MailboxImage, MessageImage, RestoreContent, Store, Uid
from pobox.store.factory import create_store

# Date: headers out of arrival order, equal ones (ties go by UID), none at all (the internal
# date stands in), one the parser cannot read (likewise)
DATES = [
    "Mon, 07 Dec 2026 10:00:00 +0000",
    None,
    "Sun, 06 Dec 2026 09:00:00 -0500",
    "Mon, 07 Dec 2026 10:00:00 +0000",
    "not a date at all",
    "Tue, 01 Dec 2026 23:59:59 +0100",
    None,
    "Mon, 07 Dec 2026 11:00:00 +0100",
]


def _message(n: int) -> bytes:
    head = f"From: p{n}@example.org\r\nSubject: sort {n}\r\nMessage-ID: <sort-{n}@x>\r\n"
    date = DATES[n % len(DATES)]
    if date is not None:
        head += f"Date: {date}\r\n"
    return f"{head}\r\nbody {n}\r\n".encode()


def _internal(n: int) -> datetime:
    # arrival dates on both sides of the sent dates, whole seconds
    return datetime.fromtimestamp(1_796_000_000 + ((n * 37_337) % 700_000), UTC)


async def _new(store: Store, n: int) -> object:
    return await new_message(store, _message(n), internal_date=_internal(n))


async def _put(store: Store, mailbox: MailboxId, n: int) -> Uid:
    meta = await append(store, mailbox, _message(n), internal_date=_internal(n))
    return meta.uid


async def _old_order(store: Store, mailbox: MailboxId, newest_first: bool) -> list[int]:
    """The whole folder in the order date_page gave before schema 14: the content's sent date
    joined, else the internal date; equal dates by UID."""
    from pobox.store.postgres.store import PostgresStore
    from pobox.store.sqlite.store import SqliteStore

    way = "DESC" if newest_first else "ASC"
    sql = (
        "SELECT m.uid FROM messages m JOIN blobs b ON b.id = m.blob WHERE m.mailbox_id = {}"
        f" ORDER BY coalesce(b.sent_date, m.internal_date) {way}, m.uid {way}"
    )
    if isinstance(store, SqliteStore):
        return await store._db.read(
            lambda conn: [r[0] for r in conn.execute(sql.format("?"), (mailbox,))]
        )
    assert isinstance(store, PostgresStore)

    async def run(conn: object) -> list[int]:
        rows = await conn.fetch(sql.format("$1"), mailbox)  # type: ignore[attr-defined]
        return [r[0] for r in rows]

    return await store._read(run)  # type: ignore[arg-type]


async def _same_as_before(store: Store, mailbox: MailboxId) -> None:
    count = len(await store.list_messages(mailbox))
    assert count > 0
    for newest_first in (True, False):
        want = await _old_order(store, mailbox, newest_first)
        assert len(want) == count
        for limit in (3, count, count + 5):
            total, uids = await store.date_page(mailbox, limit, newest_first=newest_first)
            assert total == count
            assert uids == want[:limit]


async def test_every_insert_path_pages_as_before(store: Store) -> None:
    account = await store.create_account("sortdate@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    # append, one by one
    uids = [await _put(store, inbox.id, n) for n in range(8)]
    await _same_as_before(store, inbox.id)
    # append_many
    many = await store.append_many(inbox.id, [await _new(store, n) for n in range(8, 14)])  # type: ignore[misc]
    assert len(many) == 6
    # append_claiming (APPEND into the selected mailbox)
    await store.append_claiming(inbox.id, await _new(store, 14))  # type: ignore[arg-type]
    # replace (IMAP REPLACE)
    await store.replace(inbox.id, await _new(store, 15), inbox.id, uids[0])  # type: ignore[arg-type]
    await _same_as_before(store, inbox.id)
    # copy and move (the copies keep their internal dates, sent dates from the shared content)
    copies = await store.create_mailbox(account.id, "Copies")
    await store.copy(inbox.id, uids[1:6], copies.id)
    moved = await store.create_mailbox(account.id, "Moved")
    await store.copy(inbox.id, [uids[6], uids[7], many[0].uid], moved.id, move=True)
    await _same_as_before(store, copies.id)
    await _same_as_before(store, moved.id)
    await _same_as_before(store, inbox.id)
    # recover: an expunged message kept for recovery comes back as a new message row
    await store.expunge(copies.id, [Uid(1), Uid(2)], keep_recoverable=True)
    items = await store.list_recoverable(account.id)
    assert len(items) == 2
    back = await store.recover(account.id, [item.id for item in items])
    assert len(back) == 2
    await _same_as_before(store, copies.id)
    # restore (pobox restore, pobox import of a backup): new contents and a shared one
    contents: dict[str, RestoreContent | object] = {}
    images = []
    for uid, n in enumerate(range(16, 24), start=1):
        message = await _new(store, n)
        contents[f"k{n}"] = RestoreContent(
            message.spool,  # type: ignore[attr-defined]
            message.structure,  # type: ignore[attr-defined]
            message.fields,  # type: ignore[attr-defined]
        )
        images.append(
            MessageImage(uid, uid, frozenset(), _internal(n).timestamp(), 0, 1.7e9, 10, f"k{n}")
        )
    contents["shared"] = many[1].blob
    images.append(MessageImage(9, 9, frozenset(), 1.5e9, 0, 1.7e9, 10, "shared"))
    restored = await store.restore_mailbox(account.id, MailboxImage("Restored", 7, 10, 10, 1, None))
    await store.restore_messages(restored.id, images, contents)  # type: ignore[arg-type]
    await _same_as_before(store, restored.id)


async def _forget_sort_dates(store: Store) -> None:
    """The messages as a store of schema 13 holds them (no column), migrated again by
    migration 14 itself."""
    from pobox.store.postgres import schema as pg_schema
    from pobox.store.postgres.store import PostgresStore
    from pobox.store.sqlite import schema as sqlite_schema
    from pobox.store.sqlite.store import SqliteStore

    if isinstance(store, SqliteStore):

        def again(conn: object) -> None:
            conn.execute("DROP INDEX messages_sort_date")  # type: ignore[attr-defined]
            conn.execute("ALTER TABLE messages DROP COLUMN sort_date")  # type: ignore[attr-defined]
            for statement in sqlite_schema._statements(sqlite_schema.MIGRATIONS[13]):
                conn.execute(statement)  # type: ignore[attr-defined]

        await store._db.write(again)
    else:
        assert isinstance(store, PostgresStore)

        async def again_pg(tx: object) -> None:
            await tx.conn.execute(  # type: ignore[attr-defined]
                "ALTER TABLE messages DROP COLUMN sort_date"  # its index goes with it
            )
            await tx.conn.execute(pg_schema.MIGRATIONS[13])  # type: ignore[attr-defined]

        await store._write(again_pg)  # type: ignore[arg-type]


async def test_the_migration_fills_the_sort_date_of_existing_mail(store: Store) -> None:
    account = await store.create_account("migrated@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    for n in range(12):
        await _put(store, inbox.id, n)
    other = await store.create_mailbox(account.id, "Other")
    await store.copy(inbox.id, [Uid(2), Uid(5), Uid(7)], other.id)
    before = [await store.date_page(inbox.id, 12), await store.date_page(other.id, 12)]
    await _forget_sort_dates(store)
    assert [await store.date_page(inbox.id, 12), await store.date_page(other.id, 12)] == before
    await _same_as_before(store, inbox.id)
    await _same_as_before(store, other.id)
    # the counters were left alone by the migration's update
    status = await store.mailbox_status(inbox.id)
    assert status.messages == 12
    # and messages stored after it get the column too
    await _put(store, inbox.id, 12)
    await _same_as_before(store, inbox.id)


async def test_store_copy_carries_the_sort_dates(tmp_path: Path) -> None:
    """``pobox store copy`` (SQLite to PostgreSQL) keeps the column: the same pages there."""
    from pobox.store.postgres.copy import copy_sqlite_to_postgres

    source = create_store("sqlite", tmp_path / "data")
    await source.open()
    try:
        account = await source.create_account("copied@example.org", "h")
        inbox = await source.get_mailbox(account.id, "INBOX")
        assert inbox is not None
        for n in range(10):
            await _put(source, inbox.id, n)
        want = [await source.date_page(inbox.id, 10, newest_first=w) for w in (True, False)]
    finally:
        await source.close()
    database = session_database()
    schema, spec = database.new_schema()
    try:
        await copy_sqlite_to_postgres(tmp_path / "data", spec)
        target = create_store(spec, tmp_path / "pg")
        await target.open()
        try:
            got = [await target.date_page(inbox.id, 10, newest_first=w) for w in (True, False)]
            assert got == want
            await _same_as_before(target, inbox.id)
        finally:
            await target.close()
    finally:
        database.drop_schema(schema)
