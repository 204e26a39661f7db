"""Access control lists of the PostgreSQL backend (RFC 4314; docs/decisions/shared-folders.md).

One ``mailbox_acl`` row per (mailbox, identifier); deleting a mailbox deletes its rows (the
foreign key cascades), renaming keeps them. What the rights mean is :mod:`pobox.service.acl`'s
business.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pobox.store.api import MailboxId, SharedMailbox
from pobox.store.rows import SHARED_COLUMNS, shared_mailboxes

if TYPE_CHECKING:
    from pobox.store.postgres.store import Tx

T = TypeVar("T")


class PostgresAcl:
    """The ACL methods of :class:`~pobox.store.postgres.store.PostgresStore` (a mixin)."""

    if TYPE_CHECKING:

        async def _write(self, fn: Callable[[Tx], Awaitable[T]], *, single: bool = False) -> T: ...
        async def _read(
            self, fn: Callable[[Any], Awaitable[T]], *, snapshot: bool = False
        ) -> T: ...

    async def get_acl(self, mailbox_id: MailboxId) -> list[tuple[str, str]]:
        async def run(conn: Any) -> list[tuple[str, str]]:
            rows = await conn.fetch(
                "SELECT identifier, rights FROM mailbox_acl WHERE mailbox_id = $1"
                " ORDER BY identifier",
                mailbox_id,
            )
            return [(r[0], r[1]) for r in rows]

        return await self._read(run)

    async def set_acl(self, mailbox_id: MailboxId, identifier: str, rights: str | None) -> None:
        async def run(tx: Tx) -> None:
            if rights is None:
                await tx.conn.execute(
                    "DELETE FROM mailbox_acl WHERE mailbox_id = $1 AND identifier = $2",
                    mailbox_id,
                    identifier,
                )
            else:
                await tx.conn.execute(
                    "INSERT INTO mailbox_acl (mailbox_id, identifier, rights) VALUES ($1, $2, $3)"
                    " ON CONFLICT (mailbox_id, identifier) DO UPDATE SET rights = EXCLUDED.rights",
                    mailbox_id,
                    identifier,
                    rights,
                )

        await self._write(run, single=True)

    async def shared_mailboxes(self, identifiers: Sequence[str]) -> list[SharedMailbox]:
        wanted = list(identifiers)
        if not wanted:
            return []

        async def run(conn: Any) -> list[SharedMailbox]:
            rows = await conn.fetch(
                f"SELECT {SHARED_COLUMNS}"
                " FROM mailbox_acl acl JOIN mailboxes m ON m.id = acl.mailbox_id"
                " JOIN accounts a ON a.id = m.account_id"
                " WHERE acl.mailbox_id IN"
                " (SELECT mailbox_id FROM mailbox_acl WHERE identifier = ANY($1::text[]))"
                " ORDER BY m.id, acl.identifier",
                wanted,
            )
            return shared_mailboxes(rows)

        return await self._read(run)

    async def drop_acl_identifiers(self, identifiers: Sequence[str]) -> None:
        doomed = list(identifiers)

        async def run(tx: Tx) -> None:
            await tx.conn.execute(
                "DELETE FROM mailbox_acl WHERE identifier = ANY($1::text[])", doomed
            )

        if doomed:
            await self._write(run, single=True)
