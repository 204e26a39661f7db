"""Folder policies of the embedded store (docs/policies.md): the stored settings and the
selection of due messages, through the date indexes of migration 9."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from pobox.errors import InvalidInput, NotFound
from pobox.store.api import AccountId, FolderPolicy, MailboxId, Uid
from pobox.store.rows import from_epoch, to_epoch
from pobox.store.sqlite.db import Database

#: The date columns due messages are selected by.
DUE_COLUMNS = ("save_date", "internal_date")


class SqlitePolicies:
    """The folder-policy methods of :class:`~pobox.store.sqlite.store.SqliteStore` (a mixin)."""

    _db: Database

    async def set_folder_policy(
        self, account_id: AccountId, folder: str, key: str, value: str | None
    ) -> None:
        def run(conn: sqlite3.Connection) -> None:
            if (
                conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone()
                is None
            ):
                raise NotFound("account does not exist")
            if value is None:
                conn.execute(
                    "DELETE FROM folder_policies WHERE account_id = ? AND folder = ? AND key = ?",
                    (account_id, folder, key),
                )
            else:
                conn.execute(
                    "INSERT INTO folder_policies (account_id, folder, key, value)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (account_id, folder, key)"
                    " DO UPDATE SET value = excluded.value",
                    (account_id, folder, key, value),
                )

        await self._db.write(run)

    async def list_folder_policies(self, account_id: AccountId | None = None) -> list[FolderPolicy]:
        def run(conn: sqlite3.Connection) -> list[FolderPolicy]:
            sql = "SELECT account_id, folder, key, value FROM folder_policies"
            params: tuple[int, ...] = ()
            if account_id is not None:
                sql += " WHERE account_id = ?"
                params = (account_id,)
            rows = conn.execute(sql + " ORDER BY account_id, folder, key", params)
            return [FolderPolicy(AccountId(r[0]), r[1], r[2], r[3]) for r in rows]

        return await self._db.read(run)

    async def due_messages(
        self, mailbox_id: MailboxId, by: str, before: datetime, limit: int
    ) -> list[tuple[Uid, datetime]]:
        if by not in DUE_COLUMNS:
            raise InvalidInput(f"no date column {by!r}")
        cutoff = to_epoch(before)[0]

        def run(conn: sqlite3.Connection) -> list[tuple[Uid, datetime]]:
            rows = conn.execute(
                f"SELECT uid, internal_date FROM messages WHERE mailbox_id = ? AND {by} < ?"
                f" ORDER BY {by}, uid LIMIT ?",
                (mailbox_id, cutoff, limit),
            )
            return [(Uid(r[0]), from_epoch(r[1])) for r in rows]

        return await self._db.read(run)
