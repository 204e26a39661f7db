"""Copy a whole SQLite installation into an empty PostgreSQL store (``pobox store copy``).

Everything a client can observe is kept: account, mailbox, message and recovery ids, UIDVALIDITY,
UIDs, UIDNEXT, HIGHESTMODSEQ, MODSEQs, flags and keywords, internal and save dates, the expunge
log, POP3 UIDLs (stored overrides, and the computed ones, which derive from UID and UIDVALIDITY),
POP3 hidden marks, recovery items, aliases, settings, folder policies, app passwords and
subscriptions, the outbound queue and the DKIM keys. The full-text index is not copied: the
target builds its own. Content shared by copies stays shared (same blob, same reference count).

The SQLite database is read directly (read-only, one read transaction: a consistent snapshot)
and each message file is streamed into ``blob_chunks`` one chunk at a time. The whole copy is one
PostgreSQL transaction: it lands whole or not at all, and a target that holds anything already is
refused. Stop the pobox that serves the SQLite store first: a message expunged during the copy
would abort it (its file is gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from pobox.errors import InvalidInput, NotFound
from pobox.store.postgres.schema import CHUNK_SIZE, migrate
from pobox.store.postgres.store import as_store_error

#: The SQLite schema version this copier understands (pobox.store.sqlite.schema).
SQLITE_VERSION = 15
BATCH = 1000

Progress = Callable[[str], None]


@dataclass
class CopyReport:
    counts: dict[str, int] = field(default_factory=dict)
    bytes: int = 0


class SqliteSource:
    """Bulk, read-only access to an embedded store's database and message files."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir
        self.db_path = data_dir / "pobox.db"
        if not self.db_path.is_file():
            raise NotFound(f"no pobox SQLite store in {data_dir} (no pobox.db)")
        self.conn = sqlite3.connect(
            f"file:{self.db_path}?mode=ro", uri=True, check_same_thread=False
        )
        self.conn.execute("PRAGMA busy_timeout = 10000")
        version = int(self.conn.execute("PRAGMA user_version").fetchone()[0])
        if version != SQLITE_VERSION:
            self.conn.close()
            raise InvalidInput(
                f"the SQLite store has schema version {version}; this copier knows"
                f" {SQLITE_VERSION}: use the pobox that matches it"
            )
        self.conn.execute("BEGIN")  # one snapshot for the whole copy

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("COMMIT")
        self.conn.close()

    def rows(self, sql: str) -> Iterator[tuple[Any, ...]]:
        cursor = self.conn.execute(sql)
        while True:
            batch = cursor.fetchmany(BATCH)
            if not batch:
                return
            yield from batch

    def count(self, table: str) -> int:
        return int(self.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    def blob_path(self, name: str) -> Path:
        if len(name) != 32 or not all(c in "0123456789abcdef" for c in name):
            raise InvalidInput(f"not a blob name: {name!r}")
        return self.root / "messages" / name[:2] / name


# table: (columns in SQLite, the same columns in PostgreSQL)
_TABLES: tuple[tuple[str, str, str], ...] = (
    ("accounts", "id, address, password_hash, created", "id, address, password_hash, created"),
    ("account_settings", "account_id, key, value", "account_id, key, value"),
    ("aliases", "alias, account_id", "alias, account_id"),
    ("counters", "name, value", "name, value"),
    (
        "mailboxes",
        "id, account_id, name, uidvalidity, uidnext, highestmodseq, recent_floor, special_use",
        "id, account_id, name, uidvalidity, uidnext, highestmodseq, recent_floor, special_use",
    ),
    ("subscriptions", "account_id, name", "account_id, name"),
    ("mailbox_acl", "mailbox_id, identifier, rights", "mailbox_id, identifier, rights"),
    # METADATA entries (schema 11)
    (
        "annotations",
        "id, mailbox_id, owner_id, name, value",
        "id, mailbox_id, owner_id, name, value",
    ),
    # URLAUTH mailbox access keys (schema 15): authorized URLs stay valid after the copy
    ("mailbox_keys", "account_id, mailbox_id, key", "account_id, mailbox_id, key"),
    ("folder_policies", "account_id, folder, key, value", "account_id, folder, key, value"),
    (
        "logins",
        "id, account_id, label, password_hash, created, last_used, last_address",
        "id, account_id, label, password_hash, created, last_used, last_address",
    ),
    (
        "quota_usage",
        "account_id, storage, messages, warned, low_storage, low_messages",
        "account_id, storage, messages, warned, low_storage, low_messages",
    ),
    # the outbound queue (schema 4) without its leases: the nodes claim afresh
    (
        "outbound",
        "id, sender, created, size, warned, next_attempt, content",
        "id, sender, created, size, warned, next_attempt, content",
    ),
    (
        "outbound_rcpt",
        "queue_id, position, address, state, attempts, next_attempt, last_error",
        "queue_id, position, address, state, attempts, next_attempt, last_error",
    ),
    (
        "dkim_keys",
        "domain, selector, private_key, created",
        "domain, selector, private_key, created",
    ),
)
# Not copied: the full-text index (schema 5); the PostgreSQL store's indexer builds its own.
_MESSAGES = (
    "mailbox_id, uid, modseq, flags, keywords, internal_date, internal_tz, save_date, size, blob,"
    " pop3_uidl, pop3_hidden_at, sort_date"
)
_RECOVERABLE = (
    "id, account_id, mailbox_id, mailbox_name, uid, uidl, deleted_at, still_present, blob, flags,"
    " keywords, internal_date, internal_tz, size"
)
_BLOBS = (
    "id, size, refs, structure, subject, from_, to_, cc, bcc, message_id, sent_date,"
    " envelope, bodystructure, thread_refs"
)
_FLOAT_COLUMNS = {
    "created",
    "internal_date",
    "save_date",
    "pop3_hidden_at",
    "deleted_at",
    "next_attempt",
    "last_used",
    "sort_date",
}


def _fix(columns: str, row: tuple[Any, ...]) -> tuple[Any, ...]:
    """SQLite's loose types to what the PostgreSQL columns take."""
    out: list[Any] = []
    for name, value in zip((c.strip() for c in columns.split(",")), row, strict=True):
        if value is not None and (name in _FLOAT_COLUMNS or name == "sent_date"):
            value = float(value)
        elif name in ("still_present", "warned"):
            value = bool(value)
        elif (
            name in ("structure", "envelope", "bodystructure", "content", "private_key")
            and value is not None
        ):
            value = bytes(value)
        out.append(value)
    return tuple(out)


async def _is_empty(conn: Any) -> bool:
    return not await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM accounts) OR EXISTS (SELECT 1 FROM mailboxes)"
        " OR EXISTS (SELECT 1 FROM blobs) OR EXISTS (SELECT 1 FROM counters)"
    )


async def copy_sqlite_to_postgres(
    data_dir: Path, dsn: str, progress: Progress | None = None
) -> CopyReport:
    """Copy the SQLite store in *data_dir* into the (empty) PostgreSQL store at *dsn*."""
    say = progress or (lambda _text: None)
    source = await asyncio.to_thread(SqliteSource, data_dir)
    report = CopyReport()
    try:
        try:
            conn = await asyncpg.connect(dsn, timeout=10)
        except Exception as exc:
            raise as_store_error(exc) from exc
        try:
            await migrate(conn)
            async with conn.transaction():
                await conn.execute(
                    "LOCK TABLE accounts, mailboxes, blobs, counters IN EXCLUSIVE MODE"
                )
                if not await _is_empty(conn):
                    raise InvalidInput(
                        "the PostgreSQL store is not empty: copy only into a new database"
                    )
                await _copy(source, conn, report, say)
                await _verify(source, conn, report)
        finally:
            await conn.close()
    finally:
        await asyncio.to_thread(source.close)
    return report


async def _copy_table(
    source: SqliteSource, conn: Any, table: str, src_cols: str, dst_cols: str, report: CopyReport
) -> None:
    rows = [_fix(dst_cols, r) for r in source.rows(f"SELECT {src_cols} FROM {table}")]
    if rows:
        await conn.copy_records_to_table(
            table, records=rows, columns=[c.strip() for c in dst_cols.split(",")]
        )
    report.counts[table] = len(rows)


async def _copy_streamed(
    source: SqliteSource, conn: Any, table: str, columns: str, report: CopyReport
) -> None:
    names = [c.strip() for c in columns.split(",")]
    total = 0
    batch: list[tuple[Any, ...]] = []
    for row in source.rows(f"SELECT {columns} FROM {table}"):
        batch.append(_fix(columns, row))
        if len(batch) >= BATCH:
            await conn.copy_records_to_table(table, records=batch, columns=names)
            total += len(batch)
            batch = []
    if batch:
        await conn.copy_records_to_table(table, records=batch, columns=names)
        total += len(batch)
    report.counts[table] = total


def _read_at(path: Path, offset: int) -> bytes:
    with open(path, "rb") as fp:
        fp.seek(offset)
        return fp.read(CHUNK_SIZE)


async def _chunks(source: SqliteSource, blobs: list[tuple[int, str, int]]) -> AsyncIterator[Any]:
    for blob, name, size in blobs:
        path = source.blob_path(name)
        try:
            actual = (await asyncio.to_thread(os.stat, path)).st_size
        except FileNotFoundError:
            raise NotFound(f"message file {name} of blob {blob} is missing") from None
        if actual != size:
            raise InvalidInput(f"message file {name} has {actual} bytes, the database says {size}")
        for seq in range((size + CHUNK_SIZE - 1) // CHUNK_SIZE):
            data = await asyncio.to_thread(_read_at, path, seq * CHUNK_SIZE)
            yield (blob, seq, data)


async def _copy(source: SqliteSource, conn: Any, report: CopyReport, say: Progress) -> None:
    for table, src_cols, dst_cols in _TABLES:
        await _copy_table(source, conn, table, src_cols, dst_cols, report)
    say(
        f"copied {report.counts['accounts']} account(s), {report.counts['aliases']} alias(es),"
        f" {report.counts['mailboxes']} mailbox(es)"
    )
    # content: the rows, then every file in chunks, a batch of blobs at a time
    await _copy_streamed(source, conn, "blobs", _BLOBS, report)
    blobs = [
        (int(r[0]), str(r[1]), int(r[2])) for r in source.rows("SELECT id, name, size FROM blobs")
    ]
    for start in range(0, len(blobs), BATCH):
        part = blobs[start : start + BATCH]
        await conn.copy_records_to_table(
            "blob_chunks", records=_chunks(source, part), columns=["blob", "seq", "data"]
        )
        report.bytes += sum(size for _, _, size in part)
        say(f"copied the content of {min(start + BATCH, len(blobs))}/{len(blobs)} message(s)")
    await _copy_streamed(source, conn, "messages", _MESSAGES, report)
    await _copy_streamed(source, conn, "expunged", "mailbox_id, uid, modseq", report)
    await _copy_streamed(source, conn, "recoverable", _RECOVERABLE, report)
    for table in ("accounts", "mailboxes", "blobs", "recoverable", "logins", "annotations"):
        await conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
            f" coalesce((SELECT max(id) FROM {table}), 0) + 1, false)"
        )
    # change listeners start from here: the journal's sequence continues, its rows do not matter
    say(
        f"copied {report.counts['messages']} message(s) ({report.bytes} bytes),"
        f" {report.counts['recoverable']} recovery item(s)"
    )


async def _verify(source: SqliteSource, conn: Any, report: CopyReport) -> None:
    """Counts and sums on both sides agree (inside the copy's transaction)."""
    for table in report.counts:
        theirs = await conn.fetchval(f"SELECT count(*) FROM {table}")
        if theirs != source.count(table):
            raise RuntimeError(
                f"copy check: {table} has {theirs} rows, the source {source.count(table)}"
            )
    stored = await conn.fetchval("SELECT coalesce(sum(length(data)), 0)::bigint FROM blob_chunks")
    if stored != report.bytes:
        raise RuntimeError(f"copy check: {stored} bytes of content stored, {report.bytes} read")
    mine = await conn.fetchval(
        "SELECT coalesce(sum(uidnext + highestmodseq), 0)::bigint FROM mailboxes"
    )
    (theirs,) = source.conn.execute(
        "SELECT coalesce(sum(uidnext + highestmodseq), 0) FROM mailboxes"
    ).fetchone()
    if mine != theirs:
        raise RuntimeError("copy check: UIDNEXT/HIGHESTMODSEQ differ")


async def migrate_postgres(dsn: str) -> int:
    """Create or upgrade the schema at *dsn*; returns its version."""
    try:
        conn = await asyncpg.connect(dsn, timeout=10)
    except Exception as exc:
        raise as_store_error(exc) from exc
    try:
        return await migrate(conn)
    finally:
        await conn.close()
