"""What only the PostgreSQL backend promises: several nodes (here: several store objects, each
with its own pool, LISTEN connection and locks) on one database, chunked content, migrations."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from tests.helpers.postgres import session_database
from tests.store.util import append, message_bytes

from pobox.errors import NotFound
from pobox.store.api import FlagOp, MailboxId, Uid
from pobox.store.postgres.content import PgContent
from pobox.store.postgres.schema import CHUNK_SIZE, MIGRATIONS
from pobox.store.postgres.store import PostgresStore


@pytest.fixture
def dsn() -> Iterator[str]:
    database = session_database()
    schema, dsn = database.new_schema()
    try:
        yield dsn
    finally:
        database.drop_schema(schema)


@pytest.fixture
async def nodes(dsn: str, tmp_path: Path) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    a = PostgresStore(dsn, tmp_path / "a")
    b = PostgresStore(dsn, tmp_path / "b")
    await a.open()
    await b.open()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def _inbox(store: PostgresStore, address: str = "n@example.org") -> MailboxId:
    account = await store.create_account(address, "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    return inbox.id


async def test_schema_is_versioned_and_migrating_again_is_a_no_op(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        versions = [r[0] for r in await conn.fetch("SELECT version FROM pobox_migrations")]
        assert versions == []  # nothing there before a store opens
    except asyncpg.exceptions.UndefinedTableError:
        pass
    store = PostgresStore(dsn)
    await store.open()
    await store.close()
    again = PostgresStore(dsn)
    await again.open()
    await again.close()
    try:
        versions = [r[0] for r in await conn.fetch("SELECT version FROM pobox_migrations")]
        assert versions == list(range(1, len(MIGRATIONS) + 1))
        # a database migrated by a newer pobox is refused, not damaged
        await conn.execute("INSERT INTO pobox_migrations (version) VALUES ($1)", 999)
        newer = PostgresStore(dsn)
        with pytest.raises(RuntimeError, match="newer"):
            await newer.open()
    finally:
        await conn.close()


async def test_concurrent_appends_on_two_nodes_get_unique_ascending_uids(
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = nodes
    inbox = await _inbox(a)
    metas = await asyncio.gather(
        *(append(a if n % 2 else b, inbox, message_bytes(n)) for n in range(120))
    )
    assert sorted(m.uid for m in metas) == list(range(1, 121))
    assert len({m.modseq for m in metas}) == 120
    mailbox = await b.get_mailbox_by_id(inbox)
    assert mailbox is not None and mailbox.uidnext == 121


async def test_uids_become_visible_in_order(nodes: tuple[PostgresStore, PostgresStore]) -> None:
    """A reader never sees UID n+1 before UID n: UIDs are committed in the order they are taken
    (an IMAP client that saw UID 7 must never later find a new UID 6)."""
    a, b = nodes
    inbox = await _inbox(a)
    done = asyncio.Event()
    seen_gaps: list[list[int]] = []

    async def watch() -> None:
        while not done.is_set():
            uids = [m.uid for m in await a.list_messages(inbox)]
            if uids != list(range(1, len(uids) + 1)):
                seen_gaps.append(uids)
            await asyncio.sleep(0)

    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.gather(
            *(append(b if n % 3 else a, inbox, message_bytes(n)) for n in range(90))
        )
    finally:
        done.set()
        await watcher
    assert seen_gaps == []


async def test_flag_changes_from_two_nodes_are_not_lost(
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = nodes
    inbox = await _inbox(a)
    meta = await append(a, inbox, message_bytes(1))
    keywords = [f"k{n}" for n in range(40)]
    await asyncio.gather(
        *(
            (a if n % 2 else b).set_flags(inbox, [meta.uid], FlagOp.ADD, frozenset({kw}))
            for n, kw in enumerate(keywords)
        )
    )
    (final,) = await b.get_messages(inbox, [meta.uid])
    assert final.flags == frozenset(keywords)
    status = await a.mailbox_status(inbox)
    assert status.highest_modseq == final.modseq == meta.modseq + 40


async def test_unrelated_mailboxes_do_not_wait_on_each_other(
    nodes: tuple[PostgresStore, PostgresStore], dsn: str
) -> None:
    a, b = nodes
    first = await _inbox(a, "one@example.org")
    second = await _inbox(a, "two@example.org")
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            # another node in the middle of a write to the first mailbox holds its row lock
            await conn.execute("SELECT 1 FROM mailboxes WHERE id = $1 FOR UPDATE", first)
            started = time.monotonic()
            await asyncio.wait_for(append(b, second, message_bytes(2)), 5)
            assert time.monotonic() - started < 2
            blocked = asyncio.ensure_future(append(b, first, message_bytes(3)))
            await asyncio.sleep(0.3)
            assert not blocked.done()  # the same mailbox waits for the lock
        meta = await asyncio.wait_for(blocked, 5)
        assert meta.uid == 1
    finally:
        await conn.close()


async def test_a_change_on_one_node_is_heard_on_the_other_within_a_second(
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = nodes
    inbox = await _inbox(a)
    heard = asyncio.Event()
    b.add_listener(lambda mailbox_id: heard.set() if mailbox_id == inbox else None)
    started = time.monotonic()
    await append(a, inbox, message_bytes(1))
    await asyncio.wait_for(heard.wait(), 1.0)
    assert time.monotonic() - started < 1.0


async def test_own_writes_are_heard_once(nodes: tuple[PostgresStore, PostgresStore]) -> None:
    a, _ = nodes
    inbox = await _inbox(a)
    heard: list[int] = []
    a.add_listener(heard.append)
    await append(a, inbox, message_bytes(1))
    await asyncio.sleep(0.5)  # the NOTIFY from our own commit must not come round again
    assert heard == [inbox]


async def test_listener_reconnects_and_catches_up(
    nodes: tuple[PostgresStore, PostgresStore], dsn: str
) -> None:
    a, b = nodes
    inbox = await _inbox(a)
    heard = asyncio.Event()
    b.add_listener(lambda mailbox_id: heard.set() if mailbox_id == inbox else None)
    assert b._listener is not None and b._listener.conn is not None
    pid = b._listener.conn.get_server_pid()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()
    await append(a, inbox, message_bytes(1))  # while b's LISTEN connection is gone
    await asyncio.wait_for(heard.wait(), 5.0)


async def test_pop3_lock_is_exclusive_across_nodes_and_dies_with_its_holder(
    nodes: tuple[PostgresStore, PostgresStore], dsn: str
) -> None:
    a, b = nodes
    account = await a.create_account("lock@example.org", "h")
    held = await a.try_lock(account.id, "pop3")
    assert held is not None
    assert await b.try_lock(account.id, "pop3") is None
    other = await b.try_lock(account.id, "imap")  # another name is another lock
    assert other is not None
    await other.release()
    # the holder's node dies: its connection goes, and the lock with it
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'pobox lock' AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    deadline = time.monotonic() + 5
    taken = None
    while taken is None and time.monotonic() < deadline:
        taken = await b.try_lock(account.id, "pop3")
        await asyncio.sleep(0.05)
    assert taken is not None
    await taken.release()
    await held.release()  # releasing a lock whose connection died is harmless


async def test_large_content_is_chunked_and_read_piecewise(
    nodes: tuple[PostgresStore, PostgresStore], dsn: str
) -> None:
    a, b = nodes
    inbox = await _inbox(a)
    body = b"".join(
        b"%08d abcdefghijklmnopqrstuvwxyz\r\n" % n for n in range(12 * CHUNK_SIZE // 36)
    )
    content = message_bytes(1, size=0) + body
    meta = await append(a, inbox, content)
    conn = await asyncpg.connect(dsn)
    try:
        sizes = [
            r[0]
            for r in await conn.fetch(
                "SELECT length(data) FROM blob_chunks WHERE blob = $1 ORDER BY seq", meta.blob
            )
        ]
    finally:
        await conn.close()
    assert sizes[:-1] == [CHUNK_SIZE] * (len(sizes) - 1) and sum(sizes) == len(content)
    opened = await b.open_content(meta.blob)
    assert isinstance(opened, PgContent) and opened.file() is None
    try:
        fetches = b._reader.fetches
        # on the event loop's own thread (POP3 does this) ...
        middle = 7 * CHUNK_SIZE - 10
        assert opened.read(middle, 20) == content[middle : middle + 20]
        # ... and in a worker thread (SEARCH does this)
        tail = await asyncio.to_thread(opened.read, len(content) - 100, 1000)
        assert tail == content[-100:]
        whole = b"".join(opened.read(pos, 65536) for pos in range(0, opened.size, 65536))
        assert whole == content
        # only what was needed was fetched, a few chunks per round trip
        assert b._reader.fetches - fetches <= 6
        assert len(opened._cache) <= 4
    finally:
        opened.close()
    # content outlives expunge while copies hold it; then it goes with the last reference
    await a.expunge(inbox, [meta.uid])
    with pytest.raises(NotFound):
        await a.open_content(meta.blob)


async def test_content_deleted_under_a_reader_is_an_error_not_a_short_read(
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    a, _ = nodes
    inbox = await _inbox(a)
    content = message_bytes(1, size=6 * CHUNK_SIZE)
    meta = await append(a, inbox, content)
    opened = await a.open_content(meta.blob)
    await a.expunge(inbox, [meta.uid])
    assert opened.read(0, 10) == content[:10]  # preloaded
    with pytest.raises(NotFound):
        await asyncio.to_thread(opened.read, 5 * CHUNK_SIZE, 10)
    opened.close()


async def test_check_finds_damage_and_spool_files_are_cleaned(
    nodes: tuple[PostgresStore, PostgresStore], dsn: str
) -> None:
    a, _ = nodes
    inbox = await _inbox(a)
    meta = await append(a, inbox, message_bytes(1))
    assert await a.check() == []
    assert a.spool_dir is not None and list(a.spool_dir.iterdir()) == []
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("UPDATE blobs SET refs = 5 WHERE id = $1", meta.blob)
        await conn.execute("UPDATE mailboxes SET uidnext = 1 WHERE id = $1", inbox)
    finally:
        await conn.close()
    problems = await a.check()
    assert any("reference count 5" in p for p in problems)
    assert any("UIDNEXT 1" in p for p in problems)


async def test_uid_is_not_reused_across_nodes_after_expunge(
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = nodes
    inbox = await _inbox(a)
    first = await append(a, inbox, message_bytes(1))
    await b.expunge(inbox, [first.uid])
    second = await append(b, inbox, message_bytes(2))
    assert second.uid == Uid(first.uid + 1)


async def test_append_to_a_missing_mailbox_leaves_nothing_behind(
    nodes: tuple[PostgresStore, PostgresStore], dsn: str
) -> None:
    a, _ = nodes
    await _inbox(a)
    for size in (0, 10, 3 * CHUNK_SIZE):
        with pytest.raises(NotFound):
            await append(a, MailboxId(999999), message_bytes(1, size=size))
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM blobs") == 0
        assert await conn.fetchval("SELECT count(*) FROM blob_chunks") == 0
    finally:
        await conn.close()
    assert a.spool_dir is not None and list(a.spool_dir.iterdir()) == []
