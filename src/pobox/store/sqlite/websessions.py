"""Webmail sessions of the embedded store (docs/decisions/webmail-sessions.md)."""

from __future__ import annotations

import sqlite3

from pobox.errors import AlreadyExists
from pobox.store.api import AccountId, WebSession
from pobox.store.sqlite.db import Database


class SqliteWebSessions:
    """The web session methods of :class:`~pobox.store.sqlite.store.SqliteStore` (a mixin)."""

    _db: Database

    async def web_session_add(self, session: WebSession) -> None:
        def run(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO web_sessions (id_hash, account_id, login_id, created, last_seen)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (
                        session.id_hash,
                        session.account_id,
                        session.login_id,
                        session.created,
                        session.last_seen,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise AlreadyExists(
                    "web session exists, or its account or app password is gone"
                ) from exc

        await self._db.write(run)

    async def web_session_get(self, id_hash: str) -> WebSession | None:
        def run(conn: sqlite3.Connection) -> WebSession | None:
            row = conn.execute(
                "SELECT account_id, created, last_seen, login_id FROM web_sessions"
                " WHERE id_hash = ?",
                (id_hash,),
            ).fetchone()
            if row is None:
                return None
            login = None if row[3] is None else int(row[3])
            return WebSession(id_hash, AccountId(int(row[0])), float(row[1]), float(row[2]), login)

        return await self._db.read(run, inline=True)

    async def web_session_touch(self, id_hash: str, now: float) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE web_sessions SET last_seen = max(last_seen, ?) WHERE id_hash = ?",
                (now, id_hash),
            )

        await self._db.write(run)

    async def web_session_delete(self, id_hash: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("DELETE FROM web_sessions WHERE id_hash = ?", (id_hash,))
            return cur.rowcount > 0

        return await self._db.write(run)

    async def web_session_delete_account(self, account_id: AccountId) -> int:
        def run(conn: sqlite3.Connection) -> int:
            cur = conn.execute("DELETE FROM web_sessions WHERE account_id = ?", (account_id,))
            return cur.rowcount

        return await self._db.write(run)

    async def web_session_purge(self, idle_before: float, created_before: float) -> int:
        def run(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "DELETE FROM web_sessions WHERE last_seen < ? OR created < ?",
                (idle_before, created_before),
            )
            return cur.rowcount

        return await self._db.write(run)
