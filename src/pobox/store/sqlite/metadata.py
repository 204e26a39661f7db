"""IMAP METADATA annotations of the embedded store (RFC 5464; docs/decisions/metadata.md), and
URLAUTH mailbox access keys (RFC 4467 §2.2): the per-mailbox data that is not mail.

One ``annotations`` row per (mailbox or server, owner or shared, entry name). Deleting a
mailbox deletes its rows and deleting an account its private rows (the foreign keys cascade);
renaming a mailbox keeps them (the id does not change). What the entries mean is
:mod:`pobox.service.metadata`'s business. One ``mailbox_keys`` row per (account, mailbox) with
an access key; it goes with either.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

from pobox.errors import NotFound
from pobox.store.api import (
    PRIVATE_PREFIX,
    AccountId,
    AnnotationLimits,
    Mailbox,
    MailboxId,
    TooManyAnnotations,
)
from pobox.store.sqlite.db import Database

T = TypeVar("T")


def _key(mailbox_id: MailboxId | None) -> int:
    return 0 if mailbox_id is None else int(mailbox_id)


class SqliteMetadata:
    """The annotation methods of :class:`~pobox.store.sqlite.store.SqliteStore` (a mixin)."""

    _db: Database

    async def get_annotations(
        self, account_id: AccountId, mailbox_ids: Sequence[MailboxId | None]
    ) -> dict[MailboxId | None, list[tuple[str, bytes]]]:
        wanted = list(dict.fromkeys(mailbox_ids))
        out: dict[MailboxId | None, list[tuple[str, bytes]]] = {m: [] for m in wanted}
        if not wanted:
            return out
        by_key = {_key(m): m for m in wanted}

        def run(conn: sqlite3.Connection) -> None:
            keys = list(by_key)
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                rows = conn.execute(
                    "SELECT coalesce(mailbox_id, 0), name, value FROM annotations"
                    f" WHERE coalesce(mailbox_id, 0) IN ({marks})"
                    " AND (owner_id IS NULL OR owner_id = ?) ORDER BY name",
                    (*chunk, account_id),
                )
                for key, name, value in rows:
                    out[by_key[key]].append((name, bytes(value)))

        await self._db.read(run)
        return out

    async def set_annotations(
        self,
        account_id: AccountId,
        mailbox_id: MailboxId | None,
        changes: Sequence[tuple[str, bytes | None]],
        limits: AnnotationLimits | None = None,
    ) -> None:
        todo = list(changes)
        key = _key(mailbox_id)

        def counts(conn: sqlite3.Connection, charged: list[int]) -> tuple[int, list[int]]:
            seen = conn.execute(
                "SELECT count(*) FROM annotations WHERE coalesce(mailbox_id, 0) = ?"
                " AND (owner_id IS NULL OR owner_id = ?)",
                (key, account_id),
            ).fetchone()[0]
            per_account = [
                conn.execute(
                    "SELECT (SELECT count(*) FROM annotations WHERE owner_id = ?)"
                    " + (SELECT count(*) FROM annotations a JOIN mailboxes m"
                    " ON m.id = a.mailbox_id WHERE a.owner_id IS NULL AND m.account_id = ?)",
                    (who, who),
                ).fetchone()[0]
                for who in charged
            ]
            return int(seen), [int(n) for n in per_account]

        def run(conn: sqlite3.Connection) -> None:
            mailbox_owner: int | None = None
            if mailbox_id is not None:
                row = conn.execute(
                    "SELECT account_id FROM mailboxes WHERE id = ?", (mailbox_id,)
                ).fetchone()
                if row is None:
                    raise NotFound(f"mailbox {mailbox_id} does not exist")
                mailbox_owner = int(row[0])
            charged: list[int] = []
            if any(name.startswith(PRIVATE_PREFIX) for name, _ in todo):
                charged.append(int(account_id))
            shared = any(not name.startswith(PRIVATE_PREFIX) for name, _ in todo)
            if shared and mailbox_owner is not None and mailbox_owner not in charged:
                charged.append(mailbox_owner)
            before = counts(conn, charged) if limits is not None else None
            for name, value in todo:
                owner = account_id if name.startswith(PRIVATE_PREFIX) else None
                conn.execute(
                    "DELETE FROM annotations WHERE coalesce(mailbox_id, 0) = ?"
                    " AND coalesce(owner_id, 0) = ? AND name = ?",
                    (key, owner or 0, name),
                )
                if value is not None:
                    conn.execute(
                        "INSERT INTO annotations (mailbox_id, owner_id, name, value)"
                        " VALUES (?, ?, ?, ?)",
                        (mailbox_id, owner, name, value),
                    )
            if limits is None or before is None:
                return
            seen, per_account = counts(conn, charged)
            if limits.per_mailbox is not None and limits.per_mailbox < seen > before[0]:
                raise TooManyAnnotations(
                    f"at most {limits.per_mailbox} metadata entries per mailbox"
                )
            if limits.per_account is not None:
                for now, was in zip(per_account, before[1], strict=True):
                    if limits.per_account < now > was:
                        raise TooManyAnnotations(
                            f"at most {limits.per_account} metadata entries per account"
                        )

        await self._db.write(run)

    async def set_special_use(self, mailbox_id: MailboxId, special_use: str | None) -> Mailbox:
        def run(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "UPDATE mailboxes SET special_use = ? WHERE id = ?", (special_use, mailbox_id)
            )
            if cur.rowcount == 0:
                raise NotFound(f"mailbox {mailbox_id} does not exist")
            self._journal(conn, mailbox_id)  # other processes learn of the change

        await self._write(run)
        self._notify([mailbox_id])
        mailbox = await self.get_mailbox_by_id(mailbox_id)
        if mailbox is None:
            raise NotFound(f"mailbox {mailbox_id} does not exist")
        return mailbox

    async def mailbox_key(
        self, account_id: AccountId, mailbox_id: MailboxId, new: bytes | None = None
    ) -> bytes | None:
        def read(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(
                "SELECT key FROM mailbox_keys WHERE account_id = ? AND mailbox_id = ?",
                (account_id, mailbox_id),
            ).fetchone()
            return None if row is None else bytes(row[0])

        found = await self._db.read(read)
        if found is not None or new is None:
            return found

        def create(conn: sqlite3.Connection) -> bytes | None:
            if conn.execute("SELECT 1 FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone():
                conn.execute(
                    "INSERT OR IGNORE INTO mailbox_keys (account_id, mailbox_id, key)"
                    " VALUES (?, ?, ?)",
                    (account_id, mailbox_id, new),
                )
            return read(conn)

        stored = await self._db.write(create)
        if stored is None:
            raise NotFound(f"mailbox {mailbox_id} does not exist")
        return stored

    async def reset_mailbox_keys(
        self, account_id: AccountId, mailbox_id: MailboxId | None, new: bytes | None = None
    ) -> None:
        def run(conn: sqlite3.Connection) -> None:
            if mailbox_id is None:
                conn.execute("DELETE FROM mailbox_keys WHERE account_id = ?", (account_id,))
                return
            conn.execute(
                "DELETE FROM mailbox_keys WHERE account_id = ? AND mailbox_id = ?",
                (account_id, mailbox_id),
            )
            if new is None:
                return
            if not conn.execute("SELECT 1 FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone():
                raise NotFound(f"mailbox {mailbox_id} does not exist")
            conn.execute(
                "INSERT INTO mailbox_keys (account_id, mailbox_id, key) VALUES (?, ?, ?)",
                (account_id, mailbox_id, new),
            )

        await self._db.write(run)

    if TYPE_CHECKING:

        async def get_mailbox_by_id(self, mailbox_id: MailboxId) -> Mailbox | None: ...
        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...
        def _journal(self, conn: sqlite3.Connection, mailbox_id: int) -> None: ...
        def _notify(self, mailbox_ids: Iterable[MailboxId]) -> None: ...
