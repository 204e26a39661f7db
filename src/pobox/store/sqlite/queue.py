"""The outbound queue and DKIM keys of the embedded store (docs/decisions/outbound-queue.md).

A queued message is one ``outbound`` row with its content and one ``outbound_rcpt`` row per
recipient, written in one transaction of the group commit: when ``queue_add`` returns, all of it
is on disk. Claims go through the single writer (and SQLite's write lock across processes), so
two claims never return the same message while its lease runs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from pobox.errors import AlreadyExists, NotFound
from pobox.store.api import (
    QUEUE_PENDING,
    DkimKey,
    QueuedMessage,
    QueueRecipient,
    RecipientResult,
)
from pobox.store.sqlite.db import Database

_COLUMNS = "id, sender, created, size, warned, next_attempt"


def _recipients(conn: sqlite3.Connection, queue_id: str) -> tuple[QueueRecipient, ...]:
    rows = conn.execute(
        "SELECT address, state, attempts, next_attempt, last_error FROM outbound_rcpt"
        " WHERE queue_id = ? ORDER BY position",
        (queue_id,),
    )
    return tuple(QueueRecipient(r[0], r[1], int(r[2]), float(r[3]), r[4]) for r in rows)


def _message(conn: sqlite3.Connection, row: Sequence[Any]) -> QueuedMessage:
    return QueuedMessage(
        id=row[0],
        sender=row[1],
        created=float(row[2]),
        size=int(row[3]),
        recipients=_recipients(conn, row[0]),
        warned=bool(row[4]),
        next_attempt=float(row[5]),
    )


def _get(conn: sqlite3.Connection, queue_id: str) -> QueuedMessage | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM outbound WHERE id = ?", (queue_id,)).fetchone()
    return None if row is None else _message(conn, row)


class SqliteQueue:
    """The queue methods of :class:`~pobox.store.sqlite.store.SqliteStore` (a mixin)."""

    _db: Database

    async def queue_add(
        self, queue_id: str, sender: str, recipients: Sequence[str], content: bytes, now: float
    ) -> QueuedMessage:
        addresses = list(recipients)
        if not addresses:
            raise ValueError("a queued message needs a recipient")

        def run(conn: sqlite3.Connection) -> QueuedMessage:
            try:
                conn.execute(
                    "INSERT INTO outbound (id, sender, created, size, next_attempt, content)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (queue_id, sender, now, len(content), now, content),
                )
            except sqlite3.IntegrityError as exc:
                raise AlreadyExists(f"queue id {queue_id} is taken") from exc
            conn.executemany(
                "INSERT INTO outbound_rcpt (queue_id, position, address, state, next_attempt)"
                " VALUES (?, ?, ?, ?, ?)",
                [(queue_id, n, a, QUEUE_PENDING, now) for n, a in enumerate(addresses)],
            )
            return QueuedMessage(
                queue_id,
                sender,
                now,
                len(content),
                tuple(QueueRecipient(a, QUEUE_PENDING, 0, now) for a in addresses),
                False,
                now,
            )

        return await self._db.write(run)

    async def queue_claim(
        self, owner: str, now: float, lease: float, limit: int
    ) -> list[QueuedMessage]:
        def due(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT 1 FROM outbound WHERE next_attempt <= ? AND lease_until <= ? LIMIT 1",
                (now, now),
            ).fetchone()
            return row is not None

        # an idle queue is polled often: look first, without taking the write lock
        if not await self._db.read(due):
            return []

        def run(conn: sqlite3.Connection) -> list[QueuedMessage]:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM outbound WHERE next_attempt <= ? AND lease_until <= ?"
                " ORDER BY next_attempt, created LIMIT ?",
                (now, now, limit),
            ).fetchall()
            claimed = []
            for row in rows:
                conn.execute(
                    "UPDATE outbound SET lease_owner = ?, lease_until = ? WHERE id = ?",
                    (owner, now + lease, row[0]),
                )
                claimed.append(_message(conn, row))
            return claimed

        return await self._db.write(run)

    async def queue_content(self, queue_id: str) -> bytes:
        def run(conn: sqlite3.Connection) -> bytes:
            row = conn.execute("SELECT content FROM outbound WHERE id = ?", (queue_id,)).fetchone()
            if row is None:
                raise NotFound(f"no queued message {queue_id}")
            return bytes(row[0])

        return await self._db.read(run)

    async def queue_record(
        self,
        queue_id: str,
        results: Sequence[RecipientResult],
        now: float,
        *,
        warned: bool = False,
    ) -> QueuedMessage | None:
        items = list(results)

        def run(conn: sqlite3.Connection) -> QueuedMessage | None:
            if conn.execute("SELECT 1 FROM outbound WHERE id = ?", (queue_id,)).fetchone() is None:
                return None
            for result in items:
                conn.execute(
                    "UPDATE outbound_rcpt SET state = ?, attempts = attempts + 1,"
                    " next_attempt = ?, last_error = ?"
                    " WHERE queue_id = ? AND address = ? AND state = ?",
                    (
                        result.state,
                        result.next_attempt if result.state == QUEUE_PENDING else now,
                        result.error,
                        queue_id,
                        result.address,
                        QUEUE_PENDING,
                    ),
                )
            due = conn.execute(
                "SELECT min(next_attempt) FROM outbound_rcpt WHERE queue_id = ? AND state = ?",
                (queue_id, QUEUE_PENDING),
            ).fetchone()[0]
            if due is None:
                conn.execute("DELETE FROM outbound WHERE id = ?", (queue_id,))
                return None
            conn.execute(
                "UPDATE outbound SET next_attempt = ?, lease_owner = '', lease_until = 0,"
                " warned = warned OR ? WHERE id = ?",
                (due, int(warned), queue_id),
            )
            return _get(conn, queue_id)

        return await self._db.write(run)

    async def queue_get(self, queue_id: str) -> QueuedMessage | None:
        return await self._db.read(lambda conn: _get(conn, queue_id))

    async def queue_list(self) -> list[QueuedMessage]:
        def run(conn: sqlite3.Connection) -> list[QueuedMessage]:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM outbound ORDER BY created, id").fetchall()
            return [_message(conn, row) for row in rows]

        return await self._db.read(run)

    async def queue_delete(self, queue_id: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("DELETE FROM outbound WHERE id = ?", (queue_id,))
            return cur.rowcount > 0

        return await self._db.write(run)

    async def queue_retry(self, queue_id: str | None, now: float) -> int:
        def run(conn: sqlite3.Connection) -> int:
            where, args = ("", ()) if queue_id is None else (" AND queue_id = ?", (queue_id,))
            conn.execute(
                f"UPDATE outbound_rcpt SET next_attempt = ? WHERE state = ?{where}",
                (now, QUEUE_PENDING, *args),
            )
            where = "" if queue_id is None else " WHERE id = ?"
            cur = conn.execute(
                f"UPDATE outbound SET next_attempt = ?, lease_until = 0{where}", (now, *args)
            )
            return cur.rowcount

        return await self._db.write(run)

    async def queue_length(self) -> int:
        def run(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT count(*) FROM outbound").fetchone()[0])

        return await self._db.read(run)

    async def queue_release(self, owner: str) -> int:
        def run(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "UPDATE outbound SET lease_owner = '', lease_until = 0 WHERE lease_owner = ?",
                (owner,),
            )
            return cur.rowcount

        return await self._db.write(run)

    async def queue_renew(self, owner: str, queue_ids: Sequence[str], until: float) -> int:
        ids = list(queue_ids)

        def run(conn: sqlite3.Connection) -> int:
            renewed = 0
            for queue_id in ids:
                cur = conn.execute(
                    "UPDATE outbound SET lease_until = ? WHERE id = ? AND lease_owner = ?",
                    (until, queue_id, owner),
                )
                renewed += cur.rowcount
            return renewed

        return await self._db.write(run)

    # DKIM keys -----------------------------------------------------------------------------
    async def save_dkim_key(self, key: DkimKey) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO dkim_keys (domain, selector, private_key, created)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (domain) DO UPDATE SET"
                " selector = excluded.selector, private_key = excluded.private_key,"
                " created = excluded.created",
                (key.domain.lower(), key.selector, key.private_key, key.created),
            )

        await self._db.write(run)

    async def get_dkim_key(self, domain: str) -> DkimKey | None:
        def run(conn: sqlite3.Connection) -> DkimKey | None:
            row = conn.execute(
                "SELECT domain, selector, private_key, created FROM dkim_keys WHERE domain = ?",
                (domain.lower(),),
            ).fetchone()
            return None if row is None else DkimKey(row[0], row[1], bytes(row[2]), float(row[3]))

        return await self._db.read(run)
