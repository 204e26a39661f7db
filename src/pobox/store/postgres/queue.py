"""The outbound queue and DKIM keys of the PostgreSQL backend (docs/decisions/outbound-queue.md).

Several nodes may run a queue runner against one database. A claim takes due messages with
``FOR UPDATE SKIP LOCKED`` and writes a lease (owner and end time) in the same statement, so
concurrent claims on different nodes never return the same message while its lease runs; a node
that dies leaves a lease that simply runs out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pobox.errors import AlreadyExists, NotFound
from pobox.store.api import (
    QUEUE_PENDING,
    DkimKey,
    QueuedMessage,
    QueueRecipient,
    RecipientResult,
)

if TYPE_CHECKING:
    from pobox.store.postgres.store import Tx

T = TypeVar("T")

_COLUMNS = "id, sender, created, size, warned, next_attempt"


async def _messages(conn: Any, rows: Sequence[Any]) -> list[QueuedMessage]:
    if not rows:
        return []
    ids = [r[0] for r in rows]
    recipients: dict[str, list[QueueRecipient]] = {i: [] for i in ids}
    for r in await conn.fetch(
        "SELECT queue_id, address, state, attempts, next_attempt, last_error FROM outbound_rcpt"
        " WHERE queue_id = ANY($1::text[]) ORDER BY queue_id, position",
        ids,
    ):
        recipients[r[0]].append(QueueRecipient(r[1], r[2], int(r[3]), float(r[4]), r[5]))
    return [
        QueuedMessage(
            id=r[0],
            sender=r[1],
            created=float(r[2]),
            size=int(r[3]),
            recipients=tuple(recipients[r[0]]),
            warned=bool(r[4]),
            next_attempt=float(r[5]),
        )
        for r in rows
    ]


async def _get(conn: Any, queue_id: str) -> QueuedMessage | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM outbound WHERE id = $1", queue_id)
    if row is None:
        return None
    return (await _messages(conn, [row]))[0]


class PostgresQueue:
    """The queue methods of :class:`~pobox.store.postgres.store.PostgresStore` (a mixin)."""

    if TYPE_CHECKING:

        async def _write(self, fn: Callable[[Tx], Awaitable[T]], *, single: bool = False) -> T: ...
        async def _read(
            self, fn: Callable[[Any], Awaitable[T]], *, snapshot: bool = False
        ) -> T: ...

    async def queue_add(
        self, queue_id: str, sender: str, recipients: Sequence[str], content: bytes, now: float
    ) -> QueuedMessage:
        addresses = list(recipients)
        if not addresses:
            raise ValueError("a queued message needs a recipient")

        async def run(tx: Tx) -> QueuedMessage:
            inserted = await tx.conn.fetchval(
                "INSERT INTO outbound (id, sender, created, size, next_attempt, content)"
                " VALUES ($1, $2, $3, $4, $3, $5) ON CONFLICT (id) DO NOTHING RETURNING 1",
                queue_id,
                sender,
                now,
                len(content),
                content,
            )
            if inserted is None:
                raise AlreadyExists(f"queue id {queue_id} is taken")
            await tx.conn.executemany(
                "INSERT INTO outbound_rcpt (queue_id, position, address, state, next_attempt)"
                " VALUES ($1, $2, $3, $4, $5)",
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

        return await self._write(run)

    async def queue_claim(
        self, owner: str, now: float, lease: float, limit: int
    ) -> list[QueuedMessage]:
        async def run(tx: Tx) -> list[QueuedMessage]:
            rows = await tx.conn.fetch(
                "WITH due AS (SELECT id FROM outbound"
                " WHERE next_attempt <= $1 AND lease_until <= $1"
                " ORDER BY next_attempt, created LIMIT $2 FOR UPDATE SKIP LOCKED)"
                " UPDATE outbound o SET lease_owner = $3, lease_until = $4 FROM due"
                " WHERE o.id = due.id RETURNING o.id, o.sender, o.created, o.size, o.warned,"
                " o.next_attempt",
                now,
                limit,
                owner,
                now + lease,
            )
            rows = sorted(rows, key=lambda r: (r[5], r[2]))
            return await _messages(tx.conn, rows)

        return await self._write(run)

    async def queue_content(self, queue_id: str) -> bytes:
        async def run(conn: Any) -> bytes:
            content = await conn.fetchval("SELECT content FROM outbound WHERE id = $1", queue_id)
            if content is None:
                raise NotFound(f"no queued message {queue_id}")
            return bytes(content)

        return await self._read(run)

    async def queue_record(
        self,
        queue_id: str,
        results: Sequence[RecipientResult],
        now: float,
        *,
        warned: bool = False,
    ) -> QueuedMessage | None:
        items = list(results)

        async def run(tx: Tx) -> QueuedMessage | None:
            conn = tx.conn
            found = await conn.fetchval("SELECT 1 FROM outbound WHERE id = $1 FOR UPDATE", queue_id)
            if found is None:
                return None
            for result in items:
                await conn.execute(
                    "UPDATE outbound_rcpt SET state = $1, attempts = attempts + 1,"
                    " next_attempt = $2, last_error = $3"
                    " WHERE queue_id = $4 AND address = $5 AND state = $6",
                    result.state,
                    result.next_attempt if result.state == QUEUE_PENDING else now,
                    result.error,
                    queue_id,
                    result.address,
                    QUEUE_PENDING,
                )
            due = await conn.fetchval(
                "SELECT min(next_attempt) FROM outbound_rcpt WHERE queue_id = $1 AND state = $2",
                queue_id,
                QUEUE_PENDING,
            )
            if due is None:
                await conn.execute("DELETE FROM outbound WHERE id = $1", queue_id)
                return None
            await conn.execute(
                "UPDATE outbound SET next_attempt = $1, lease_owner = '', lease_until = 0,"
                " warned = warned OR $2 WHERE id = $3",
                due,
                warned,
                queue_id,
            )
            return await _get(conn, queue_id)

        return await self._write(run)

    async def queue_get(self, queue_id: str) -> QueuedMessage | None:
        async def run(conn: Any) -> QueuedMessage | None:
            return await _get(conn, queue_id)

        return await self._read(run, snapshot=True)

    async def queue_list(self) -> list[QueuedMessage]:
        async def run(conn: Any) -> list[QueuedMessage]:
            rows = await conn.fetch(f"SELECT {_COLUMNS} FROM outbound ORDER BY created, id")
            return await _messages(conn, rows)

        return await self._read(run, snapshot=True)

    async def queue_delete(self, queue_id: str) -> bool:
        async def run(tx: Tx) -> bool:
            found = await tx.conn.fetchval(
                "DELETE FROM outbound WHERE id = $1 RETURNING 1", queue_id
            )
            return found is not None

        return await self._write(run)

    async def queue_retry(self, queue_id: str | None, now: float) -> int:
        async def run(tx: Tx) -> int:
            if queue_id is None:
                await tx.conn.execute(
                    "UPDATE outbound_rcpt SET next_attempt = $1 WHERE state = $2",
                    now,
                    QUEUE_PENDING,
                )
                status = await tx.conn.execute(
                    "UPDATE outbound SET next_attempt = $1, lease_until = 0", now
                )
            else:
                await tx.conn.execute(
                    "UPDATE outbound_rcpt SET next_attempt = $1 WHERE state = $2 AND queue_id = $3",
                    now,
                    QUEUE_PENDING,
                    queue_id,
                )
                status = await tx.conn.execute(
                    "UPDATE outbound SET next_attempt = $1, lease_until = 0 WHERE id = $2",
                    now,
                    queue_id,
                )
            return int(str(status).split()[-1])

        return await self._write(run)

    async def queue_length(self) -> int:
        async def run(conn: Any) -> int:
            return int(await conn.fetchval("SELECT count(*) FROM outbound"))

        return await self._read(run)

    async def queue_release(self, owner: str) -> int:
        async def run(tx: Tx) -> int:
            status = await tx.conn.execute(
                "UPDATE outbound SET lease_owner = '', lease_until = 0 WHERE lease_owner = $1",
                owner,
            )
            return int(str(status).split()[-1])

        return await self._write(run)

    async def queue_renew(self, owner: str, queue_ids: Sequence[str], until: float) -> int:
        ids = list(queue_ids)

        async def run(tx: Tx) -> int:
            status = await tx.conn.execute(
                "UPDATE outbound SET lease_until = $1 WHERE id = ANY($2::text[])"
                " AND lease_owner = $3",
                until,
                ids,
                owner,
            )
            return int(str(status).split()[-1])

        return await self._write(run)

    # DKIM keys -----------------------------------------------------------------------------
    async def save_dkim_key(self, key: DkimKey) -> None:
        async def run(tx: Tx) -> None:
            await tx.conn.execute(
                "INSERT INTO dkim_keys (domain, selector, private_key, created)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (domain) DO UPDATE SET"
                " selector = excluded.selector, private_key = excluded.private_key,"
                " created = excluded.created",
                key.domain.lower(),
                key.selector,
                key.private_key,
                key.created,
            )

        await self._write(run)

    async def get_dkim_key(self, domain: str) -> DkimKey | None:
        async def run(conn: Any) -> DkimKey | None:
            row = await conn.fetchrow(
                "SELECT domain, selector, private_key, created FROM dkim_keys WHERE domain = $1",
                domain.lower(),
            )
            return None if row is None else DkimKey(row[0], row[1], bytes(row[2]), float(row[3]))

        return await self._read(run)
