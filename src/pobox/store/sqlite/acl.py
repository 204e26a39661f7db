"""Access control lists of the embedded store (RFC 4314; docs/decisions/shared-folders.md).

One ``mailbox_acl`` row per (mailbox, identifier); deleting a mailbox deletes its rows (the
foreign key cascades), renaming keeps them (the mailbox id does not change). What the rights
mean is :mod:`pobox.service.acl`'s business.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from pobox.store.api import MailboxId, SharedMailbox
from pobox.store.rows import SHARED_COLUMNS, shared_mailboxes
from pobox.store.sqlite.db import Database


class SqliteAcl:
    """The ACL methods of :class:`~pobox.store.sqlite.store.SqliteStore` (a mixin)."""

    _db: Database

    async def get_acl(self, mailbox_id: MailboxId) -> list[tuple[str, str]]:
        def run(conn: sqlite3.Connection) -> list[tuple[str, str]]:
            rows = conn.execute(
                "SELECT identifier, rights FROM mailbox_acl WHERE mailbox_id = ?"
                " ORDER BY identifier",
                (mailbox_id,),
            )
            return [(r[0], r[1]) for r in rows]

        return await self._db.read(run, inline=True)

    async def set_acl(self, mailbox_id: MailboxId, identifier: str, rights: str | None) -> None:
        def run(conn: sqlite3.Connection) -> None:
            if rights is None:
                conn.execute(
                    "DELETE FROM mailbox_acl WHERE mailbox_id = ? AND identifier = ?",
                    (mailbox_id, identifier),
                )
            else:
                conn.execute(
                    "INSERT INTO mailbox_acl (mailbox_id, identifier, rights) VALUES (?, ?, ?)"
                    " ON CONFLICT (mailbox_id, identifier) DO UPDATE SET rights = excluded.rights",
                    (mailbox_id, identifier, rights),
                )

        await self._db.write(run)

    async def shared_mailboxes(self, identifiers: Sequence[str]) -> list[SharedMailbox]:
        wanted = list(identifiers)
        if not wanted:
            return []

        def run(conn: sqlite3.Connection) -> list[SharedMailbox]:
            marks = ", ".join("?" * len(wanted))
            rows = conn.execute(
                f"SELECT {SHARED_COLUMNS}"
                " FROM mailbox_acl acl JOIN mailboxes m ON m.id = acl.mailbox_id"
                " JOIN accounts a ON a.id = m.account_id"
                " WHERE acl.mailbox_id IN"
                f" (SELECT mailbox_id FROM mailbox_acl WHERE identifier IN ({marks}))"
                " ORDER BY m.id, acl.identifier",
                wanted,
            ).fetchall()
            return shared_mailboxes(rows)

        return await self._db.read(run, inline=True)

    async def drop_acl_identifiers(self, identifiers: Sequence[str]) -> None:
        doomed = list(identifiers)

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany("DELETE FROM mailbox_acl WHERE identifier = ?", [(i,) for i in doomed])

        if doomed:
            await self._db.write(run)
