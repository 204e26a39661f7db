"""App passwords of the embedded store (docs/app-passwords.md).

A deleted login is announced as the change of ``logins_changed(account id)`` in the change
journal, in the same transaction: the other processes' change watchers learn of the revocation
the way they learn of new mail.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pobox.errors import AlreadyExists, NotFound
from pobox.store.api import Account, AccountId, Login, MailboxId, logins_changed
from pobox.store.sqlite.db import Database

T = TypeVar("T")

_COLUMNS = "id, account_id, label, password_hash, created, last_used, last_address"


def _login(row: Sequence[Any]) -> Login:
    return Login(
        id=int(row[0]),
        account_id=AccountId(int(row[1])),
        label=row[2],
        password_hash=row[3],
        created=float(row[4]),
        last_used=None if row[5] is None else float(row[5]),
        last_address=row[6],
    )


def _logins(conn: sqlite3.Connection, account_id: int) -> list[Login]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM logins WHERE account_id = ? ORDER BY id", (account_id,)
    )
    return [_login(r) for r in rows]


class SqliteLogins:
    """The login methods of :class:`~pobox.store.sqlite.store.SqliteStore` (a mixin)."""

    _db: Database

    if TYPE_CHECKING:

        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...
        def _journal(self, conn: sqlite3.Connection, mailbox_id: int) -> None: ...
        def _notify(self, mailbox_ids: Iterable[MailboxId]) -> None: ...
        def _account(
            self, conn: sqlite3.Connection, row: Sequence[Any] | None
        ) -> Account | None: ...

    async def add_login(
        self, account_id: AccountId, label: str, password_hash: str, now: float
    ) -> Login:
        def run(conn: sqlite3.Connection) -> Login:
            if (
                conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone()
                is None
            ):
                raise NotFound(f"no account with id {account_id}")
            try:
                cur = conn.execute(
                    "INSERT INTO logins (account_id, label, password_hash, created)"
                    " VALUES (?, ?, ?, ?)",
                    (account_id, label, password_hash, now),
                )
            except sqlite3.IntegrityError as exc:
                raise AlreadyExists(f"the account has a login labelled {label!r}") from exc
            return Login(int(cur.lastrowid or 0), account_id, label, password_hash, now)

        return await self._db.write(run)

    async def list_logins(self, account_id: AccountId) -> list[Login]:
        return await self._db.read(lambda conn: _logins(conn, account_id), inline=True)

    async def delete_login(self, account_id: AccountId, label: str) -> Login | None:
        def run(conn: sqlite3.Connection) -> Login | None:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM logins WHERE account_id = ? AND label = ?",
                (account_id, label),
            ).fetchone()
            if row is None:
                return None
            conn.execute("DELETE FROM logins WHERE id = ?", (row[0],))
            self._journal(conn, logins_changed(account_id))
            return _login(row)

        deleted = await self._write(run)
        if deleted is not None:
            self._notify([logins_changed(account_id)])
        return deleted

    async def get_account_logins(self, address: str) -> tuple[Account, list[Login]] | None:
        def run(conn: sqlite3.Connection) -> tuple[Account, list[Login]] | None:
            account = self._account(
                conn,
                conn.execute(
                    "SELECT id, address, password_hash FROM accounts WHERE address = ?",
                    (address,),
                ).fetchone(),
            )
            if account is None:
                return None
            return account, _logins(conn, account.id)

        return await self._db.read(run, inline=True)

    async def record_login_use(self, uses: Sequence[tuple[int, float, str]]) -> None:
        params = [(when, address, login_id, when) for login_id, when, address in uses]
        if not params:
            return

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE logins SET last_used = ?, last_address = ?"
                " WHERE id = ? AND (last_used IS NULL OR last_used <= ?)",
                params,
            )

        await self._db.write(run)
