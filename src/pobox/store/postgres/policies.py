"""Folder policies of the PostgreSQL backend (docs/policies.md): the stored settings and the
selection of due messages, through the date indexes of migration 9."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from pobox.errors import InvalidInput, NotFound
from pobox.store.api import AccountId, FolderPolicy, MailboxId, Uid
from pobox.store.rows import from_epoch, to_epoch

if TYPE_CHECKING:
    from pobox.store.postgres.store import Tx

T = TypeVar("T")

#: The date columns due messages are selected by.
DUE_COLUMNS = ("save_date", "internal_date")


class PostgresPolicies:
    """The folder-policy methods of :class:`~pobox.store.postgres.store.PostgresStore` (a
    mixin)."""

    if TYPE_CHECKING:

        async def _write(self, fn: Callable[[Tx], Awaitable[T]], *, single: bool = False) -> T: ...
        async def _read(
            self, fn: Callable[[Any], Awaitable[T]], *, snapshot: bool = False
        ) -> T: ...

    async def set_folder_policy(
        self, account_id: AccountId, folder: str, key: str, value: str | None
    ) -> None:
        async def run(tx: Tx) -> None:
            if await tx.conn.fetchval("SELECT 1 FROM accounts WHERE id = $1", account_id) is None:
                raise NotFound("account does not exist")
            if value is None:
                await tx.conn.execute(
                    "DELETE FROM folder_policies"
                    " WHERE account_id = $1 AND folder = $2 AND key = $3",
                    account_id,
                    folder,
                    key,
                )
            else:
                await tx.conn.execute(
                    "INSERT INTO folder_policies (account_id, folder, key, value)"
                    " VALUES ($1, $2, $3, $4) ON CONFLICT (account_id, folder, key)"
                    " DO UPDATE SET value = excluded.value",
                    account_id,
                    folder,
                    key,
                    value,
                )

        await self._write(run)

    async def list_folder_policies(self, account_id: AccountId | None = None) -> list[FolderPolicy]:
        async def run(conn: Any) -> list[FolderPolicy]:
            sql = "SELECT account_id, folder, key, value FROM folder_policies"
            if account_id is None:
                rows = await conn.fetch(
                    sql + ' ORDER BY account_id, folder COLLATE "C", key COLLATE "C"'
                )
            else:
                rows = await conn.fetch(
                    sql + ' WHERE account_id = $1 ORDER BY folder COLLATE "C", key COLLATE "C"',
                    account_id,
                )
            return [FolderPolicy(AccountId(r[0]), r[1], r[2], r[3]) for r in rows]

        return await self._read(run)

    async def due_messages(
        self, mailbox_id: MailboxId, by: str, before: datetime, limit: int
    ) -> list[tuple[Uid, datetime]]:
        if by not in DUE_COLUMNS:
            raise InvalidInput(f"no date column {by!r}")
        cutoff = to_epoch(before)[0]

        async def run(conn: Any) -> list[tuple[Uid, datetime]]:
            rows = await conn.fetch(
                f"SELECT uid, internal_date FROM messages WHERE mailbox_id = $1 AND {by} < $2"
                f" ORDER BY {by}, uid LIMIT $3",
                mailbox_id,
                cutoff,
                limit,
            )
            return [(Uid(r[0]), from_epoch(r[1])) for r in rows]

        return await self._read(run)
