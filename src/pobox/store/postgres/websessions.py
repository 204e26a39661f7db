"""Webmail sessions of the PostgreSQL backend (docs/decisions/webmail-sessions.md): every node
sees every session, so a browser may be served by any of them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pobox.errors import AlreadyExists
from pobox.store.api import AccountId, WebSession

if TYPE_CHECKING:
    from pobox.store.postgres.store import Tx

T = TypeVar("T")


class PostgresWebSessions:
    """The web session methods of :class:`~pobox.store.postgres.store.PostgresStore` (a mixin)."""

    if TYPE_CHECKING:

        async def _write(self, fn: Callable[[Tx], Awaitable[T]], *, single: bool = False) -> T: ...
        async def _read(
            self, fn: Callable[[Any], Awaitable[T]], *, snapshot: bool = False
        ) -> T: ...

    async def web_session_add(self, session: WebSession) -> None:
        async def run(tx: Tx) -> None:
            inserted = await tx.conn.fetchval(
                "INSERT INTO web_sessions (id_hash, account_id, login_id, created, last_seen)"
                " SELECT $1, a.id, $5, $3, $4 FROM accounts a WHERE a.id = $2"
                " AND ($5::bigint IS NULL OR EXISTS"
                " (SELECT 1 FROM logins l WHERE l.id = $5 AND l.account_id = a.id))"
                " ON CONFLICT (id_hash) DO NOTHING RETURNING 1",
                session.id_hash,
                session.account_id,
                session.created,
                session.last_seen,
                session.login_id,
            )
            if inserted is None:
                raise AlreadyExists("web session exists, or its account or app password is gone")

        await self._write(run)

    async def web_session_get(self, id_hash: str) -> WebSession | None:
        async def run(conn: Any) -> WebSession | None:
            row = await conn.fetchrow(
                "SELECT account_id, created, last_seen, login_id FROM web_sessions"
                " WHERE id_hash = $1",
                id_hash,
            )
            if row is None:
                return None
            login = None if row[3] is None else int(row[3])
            return WebSession(id_hash, AccountId(int(row[0])), float(row[1]), float(row[2]), login)

        return await self._read(run)

    async def web_session_touch(self, id_hash: str, now: float) -> None:
        async def run(tx: Tx) -> None:
            await tx.conn.execute(
                "UPDATE web_sessions SET last_seen = greatest(last_seen, $1) WHERE id_hash = $2",
                now,
                id_hash,
            )

        await self._write(run, single=True)

    async def web_session_delete(self, id_hash: str) -> bool:
        async def run(tx: Tx) -> bool:
            status = await tx.conn.execute("DELETE FROM web_sessions WHERE id_hash = $1", id_hash)
            return bool(str(status).split()[-1] != "0")

        return await self._write(run, single=True)

    async def web_session_delete_account(self, account_id: AccountId) -> int:
        async def run(tx: Tx) -> int:
            status = await tx.conn.execute(
                "DELETE FROM web_sessions WHERE account_id = $1", account_id
            )
            return int(str(status).split()[-1])

        return await self._write(run, single=True)

    async def web_session_purge(self, idle_before: float, created_before: float) -> int:
        async def run(tx: Tx) -> int:
            status = await tx.conn.execute(
                "DELETE FROM web_sessions WHERE last_seen < $1 OR created < $2",
                idle_before,
                created_before,
            )
            return int(str(status).split()[-1])

        return await self._write(run, single=True)
