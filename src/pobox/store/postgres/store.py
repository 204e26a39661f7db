"""The PostgreSQL backend: every node of a cluster works on one shared database.

Each store method is one transaction on a pooled connection (asyncpg). The rules that keep
several writers on several nodes correct without a global lock:

* Every write that touches a mailbox's messages first locks that mailbox's row (``UPDATE
  mailboxes … RETURNING`` or ``SELECT … FOR UPDATE``), and holds it until commit. UIDs and MODSEQs
  are taken from that row, so they are strictly ascending *and committed in that order*; writers
  to unrelated mailboxes never wait on each other. Operations on two mailboxes (COPY, MOVE) lock
  both rows in ascending id order. A deadlock or serialisation failure is retried.
* Every write transaction that changes a mailbox inserts a row into ``change_journal`` and sends
  ``NOTIFY pobox_changes, '<mailbox id>'``. PostgreSQL delivers notifications at commit. Each
  process keeps one LISTEN connection (:class:`_Listener`) and dispatches to the listeners that
  ``add_listener`` registered; its own writes it dispatches directly after commit. After a lost
  LISTEN connection, the journal tells what happened meanwhile.
* ``try_lock`` takes a session-level advisory lock on a dedicated connection: a node that dies
  closes its connections, and PostgreSQL releases the lock.

See docs/postgresql.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from pobox.errors import AlreadyExists, ConfigError, InvalidInput, NotFound, PoboxError, Temporary
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
from pobox.store.postgres import counts as _counts
from pobox.store.postgres import quota as _quota
from pobox.store.postgres.acl import PostgresAcl
from pobox.store.postgres.columns import packed_columns
from pobox.store.postgres.content import PRELOAD_MAX, ChunkReader, PgContent, TempSpool
from pobox.store.postgres.fulltext import PostgresFullText
from pobox.store.postgres.logins import PostgresLogins
from pobox.store.postgres.metadata import PostgresMetadata
from pobox.store.postgres.policies import PostgresPolicies
from pobox.store.postgres.queue import PostgresQueue
from pobox.store.postgres.quota import PostgresQuota
from pobox.store.postgres.schema import CHUNK_SIZE, migrate
from pobox.store.postgres.websessions import PostgresWebSessions
from pobox.store.rows import (
    from_epoch,
    join_flags,
    keywords_text,
    split_flags,
    to_epoch,
    uidl_for,
)
from pobox.store.rows import search_fields as rows_search_fields

log = logging.getLogger("pobox.store")
T = TypeVar("T")

CHANNEL = "pobox_changes"
POOL_MIN = 2
POOL_MAX = 16
RETRIES = 8
LISTEN_PING = 10.0
LISTEN_RETRY = 1.0
JOURNAL_KEEP = 100000

_MSG_COLUMNS = (
    "mailbox_id, uid, modseq, flags, keywords, internal_date, internal_tz, save_date, size, blob,"
    " pop3_uidl, pop3_hidden_at"
)
_MBOX_COLUMNS = "id, account_id, name, uidvalidity, uidnext, highestmodseq, special_use"
_MBOX_SELECT = (
    f"SELECT {_MBOX_COLUMNS}, EXISTS (SELECT 1 FROM subscriptions s"
    " WHERE s.account_id = mailboxes.account_id AND s.name = mailboxes.name) FROM mailboxes"
)

_TEMPORARY = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.CannotConnectNowError,
)
_RETRY = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)


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


def _mailbox(row: Sequence[Any]) -> Mailbox:
    return Mailbox(
        id=MailboxId(row[0]),
        account_id=AccountId(row[1]),
        name=row[2],
        uidvalidity=row[3],
        uidnext=Uid(row[4]),
        highest_modseq=ModSeq(row[5]),
        special_use=row[6],
        subscribed=bool(row[7]),
    )


def as_store_error(exc: BaseException) -> BaseException:
    """Map database trouble to pobox's errors: an unreachable or overloaded server is temporary."""
    if isinstance(exc, PoboxError):
        return exc
    if isinstance(exc, asyncpg.exceptions.UniqueViolationError):
        return AlreadyExists(f"already exists ({exc.constraint_name or 'unique'})")
    if isinstance(exc, _TEMPORARY + _RETRY):
        return Temporary(f"database temporarily unavailable: {exc}")
    return exc


class Tx:
    """One write transaction: its connection and the mailboxes it changed."""

    __slots__ = ("conn", "touched")

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.touched: set[int] = set()

    async def journal(self, mailbox_id: int) -> None:
        """Record a change of *mailbox_id*: journal row and NOTIFY (delivered at commit)."""
        if mailbox_id in self.touched:
            return
        self.touched.add(mailbox_id)
        seq = await self.conn.fetchval(
            "WITH j AS (INSERT INTO change_journal (mailbox_id) VALUES ($1) RETURNING seq)"
            " SELECT j.seq FROM j, pg_notify($2, $3)",
            mailbox_id,
            CHANNEL,
            str(mailbox_id),
        )
        if seq is not None and seq % 10000 == 0:
            await self.conn.execute("DELETE FROM change_journal WHERE seq < $1", seq - JOURNAL_KEEP)


class _AdvisoryLock:
    """A session-level advisory lock, held by keeping its own connection open."""

    def __init__(self, store: PostgresStore, conn: Any, key: str) -> None:
        self._store = store
        self._conn: Any = conn
        self._key = key

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        self._store._locks.discard(conn)
        try:
            await asyncio.wait_for(
                conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", self._key), 5
            )
            await asyncio.wait_for(conn.close(), 5)
        except Exception:
            conn.terminate()  # closing the connection releases the lock all the same


class _Listener:
    """The one LISTEN connection of a process; reconnects and catches up from the journal."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store
        self.conn: Any = None
        self.seq = 0
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._connect(catch_up=False)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _connect(self, *, catch_up: bool) -> None:
        conn = await asyncpg.connect(self.store.dsn, timeout=10)
        try:
            self._lost.clear()
            conn.add_termination_listener(lambda _conn: self._lost.set())
            await conn.add_listener(CHANNEL, self._heard)
            # after LISTEN: anything later arrives as a notification, anything earlier is here
            if catch_up:
                rows = await conn.fetch(
                    "SELECT DISTINCT mailbox_id FROM change_journal WHERE seq > $1", self.seq
                )
                self.store._dispatch(MailboxId(r[0]) for r in rows)
            self.seq = int(await conn.fetchval("SELECT coalesce(max(seq), 0) FROM change_journal"))
        except BaseException:
            conn.terminate()
            raise
        self.conn = conn

    def _heard(self, _conn: Any, pid: int, _channel: str, payload: str) -> None:
        if pid in self.store._own_pids:
            return  # written by this process: dispatched already, right after the commit
        try:
            mailbox_id = MailboxId(int(payload))
        except ValueError:
            log.warning("unexpected change notification %r", payload)
            return
        self.store._dispatch([mailbox_id])

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._lost.wait(), LISTEN_PING)
            except TimeoutError:
                try:  # a half-open TCP connection shows only when used
                    await asyncio.wait_for(self.conn.fetchval("SELECT 1"), LISTEN_PING)
                    continue
                except Exception as exc:
                    log.warning("change listener connection is not answering: %s", exc)
            if self.conn is not None:
                self.conn.terminate()
                self.conn = None
            while True:
                await asyncio.sleep(LISTEN_RETRY)
                try:
                    await self._connect(catch_up=True)
                    log.info("change listener reconnected")
                    break
                except Exception as exc:
                    log.warning("change listener cannot reconnect: %s", exc)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.conn is not None:
            conn, self.conn = self.conn, None
            try:
                await asyncio.wait_for(conn.close(), 5)
            except Exception:
                conn.terminate()


class PostgresStore(
    PostgresAcl,
    PostgresMetadata,
    PostgresQueue,
    PostgresFullText,
    PostgresWebSessions,
    PostgresPolicies,
    PostgresLogins,
    PostgresQuota,
):
    """The shared backend. See the module docstring and docs/postgresql.md."""

    def __init__(self, dsn: str, data_dir: Path | None = None) -> None:
        self.dsn = dsn
        self.spool_dir = data_dir / "spool" if data_dir is not None else None
        self._pool: Any = None
        self._listeners: list[ChangeListener] = []
        self._listener: _Listener | None = None
        self._own_pids: set[int] = set()
        self._locks: set[Any] = set()
        self._reader = ChunkReader(self._reader_pool)

    # lifecycle ---------------------------------------------------------------------------
    async def _init_connection(self, conn: Any) -> None:
        pid = conn.get_server_pid()
        self._own_pids.add(pid)
        conn.add_termination_listener(lambda _conn: self._own_pids.discard(pid))

    async def _reader_pool(self) -> Any:
        return await asyncpg.create_pool(
            self.dsn, min_size=0, max_size=4, max_inactive_connection_lifetime=60
        )

    async def open(self) -> None:
        if self.spool_dir is not None:
            try:
                await asyncio.to_thread(self.spool_dir.mkdir, parents=True, exist_ok=True)
            except OSError:
                self.spool_dir = None  # fall back to the system's temporary directory
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=POOL_MIN,
                max_size=POOL_MAX,
                max_inactive_connection_lifetime=0,
                init=self._init_connection,
                reset=_no_reset,
                timeout=10,
            )
        except asyncpg.exceptions.InvalidCatalogNameError as exc:
            raise ConfigError(f"store {self._safe_dsn()}: {exc}") from exc
        except asyncpg.exceptions.InvalidAuthorizationSpecificationError as exc:
            raise ConfigError(f"store {self._safe_dsn()}: {exc}") from exc
        except Exception as exc:
            raise as_store_error(exc) from exc
        try:
            async with self._pool.acquire() as conn:
                await migrate(conn)
            self._listener = _Listener(self)
            await self._listener.start()
        except BaseException as exc:
            await self.close()
            raise as_store_error(exc) from exc

    def _safe_dsn(self) -> str:
        head, sep, tail = self.dsn.partition("@")
        if sep and ":" in head.split("//", 1)[-1]:
            scheme, _, user = head.partition("//")
            return f"{scheme}//{user.split(':', 1)[0]}:***@{tail}"
        return self.dsn

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None
        for conn in list(self._locks):
            conn.terminate()
        self._locks.clear()
        await asyncio.to_thread(self._reader.stop)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), 10)
            except Exception:
                pool.terminate()

    # transactions ------------------------------------------------------------------------
    async def _write(self, fn: Callable[[Tx], Awaitable[T]], *, single: bool = False) -> T:
        """Run *fn* in one transaction (retried on deadlock); listeners hear of it on commit.

        *single*: *fn* runs exactly one statement, which is its own transaction (no BEGIN and
        COMMIT round trips)."""
        if self._pool is None:
            raise Temporary("the store is not open")
        for attempt in range(RETRIES):
            try:
                async with self._pool.acquire() as conn:
                    tx = Tx(conn)
                    if single:
                        result = await fn(tx)
                    else:
                        async with conn.transaction():
                            result = await fn(tx)
                break
            except _RETRY as exc:
                if attempt == RETRIES - 1:
                    raise as_store_error(exc) from exc
                await asyncio.sleep(random.uniform(0.001, 0.01 * (attempt + 1)))
            except Exception as exc:
                raise as_store_error(exc) from exc
        self._dispatch(MailboxId(m) for m in tx.touched)
        return result

    async def _read(self, fn: Callable[[Any], Awaitable[T]], *, snapshot: bool = False) -> T:
        """Run *fn* on a pooled connection; with *snapshot*, in one read-only snapshot."""
        if self._pool is None:
            raise Temporary("the store is not open")
        try:
            async with self._pool.acquire() as conn:
                if not snapshot:
                    return await fn(conn)
                async with conn.transaction(isolation="repeatable_read", readonly=True):
                    return await fn(conn)
        except Exception as exc:
            raise as_store_error(exc) from exc

    # change notification -------------------------------------------------------------------
    def add_listener(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: ChangeListener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def _dispatch(self, mailbox_ids: Iterable[MailboxId]) -> None:
        for mailbox_id in set(mailbox_ids):
            for listener in list(self._listeners):
                try:
                    listener(mailbox_id)
                except Exception:  # a broken listener must not break the writer
                    log.exception("change listener failed")

    # accounts ----------------------------------------------------------------------------
    @staticmethod
    async def _account(conn: Any, row: Any) -> Account | None:
        if row is None:
            return None
        rows = await conn.fetch(
            "SELECT key, value FROM account_settings WHERE account_id = $1", row[0]
        )
        return Account(AccountId(row[0]), row[1], row[2], {r[0]: r[1] for r in rows})

    @staticmethod
    async def _next_uidvalidity(conn: Any) -> int:
        now = int(time.time())
        value = await conn.fetchval(
            "INSERT INTO counters (name, value) VALUES ('uidvalidity', greatest($1::bigint, 1))"
            " ON CONFLICT (name) DO UPDATE SET value ="
            " greatest(mod(greatest($1::bigint, counters.value + 1), 4294967296), 1)"
            " RETURNING value",
            now % (2**32),
        )
        return int(value)

    async def _insert_mailbox(
        self, conn: Any, account_id: int, name: str, special_use: str | None
    ) -> Mailbox:
        uidvalidity = await self._next_uidvalidity(conn)
        mailbox_id = await conn.fetchval(
            "INSERT INTO mailboxes (account_id, name, uidvalidity, special_use)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (account_id, name) DO NOTHING RETURNING id",
            account_id,
            name,
            uidvalidity,
            special_use,
        )
        if mailbox_id is None:
            raise AlreadyExists(f"mailbox {name!r} already exists")
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

    @staticmethod
    async def _address_taken(conn: Any, address: str) -> bool:
        # serialise claims of one address across nodes (accounts and aliases share the space)
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('pobox.address.' || lower($1), 0))",
            address,
        )
        return bool(
            await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM accounts WHERE lower(address) = lower($1))"
                " OR EXISTS (SELECT 1 FROM aliases WHERE lower(alias) = lower($1))",
                address,
            )
        )

    async def create_account(self, address: str, password_hash: str) -> Account:
        async def run(tx: Tx) -> Account:
            conn = tx.conn
            if await self._address_taken(conn, address):
                raise AlreadyExists(f"{address} already exists")
            account_id = await conn.fetchval(
                "INSERT INTO accounts (address, password_hash, created) VALUES ($1, $2, $3)"
                " RETURNING id",
                address,
                password_hash,
                time.time(),
            )
            for name, special_use in DEFAULT_MAILBOXES:
                await self._insert_mailbox(conn, account_id, name, special_use)
            await conn.execute(
                "INSERT INTO subscriptions (account_id, name) SELECT $1, unnest($2::text[])",
                account_id,
                [name for name, _ in DEFAULT_MAILBOXES],
            )
            return Account(AccountId(account_id), address, password_hash, {})

        return await self._write(run)

    async def get_account(self, address: str) -> Account | None:
        async def run(conn: Any) -> Account | None:
            row = await conn.fetchrow(
                "SELECT id, address, password_hash FROM accounts WHERE lower(address) = lower($1)",
                address,
            )
            return await self._account(conn, row)

        return await self._read(run)

    async def get_account_by_id(self, account_id: AccountId) -> Account | None:
        async def run(conn: Any) -> Account | None:
            row = await conn.fetchrow(
                "SELECT id, address, password_hash FROM accounts WHERE id = $1", account_id
            )
            return await self._account(conn, row)

        return await self._read(run)

    async def resolve_address(self, address: str) -> Account | None:
        async def run(conn: Any) -> Account | None:
            row = await conn.fetchrow(
                "SELECT id, address, password_hash FROM accounts WHERE lower(address) = lower($1)"
                " UNION ALL SELECT a.id, a.address, a.password_hash FROM aliases l"
                " JOIN accounts a ON a.id = l.account_id WHERE lower(l.alias) = lower($1)"
                " LIMIT 1",
                address,
            )
            return await self._account(conn, row)

        return await self._read(run)

    async def totals(self) -> StoreTotals:
        async def run(conn: Any) -> StoreTotals:
            row = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM accounts), (SELECT count(*) FROM mailboxes),"
                " count(*), coalesce(sum(size), 0) FROM messages"
            )
            return StoreTotals(int(row[0]), int(row[1]), int(row[2]), int(row[3]))

        return await self._read(run, snapshot=True)

    async def list_accounts(self) -> list[Account]:
        async def run(conn: Any) -> list[Account]:
            rows = await conn.fetch(
                'SELECT id, address, password_hash FROM accounts ORDER BY address COLLATE "C"'
            )
            settings: dict[int, dict[str, str]] = {}
            for r in await conn.fetch("SELECT account_id, key, value FROM account_settings"):
                settings.setdefault(r[0], {})[r[1]] = r[2]
            return [Account(AccountId(r[0]), r[1], r[2], settings.get(r[0], {})) for r in rows]

        return await self._read(run, snapshot=True)

    async def delete_account(self, account_id: AccountId) -> None:
        async def run(tx: Tx) -> None:
            conn = tx.conn
            rows = await conn.fetch(
                "SELECT id FROM mailboxes WHERE account_id = $1 ORDER BY id FOR UPDATE", account_id
            )
            for row in rows:
                await self._drop_mailbox(tx, row[0])
            held = await conn.fetch(
                "DELETE FROM recoverable WHERE account_id = $1 AND blob IS NOT NULL RETURNING blob",
                account_id,
            )
            await self._unref(conn, [r[0] for r in held])
            status = await conn.execute("DELETE FROM accounts WHERE id = $1", account_id)
            if status.endswith(" 0"):
                raise NotFound("no such account")

        await self._write(run)

    async def set_password_hash(self, account_id: AccountId, password_hash: str) -> None:
        async def run(tx: Tx) -> None:
            status = await tx.conn.execute(
                "UPDATE accounts SET password_hash = $1 WHERE id = $2", password_hash, account_id
            )
            if status.endswith(" 0"):
                raise NotFound("no such account")

        await self._write(run)

    async def set_account_setting(self, account_id: AccountId, key: str, value: str | None) -> None:
        async def run(tx: Tx) -> None:
            if value is None:
                await tx.conn.execute(
                    "DELETE FROM account_settings WHERE account_id = $1 AND key = $2",
                    account_id,
                    key,
                )
            else:
                await tx.conn.execute(
                    "INSERT INTO account_settings (account_id, key, value) VALUES ($1, $2, $3)"
                    " ON CONFLICT (account_id, key) DO UPDATE SET value = excluded.value",
                    account_id,
                    key,
                    value,
                )

        await self._write(run)

    async def add_alias(self, alias: str, account_id: AccountId) -> None:
        async def run(tx: Tx) -> None:
            if await self._address_taken(tx.conn, alias):
                raise AlreadyExists(f"{alias} is already an address or alias")
            try:
                await tx.conn.execute(
                    "INSERT INTO aliases (alias, account_id) VALUES ($1, $2)", alias, account_id
                )
            except asyncpg.exceptions.ForeignKeyViolationError:
                raise NotFound("no such account") from None

        await self._write(run)

    async def remove_alias(self, alias: str) -> None:
        async def run(tx: Tx) -> None:
            status = await tx.conn.execute(
                "DELETE FROM aliases WHERE lower(alias) = lower($1)", alias
            )
            if status.endswith(" 0"):
                raise NotFound(f"no alias {alias}")

        await self._write(run)

    async def list_aliases(self, account_id: AccountId | None = None) -> list[tuple[str, str]]:
        async def run(conn: Any) -> list[tuple[str, str]]:
            sql = "SELECT l.alias, a.address FROM aliases l JOIN accounts a ON a.id = l.account_id"
            args: tuple[Any, ...] = ()
            if account_id is not None:
                sql += " WHERE a.id = $1"
                args = (account_id,)
            rows = await conn.fetch(sql + ' ORDER BY lower(l.alias) COLLATE "C"', *args)
            return [(r[0], r[1]) for r in rows]

        return await self._read(run)

    # mailboxes ---------------------------------------------------------------------------
    async def list_mailboxes(self, account_id: AccountId) -> list[Mailbox]:
        async def run(conn: Any) -> list[Mailbox]:
            rows = await conn.fetch(
                f'{_MBOX_SELECT} WHERE account_id = $1 ORDER BY name COLLATE "C"', account_id
            )
            return [_mailbox(r) for r in rows]

        return await self._read(run)

    @staticmethod
    async def _get_mailbox(conn: Any, where: str, *args: Any) -> Mailbox | None:
        row = await conn.fetchrow(f"{_MBOX_SELECT} WHERE {where}", *args)
        return None if row is None else _mailbox(row)

    async def get_mailbox(self, account_id: AccountId, name: str) -> Mailbox | None:
        return await self._read(
            lambda conn: self._get_mailbox(conn, "account_id = $1 AND name = $2", account_id, name)
        )

    async def get_mailbox_by_id(self, mailbox_id: MailboxId) -> Mailbox | None:
        return await self._read(lambda conn: self._get_mailbox(conn, "id = $1", mailbox_id))

    async def _require_mailbox(self, conn: Any, mailbox_id: int) -> Mailbox:
        mailbox = await self._get_mailbox(conn, "id = $1", mailbox_id)
        if mailbox is None:
            raise NotFound("mailbox does not exist")
        return mailbox

    @staticmethod
    async def _lock_mailboxes(conn: Any, *mailbox_ids: int) -> dict[int, Any]:
        """Lock mailbox rows (ascending id: no deadlock between two-mailbox operations)."""
        rows = await conn.fetch(
            "SELECT id, account_id, name, uidvalidity, uidnext, highestmodseq FROM mailboxes"
            " WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE",
            sorted(set(mailbox_ids)),
        )
        return {r[0]: r for r in rows}

    async def create_mailbox(
        self,
        account_id: AccountId,
        name: str,
        special_use: str | None = None,
        *,
        quota: QuotaLimits | None = None,
    ) -> Mailbox:
        async def run(tx: Tx) -> Mailbox:
            try:
                if quota is not None:
                    await _quota.check_mailbox_count(tx.conn, account_id, quota)
                mailbox = await self._insert_mailbox(tx.conn, account_id, name, special_use)
            except asyncpg.exceptions.ForeignKeyViolationError:
                raise NotFound("no such account") from None
            await tx.journal(mailbox.id)
            return mailbox

        return await self._write(run)

    async def _drop_mailbox(self, tx: Tx, mailbox_id: int) -> None:
        conn = tx.conn
        await _quota.release_mailbox(conn, mailbox_id)
        rows = await conn.fetch(
            "DELETE FROM messages WHERE mailbox_id = $1 RETURNING blob", mailbox_id
        )
        await self._unref(conn, [r[0] for r in rows])
        await conn.execute("DELETE FROM expunged WHERE mailbox_id = $1", mailbox_id)
        await conn.execute(
            "UPDATE recoverable SET mailbox_id = NULL WHERE mailbox_id = $1", mailbox_id
        )
        await conn.execute("DELETE FROM mailboxes WHERE id = $1", mailbox_id)

    async def delete_mailbox(self, mailbox_id: MailboxId) -> None:
        async def run(tx: Tx) -> None:
            if not await self._lock_mailboxes(tx.conn, mailbox_id):
                raise NotFound("mailbox does not exist")
            await self._drop_mailbox(tx, mailbox_id)
            await tx.journal(mailbox_id)

        await self._write(run)

    async def rename_mailbox(self, mailbox_id: MailboxId, new_name: str) -> Mailbox:
        """Rename a mailbox and every mailbox below it; UIDVALIDITY is kept."""

        async def run(tx: Tx) -> Mailbox:
            conn = tx.conn
            locked = await self._lock_mailboxes(conn, mailbox_id)
            if not locked:
                raise NotFound("mailbox does not exist")
            account_id, old = locked[mailbox_id][1], locked[mailbox_id][2]
            if await conn.fetchval(
                "SELECT 1 FROM mailboxes WHERE account_id = $1 AND name = $2", account_id, new_name
            ):
                raise AlreadyExists(f"mailbox {new_name!r} already exists")
            renamed = await conn.fetch(
                "UPDATE mailboxes SET name = $1 || substr(name, $2)"
                " WHERE account_id = $3 AND (id = $4 OR starts_with(name, $5)) RETURNING id",
                new_name,
                len(old) + 1,
                account_id,
                mailbox_id,
                old + "/",
            )
            for row in renamed:  # children too: their names changed
                await tx.journal(row[0])
            return await self._require_mailbox(conn, mailbox_id)

        return await self._write(run)

    async def set_subscribed(self, account_id: AccountId, name: str, subscribed: bool) -> None:
        async def run(tx: Tx) -> None:
            if subscribed:
                await tx.conn.execute(
                    "INSERT INTO subscriptions (account_id, name) VALUES ($1, $2)"
                    " ON CONFLICT DO NOTHING",
                    account_id,
                    name,
                )
            else:
                await tx.conn.execute(
                    "DELETE FROM subscriptions WHERE account_id = $1 AND name = $2",
                    account_id,
                    name,
                )

        await self._write(run)

    async def list_subscriptions(self, account_id: AccountId) -> list[str]:
        async def run(conn: Any) -> list[str]:
            rows = await conn.fetch(
                'SELECT name FROM subscriptions WHERE account_id = $1 ORDER BY name COLLATE "C"',
                account_id,
            )
            return [r[0] for r in rows]

        return await self._read(run)

    async def mailbox_status(self, mailbox_id: MailboxId) -> MailboxStatus:
        # the mailbox row's counters (schema 13): no scan of its messages
        return await self._read(lambda conn: _counts.status(conn, mailbox_id))

    async def claim_recent(self, mailbox_id: MailboxId, below: Uid | None = None) -> Uid:
        """Return the first UID that is \\Recent for the caller, and take them from others."""

        return await self._write(lambda tx: self._claim(tx, mailbox_id, below))

    @staticmethod
    async def _claim(tx: Tx, mailbox_id: MailboxId, below: int | None) -> Uid:
        # the row is locked, so concurrent claims (other workers, other nodes) are ordered;
        # no row version is written when the floor is there already
        floor = await tx.conn.fetchval(
            "WITH old AS (SELECT id, recent_floor,"
            " LEAST(uidnext, coalesce($2::bigint, uidnext)) AS target"
            " FROM mailboxes WHERE id = $1 FOR UPDATE),"
            " claimed AS (UPDATE mailboxes b SET recent_floor = old.target FROM old"
            " WHERE b.id = old.id AND old.target > old.recent_floor)"
            " SELECT recent_floor FROM old",
            mailbox_id,
            below,
        )
        if floor is None:
            raise NotFound("mailbox does not exist")
        return Uid(floor)

    # messages ----------------------------------------------------------------------------
    def new_spool(self) -> Spool:
        return TempSpool(self.spool_dir)

    @staticmethod
    async def _unref(conn: Any, blobs: Sequence[int]) -> None:
        """Drop one reference per entry of *blobs*; content nobody refers to goes."""
        if not blobs:
            return
        counts = Counter(blobs)
        ids = list(counts)
        await conn.execute(
            "UPDATE blobs b SET refs = b.refs - d.n"
            " FROM unnest($1::bigint[], $2::int[]) AS d(id, n) WHERE b.id = d.id",
            ids,
            [counts[i] for i in ids],
        )
        await conn.execute("DELETE FROM blobs WHERE id = ANY($1::bigint[]) AND refs <= 0", ids)

    @staticmethod
    async def _ref(conn: Any, blobs: Sequence[int]) -> None:
        counts = Counter(blobs)
        ids = list(counts)
        await conn.execute(
            "UPDATE blobs b SET refs = b.refs + d.n"
            " FROM unnest($1::bigint[], $2::int[]) AS d(id, n) WHERE b.id = d.id",
            ids,
            [counts[i] for i in ids],
        )

    async def _insert_messages(
        self,
        tx: Tx,
        mailbox_id: int,
        items: Sequence[tuple[int, int, int, str, tuple[float, int], str | None]],
        *,
        new_blob: bool = False,
    ) -> list[MessageMeta]:
        """Store messages (blob, size, flag bits, keywords, internal date, UIDL) in a mailbox.

        The mailbox row is locked by the UPDATE that takes the UIDs and MODSEQs, until commit.
        """
        conn = tx.conn
        count = len(items)
        row = await conn.fetchrow(
            "UPDATE mailboxes SET uidnext = uidnext + $2, highestmodseq = highestmodseq + $2"
            " WHERE id = $1 RETURNING uidnext - $2, highestmodseq - $2 + 1, account_id",
            mailbox_id,
            count,
        )
        if row is None:
            raise NotFound("mailbox does not exist")
        first_uid, first_modseq = row[0], row[1]
        await _quota.change_usage(conn, row[2], sum(it[1] for it in items), count)
        now = time.time()
        await conn.execute(
            # the sort date (schema 14): the content's sent date, else the internal date
            f"INSERT INTO messages ({_MSG_COLUMNS}, sort_date)"
            " SELECT $1::bigint, u, m, f, k, i, z, $2::float8, s, b, p, NULL,"
            " coalesce((SELECT sent_date FROM blobs WHERE id = b), i) FROM unnest("
            "$3::bigint[], $4::bigint[], $5::int[], $6::text[], $7::float8[], $8::int[],"
            " $9::bigint[], $10::bigint[], $11::text[]) AS d(u, m, f, k, i, z, s, b, p)",
            mailbox_id,
            now,
            [first_uid + n for n in range(count)],
            [first_modseq + n for n in range(count)],
            [it[2] for it in items],
            [it[3] for it in items],
            [it[4][0] for it in items],
            [it[4][1] for it in items],
            [it[1] for it in items],
            [it[0] for it in items],
            [it[5] for it in items],
        )
        if not new_blob:
            await self._ref(conn, [it[0] for it in items])
        await tx.journal(mailbox_id)
        return [
            MessageMeta(
                MailboxId(mailbox_id),
                Uid(first_uid + n),
                ModSeq(first_modseq + n),
                join_flags(it[2], it[3]),
                from_epoch(*it[4]),
                from_epoch(now),
                it[1],
                BlobId(it[0]),
                it[5],
                False,
            )
            for n, it in enumerate(items)
        ]

    @staticmethod
    def _check_spool(message: NewMessage) -> TempSpool:
        spool = message.spool
        if not isinstance(spool, TempSpool):
            raise ValueError("append needs a spool of this store")
        if not spool.sealed:  # the file whole (no fsync: the commit makes the content durable)
            spool.seal()
        return spool

    async def _append_in(
        self, tx: Tx, mailbox_id: MailboxId, message: NewMessage, quota: QuotaLimits | None = None
    ) -> MessageMeta:
        """Append *message* inside the transaction *tx* (content in chunks of any size)."""
        spool = self._check_spool(message)
        bits, keywords = split_flags(message.flags)
        internal = to_epoch(message.internal_date or datetime.now(UTC))
        fields = message.fields
        sent = fields.sent_date.timestamp() if fields.sent_date else None
        size = spool.size
        first = await asyncio.to_thread(_read_chunk, spool.path, 0) if size else b""
        rendered = message.rendered or Rendered()
        conn = tx.conn
        # the content first: the mailbox row is locked only for the short tail
        blob = await conn.fetchval(
            "INSERT INTO blobs (size, refs, structure, subject, from_, to_, cc, bcc,"
            " message_id, sent_date, envelope, bodystructure, thread_refs)"
            " VALUES ($1, 1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
            size,
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
        )
        insert = "INSERT INTO blob_chunks (blob, seq, data) VALUES ($1, $2, $3)"
        if size:
            await conn.execute(insert, blob, 0, first)
        for seq in range(1, (size + CHUNK_SIZE - 1) // CHUNK_SIZE):
            data = await asyncio.to_thread(_read_chunk, spool.path, seq)
            await conn.execute(insert, blob, seq, data)
        (meta,) = await self._insert_messages(
            tx,
            mailbox_id,
            [(blob, size, bits, keywords_text(keywords), internal, message.pop3_uidl)],
            new_blob=True,
        )
        await _quota.enforce(conn, mailbox_id, quota)
        return meta

    async def append_many(
        self,
        mailbox_id: MailboxId,
        messages: Sequence[NewMessage],
        *,
        quota: QuotaLimits | None = None,
    ) -> list[MessageMeta]:
        if len(messages) == 1:
            return [await self.append(mailbox_id, messages[0], quota=quota)]
        for message in messages:
            self._check_spool(message)

        async def run(tx: Tx) -> list[MessageMeta]:
            return [await self._append_in(tx, mailbox_id, m, quota) for m in messages]

        try:
            return await self._write(run)  # one transaction: all of them or none
        finally:
            for message in messages:
                await asyncio.to_thread(message.spool.discard)

    async def append_claiming(
        self, mailbox_id: MailboxId, message: NewMessage, *, quota: QuotaLimits | None = None
    ) -> tuple[MessageMeta, Uid]:
        self._check_spool(message)

        async def run(tx: Tx) -> tuple[MessageMeta, Uid]:
            meta = await self._append_in(tx, mailbox_id, message, quota)
            return meta, await self._claim(tx, mailbox_id, meta.uid + 1)

        try:
            return await self._write(run)
        finally:
            await asyncio.to_thread(message.spool.discard)

    async def replace(
        self,
        mailbox_id: MailboxId,
        message: NewMessage,
        src: MailboxId,
        uid: Uid,
        *,
        quota: QuotaLimits | None = None,
    ) -> tuple[MessageMeta, Expunged]:
        self._check_spool(message)

        async def run(tx: Tx) -> tuple[MessageMeta, Expunged]:
            # both rows locked first, in id order (as a move does): no deadlock with one
            locked = await self._lock_mailboxes(tx.conn, src, mailbox_id)
            if src not in locked or mailbox_id not in locked:
                raise NotFound("no such mailbox")
            gone = await self._expunge(tx, src, [uid], False, locked[src])
            if not gone:
                raise ExpungedError("the message to replace was expunged")
            return await self._append_in(tx, mailbox_id, message, quota), gone[0]

        try:
            return await self._write(run)  # one transaction: both or neither
        finally:
            await asyncio.to_thread(message.spool.discard)

    async def append(
        self, mailbox_id: MailboxId, message: NewMessage, *, quota: QuotaLimits | None = None
    ) -> MessageMeta:
        spool = self._check_spool(message)
        bits, keywords = split_flags(message.flags)
        internal = to_epoch(message.internal_date or datetime.now(UTC))
        fields = message.fields
        sent = fields.sent_date.timestamp() if fields.sent_date else None
        size = spool.size
        first = await asyncio.to_thread(_read_chunk, spool.path, 0) if size else b""
        rendered = message.rendered or Rendered()

        async def run(tx: Tx) -> MessageMeta:
            return await self._append_in(tx, MailboxId(mailbox_id), message, quota)

        async def run_small(tx: Tx) -> MessageMeta:
            # the whole append as one statement: the mailbox row first (UID, MODSEQ), then the
            # content, the message, the journal and the NOTIFY; nothing at all without a mailbox
            now = time.time()
            keywords_str = keywords_text(keywords)
            row = await tx.conn.fetchrow(
                "WITH mb AS (UPDATE mailboxes SET uidnext = uidnext + 1,"
                " highestmodseq = highestmodseq + 1 WHERE id = $1::bigint"
                " RETURNING uidnext - 1 AS uid, highestmodseq AS modseq, account_id),"
                f"{_quota.SMALL_APPEND_USAGE}"
                " b AS (INSERT INTO blobs (size, refs, structure, subject, from_, to_, cc, bcc,"
                " message_id, sent_date, envelope, bodystructure, thread_refs) SELECT"
                " $2::bigint, 1, $3::bytea, $4::text, $5::text, $6::text, $7::text, $8::text,"
                " $9::text, $10::float8, $20::bytea, $21::bytea, $24::text FROM mb, q"
                " RETURNING id),"
                " c AS (INSERT INTO blob_chunks (blob, seq, data) SELECT id, 0, $11::bytea FROM b),"
                f" m AS (INSERT INTO messages ({_MSG_COLUMNS}, sort_date) SELECT $1::bigint,"
                " mb.uid, mb.modseq, $12::int, $13::text, $14::float8, $15::int, $16::float8,"
                " $2::bigint, b.id, $17::text, NULL, coalesce($10::float8, $14::float8)"
                " FROM mb, b RETURNING uid, modseq, blob),"
                " j AS (INSERT INTO change_journal (mailbox_id) SELECT $1::bigint FROM m"
                " RETURNING seq)"
                " SELECT m.uid, m.modseq, m.blob, j.seq, pg_notify($18::text, $19::text)"
                " FROM m, j",
                mailbox_id,
                size,
                message.structure,
                fields.subject,
                fields.from_,
                fields.to,
                fields.cc,
                fields.bcc,
                fields.message_id,
                sent,
                first,
                bits,
                keywords_str,
                internal[0],
                internal[1],
                now,
                message.pop3_uidl,
                CHANNEL,
                str(mailbox_id),
                rendered.envelope,
                rendered.bodystructure,
                *_quota.limit_args(quota),
                fields.references,
            )
            if row is None:
                if await tx.conn.fetchval("SELECT 1 FROM mailboxes WHERE id = $1", mailbox_id):
                    raise _quota.over_quota()
                raise NotFound("mailbox does not exist")
            tx.touched.add(mailbox_id)
            if row[3] % 10000 == 0:
                await tx.conn.execute(
                    "DELETE FROM change_journal WHERE seq < $1", row[3] - JOURNAL_KEEP
                )
            return MessageMeta(
                MailboxId(mailbox_id),
                Uid(row[0]),
                ModSeq(row[1]),
                join_flags(bits, keywords_str),
                from_epoch(*internal),
                from_epoch(now),
                size,
                BlobId(row[2]),
                message.pop3_uidl,
                False,
            )

        try:
            if 0 < size <= CHUNK_SIZE:
                return await self._write(run_small, single=True)
            return await self._write(run)
        finally:
            await asyncio.to_thread(spool.discard)

    async def list_messages(self, mailbox_id: MailboxId) -> list[MessageMeta]:
        async def run(conn: Any) -> list[MessageMeta]:
            rows = await conn.fetch(
                f"SELECT {_MSG_COLUMNS} FROM messages WHERE mailbox_id = $1 ORDER BY uid",
                mailbox_id,
            )
            return [_meta(r) for r in rows]

        return await self._read(run)

    async def message_columns(self, mailbox_id: MailboxId) -> MessageColumns:
        async def run(conn: Any) -> MessageColumns:
            mailbox = await self._require_mailbox(conn, mailbox_id)
            return await packed_columns(conn, mailbox)  # no Python object per message

        return await self._read(run, snapshot=True)

    @staticmethod
    async def _select(conn: Any, mailbox_id: int, uids: Iterable[int]) -> list[MessageMeta]:
        wanted = sorted(set(uids))
        if not wanted:
            return []
        rows = await conn.fetch(
            f"SELECT {_MSG_COLUMNS} FROM messages WHERE mailbox_id = $1"
            " AND uid = ANY($2::bigint[]) ORDER BY uid",
            mailbox_id,
            wanted,
        )
        return [_meta(r) for r in rows]

    async def get_messages(self, mailbox_id: MailboxId, uids: Iterable[Uid]) -> list[MessageMeta]:
        wanted = list(uids)
        return await self._read(lambda conn: self._select(conn, mailbox_id, wanted))

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

        async def run(tx: Tx) -> list[MessageMeta]:
            conn = tx.conn
            if not wanted or not await self._lock_mailboxes(conn, mailbox_id):
                return []
            updates: list[tuple[MessageMeta, int, str]] = []
            for meta in await self._select(conn, mailbox_id, wanted):
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
                updates.append((meta, new_bits, keywords_text(new_keywords)))
            if not updates:
                return []
            modseq = ModSeq(
                await conn.fetchval(
                    "UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = $1"
                    " RETURNING highestmodseq",
                    mailbox_id,
                )
            )
            await conn.execute(
                "UPDATE messages m SET flags = d.f, keywords = d.k, modseq = $2"
                " FROM unnest($3::bigint[], $4::int[], $5::text[]) AS d(u, f, k)"
                " WHERE m.mailbox_id = $1 AND m.uid = d.u",
                mailbox_id,
                modseq,
                [u[0].uid for u in updates],
                [u[1] for u in updates],
                [u[2] for u in updates],
            )
            await tx.journal(mailbox_id)
            return [
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
                for meta, new_bits, text in updates
            ]

        return await self._write(run)

    async def _expunge(
        self, tx: Tx, mailbox_id: int, uids: Sequence[int], keep: bool, mailbox: Any
    ) -> list[Expunged]:
        """Remove messages; *mailbox* is its locked row (id, account, name, uidvalidity, …)."""
        conn = tx.conn
        wanted = sorted(set(uids))
        if not wanted:
            return []
        rows = await conn.fetch(
            "DELETE FROM messages WHERE mailbox_id = $1 AND uid = ANY($2::bigint[])"
            " RETURNING uid, blob, flags, keywords, internal_date, internal_tz, size, pop3_uidl",
            mailbox_id,
            wanted,
        )
        if not rows:
            return []
        rows = sorted(rows, key=lambda r: r[0])
        modseq = await conn.fetchval(
            "UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = $1"
            " RETURNING highestmodseq",
            mailbox_id,
        )
        gone = [r[0] for r in rows]
        await conn.execute(
            "INSERT INTO expunged (mailbox_id, uid, modseq) SELECT $1::bigint, u, $3::bigint"
            " FROM unnest($2::bigint[]) AS u"
            " ON CONFLICT (mailbox_id, uid) DO UPDATE SET modseq = excluded.modseq",
            mailbox_id,
            gone,
            modseq,
        )
        # hidden by retention, now swept: the recovery row takes over the content's reference
        swept = {
            r[0]
            for r in await conn.fetch(
                "UPDATE recoverable r SET still_present = false, blob = d.b"
                " FROM unnest($2::bigint[], $3::bigint[]) AS d(u, b)"
                " WHERE r.mailbox_id = $1 AND r.uid = d.u AND r.still_present RETURNING r.uid",
                mailbox_id,
                gone,
                [r[1] for r in rows],
            )
        }
        rest = [r for r in rows if r[0] not in swept]
        if keep and rest:
            now = time.time()
            await conn.executemany(
                "INSERT INTO recoverable (account_id, mailbox_id, mailbox_name, uid, uidl,"
                " deleted_at, still_present, blob, flags, keywords, internal_date,"
                " internal_tz, size) VALUES ($1, $2, $3, $4, $5, $6, false, $7, $8, $9, $10,"
                " $11, $12)",
                [
                    (
                        mailbox[1],
                        mailbox_id,
                        mailbox[2],
                        r[0],
                        r[7] or uidl_for(r[0], mailbox[3]),
                        now,
                        r[1],
                        r[2],
                        r[3],
                        r[4],
                        r[5],
                        r[6],
                    )
                    for r in rest
                ],
            )
        elif rest:
            await self._unref(conn, [r[1] for r in rest])
        await _quota.change_usage(conn, mailbox[1], -sum(r[6] for r in rows), -len(rows))
        await tx.journal(mailbox_id)
        return [Expunged(Uid(u), ModSeq(modseq)) for u in gone]

    async def expunge(
        self, mailbox_id: MailboxId, uids: Iterable[Uid], *, keep_recoverable: bool = False
    ) -> list[Expunged]:
        wanted = list(uids)

        async def run(tx: Tx) -> list[Expunged]:
            if not wanted:
                return []
            locked = await self._lock_mailboxes(tx.conn, mailbox_id)
            if not locked:
                return []
            return await self._expunge(tx, mailbox_id, wanted, keep_recoverable, locked[mailbox_id])

        return await self._write(run)

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

        async def run(tx: Tx) -> list[tuple[Uid, Uid]]:
            conn = tx.conn
            locked = await self._lock_mailboxes(conn, src, dst)
            if dst not in locked:
                raise NotFound("mailbox does not exist")
            metas = await self._select(conn, src, wanted)
            if not metas:
                return []
            items = []
            for meta in metas:
                bits, keywords = split_flags(meta.flags)
                internal = to_epoch(meta.internal_date)
                items.append((meta.blob, meta.size, bits, keywords_text(keywords), internal, None))
            new = await self._insert_messages(tx, dst, items)
            if move:
                await self._expunge(tx, src, [m.uid for m in metas], False, locked[src])
            if not (move and src in locked and locked[src][1] == locked[dst][1]):
                await _quota.enforce(conn, dst, quota, "the copy")  # a move within: adds nothing
            return [(m.uid, n.uid) for m, n in zip(metas, new, strict=True)]

        return await self._write(run)

    async def changes_since(self, mailbox_id: MailboxId, modseq: ModSeq) -> ChangeBatch:
        async def run(conn: Any) -> ChangeBatch:
            mailbox = await self._require_mailbox(conn, mailbox_id)
            changed = [
                _meta(r)
                for r in await conn.fetch(
                    f"SELECT {_MSG_COLUMNS} FROM messages WHERE mailbox_id = $1 AND modseq > $2"
                    " ORDER BY uid",
                    mailbox_id,
                    modseq,
                )
            ]
            gone = [
                Expunged(Uid(r[0]), ModSeq(r[1]))
                for r in await conn.fetch(
                    "SELECT uid, modseq FROM expunged WHERE mailbox_id = $1 AND modseq > $2"
                    " ORDER BY uid",
                    mailbox_id,
                    modseq,
                )
            ]
            return ChangeBatch(mailbox, changed, gone)

        return await self._read(run, snapshot=True)

    async def expunged_since(self, mailbox_id: MailboxId, modseq: ModSeq) -> list[Uid]:
        async def run(conn: Any) -> list[Uid]:
            await self._require_mailbox(conn, mailbox_id)
            rows = await conn.fetch(
                "SELECT uid FROM expunged WHERE mailbox_id = $1 AND modseq > $2 ORDER BY uid",
                mailbox_id,
                modseq,
            )
            return [Uid(r[0]) for r in rows]

        return await self._read(run, snapshot=True)

    async def get_structure(self, blob: BlobId) -> bytes:
        async def run(conn: Any) -> bytes:
            data = await conn.fetchval("SELECT structure FROM blobs WHERE id = $1", blob)
            if data is None:
                raise NotFound("message content is gone")
            return bytes(data)

        return await self._read(run)

    async def get_structures(self, blobs: Iterable[BlobId]) -> dict[BlobId, bytes]:
        wanted = sorted(set(blobs))
        if not wanted:
            return {}

        async def run(conn: Any) -> dict[BlobId, bytes]:
            rows = await conn.fetch(
                "SELECT id, structure FROM blobs WHERE id = ANY($1::bigint[])", wanted
            )
            return {BlobId(r[0]): bytes(r[1]) for r in rows}

        return await self._read(run)

    async def get_rendered(self, blobs: Iterable[BlobId]) -> dict[BlobId, Rendered]:
        wanted = sorted(set(blobs))
        if not wanted:
            return {}

        async def run(conn: Any) -> dict[BlobId, Rendered]:
            rows = await conn.fetch(
                "SELECT id, envelope, bodystructure FROM blobs WHERE id = ANY($1::bigint[])",
                wanted,
            )
            return {
                BlobId(r[0]): Rendered(
                    None if r[1] is None else bytes(r[1]), None if r[2] is None else bytes(r[2])
                )
                for r in rows
            }

        return await self._read(run)

    async def set_rendered(self, items: Mapping[BlobId, Rendered]) -> None:
        if not items:
            return
        blobs = list(items)

        async def run(tx: Tx) -> None:
            await tx.conn.execute(
                "UPDATE blobs b SET envelope = coalesce(b.envelope, d.e),"
                " bodystructure = coalesce(b.bodystructure, d.s)"
                " FROM unnest($1::bigint[], $2::bytea[], $3::bytea[]) AS d(id, e, s)"
                " WHERE b.id = d.id",
                blobs,
                [items[b].envelope for b in blobs],
                [items[b].bodystructure for b in blobs],
            )

        await self._write(run, single=True)

    async def open_contents(self, blobs: Iterable[BlobId]) -> dict[BlobId, Content]:
        wanted = sorted(set(blobs))
        if not wanted:
            return {}

        async def run(conn: Any) -> dict[BlobId, Content]:
            sizes = {
                int(r[0]): int(r[1])
                for r in await conn.fetch(
                    "SELECT id, size FROM blobs WHERE id = ANY($1::bigint[])", wanted
                )
            }
            chunks: dict[int, dict[int, bytes]] = {blob: {} for blob in sizes}
            for r in await conn.fetch(
                "SELECT c.blob, c.seq, c.data FROM blob_chunks c JOIN blobs b ON b.id = c.blob"
                " WHERE c.blob = ANY($1::bigint[]) AND c.seq * $2::bigint < least(b.size, $3)",
                wanted,
                CHUNK_SIZE,
                PRELOAD_MAX,
            ):
                chunks[int(r[0])][int(r[1])] = bytes(r[2])
            opened: dict[BlobId, Content] = {}
            for blob, size in sizes.items():
                if size and 0 not in chunks[blob]:
                    continue
                opened[BlobId(blob)] = PgContent(blob, size, CHUNK_SIZE, chunks[blob], self._reader)
            return opened

        return await self._read(run, snapshot=True)

    async def _open(self, conn: Any, blob: int | None, size: int | None) -> PgContent | None:
        if blob is None or size is None:
            return None
        last = (min(size, PRELOAD_MAX) + CHUNK_SIZE - 1) // CHUNK_SIZE - 1
        rows = await conn.fetch(
            "SELECT seq, data FROM blob_chunks WHERE blob = $1 AND seq <= $2", blob, last
        )
        chunks = {int(r[0]): bytes(r[1]) for r in rows}
        if size and 0 not in chunks:
            return None
        return PgContent(blob, size, CHUNK_SIZE, chunks, self._reader)

    async def open_content(self, blob: BlobId) -> Content:
        async def run(conn: Any) -> PgContent | None:
            size = await conn.fetchval("SELECT size FROM blobs WHERE id = $1", blob)
            return await self._open(conn, blob, size)

        content = await self._read(run, snapshot=True)
        if content is None:
            raise NotFound("message content is gone")
        return content

    async def open_message(self, mailbox_id: MailboxId, uid: Uid) -> Content:
        """The content of a message that is still in the mailbox, else NotFound."""

        async def run(conn: Any) -> PgContent | None:
            row = await conn.fetchrow(
                "SELECT m.blob, m.size FROM messages m WHERE m.mailbox_id = $1 AND m.uid = $2",
                mailbox_id,
                uid,
            )
            return None if row is None else await self._open(conn, row[0], row[1])

        content = await self._read(run, snapshot=True)
        if content is None:
            raise NotFound("the message is no longer in the mailbox")
        return content

    # POP3 retention and recovery ---------------------------------------------------------
    async def pop3_hide(
        self, mailbox_id: MailboxId, uids: Iterable[Uid], at: datetime
    ) -> list[MessageMeta]:
        wanted = list(uids)
        epoch = at.timestamp()

        async def run(tx: Tx) -> list[MessageMeta]:
            conn = tx.conn
            locked = await self._lock_mailboxes(conn, mailbox_id)
            if not locked:
                raise NotFound("mailbox does not exist")
            mailbox = locked[mailbox_id]
            hidden = [m for m in await self._select(conn, mailbox_id, wanted) if not m.pop3_hidden]
            if not hidden:
                return []
            await conn.execute(
                "UPDATE messages SET pop3_hidden_at = $3"
                " WHERE mailbox_id = $1 AND uid = ANY($2::bigint[])",
                mailbox_id,
                [m.uid for m in hidden],
                epoch,
            )
            records = []
            for meta in hidden:
                bits, keywords = split_flags(meta.flags)
                internal = to_epoch(meta.internal_date)
                records.append(
                    (
                        mailbox[1],
                        mailbox_id,
                        mailbox[2],
                        meta.uid,
                        meta.pop3_uidl or uidl_for(meta.uid, mailbox[3]),
                        epoch,
                        bits,
                        keywords_text(keywords),
                        internal[0],
                        internal[1],
                        meta.size,
                    )
                )
            await conn.executemany(
                "INSERT INTO recoverable (account_id, mailbox_id, mailbox_name, uid, uidl,"
                " deleted_at, still_present, blob, flags, keywords, internal_date,"
                " internal_tz, size) VALUES ($1, $2, $3, $4, $5, $6, true, NULL, $7, $8, $9,"
                " $10, $11)",
                records,
            )
            return hidden

        return await self._write(run)

    async def hidden_before(
        self, account_id: AccountId, cutoff: datetime
    ) -> list[tuple[MailboxId, Uid]]:
        async def run(conn: Any) -> list[tuple[MailboxId, Uid]]:
            rows = await conn.fetch(
                "SELECT m.mailbox_id, m.uid FROM messages m"
                " JOIN mailboxes b ON b.id = m.mailbox_id"
                " WHERE b.account_id = $1 AND m.pop3_hidden_at IS NOT NULL"
                " AND m.pop3_hidden_at < $2 ORDER BY m.mailbox_id, m.uid",
                account_id,
                cutoff.timestamp(),
            )
            return [(MailboxId(r[0]), Uid(r[1])) for r in rows]

        return await self._read(run)

    async def list_recoverable(
        self, account_id: AccountId, since: datetime | None = None
    ) -> list[Recoverable]:
        floor = since.timestamp() if since else 0.0

        async def run(conn: Any) -> list[Recoverable]:
            rows = await conn.fetch(
                "SELECT id, mailbox_name, uid, uidl, deleted_at, size, still_present"
                " FROM recoverable WHERE account_id = $1 AND deleted_at >= $2"
                " ORDER BY deleted_at, id",
                account_id,
                floor,
            )
            return [
                Recoverable(r[0], r[1], Uid(r[2]), r[3], from_epoch(r[4]), r[5], bool(r[6]))
                for r in rows
            ]

        return await self._read(run)

    async def recover(self, account_id: AccountId, ids: Iterable[int]) -> list[MessageMeta]:
        wanted = list(ids)

        async def run(tx: Tx) -> list[MessageMeta]:
            conn = tx.conn
            restored: list[MessageMeta] = []
            inbox = await conn.fetchval(
                "SELECT id FROM mailboxes WHERE account_id = $1 AND name = 'INBOX'", account_id
            )
            for rec_id in wanted:
                row = await conn.fetchrow(
                    "DELETE FROM recoverable WHERE id = $1 AND account_id = $2"
                    " RETURNING mailbox_id, uid, uidl, still_present, blob, flags, keywords,"
                    " internal_date, internal_tz, size",
                    rec_id,
                    account_id,
                )
                if row is None:
                    continue
                mailbox_id, uid, uidl, present, blob, flags, keywords, idate, itz, size = row
                if present:
                    await self._lock_mailboxes(conn, mailbox_id)
                    await conn.execute(
                        "UPDATE messages SET pop3_hidden_at = NULL"
                        " WHERE mailbox_id = $1 AND uid = $2",
                        mailbox_id,
                        uid,
                    )
                    restored += await self._select(conn, mailbox_id, [uid])
                    await tx.journal(mailbox_id)
                    continue
                target = mailbox_id if mailbox_id is not None else inbox
                if target is None:
                    raise NotFound("the account has no INBOX to recover into")
                # the recovery row's reference passes to the new message
                restored += await self._insert_messages(
                    tx, target, [(blob, size, flags, keywords, (idate, itz), uidl)], new_blob=True
                )
            return restored

        return await self._write(run)

    async def purge_recoverable(self, cutoff: datetime) -> int:
        async def run(tx: Tx) -> int:
            rows = await tx.conn.fetch(
                "DELETE FROM recoverable WHERE deleted_at < $1 RETURNING blob", cutoff.timestamp()
            )
            await self._unref(tx.conn, [r[0] for r in rows if r[0] is not None])
            return len(rows)

        return await self._write(run)

    # maintenance ---------------------------------------------------------------------------
    async def check(self, repair: bool = False) -> list[str]:
        """Verify the store; returns the problems found (and, with *repair*, fixed)."""

        async def inspect(conn: Any) -> tuple[list[str], list[int]]:
            problems: list[str] = []
            for r in await conn.fetch(
                "SELECT b.name, b.uidnext, max(m.uid) FROM mailboxes b"
                " JOIN messages m ON m.mailbox_id = b.id"
                " GROUP BY b.id HAVING max(m.uid) >= b.uidnext"
            ):
                problems.append(f"mailbox {r[0]}: UIDNEXT {r[1]} is not above UID {r[2]}")
            for r in await conn.fetch(
                "SELECT b.name, b.highestmodseq, max(m.modseq) FROM mailboxes b"
                " JOIN messages m ON m.mailbox_id = b.id"
                " GROUP BY b.id HAVING max(m.modseq) > b.highestmodseq"
            ):
                problems.append(f"mailbox {r[0]}: HIGHESTMODSEQ {r[1]} is below MODSEQ {r[2]}")
            unused: list[int] = []
            for blob, refs, used in await conn.fetch(
                "SELECT b.id, b.refs,"
                " (SELECT count(*) FROM messages m WHERE m.blob = b.id)"
                " + (SELECT count(*) FROM recoverable r WHERE r.blob = b.id) FROM blobs b"
            ):
                if refs != used:
                    problems.append(f"blob {blob}: reference count {refs}, used {used} times")
                if used == 0:
                    unused.append(blob)
            problems.extend(await _quota.recount(conn, False))
            problems.extend(await _counts.recount(conn, False))
            for blob, size, stored, count, top in await conn.fetch(
                "SELECT b.id, b.size, coalesce(sum(length(c.data)), 0)::bigint, count(c.seq),"
                " coalesce(max(c.seq), -1) FROM blobs b LEFT JOIN blob_chunks c ON c.blob = b.id"
                " GROUP BY b.id HAVING coalesce(sum(length(c.data)), 0) <> b.size"
                " OR count(c.seq) <> coalesce(max(c.seq), -1) + 1"
            ):
                problems.append(
                    f"blob {blob}: {stored} bytes in {count} chunks (last {top}), expected {size}"
                )
            return problems, unused

        problems, unused = await self._read(inspect, snapshot=True)
        if repair and any(" quota usage " in problem for problem in problems):

            async def recount(tx: Tx) -> None:
                await _quota.recount(tx.conn, True)

            await self._write(recount)
        if repair and any(": counters (" in problem for problem in problems):

            async def recount_mailboxes(tx: Tx) -> None:
                await _counts.recount(tx.conn, True)

            await self._write(recount_mailboxes)
        if repair and unused:

            async def fix(tx: Tx) -> None:
                await tx.conn.execute(
                    "DELETE FROM blobs b WHERE b.id = ANY($1::bigint[])"
                    " AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob = b.id)"
                    " AND NOT EXISTS (SELECT 1 FROM recoverable r WHERE r.blob = b.id)",
                    unused,
                )

            await self._write(fix)
        if self.spool_dir is not None:
            stale = await asyncio.to_thread(_stale_spools, self.spool_dir)
            problems += [
                f"spool file {p.name} belongs to no delivery (left by a crash)" for p in stale
            ]
            if repair:
                await asyncio.to_thread(_remove, stale)
        return problems

    # failed-login blocks ------------------------------------------------------------------
    async def save_auth_block(self, block: AuthBlock) -> None:
        async def run(tx: Tx) -> None:
            await tx.conn.execute(
                "DELETE FROM auth_blocks WHERE until < $1", block.until - 7 * 86400
            )
            await tx.conn.execute(
                "INSERT INTO auth_blocks (kind, key, failures, until) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (kind, key) DO UPDATE SET failures = excluded.failures,"
                " until = greatest(auth_blocks.until, excluded.until)",
                block.kind,
                block.key,
                block.failures,
                block.until,
            )

        await self._write(run)

    async def get_auth_block(self, kind: str, key: str) -> AuthBlock | None:
        async def run(conn: Any) -> AuthBlock | None:
            row = await conn.fetchrow(
                "SELECT failures, until FROM auth_blocks WHERE kind = $1 AND key = $2", kind, key
            )
            return None if row is None else AuthBlock(kind, key, int(row[0]), float(row[1]))

        return await self._read(run)

    async def list_auth_blocks(self, now: float) -> list[AuthBlock]:
        async def run(conn: Any) -> list[AuthBlock]:
            rows = await conn.fetch(
                "SELECT kind, key, failures, until FROM auth_blocks WHERE until > $1"
                " ORDER BY kind, key",
                now,
            )
            return [AuthBlock(r[0], r[1], int(r[2]), float(r[3])) for r in rows]

        return await self._read(run)

    async def delete_auth_blocks(self, keys: Iterable[tuple[str, str]]) -> list[AuthBlock]:
        pairs = list(keys)

        async def run(tx: Tx) -> list[AuthBlock]:
            lifted = []
            for kind, key in pairs:
                row = await tx.conn.fetchrow(
                    "DELETE FROM auth_blocks WHERE kind = $1 AND key = $2"
                    " RETURNING failures, until",
                    kind,
                    key,
                )
                if row is not None:
                    lifted.append(AuthBlock(kind, key, int(row[0]), float(row[1])))
            return lifted

        return await self._write(run)

    # coordination ------------------------------------------------------------------------
    async def try_lock(self, account_id: AccountId, name: str) -> Lock | None:
        """An exclusive lock across nodes; released when its holder's connection closes."""
        if not name.isalnum():
            raise InvalidInput("bad lock name")
        key = f"pobox.lock.{int(account_id)}.{name}"
        try:
            conn = await asyncpg.connect(
                self.dsn,
                timeout=10,
                server_settings={
                    "application_name": "pobox lock",
                    "tcp_keepalives_idle": "30",
                    "tcp_keepalives_interval": "10",
                    "tcp_keepalives_count": "3",
                },
            )
        except Exception as exc:
            raise as_store_error(exc) from exc
        try:
            got = await conn.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", key)
        except BaseException as exc:
            conn.terminate()
            raise as_store_error(exc) from exc
        if not got:
            await conn.close()
            return None
        self._locks.add(conn)
        return _AdvisoryLock(self, conn, key)

    # search support ------------------------------------------------------------------------
    async def search_fields(
        self, mailbox_id: MailboxId, uids: Sequence[Uid] | None = None
    ) -> dict[Uid, SearchFields]:
        select = (
            "SELECT m.uid, b.subject, b.from_, b.to_, b.cc, b.bcc, b.message_id, b.sent_date"
            " FROM messages m JOIN blobs b ON b.id = m.blob WHERE m.mailbox_id = $1"
        )
        wanted = None if uids is None else sorted(set(uids))

        async def run(conn: Any) -> dict[Uid, SearchFields]:
            if wanted is None:
                rows = await conn.fetch(select, mailbox_id)
            elif not wanted:
                return {}
            else:
                rows = await conn.fetch(
                    f"{select} AND m.uid = ANY($2::bigint[])", mailbox_id, wanted
                )
            return {Uid(r[0]): rows_search_fields(r) for r in rows}

        return await self._read(run)

    # backup and restore (pobox.store.postgres.restore) ----------------------------------------
    def snapshot(
        self, addresses: Sequence[str] | None = None
    ) -> contextlib.AbstractAsyncContextManager[StoreSnapshot]:
        from pobox.store.postgres import restore

        return restore.snapshot(self, addresses)

    async def restore_account(self, image: AccountImage, *, replace: bool = False) -> Account:
        from pobox.store.postgres import restore

        return await restore.restore_account(self, image, replace)

    def spool_content(self, data: bytes) -> Spool:
        from pobox.store.postgres import restore

        return restore.spool_content(self.spool_dir, data)

    async def seal_spools(self, spools: Sequence[Spool]) -> None:
        from pobox.store.postgres import restore

        await restore.seal_spools(spools)

    async def restore_mailbox(self, account_id: AccountId, image: MailboxImage) -> Mailbox:
        from pobox.store.postgres import restore

        return await restore.restore_mailbox(self, account_id, image)

    async def restore_messages(
        self,
        mailbox_id: MailboxId,
        messages: Sequence[MessageImage],
        contents: Mapping[str, RestoreContent | BlobId],
    ) -> dict[str, BlobId]:
        from pobox.store.postgres import restore

        return await restore.restore_messages(self, mailbox_id, messages, contents)

    async def restore_recoverable(
        self,
        account_id: AccountId,
        items: Sequence[RecoverableImage],
        contents: Mapping[str, RestoreContent | BlobId],
    ) -> dict[str, BlobId]:
        from pobox.store.postgres import restore

        return await restore.restore_recoverable(self, account_id, items, contents)


async def _no_reset(_conn: Any) -> None:
    """Pooled connections keep no session state (no SET, LISTEN or session-level locks: those
    live on their own connections), so the reset round trip on every release is skipped."""


def _read_chunk(path: Path, seq: int) -> bytes:
    with open(path, "rb") as fp:
        fp.seek(seq * CHUNK_SIZE)
        return fp.read(CHUNK_SIZE)


def _stale_spools(directory: Path, age: float = 86400.0) -> list[Path]:
    cutoff = time.time() - age
    found: list[Path] = []
    with contextlib.suppress(FileNotFoundError):
        for path in directory.glob("spool-*"):
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    found.append(path)
    return found


def _remove(paths: Iterable[Path]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
