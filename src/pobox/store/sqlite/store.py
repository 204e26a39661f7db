"""The embedded store: SQLite (WAL) for metadata, one file per message for content."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pobox.errors import AlreadyExists, InvalidInput, NotFound
from pobox.errors import Expunged as ExpungedError
from pobox.store.api import (
    DEFAULT_MAILBOXES,
    Account,
    AccountId,
    AccountImage,
    AuthBlock,
    BlobId,
    ChangeBatch,
    ChangeListener,
    Content,
    Expunged,
    FlagOp,
    Lock,
    Mailbox,
    MailboxId,
    MailboxImage,
    MailboxStatus,
    MessageColumns,
    MessageImage,
    MessageMeta,
    ModSeq,
    NewMessage,
    QuotaLimits,
    Recoverable,
    RecoverableImage,
    Rendered,
    RestoreContent,
    SearchFields,
    Spool,
    StoreSnapshot,
    StoreTotals,
    Uid,
)
from pobox.store.rows import (
    COLUMN_PIECE,
    ColumnBuilder,
    from_epoch,
    join_flags,
    keywords_text,
    split_flags,
    to_epoch,
    uidl_for,
)
from pobox.store.rows import search_fields as rows_search_fields
from pobox.store.sqlite import counts as _counts
from pobox.store.sqlite import quota as _quota
from pobox.store.sqlite.acl import SqliteAcl
from pobox.store.sqlite.db import INLINE_MAX, Database, as_store_error
from pobox.store.sqlite.files import FileContent, FileLayout, FileSpool
from pobox.store.sqlite.fulltext import SqliteFullText, drop_text
from pobox.store.sqlite.ids import next_mailbox_id
from pobox.store.sqlite.logins import SqliteLogins
from pobox.store.sqlite.metadata import SqliteMetadata
from pobox.store.sqlite.policies import SqlitePolicies
from pobox.store.sqlite.queue import SqliteQueue
from pobox.store.sqlite.quota import SqliteQuota
from pobox.store.sqlite.schema import migrate
from pobox.store.sqlite.websessions import SqliteWebSessions

log = logging.getLogger("pobox.store")

#: Seconds the files of expunged contents wait, to be removed together (_unlink_later).
UNLINK_DELAY = 0.05
T = TypeVar("T")

WATCH_INTERVAL = 0.2

_MSG_COLUMNS = (
    "mailbox_id, uid, modseq, flags, keywords, internal_date, internal_tz, save_date, size, blob,"
    " pop3_uidl, pop3_hidden_at"
)
_MBOX_COLUMNS = "id, account_id, name, uidvalidity, uidnext, highestmodseq, special_use"


def _meta(row: Sequence[Any]) -> MessageMeta:
    return MessageMeta(
        mailbox_id=MailboxId(row[0]),
        uid=Uid(row[1]),
        modseq=ModSeq(row[2]),
        flags=join_flags(row[3], row[4]),
        internal_date=from_epoch(row[5], row[6]),
        save_date=from_epoch(row[7]),
        size=row[8],
        blob=BlobId(row[9]),
        pop3_uidl=row[10],
        pop3_hidden=row[11] is not None,
    )


def _mailbox(row: Sequence[Any], subscribed: bool) -> Mailbox:
    return Mailbox(
        id=MailboxId(row[0]),
        account_id=AccountId(row[1]),
        name=row[2],
        uidvalidity=row[3],
        uidnext=Uid(row[4]),
        highest_modseq=ModSeq(row[5]),
        special_use=row[6],
        subscribed=subscribed,
    )


def _chunks(values: Sequence[int], size: int = 500) -> Iterable[Sequence[int]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class _FileLock:
    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    async def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class SqliteStore(
    SqliteAcl,
    SqliteMetadata,
    SqliteQueue,
    SqliteFullText,
    SqliteWebSessions,
    SqlitePolicies,
    SqliteLogins,
    SqliteQuota,
):
    """The embedded backend. See docs/storage.md."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.layout = FileLayout(root)
        self.db_path = root / "pobox.db"
        self._db = Database(self.db_path)
        self._listeners: list[ChangeListener] = []
        self._watch_task: asyncio.Task[None] | None = None
        #: names of files whose contents are gone, and the task that removes them (_unlink_later)
        self._doomed: list[str] = []
        self._unlinking: asyncio.Task[None] | None = None
        self._journal_seq = 0
        self._job_seqs: list[int] = []
        #: the account's usage after the last message the writer thread inserted
        self._usage_after = (0, 0)
        self._own_seqs: set[int] = set()
        self._opened = False

    # lifecycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        def init() -> int:
            self.root.mkdir(parents=True, exist_ok=True)
            self.layout.prepare()
            with contextlib.closing(sqlite3.connect(self.db_path, isolation_level=None)) as conn:
                conn.execute("PRAGMA busy_timeout = 10000")
                conn.execute("PRAGMA journal_mode = WAL")
                migrate(conn)
                row = conn.execute("SELECT max(seq) FROM change_journal").fetchone()
                return int(row[0] or 0)

        try:
            self._journal_seq = await asyncio.to_thread(init)
        except Exception as exc:
            raise as_store_error(exc) from exc
        self._db.start()
        self._opened = True

    async def close(self) -> None:
        if self._unlinking is not None:
            self._unlinking.cancel()  # its finally removes the files now
            with contextlib.suppress(asyncio.CancelledError):
                await self._unlinking
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
            self._watch_task = None
        if self._opened:
            await asyncio.to_thread(self._db.stop)
            self._opened = False

    # change notification -------------------------------------------------------------------
    def add_listener(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)
        if self._watch_task is None and self._opened:
            self._watch_task = asyncio.get_running_loop().create_task(self._watch())

    def remove_listener(self, listener: ChangeListener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def _notify(self, mailbox_ids: Iterable[MailboxId]) -> None:
        for mailbox_id in set(mailbox_ids):
            for listener in list(self._listeners):
                try:
                    listener(mailbox_id)
                except Exception:  # a broken listener must not break the writer
                    log.exception("change listener failed")

    async def _watch(self) -> None:
        """One cheap poll per process of the change journal: what other processes wrote.

        The watcher has its own connection and thread, so a busy read pool never delays it, and
        a short busy timeout: a poll that meets a lock just tries again at the next tick.
        """
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pobox-watch")
        loop = asyncio.get_running_loop()
        holder: list[sqlite3.Connection] = []

        def poll(since: int) -> tuple[int, list[int]]:
            if not holder:
                conn = sqlite3.connect(
                    self.db_path, isolation_level=None, check_same_thread=False, timeout=0.1
                )
                conn.execute("PRAGMA busy_timeout = 100")
                conn.execute("PRAGMA query_only = ON")
                holder.append(conn)
            rows = (
                holder[0]
                .execute("SELECT seq, mailbox_id FROM change_journal WHERE seq > ?", (since,))
                .fetchall()
            )
            if not rows:
                return since, []
            own = self._own_seqs
            return max(r[0] for r in rows), [r[1] for r in rows if r[0] not in own]

        try:
            while True:
                await asyncio.sleep(WATCH_INTERVAL)
                if not self._listeners:
                    continue
                try:
                    seq, ids = await loop.run_in_executor(executor, poll, self._journal_seq)
                except sqlite3.Error as exc:
                    log.debug("change watcher: %s (retrying)", exc)
                    continue
                if seq > self._journal_seq:
                    self._journal_seq = seq
                    if self._own_seqs:
                        self._own_seqs = {s for s in self._own_seqs if s > seq}
                    self._notify(MailboxId(i) for i in ids)
        finally:
            executor.shutdown(wait=True)  # at most one short poll in flight
            for conn in holder:
                conn.close()

    def _journal(self, conn: sqlite3.Connection, mailbox_id: int) -> None:
        cur = conn.execute("INSERT INTO change_journal (mailbox_id) VALUES (?)", (mailbox_id,))
        seq = cur.lastrowid or 0
        self._job_seqs.append(seq)  # only the writer thread runs this
        if seq % 10000 == 0:
            conn.execute("DELETE FROM change_journal WHERE seq < ?", (seq - 100000,))

    async def _write(
        self, fn: Callable[[sqlite3.Connection], T], *, prepare: Callable[[], None] | None = None
    ) -> T:
        """One write in the next group commit; the journal rows it adds are remembered, so the
        watcher does not report this process's own changes a second time (its listeners heard
        of them right after the commit). *prepare*: see :meth:`Database.write`."""

        def run(conn: sqlite3.Connection) -> tuple[T, list[int]]:
            self._job_seqs = []
            value = fn(conn)
            return value, self._job_seqs

        value, seqs = await self._db.write(run, prepare=prepare)
        if seqs:
            if len(self._own_seqs) > 100000:  # nobody watching: forgetting only costs a re-read
                self._own_seqs.clear()
            self._own_seqs.update(seqs)
        return value

    # accounts ----------------------------------------------------------------------------
    def _account(self, conn: sqlite3.Connection, row: Sequence[Any] | None) -> Account | None:
        if row is None:
            return None
        settings = dict(
            conn.execute(
                "SELECT key, value FROM account_settings WHERE account_id = ?", (row[0],)
            ).fetchall()
        )
        return Account(AccountId(row[0]), row[1], row[2], settings)

    @staticmethod
    def _next_uidvalidity(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT value FROM counters WHERE name = 'uidvalidity'").fetchone()
        value = max(int(time.time()), (row[0] + 1) if row else 1) % (2**32)
        value = max(value, 1)
        conn.execute(
            "INSERT INTO counters (name, value) VALUES ('uidvalidity', ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (value,),
        )
        return value

    def _insert_mailbox(
        self, conn: sqlite3.Connection, account_id: int, name: str, special_use: str | None
    ) -> Mailbox:
        exists = conn.execute(
            "SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?", (account_id, name)
        ).fetchone()
        if exists:
            raise AlreadyExists(f"mailbox {name!r} already exists")
        uidvalidity = self._next_uidvalidity(conn)
        mailbox_id = next_mailbox_id(conn)
        conn.execute(
            "INSERT INTO mailboxes (id, account_id, name, uidvalidity, special_use)"
            " VALUES (?, ?, ?, ?, ?)",
            (mailbox_id, account_id, name, uidvalidity, special_use),
        )
        return Mailbox(
            MailboxId(mailbox_id),
            AccountId(account_id),
            name,
            uidvalidity,
            Uid(1),
            ModSeq(1),
            special_use,
            False,
        )

    async def create_account(self, address: str, password_hash: str) -> Account:
        def run(conn: sqlite3.Connection) -> Account:
            taken = conn.execute(
                "SELECT 1 FROM accounts WHERE address = ? UNION ALL"
                " SELECT 1 FROM aliases WHERE alias = ?",
                (address, address),
            ).fetchone()
            if taken:
                raise AlreadyExists(f"{address} already exists")
            cur = conn.execute(
                "INSERT INTO accounts (address, password_hash, created) VALUES (?, ?, ?)",
                (address, password_hash, time.time()),
            )
            account_id = cur.lastrowid or 0
            for name, special_use in DEFAULT_MAILBOXES:
                self._insert_mailbox(conn, account_id, name, special_use)
                conn.execute(
                    "INSERT INTO subscriptions (account_id, name) VALUES (?, ?)",
                    (account_id, name),
                )
            return Account(AccountId(account_id), address, password_hash, {})

        return await self._write(run)

    async def get_account(self, address: str) -> Account | None:
        return await self._db.read(
            lambda conn: self._account(
                conn,
                conn.execute(
                    "SELECT id, address, password_hash FROM accounts WHERE address = ?",
                    (address,),
                ).fetchone(),
            ),
            inline=True,
        )

    async def get_account_by_id(self, account_id: AccountId) -> Account | None:
        return await self._db.read(
            lambda conn: self._account(
                conn,
                conn.execute(
                    "SELECT id, address, password_hash FROM accounts WHERE id = ?", (account_id,)
                ).fetchone(),
            ),
            inline=True,
        )

    async def resolve_address(self, address: str) -> Account | None:
        def run(conn: sqlite3.Connection) -> Account | None:
            row = conn.execute(
                "SELECT id, address, password_hash FROM accounts WHERE address = ?"
                " UNION ALL SELECT a.id, a.address, a.password_hash FROM aliases l"
                " JOIN accounts a ON a.id = l.account_id WHERE l.alias = ?",
                (address, address),
            ).fetchone()
            return self._account(conn, row)

        return await self._db.read(run, inline=True)

    async def list_accounts(self) -> list[Account]:
        def run(conn: sqlite3.Connection) -> list[Account]:
            rows = conn.execute(
                "SELECT id, address, password_hash FROM accounts ORDER BY address"
            ).fetchall()
            return [a for a in (self._account(conn, r) for r in rows) if a is not None]

        return await self._db.read(run)

    async def totals(self) -> StoreTotals:
        def run(conn: sqlite3.Connection) -> StoreTotals:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM accounts), (SELECT count(*) FROM mailboxes),"
                " count(*), coalesce(sum(size), 0) FROM messages"
            ).fetchone()
            return StoreTotals(int(row[0]), int(row[1]), int(row[2]), int(row[3]))

        return await self._db.read(run)

    async def delete_account(self, account_id: AccountId) -> None:
        def run(conn: sqlite3.Connection) -> list[str]:
            mailbox_ids = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM mailboxes WHERE account_id = ?", (account_id,)
                ).fetchall()
            ]
            doomed: list[str] = []
            for mailbox_id in mailbox_ids:
                doomed += self._drop_mailbox(conn, mailbox_id)
            held = conn.execute(
                "SELECT blob FROM recoverable WHERE account_id = ? AND blob IS NOT NULL",
                (account_id,),
            ).fetchall()
            conn.execute("DELETE FROM recoverable WHERE account_id = ?", (account_id,))
            for (blob,) in held:
                doomed += self._unref(conn, blob)
            cur = conn.execute("DELETE FROM accounts WHERE id = ?", (account_id,))
            if cur.rowcount == 0:
                raise NotFound("no such account")
            return doomed

        await self._unlink_later(await self._write(run))

    async def set_password_hash(self, account_id: AccountId, password_hash: str) -> None:
        def run(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "UPDATE accounts SET password_hash = ? WHERE id = ?", (password_hash, account_id)
            )
            if cur.rowcount == 0:
                raise NotFound("no such account")

        await self._write(run)

    async def set_account_setting(self, account_id: AccountId, key: str, value: str | None) -> None:
        def run(conn: sqlite3.Connection) -> None:
            if value is None:
                conn.execute(
                    "DELETE FROM account_settings WHERE account_id = ? AND key = ?",
                    (account_id, key),
                )
            else:
                conn.execute(
                    "INSERT INTO account_settings (account_id, key, value) VALUES (?, ?, ?)"
                    " ON CONFLICT (account_id, key) DO UPDATE SET value = excluded.value",
                    (account_id, key, value),
                )

        await self._write(run)

    async def add_alias(self, alias: str, account_id: AccountId) -> None:
        def run(conn: sqlite3.Connection) -> None:
            taken = conn.execute(
                "SELECT 1 FROM accounts WHERE address = ? UNION ALL"
                " SELECT 1 FROM aliases WHERE alias = ?",
                (alias, alias),
            ).fetchone()
            if taken:
                raise AlreadyExists(f"{alias} is already an address or alias")
            conn.execute(
                "INSERT INTO aliases (alias, account_id) VALUES (?, ?)", (alias, account_id)
            )

        await self._write(run)

    async def remove_alias(self, alias: str) -> None:
        def run(conn: sqlite3.Connection) -> None:
            if conn.execute("DELETE FROM aliases WHERE alias = ?", (alias,)).rowcount == 0:
                raise NotFound(f"no alias {alias}")

        await self._write(run)

    async def list_aliases(self, account_id: AccountId | None = None) -> list[tuple[str, str]]:
        def run(conn: sqlite3.Connection) -> list[tuple[str, str]]:
            sql = "SELECT l.alias, a.address FROM aliases l JOIN accounts a ON a.id = l.account_id"
            args: tuple[Any, ...] = ()
            if account_id is not None:
                sql += " WHERE a.id = ?"
                args = (account_id,)
            return [(r[0], r[1]) for r in conn.execute(sql + " ORDER BY l.alias", args)]

        return await self._db.read(run)

    # mailboxes ---------------------------------------------------------------------------
    async def list_mailboxes(self, account_id: AccountId) -> list[Mailbox]:
        def run(conn: sqlite3.Connection) -> list[Mailbox]:
            subs = {
                r[0]
                for r in conn.execute(
                    "SELECT name FROM subscriptions WHERE account_id = ?", (account_id,)
                )
            }
            rows = conn.execute(
                f"SELECT {_MBOX_COLUMNS} FROM mailboxes WHERE account_id = ? ORDER BY name",
                (account_id,),
            ).fetchall()
            return [_mailbox(r, r[2] in subs) for r in rows]

        return await self._db.read(run, inline=True)

    @staticmethod
    def _get_mailbox(conn: sqlite3.Connection, where: str, args: tuple[Any, ...]) -> Mailbox | None:
        row = conn.execute(f"SELECT {_MBOX_COLUMNS} FROM mailboxes WHERE {where}", args).fetchone()
        if row is None:
            return None
        sub = conn.execute(
            "SELECT 1 FROM subscriptions WHERE account_id = ? AND name = ?", (row[1], row[2])
        ).fetchone()
        return _mailbox(row, sub is not None)

    async def get_mailbox(self, account_id: AccountId, name: str) -> Mailbox | None:
        return await self._db.read(
            lambda conn: self._get_mailbox(conn, "account_id = ? AND name = ?", (account_id, name)),
            inline=True,
        )

    async def get_mailbox_by_id(self, mailbox_id: MailboxId) -> Mailbox | None:
        return await self._db.read(
            lambda conn: self._get_mailbox(conn, "id = ?", (mailbox_id,)), inline=True
        )

    def _require_mailbox(self, conn: sqlite3.Connection, mailbox_id: int) -> Mailbox:
        mailbox = self._get_mailbox(conn, "id = ?", (mailbox_id,))
        if mailbox is None:
            raise NotFound("mailbox does not exist")
        return mailbox

    async def create_mailbox(
        self,
        account_id: AccountId,
        name: str,
        special_use: str | None = None,
        *,
        quota: QuotaLimits | None = None,
    ) -> Mailbox:
        def run(conn: sqlite3.Connection) -> Mailbox:
            if quota is not None:
                _quota.check_mailbox_count(conn, account_id, quota)
            mailbox = self._insert_mailbox(conn, account_id, name, special_use)
            self._journal(conn, mailbox.id)
            return mailbox

        mailbox = await self._write(run)
        self._notify([mailbox.id])
        return mailbox

    def _drop_mailbox(self, conn: sqlite3.Connection, mailbox_id: int) -> list[str]:
        doomed: list[str] = []
        _quota.release_mailbox(conn, mailbox_id)
        blobs = conn.execute(
            "SELECT blob FROM messages WHERE mailbox_id = ?", (mailbox_id,)
        ).fetchall()
        conn.execute("DELETE FROM messages WHERE mailbox_id = ?", (mailbox_id,))
        for (blob,) in blobs:
            doomed += self._unref(conn, blob)
        conn.execute("DELETE FROM expunged WHERE mailbox_id = ?", (mailbox_id,))
        conn.execute("UPDATE recoverable SET mailbox_id = NULL WHERE mailbox_id = ?", (mailbox_id,))
        conn.execute("DELETE FROM mailboxes WHERE id = ?", (mailbox_id,))
        return doomed

    async def delete_mailbox(self, mailbox_id: MailboxId) -> None:
        def run(conn: sqlite3.Connection) -> list[str]:
            self._require_mailbox(conn, mailbox_id)
            doomed = self._drop_mailbox(conn, mailbox_id)
            self._journal(conn, mailbox_id)
            return doomed

        await self._unlink_later(await self._write(run))
        self._notify([mailbox_id])

    async def rename_mailbox(self, mailbox_id: MailboxId, new_name: str) -> Mailbox:
        """Rename a mailbox and every mailbox below it; UIDVALIDITY is kept."""

        def run(conn: sqlite3.Connection) -> tuple[Mailbox, list[int]]:
            mailbox = self._require_mailbox(conn, mailbox_id)
            old = mailbox.name
            if conn.execute(
                "SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?",
                (mailbox.account_id, new_name),
            ).fetchone():
                raise AlreadyExists(f"mailbox {new_name!r} already exists")
            children = conn.execute(
                "SELECT id, name FROM mailboxes WHERE account_id = ? AND substr(name, 1, ?) = ?",
                (mailbox.account_id, len(old) + 1, old + "/"),
            ).fetchall()
            conn.execute("UPDATE mailboxes SET name = ? WHERE id = ?", (new_name, mailbox_id))
            for child_id, child_name in children:
                conn.execute(
                    "UPDATE mailboxes SET name = ? WHERE id = ?",
                    (new_name + child_name[len(old) :], child_id),
                )
                self._journal(conn, child_id)
            self._journal(conn, mailbox_id)
            return self._require_mailbox(conn, mailbox_id), [c[0] for c in children]

        renamed, children = await self._write(run)
        self._notify([mailbox_id, *(MailboxId(c) for c in children)])
        return renamed

    async def set_subscribed(self, account_id: AccountId, name: str, subscribed: bool) -> None:
        def run(conn: sqlite3.Connection) -> None:
            if subscribed:
                conn.execute(
                    "INSERT OR IGNORE INTO subscriptions (account_id, name) VALUES (?, ?)",
                    (account_id, name),
                )
            else:
                conn.execute(
                    "DELETE FROM subscriptions WHERE account_id = ? AND name = ?",
                    (account_id, name),
                )

        await self._write(run)

    async def list_subscriptions(self, account_id: AccountId) -> list[str]:
        return await self._db.read(
            lambda conn: [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM subscriptions WHERE account_id = ? ORDER BY name",
                    (account_id,),
                )
            ],
            inline=True,
        )

    async def mailbox_status(self, mailbox_id: MailboxId) -> MailboxStatus:
        # the mailbox row's counters (schema 13): no scan of its messages
        return await self._db.read(lambda conn: _counts.status(conn, mailbox_id), inline=True)

    async def claim_recent(self, mailbox_id: MailboxId, below: Uid | None = None) -> Uid:
        """Return the first UID that is \\Recent for the caller, and take them from others."""

        return await self._write(lambda conn: self._claim(conn, mailbox_id, below))

    @staticmethod
    def _claim(conn: sqlite3.Connection, mailbox_id: MailboxId, below: int | None) -> Uid:
        row = conn.execute(
            "SELECT recent_floor, uidnext FROM mailboxes WHERE id = ?", (mailbox_id,)
        ).fetchone()
        if row is None:
            raise NotFound("mailbox does not exist")
        floor, uidnext = row
        target = uidnext if below is None else min(below, uidnext)
        if target > floor:  # nothing new to claim: no change, so the commit writes nothing
            conn.execute("UPDATE mailboxes SET recent_floor = ? WHERE id = ?", (target, mailbox_id))
        return Uid(floor)

    # messages ----------------------------------------------------------------------------
    def new_spool(self) -> Spool:
        return FileSpool(self.layout)

    def _bump(self, conn: sqlite3.Connection, mailbox_id: int) -> ModSeq:
        row = conn.execute(
            "UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = ?"
            " RETURNING highestmodseq",
            (mailbox_id,),
        ).fetchone()
        if row is None:
            raise NotFound("mailbox does not exist")
        return ModSeq(row[0])

    def _unref(self, conn: sqlite3.Connection, blob: int) -> list[str]:
        row = conn.execute(
            "UPDATE blobs SET refs = refs - 1 WHERE id = ? RETURNING refs, name", (blob,)
        ).fetchone()
        if row is not None and row[0] <= 0:
            conn.execute("DELETE FROM blobs WHERE id = ?", (blob,))
            drop_text(conn, blob)
            return [row[1]]
        return []

    async def _unlink_later(self, names: list[str]) -> None:
        """Remove the files of contents nobody refers to any more, off the event loop and
        without waiting: the names of every write in the next UNLINK_DELAY seconds go to one
        thread together (an unlink of a message file took as long as the rest of an EXPUNGE,
        and a hop per EXPUNGE cost as much again). The rows are gone already, so nothing can
        read the files; a crash before they go leaves files that ``pobox check --repair``
        removes. :meth:`close` removes what is still waiting."""
        if not names:
            return
        self._doomed += names
        if self._unlinking is None:
            self._unlinking = asyncio.get_running_loop().create_task(self._unlink_soon())

    async def _unlink_soon(self) -> None:
        try:
            await asyncio.sleep(UNLINK_DELAY)
        finally:
            batch, self._doomed = self._doomed, []
            self._unlinking = None
            if batch:
                await asyncio.to_thread(self._unlink, batch)

    def _unlink(self, names: Iterable[str]) -> None:
        for name in names:
            try:
                self.layout.blob_path(name).unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:  # left for `pobox check --repair`
                log.warning("could not remove message file %s: %s", name, exc)

    def _insert_message(
        self,
        conn: sqlite3.Connection,
        mailbox_id: int,
        blob: int,
        size: int,
        flags: int,
        keywords: str,
        internal: tuple[float, int],
        pop3_uidl: str | None,
    ) -> MessageMeta:
        row = conn.execute(
            "UPDATE mailboxes SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1"
            " WHERE id = ? RETURNING uidnext - 1, highestmodseq, account_id",
            (mailbox_id,),
        ).fetchone()
        if row is None:
            raise NotFound("mailbox does not exist")
        uid, modseq, account_id = row
        self._usage_after = _quota.change_usage(conn, account_id, size, 1)  # writer thread
        now = time.time()
        # the sort date (schema 14): the content's sent date, else the internal date
        conn.execute(
            f"INSERT INTO messages ({_MSG_COLUMNS}, sort_date)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL,"
            " coalesce((SELECT sent_date FROM blobs WHERE id = ?), ?))",
            (
                mailbox_id,
                uid,
                modseq,
                flags,
                keywords,
                internal[0],
                internal[1],
                now,
                size,
                blob,
                pop3_uidl,
                blob,
                internal[0],
            ),
        )
        conn.execute("UPDATE blobs SET refs = refs + 1 WHERE id = ?", (blob,))
        self._journal(conn, mailbox_id)
        return MessageMeta(
            MailboxId(mailbox_id),
            Uid(uid),
            ModSeq(modseq),
            join_flags(flags, keywords),
            from_epoch(*internal),
            from_epoch(now),
            size,
            BlobId(blob),
            pop3_uidl,
            False,
        )

    def _appender(
        self, mailbox_id: MailboxId, message: NewMessage, quota: QuotaLimits | None = None
    ) -> Callable[[sqlite3.Connection], MessageMeta]:
        """What appending *message* writes, as a function of the connection (checked here)."""
        spool = message.spool
        if not isinstance(spool, FileSpool):
            raise ValueError("append needs a spool of this store")
        bits, keywords = split_flags(message.flags)
        internal = to_epoch(message.internal_date or datetime.now(UTC))
        fields = message.fields
        sent = fields.sent_date.timestamp() if fields.sent_date else None

        rendered = message.rendered or Rendered()

        def run(conn: sqlite3.Connection) -> MessageMeta:
            cur = conn.execute(
                "INSERT INTO blobs (name, size, refs, structure, subject, from_, to_, cc, bcc,"
                " message_id, sent_date, envelope, bodystructure, thread_refs)"
                " VALUES (?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    spool.name,
                    spool.size,
                    message.structure,
                    fields.subject,
                    fields.from_,
                    fields.to,
                    fields.cc,
                    fields.bcc,
                    fields.message_id,
                    sent,
                    rendered.envelope,
                    rendered.bodystructure,
                    fields.references,
                ),
            )
            meta = self._insert_message(
                conn,
                mailbox_id,
                cur.lastrowid or 0,
                spool.size,
                bits,
                keywords_text(keywords),
                internal,
                message.pop3_uidl,
            )
            _quota.check(self._usage_after, quota)  # the usage _insert_message left
            return meta

        return run

    @staticmethod
    def _sealer(messages: Sequence[NewMessage]) -> Callable[[], None] | None:
        """The prepare step of a write that stores *messages*: the files not yet sealed are
        fsync'd in the writer's turn, just before the commit that makes them visible."""
        open_ = [m.spool for m in messages if not m.spool.sealed]
        if not open_:
            return None

        def seal() -> None:
            for spool in open_:
                spool.seal()

        return seal

    async def append(
        self, mailbox_id: MailboxId, message: NewMessage, *, quota: QuotaLimits | None = None
    ) -> MessageMeta:
        try:
            meta = await self._write(
                self._appender(mailbox_id, message, quota), prepare=self._sealer([message])
            )
        except BaseException:
            await asyncio.to_thread(message.spool.discard)  # refused (e.g. over quota): no file
            raise
        self._notify([mailbox_id])
        return meta

    async def append_claiming(
        self, mailbox_id: MailboxId, message: NewMessage, *, quota: QuotaLimits | None = None
    ) -> tuple[MessageMeta, Uid]:
        append = self._appender(mailbox_id, message, quota)

        def run(conn: sqlite3.Connection) -> tuple[MessageMeta, Uid]:
            meta = append(conn)
            return meta, self._claim(conn, mailbox_id, meta.uid + 1)

        try:
            result = await self._write(run, prepare=self._sealer([message]))
        except BaseException:
            await asyncio.to_thread(message.spool.discard)
            raise
        self._notify([mailbox_id])
        return result

    async def append_many(
        self,
        mailbox_id: MailboxId,
        messages: Sequence[NewMessage],
        *,
        quota: QuotaLimits | None = None,
    ) -> list[MessageMeta]:
        runs = [self._appender(mailbox_id, message, quota) for message in messages]
        # one job of the group commit, inside its own savepoint: all of them or none
        try:
            metas = await self._write(
                lambda conn: [run(conn) for run in runs], prepare=self._sealer(messages)
            )
        except BaseException:
            for message in messages:  # none of them stored: no files either
                await asyncio.to_thread(message.spool.discard)
            raise
        self._notify([mailbox_id])
        return metas

    async def replace(
        self,
        mailbox_id: MailboxId,
        message: NewMessage,
        src: MailboxId,
        uid: Uid,
        *,
        quota: QuotaLimits | None = None,
    ) -> tuple[MessageMeta, Expunged]:
        append = self._appender(mailbox_id, message, quota)

        def run(conn: sqlite3.Connection) -> tuple[MessageMeta, Expunged, list[str]]:
            # the old one goes first, so that the quota is checked on what is left after both
            gone, doomed = self._expunge(conn, src, [uid], False)
            if not gone:
                raise ExpungedError("the message to replace was expunged")
            return append(conn), gone[0], doomed

        try:
            # one savepoint: both or neither
            meta, expunged, doomed = await self._write(run, prepare=self._sealer([message]))
        except BaseException:
            await asyncio.to_thread(message.spool.discard)
            raise
        await self._unlink_later(doomed)
        self._notify(sorted({src, mailbox_id}))
        return meta, expunged

    async def list_messages(self, mailbox_id: MailboxId) -> list[MessageMeta]:
        return await self._db.read(
            lambda conn: [
                _meta(r)
                for r in conn.execute(
                    f"SELECT {_MSG_COLUMNS} FROM messages WHERE mailbox_id = ? ORDER BY uid",
                    (mailbox_id,),
                )
            ]
        )

    async def message_columns(self, mailbox_id: MailboxId) -> MessageColumns:
        def run(conn: sqlite3.Connection) -> MessageColumns:
            mailbox = self._require_mailbox(conn, mailbox_id)
            cursor = conn.execute(
                "SELECT uid, modseq, flags, keywords, internal_date, internal_tz, save_date, size,"
                " blob, pop3_uidl, pop3_hidden_at FROM messages WHERE mailbox_id = ? ORDER BY uid",
                (mailbox_id,),
            )
            # a piece at a time into compact columns: no row object survives the piece
            columns = ColumnBuilder(mailbox)
            while rows := cursor.fetchmany(COLUMN_PIECE):
                columns.add(rows)
            return columns.finish()

        return await self._db.read(run)

    @staticmethod
    def _select(
        conn: sqlite3.Connection, mailbox_id: int, uids: Sequence[int]
    ) -> list[MessageMeta]:
        result: list[MessageMeta] = []
        for chunk in _chunks(sorted(set(uids))):
            marks = ",".join("?" * len(chunk))
            result += [
                _meta(r)
                for r in conn.execute(
                    f"SELECT {_MSG_COLUMNS} FROM messages WHERE mailbox_id = ? AND uid IN ({marks})"
                    " ORDER BY uid",
                    (mailbox_id, *chunk),
                )
            ]
        return result

    async def get_messages(self, mailbox_id: MailboxId, uids: Iterable[Uid]) -> list[MessageMeta]:
        wanted = list(uids)
        return await self._db.read(
            lambda conn: self._select(conn, mailbox_id, wanted), inline=len(wanted) <= INLINE_MAX
        )

    async def set_flags(
        self,
        mailbox_id: MailboxId,
        uids: Iterable[Uid],
        op: FlagOp,
        flags: frozenset[str],
        unchanged_since: ModSeq | None = None,
    ) -> list[MessageMeta]:
        """Change flags; returns the messages whose flags really changed (with new MODSEQs)."""
        bits, keywords = split_flags(flags)
        wanted = list(uids)

        def run(conn: sqlite3.Connection) -> list[MessageMeta]:
            changed: list[MessageMeta] = []
            modseq: ModSeq | None = None
            for meta in self._select(conn, mailbox_id, wanted):
                if unchanged_since is not None and meta.modseq > unchanged_since:
                    continue
                old_bits, old_keywords = split_flags(meta.flags)
                if op is FlagOp.REPLACE:
                    new_bits, new_keywords = bits, keywords
                elif op is FlagOp.ADD:
                    new_bits, new_keywords = old_bits | bits, old_keywords | keywords
                else:
                    new_bits, new_keywords = old_bits & ~bits, old_keywords - keywords
                if (new_bits, new_keywords) == (old_bits, old_keywords):
                    continue
                if modseq is None:
                    modseq = self._bump(conn, mailbox_id)
                text = keywords_text(new_keywords)
                conn.execute(
                    "UPDATE messages SET flags = ?, keywords = ?, modseq = ?"
                    " WHERE mailbox_id = ? AND uid = ?",
                    (new_bits, text, modseq, mailbox_id, meta.uid),
                )
                changed.append(
                    MessageMeta(
                        meta.mailbox_id,
                        meta.uid,
                        modseq,
                        join_flags(new_bits, text),
                        meta.internal_date,
                        meta.save_date,
                        meta.size,
                        meta.blob,
                        meta.pop3_uidl,
                        meta.pop3_hidden,
                    )
                )
            if changed:
                self._journal(conn, mailbox_id)
            return changed

        changed = await self._write(run)
        if changed:
            self._notify([mailbox_id])
        return changed

    def _expunge(
        self, conn: sqlite3.Connection, mailbox_id: int, uids: Sequence[int], keep: bool
    ) -> tuple[list[Expunged], list[str]]:
        metas = self._select(conn, mailbox_id, uids)
        if not metas:
            return [], []
        mailbox = self._require_mailbox(conn, mailbox_id)
        modseq = self._bump(conn, mailbox_id)
        doomed: list[str] = []
        now = time.time()
        for meta in metas:
            conn.execute(
                "DELETE FROM messages WHERE mailbox_id = ? AND uid = ?", (mailbox_id, meta.uid)
            )
            conn.execute(
                "INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq) VALUES (?, ?, ?)",
                (mailbox_id, meta.uid, modseq),
            )
            present = conn.execute(
                "SELECT id FROM recoverable WHERE mailbox_id = ? AND uid = ? AND still_present",
                (mailbox_id, meta.uid),
            ).fetchone()
            if present is not None:
                # hidden by retention, now swept: the recovery row keeps the content alive
                conn.execute(
                    "UPDATE recoverable SET still_present = 0, blob = ? WHERE id = ?",
                    (meta.blob, present[0]),
                )
                continue
            if keep:
                bits, keywords = split_flags(meta.flags)
                internal = to_epoch(meta.internal_date)
                conn.execute(
                    "INSERT INTO recoverable (account_id, mailbox_id, mailbox_name, uid, uidl,"
                    " deleted_at, still_present, blob, flags, keywords, internal_date,"
                    " internal_tz, size) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?)",
                    (
                        mailbox.account_id,
                        mailbox_id,
                        mailbox.name,
                        meta.uid,
                        meta.pop3_uidl or uidl_for(meta.uid, mailbox.uidvalidity),
                        now,
                        meta.blob,
                        bits,
                        keywords_text(keywords),
                        internal[0],
                        internal[1],
                        meta.size,
                    ),
                )
                continue
            doomed += self._unref(conn, meta.blob)
        _quota.change_usage(conn, mailbox.account_id, -sum(m.size for m in metas), -len(metas))
        self._journal(conn, mailbox_id)
        return [Expunged(m.uid, modseq) for m in metas], doomed

    async def expunge(
        self, mailbox_id: MailboxId, uids: Iterable[Uid], *, keep_recoverable: bool = False
    ) -> list[Expunged]:
        wanted = list(uids)
        gone, doomed = await self._write(
            lambda conn: self._expunge(conn, mailbox_id, wanted, keep_recoverable)
        )
        await self._unlink_later(doomed)
        if gone:
            self._notify([mailbox_id])
        return gone

    async def copy(
        self,
        src: MailboxId,
        uids: Iterable[Uid],
        dst: MailboxId,
        *,
        move: bool = False,
        quota: QuotaLimits | None = None,
    ) -> list[tuple[Uid, Uid]]:
        wanted = list(uids)

        def run(conn: sqlite3.Connection) -> tuple[list[tuple[Uid, Uid]], list[str]]:
            self._require_mailbox(conn, dst)
            before = _quota.usage_of(conn, dst)[1:]
            pairs: list[tuple[Uid, Uid]] = []
            metas = self._select(conn, src, wanted)
            for meta in metas:
                bits, keywords = split_flags(meta.flags)
                new = self._insert_message(
                    conn,
                    dst,
                    meta.blob,
                    meta.size,
                    bits,
                    keywords_text(keywords),
                    to_epoch(meta.internal_date),
                    None,
                )
                pairs.append((meta.uid, new.uid))
            doomed: list[str] = []
            if move and metas:
                _, doomed = self._expunge(conn, src, [m.uid for m in metas], False)
            _quota.enforce(conn, dst, quota, before, "the copy")
            return pairs, doomed

        pairs, doomed = await self._write(run)
        await self._unlink_later(doomed)
        if pairs:
            self._notify([src, dst] if move else [dst])
        return pairs

    async def changes_since(self, mailbox_id: MailboxId, modseq: ModSeq) -> ChangeBatch:
        def run(conn: sqlite3.Connection) -> ChangeBatch:
            mailbox = self._require_mailbox(conn, mailbox_id)
            changed = [
                _meta(r)
                for r in conn.execute(
                    f"SELECT {_MSG_COLUMNS} FROM messages WHERE mailbox_id = ? AND modseq > ?"
                    " ORDER BY uid",
                    (mailbox_id, modseq),
                )
            ]
            gone = [
                Expunged(Uid(r[0]), ModSeq(r[1]))
                for r in conn.execute(
                    "SELECT uid, modseq FROM expunged WHERE mailbox_id = ? AND modseq > ?"
                    " ORDER BY uid",
                    (mailbox_id, modseq),
                )
            ]
            self._db.check_inline(conn, len(changed) + len(gone))
            return ChangeBatch(mailbox, changed, gone)

        return await self._db.read(run, inline=True)

    async def expunged_since(self, mailbox_id: MailboxId, modseq: ModSeq) -> list[Uid]:
        def run(conn: sqlite3.Connection) -> list[Uid]:
            self._require_mailbox(conn, mailbox_id)
            gone = [
                Uid(r[0])
                for r in conn.execute(
                    "SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ? ORDER BY uid",
                    (mailbox_id, modseq),
                )
            ]
            self._db.check_inline(conn, len(gone))
            return gone

        return await self._db.read(run, inline=True)

    async def get_structure(self, blob: BlobId) -> bytes:
        def run(conn: sqlite3.Connection) -> bytes:
            row = conn.execute("SELECT structure FROM blobs WHERE id = ?", (blob,)).fetchone()
            if row is None:
                raise NotFound("message content is gone")
            return bytes(row[0])

        return await self._db.read(run, inline=True)

    async def get_structures(self, blobs: Iterable[BlobId]) -> dict[BlobId, bytes]:
        wanted = sorted(set(blobs))

        def run(conn: sqlite3.Connection) -> dict[BlobId, bytes]:
            found: dict[BlobId, bytes] = {}
            for chunk in _chunks(wanted):
                marks = ",".join("?" * len(chunk))
                for row in conn.execute(
                    f"SELECT id, structure FROM blobs WHERE id IN ({marks})", tuple(chunk)
                ):
                    found[BlobId(row[0])] = bytes(row[1])
            return found

        if not wanted:
            return {}
        return await self._db.read(run, inline=len(wanted) <= INLINE_MAX)

    async def get_rendered(self, blobs: Iterable[BlobId]) -> dict[BlobId, Rendered]:
        wanted = sorted(set(blobs))

        def run(conn: sqlite3.Connection) -> dict[BlobId, Rendered]:
            found: dict[BlobId, Rendered] = {}
            for chunk in _chunks(wanted):
                marks = ",".join("?" * len(chunk))
                for row in conn.execute(
                    f"SELECT id, envelope, bodystructure FROM blobs WHERE id IN ({marks})",
                    tuple(chunk),
                ):
                    found[BlobId(row[0])] = Rendered(
                        None if row[1] is None else bytes(row[1]),
                        None if row[2] is None else bytes(row[2]),
                    )
            return found

        if not wanted:
            return {}
        return await self._db.read(run, inline=len(wanted) <= INLINE_MAX)

    async def set_rendered(self, items: Mapping[BlobId, Rendered]) -> None:
        rows = [(r.envelope, r.bodystructure, blob) for blob, r in items.items()]

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE blobs SET envelope = coalesce(envelope, ?),"
                " bodystructure = coalesce(bodystructure, ?) WHERE id = ?",
                rows,
            )

        if rows:
            await self._write(run)

    async def open_contents(self, blobs: Iterable[BlobId]) -> dict[BlobId, Content]:
        wanted = sorted(set(blobs))

        def run(conn: sqlite3.Connection) -> dict[BlobId, Content]:
            names: list[tuple[int, str]] = []
            for chunk in _chunks(wanted):
                marks = ",".join("?" * len(chunk))
                names += conn.execute(
                    f"SELECT id, name FROM blobs WHERE id IN ({marks})", tuple(chunk)
                ).fetchall()
            opened: dict[BlobId, Content] = {}
            try:
                for blob, name in names:
                    try:
                        opened[BlobId(blob)] = FileContent(self.layout.blob_file(name))
                    except FileNotFoundError:
                        pass
            except BaseException:
                for content in opened.values():
                    content.close()
                raise
            return opened

        if not wanted:
            return {}
        return await self._db.read(run, inline=len(wanted) <= INLINE_MAX)

    async def open_content(self, blob: BlobId) -> Content:
        def run(conn: sqlite3.Connection) -> str:
            row = conn.execute("SELECT name FROM blobs WHERE id = ?", (blob,)).fetchone()
            if row is None:
                raise NotFound("message content is gone")
            return str(row[0])

        name = await self._db.read(run, inline=True)
        try:
            return FileContent(self.layout.blob_file(name))
        except FileNotFoundError:
            raise NotFound("message content is gone") from None

    async def open_message(self, mailbox_id: MailboxId, uid: Uid) -> Content:
        """The content of a message that is still in the mailbox (one query), else NotFound."""

        def run(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT b.name FROM messages m JOIN blobs b ON b.id = m.blob"
                " WHERE m.mailbox_id = ? AND m.uid = ?",
                (mailbox_id, uid),
            ).fetchone()
            return None if row is None else str(row[0])

        name = await self._db.read(run, inline=True)
        if name is None:
            raise NotFound("the message is no longer in the mailbox")
        try:
            return FileContent(self.layout.blob_file(name))
        except FileNotFoundError:
            raise NotFound("the message is no longer in the mailbox") from None

    # POP3 retention and recovery ---------------------------------------------------------
    async def pop3_hide(
        self, mailbox_id: MailboxId, uids: Iterable[Uid], at: datetime
    ) -> list[MessageMeta]:
        wanted = list(uids)
        epoch = at.timestamp()

        def run(conn: sqlite3.Connection) -> list[MessageMeta]:
            mailbox = self._require_mailbox(conn, mailbox_id)
            hidden: list[MessageMeta] = []
            for meta in self._select(conn, mailbox_id, wanted):
                if meta.pop3_hidden:
                    continue
                conn.execute(
                    "UPDATE messages SET pop3_hidden_at = ? WHERE mailbox_id = ? AND uid = ?",
                    (epoch, mailbox_id, meta.uid),
                )
                bits, keywords = split_flags(meta.flags)
                internal = to_epoch(meta.internal_date)
                conn.execute(
                    "INSERT INTO recoverable (account_id, mailbox_id, mailbox_name, uid, uidl,"
                    " deleted_at, still_present, blob, flags, keywords, internal_date,"
                    " internal_tz, size) VALUES (?, ?, ?, ?, ?, ?, 1, NULL, ?, ?, ?, ?, ?)",
                    (
                        mailbox.account_id,
                        mailbox_id,
                        mailbox.name,
                        meta.uid,
                        meta.pop3_uidl or uidl_for(meta.uid, mailbox.uidvalidity),
                        epoch,
                        bits,
                        keywords_text(keywords),
                        internal[0],
                        internal[1],
                        meta.size,
                    ),
                )
                hidden.append(meta)
            return hidden

        return await self._write(run)

    async def hidden_before(
        self, account_id: AccountId, cutoff: datetime
    ) -> list[tuple[MailboxId, Uid]]:
        return await self._db.read(
            lambda conn: [
                (MailboxId(r[0]), Uid(r[1]))
                for r in conn.execute(
                    "SELECT m.mailbox_id, m.uid FROM messages m"
                    " JOIN mailboxes b ON b.id = m.mailbox_id"
                    " WHERE b.account_id = ? AND m.pop3_hidden_at IS NOT NULL"
                    " AND m.pop3_hidden_at < ? ORDER BY m.mailbox_id, m.uid",
                    (account_id, cutoff.timestamp()),
                )
            ]
        )

    async def list_recoverable(
        self, account_id: AccountId, since: datetime | None = None
    ) -> list[Recoverable]:
        floor = since.timestamp() if since else 0.0
        return await self._db.read(
            lambda conn: [
                Recoverable(r[0], r[1], Uid(r[2]), r[3], from_epoch(r[4]), r[5], bool(r[6]))
                for r in conn.execute(
                    "SELECT id, mailbox_name, uid, uidl, deleted_at, size, still_present"
                    " FROM recoverable WHERE account_id = ? AND deleted_at >= ?"
                    " ORDER BY deleted_at, id",
                    (account_id, floor),
                )
            ]
        )

    async def recover(self, account_id: AccountId, ids: Iterable[int]) -> list[MessageMeta]:
        wanted = list(ids)

        def run(conn: sqlite3.Connection) -> tuple[list[MessageMeta], set[int]]:
            restored: list[MessageMeta] = []
            touched: set[int] = set()
            inbox = conn.execute(
                "SELECT id FROM mailboxes WHERE account_id = ? AND name = 'INBOX'", (account_id,)
            ).fetchone()
            for rec_id in wanted:
                row = conn.execute(
                    "SELECT mailbox_id, uid, uidl, still_present, blob, flags, keywords,"
                    " internal_date, internal_tz, size FROM recoverable"
                    " WHERE id = ? AND account_id = ?",
                    (rec_id, account_id),
                ).fetchone()
                if row is None:
                    continue
                mailbox_id, uid, uidl, present, blob, flags, keywords, idate, itz, size = row
                conn.execute("DELETE FROM recoverable WHERE id = ?", (rec_id,))
                if present:
                    conn.execute(
                        "UPDATE messages SET pop3_hidden_at = NULL"
                        " WHERE mailbox_id = ? AND uid = ?",
                        (mailbox_id, uid),
                    )
                    restored += self._select(conn, mailbox_id, [uid])
                    touched.add(mailbox_id)
                    continue
                target = mailbox_id if mailbox_id is not None else (inbox[0] if inbox else None)
                if target is None:
                    raise NotFound("the account has no INBOX to recover into")
                restored.append(
                    self._insert_message(
                        conn, target, blob, size, flags, keywords, (idate, itz), uidl
                    )
                )
                # the recovery row held one reference; the new message holds its own now
                self._unref(conn, blob)
                touched.add(target)
            return restored, touched

        restored, touched = await self._write(run)
        self._notify(MailboxId(i) for i in touched)
        return restored

    async def purge_recoverable(self, cutoff: datetime) -> int:
        def run(conn: sqlite3.Connection) -> tuple[int, list[str]]:
            rows = conn.execute(
                "SELECT id, blob FROM recoverable WHERE deleted_at < ?", (cutoff.timestamp(),)
            ).fetchall()
            doomed: list[str] = []
            for rec_id, blob in rows:
                conn.execute("DELETE FROM recoverable WHERE id = ?", (rec_id,))
                if blob is not None:
                    doomed += self._unref(conn, blob)
            return len(rows), doomed

        count, doomed = await self._write(run)
        await self._unlink_later(doomed)
        return count

    # maintenance ---------------------------------------------------------------------------
    async def check(self, repair: bool = False) -> list[str]:
        """Verify the store; returns the problems found (and, with *repair*, fixed)."""
        problems: list[str] = []

        def inspect(conn: sqlite3.Connection) -> list[tuple[str, int]]:
            for (line,) in conn.execute("PRAGMA integrity_check").fetchall():
                if line != "ok":
                    problems.append(f"database: {line}")
            for name, uidnext, top in conn.execute(
                "SELECT b.name, b.uidnext, max(m.uid) FROM mailboxes b"
                " JOIN messages m ON m.mailbox_id = b.id"
                " GROUP BY b.id HAVING max(m.uid) >= b.uidnext"
            ):
                problems.append(f"mailbox {name}: UIDNEXT {uidnext} is not above UID {top}")
            for blob, refs, used in conn.execute(
                "SELECT b.id, b.refs, (SELECT count(*) FROM messages m WHERE m.blob = b.id)"
                " + (SELECT count(*) FROM recoverable r WHERE r.blob = b.id) FROM blobs b"
            ):
                if refs != used:
                    problems.append(f"blob {blob}: reference count {refs}, used {used} times")
            problems.extend(_quota.recount(conn, False))
            problems.extend(_counts.recount(conn, False))
            return [(r[0], r[1]) for r in conn.execute("SELECT name, size FROM blobs")]

        blobs = await self._db.read(inspect)
        if repair and any(" quota usage " in problem for problem in problems):
            await self._write(lambda conn: _quota.recount(conn, True))  # recounted under lock
        if repair and any(": counters (" in problem for problem in problems):
            await self._write(lambda conn: _counts.recount(conn, True))

        def files() -> set[str]:
            known = {name for name, _ in blobs}
            for name, size in blobs:
                path = self.layout.blob_path(name)
                try:
                    actual = path.stat().st_size
                except FileNotFoundError:
                    problems.append(f"message file {name} is missing")
                    continue
                if actual != size:
                    problems.append(f"message file {name} has {actual} bytes, expected {size}")
            orphans: set[str] = set()
            cutoff = time.time() - 300  # younger files may belong to deliveries in flight
            for path in self.layout.messages.glob("*/*"):
                if path.name not in known and path.stat().st_mtime < cutoff:
                    orphans.add(path.name)
            return orphans

        orphans = await asyncio.to_thread(files)
        for name in sorted(orphans):
            problems.append(f"message file {name} belongs to no message (left by a crash)")
        if repair and orphans:
            await asyncio.to_thread(self._unlink, orphans)
        return problems

    # failed-login blocks ------------------------------------------------------------------
    async def save_auth_block(self, block: AuthBlock) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM auth_blocks WHERE until < ?", (block.until - 7 * 86400,))
            conn.execute(
                "INSERT INTO auth_blocks (kind, key, failures, until) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (kind, key) DO UPDATE SET failures = excluded.failures,"
                " until = max(until, excluded.until)",
                (block.kind, block.key, block.failures, block.until),
            )

        await self._write(run)

    async def get_auth_block(self, kind: str, key: str) -> AuthBlock | None:
        def run(conn: sqlite3.Connection) -> AuthBlock | None:
            row = conn.execute(
                "SELECT failures, until FROM auth_blocks WHERE kind = ? AND key = ?", (kind, key)
            ).fetchone()
            return None if row is None else AuthBlock(kind, key, int(row[0]), float(row[1]))

        return await self._db.read(run, inline=True)

    async def list_auth_blocks(self, now: float) -> list[AuthBlock]:
        def run(conn: sqlite3.Connection) -> list[AuthBlock]:
            rows = conn.execute(
                "SELECT kind, key, failures, until FROM auth_blocks WHERE until > ?"
                " ORDER BY kind, key",
                (now,),
            )
            return [AuthBlock(r[0], r[1], int(r[2]), float(r[3])) for r in rows]

        return await self._db.read(run)

    async def delete_auth_blocks(self, keys: Iterable[tuple[str, str]]) -> list[AuthBlock]:
        pairs = list(keys)

        def run(conn: sqlite3.Connection) -> list[AuthBlock]:
            lifted = []
            for kind, key in pairs:
                row = conn.execute(
                    "DELETE FROM auth_blocks WHERE kind = ? AND key = ? RETURNING failures, until",
                    (kind, key),
                ).fetchone()
                if row is not None:
                    lifted.append(AuthBlock(kind, key, int(row[0]), float(row[1])))
            return lifted

        return await self._write(run)

    # coordination ------------------------------------------------------------------------
    async def try_lock(self, account_id: AccountId, name: str) -> Lock | None:
        """An exclusive lock that the kernel releases when the holder's process dies."""
        if not name.isalnum():
            raise InvalidInput("bad lock name")
        path = self.layout.locks / f"{int(account_id)}.{name}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return _FileLock(fd)

    # search support
    async def search_fields(
        self, mailbox_id: MailboxId, uids: Sequence[Uid] | None = None
    ) -> dict[Uid, SearchFields]:
        select = (
            "SELECT m.uid, b.subject, b.from_, b.to_, b.cc, b.bcc, b.message_id, b.sent_date"
            " FROM messages m JOIN blobs b ON b.id = m.blob WHERE m.mailbox_id = ?"
        )
        wanted = None if uids is None else sorted(set(uids))

        def run(conn: sqlite3.Connection) -> dict[Uid, SearchFields]:
            if wanted is None:
                return {
                    Uid(r[0]): rows_search_fields(r) for r in conn.execute(select, (mailbox_id,))
                }
            found: dict[Uid, SearchFields] = {}
            for chunk in _chunks(wanted):
                marks = ",".join("?" * len(chunk))
                for r in conn.execute(f"{select} AND m.uid IN ({marks})", (mailbox_id, *chunk)):
                    found[Uid(r[0])] = rows_search_fields(r)
            return found

        return await self._db.read(run)

    # backup and restore (pobox.store.sqlite.restore) ------------------------------------------
    def snapshot(
        self, addresses: Sequence[str] | None = None
    ) -> contextlib.AbstractAsyncContextManager[StoreSnapshot]:
        from pobox.store.sqlite import restore

        return restore.snapshot(self, addresses)

    async def restore_account(self, image: AccountImage, *, replace: bool = False) -> Account:
        from pobox.store.sqlite import restore

        return await restore.restore_account(self, image, replace)

    def spool_content(self, data: bytes) -> Spool:
        return FileSpool.holding(self.layout, data)

    async def seal_spools(self, spools: Sequence[Spool]) -> None:
        from pobox.store.sqlite import restore

        await restore.seal_spools(spools)

    async def restore_mailbox(self, account_id: AccountId, image: MailboxImage) -> Mailbox:
        from pobox.store.sqlite import restore

        return await restore.restore_mailbox(self, account_id, image)

    async def restore_messages(
        self,
        mailbox_id: MailboxId,
        messages: Sequence[MessageImage],
        contents: Mapping[str, RestoreContent | BlobId],
    ) -> dict[str, BlobId]:
        from pobox.store.sqlite import restore

        return await restore.restore_messages(self, mailbox_id, messages, contents)

    async def restore_recoverable(
        self,
        account_id: AccountId,
        items: Sequence[RecoverableImage],
        contents: Mapping[str, RestoreContent | BlobId],
    ) -> dict[str, BlobId]:
        from pobox.store.sqlite import restore

        return await restore.restore_recoverable(self, account_id, items, contents)
