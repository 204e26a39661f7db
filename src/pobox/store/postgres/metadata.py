"""IMAP METADATA annotations of the PostgreSQL backend (RFC 5464; docs/decisions/metadata.md),
and URLAUTH mailbox access keys (RFC 4467 §2.2): the per-mailbox data that is not mail.

One ``annotations`` row per (mailbox or server, owner or shared, entry name); the foreign keys
cascade when a mailbox or an account goes, a rename keeps the rows. A write that checks limits
first takes transaction-scoped advisory locks on the mailbox (or the server) and on each
account it charges, in that order, so that two nodes cannot both add the last entry allowed.
One ``mailbox_keys`` row per (account, mailbox) with an access key; it goes with either.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pobox.errors import NotFound
from pobox.store.api import (
    PRIVATE_PREFIX,
    AccountId,
    AnnotationLimits,
    Mailbox,
    MailboxId,
    TooManyAnnotations,
)

if TYPE_CHECKING:
    from pobox.store.postgres.store import Tx

T = TypeVar("T")

#: advisory lock classes (pg_advisory_xact_lock(int, int)): a mailbox's (0: the server's)
#: annotations, and an account's
_LOCK_MAILBOX = 0x4D44
_LOCK_ACCOUNT = 0x4D45


def _key(mailbox_id: MailboxId | None) -> int:
    return 0 if mailbox_id is None else int(mailbox_id)


class PostgresMetadata:
    """The annotation methods of :class:`~pobox.store.postgres.store.PostgresStore` (a mixin)."""

    if TYPE_CHECKING:

        async def _write(self, fn: Callable[[Tx], Awaitable[T]], *, single: bool = False) -> T: ...
        async def _read(
            self, fn: Callable[[Any], Awaitable[T]], *, snapshot: bool = False
        ) -> T: ...
        async def get_mailbox_by_id(self, mailbox_id: MailboxId) -> Mailbox | None: ...

    async def get_annotations(
        self, account_id: AccountId, mailbox_ids: Sequence[MailboxId | None]
    ) -> dict[MailboxId | None, list[tuple[str, bytes]]]:
        wanted = list(dict.fromkeys(mailbox_ids))
        out: dict[MailboxId | None, list[tuple[str, bytes]]] = {m: [] for m in wanted}
        if not wanted:
            return out
        by_key = {_key(m): m for m in wanted}

        async def run(conn: Any) -> list[Any]:
            rows: list[Any] = await conn.fetch(
                "SELECT coalesce(mailbox_id, 0), name, value FROM annotations"
                " WHERE coalesce(mailbox_id, 0) = ANY($1::bigint[])"
                ' AND (owner_id IS NULL OR owner_id = $2) ORDER BY name COLLATE "C"',
                list(by_key),
                account_id,
            )
            return rows

        for key, name, value in await self._read(run):
            out[by_key[key]].append((name, bytes(value)))
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

        async def counts(conn: Any, charged: list[int]) -> tuple[int, list[int]]:
            seen = await conn.fetchval(
                "SELECT count(*) FROM annotations WHERE coalesce(mailbox_id, 0) = $1"
                " AND (owner_id IS NULL OR owner_id = $2)",
                key,
                account_id,
            )
            per_account = [
                await conn.fetchval(
                    "SELECT (SELECT count(*) FROM annotations WHERE owner_id = $1)"
                    " + (SELECT count(*) FROM annotations a JOIN mailboxes m"
                    " ON m.id = a.mailbox_id WHERE a.owner_id IS NULL AND m.account_id = $1)",
                    who,
                )
                for who in charged
            ]
            return int(seen), [int(n) for n in per_account]

        async def run(tx: Tx) -> None:
            conn = tx.conn
            mailbox_owner: int | None = None
            if mailbox_id is not None:
                found = await conn.fetchval(
                    "SELECT account_id FROM mailboxes WHERE id = $1", mailbox_id
                )
                if found is None:
                    raise NotFound(f"mailbox {mailbox_id} does not exist")
                mailbox_owner = int(found)
            charged: list[int] = []
            if any(name.startswith(PRIVATE_PREFIX) for name, _ in todo):
                charged.append(int(account_id))
            shared = any(not name.startswith(PRIVATE_PREFIX) for name, _ in todo)
            if shared and mailbox_owner is not None and mailbox_owner not in charged:
                charged.append(mailbox_owner)
            before = None
            if limits is not None:
                await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", _LOCK_MAILBOX, key)
                for who in sorted(charged):
                    await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", _LOCK_ACCOUNT, who)
                before = await counts(conn, charged)
            for name, value in todo:
                owner = account_id if name.startswith(PRIVATE_PREFIX) else None
                await conn.execute(
                    "DELETE FROM annotations WHERE coalesce(mailbox_id, 0) = $1"
                    " AND coalesce(owner_id, 0) = $2 AND name = $3",
                    key,
                    owner or 0,
                    name,
                )
                if value is not None:
                    await conn.execute(
                        "INSERT INTO annotations (mailbox_id, owner_id, name, value)"
                        " VALUES ($1, $2, $3, $4)",
                        mailbox_id,
                        owner,
                        name,
                        value,
                    )
            if limits is None or before is None:
                return
            seen, per_account = await counts(conn, charged)
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

        await self._write(run)

    async def set_special_use(self, mailbox_id: MailboxId, special_use: str | None) -> Mailbox:
        async def run(tx: Tx) -> None:
            result: str = await tx.conn.execute(
                "UPDATE mailboxes SET special_use = $1 WHERE id = $2", special_use, mailbox_id
            )
            if result == "UPDATE 0":
                raise NotFound(f"mailbox {mailbox_id} does not exist")
            await tx.journal(mailbox_id)  # other nodes learn of the change

        await self._write(run)
        mailbox = await self.get_mailbox_by_id(mailbox_id)
        if mailbox is None:
            raise NotFound(f"mailbox {mailbox_id} does not exist")
        return mailbox

    async def mailbox_key(
        self, account_id: AccountId, mailbox_id: MailboxId, new: bytes | None = None
    ) -> bytes | None:
        async def read(conn: Any) -> bytes | None:
            found = await conn.fetchval(
                "SELECT key FROM mailbox_keys WHERE account_id = $1 AND mailbox_id = $2",
                account_id,
                mailbox_id,
            )
            return None if found is None else bytes(found)

        found = await self._read(read)
        if found is not None or new is None:
            return found

        async def create(tx: Tx) -> bytes | None:
            # a mailbox deleted meanwhile inserts nothing (the SELECT finds no row)
            await tx.conn.execute(
                "INSERT INTO mailbox_keys (account_id, mailbox_id, key)"
                " SELECT $1, id, $3 FROM mailboxes WHERE id = $2"
                " ON CONFLICT (account_id, mailbox_id) DO NOTHING",
                account_id,
                mailbox_id,
                new,
            )
            return await read(tx.conn)

        stored = await self._write(create)
        if stored is None:
            raise NotFound(f"mailbox {mailbox_id} does not exist")
        return stored

    async def reset_mailbox_keys(
        self, account_id: AccountId, mailbox_id: MailboxId | None, new: bytes | None = None
    ) -> None:
        async def run(tx: Tx) -> None:
            conn = tx.conn
            if mailbox_id is None:
                await conn.execute("DELETE FROM mailbox_keys WHERE account_id = $1", account_id)
                return
            await conn.execute(
                "DELETE FROM mailbox_keys WHERE account_id = $1 AND mailbox_id = $2",
                account_id,
                mailbox_id,
            )
            if new is None:
                return
            result: str = await conn.execute(
                "INSERT INTO mailbox_keys (account_id, mailbox_id, key)"
                " SELECT $1, id, $3 FROM mailboxes WHERE id = $2",
                account_id,
                mailbox_id,
                new,
            )
            if result == "INSERT 0 0":
                raise NotFound(f"mailbox {mailbox_id} does not exist")

        await self._write(run)
