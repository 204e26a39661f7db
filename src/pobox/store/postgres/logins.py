"""App passwords of the PostgreSQL backend (docs/app-passwords.md).

A deleted login is announced as the change of ``logins_changed(account id)`` (journal row and
NOTIFY in the deleting transaction), so every process on every node learns of the revocation
through its LISTEN connection.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pobox.errors import AlreadyExists, NotFound
from pobox.store.api import Account, AccountId, Login, logins_changed

if TYPE_CHECKING:
    from pobox.store.postgres.store import Tx

T = TypeVar("T")

_COLUMNS = "id, account_id, label, password_hash, created, last_used, last_address"


def _login(row: Any) -> Login:
    return Login(
        id=int(row[0]),
        account_id=AccountId(int(row[1])),
        label=row[2],
        password_hash=row[3],
        created=float(row[4]),
        last_used=None if row[5] is None else float(row[5]),
        last_address=row[6],
    )


async def _logins(conn: Any, account_id: int) -> list[Login]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM logins WHERE account_id = $1 ORDER BY id", account_id
    )
    return [_login(r) for r in rows]


class PostgresLogins:
    """The login methods of :class:`~pobox.store.postgres.store.PostgresStore` (a mixin)."""

    if TYPE_CHECKING:

        async def _write(self, fn: Callable[[Tx], Awaitable[T]], *, single: bool = False) -> T: ...
        async def _read(
            self, fn: Callable[[Any], Awaitable[T]], *, snapshot: bool = False
        ) -> T: ...
        @staticmethod
        async def _account(conn: Any, row: Any) -> Account | None: ...

    async def add_login(
        self, account_id: AccountId, label: str, password_hash: str, now: float
    ) -> Login:
        async def run(tx: Tx) -> Login:
            if await tx.conn.fetchval("SELECT 1 FROM accounts WHERE id = $1", account_id) is None:
                raise NotFound(f"no account with id {account_id}")
            login_id = await tx.conn.fetchval(
                "INSERT INTO logins (account_id, label, password_hash, created)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (account_id, label) DO NOTHING RETURNING id",
                account_id,
                label,
                password_hash,
                now,
            )
            if login_id is None:
                raise AlreadyExists(f"the account has a login labelled {label!r}")
            return Login(int(login_id), account_id, label, password_hash, now)

        return await self._write(run)

    async def list_logins(self, account_id: AccountId) -> list[Login]:
        async def run(conn: Any) -> list[Login]:
            return await _logins(conn, account_id)

        return await self._read(run)

    async def delete_login(self, account_id: AccountId, label: str) -> Login | None:
        async def run(tx: Tx) -> Login | None:
            row = await tx.conn.fetchrow(
                f"DELETE FROM logins WHERE account_id = $1 AND label = $2 RETURNING {_COLUMNS}",
                account_id,
                label,
            )
            if row is None:
                return None
            await tx.journal(logins_changed(account_id))
            return _login(row)

        return await self._write(run)

    async def get_account_logins(self, address: str) -> tuple[Account, list[Login]] | None:
        async def run(conn: Any) -> tuple[Account, list[Login]] | None:
            row = await conn.fetchrow(
                "SELECT id, address, password_hash FROM accounts WHERE lower(address) = lower($1)",
                address,
            )
            account = await self._account(conn, row)
            if account is None:
                return None
            return account, await _logins(conn, account.id)

        return await self._read(run)

    async def record_login_use(self, uses: Sequence[tuple[int, float, str]]) -> None:
        params = [(login_id, when, address) for login_id, when, address in uses]
        if not params:
            return

        async def run(tx: Tx) -> None:
            await tx.conn.executemany(
                "UPDATE logins SET last_used = $2, last_address = $3"
                " WHERE id = $1 AND (last_used IS NULL OR last_used <= $2)",
                params,
            )

        await self._write(run)
