"""Quota usage in the PostgreSQL store (docs/quota.md, docs/decisions/quota.md).

``quota_usage`` holds one row per account, changed in the transaction of every write that adds
or removes messages. Writers lock their mailbox rows first and the usage row after (the
``INSERT … ON CONFLICT DO UPDATE`` below locks it until commit), always in that order, so two
writers never wait on each other crosswise. A write that is checked reads the usage after its
own change while it holds the row: concurrent deliveries to one account are checked one after
the other, on any node, and none takes the account past a limit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pobox.errors import NotFound, OverQuota
from pobox.store.api import (
    AccountId,
    MailboxId,
    MessageMeta,
    NewMessage,
    QuotaLimits,
    QuotaUsage,
)

if TYPE_CHECKING:
    from pobox.store.postgres.store import Tx

T = TypeVar("T")

_CHANGE = (
    "INSERT INTO quota_usage AS q (account_id, storage, messages, low_storage, low_messages)"
    " VALUES ($1, $2, $3, $2, $3) ON CONFLICT (account_id) DO UPDATE SET"
    " storage = q.storage + excluded.storage, messages = q.messages + excluded.messages,"
    " low_storage = LEAST(q.low_storage, q.storage + excluded.storage),"
    " low_messages = LEAST(q.low_messages, q.messages + excluded.messages)"
)

#: The usage part of the one-statement append (pobox.store.postgres.store): after the CTE
#: ``mb`` (the mailbox row, locked, with its account_id), add the message to the usage only
#: when it stays within the limits $22 (octets) and $23 (messages), NULL: unlimited. The CTEs
#: that store the message read from ``q``: nothing is stored when it is empty.
SMALL_APPEND_USAGE = (
    " q AS (INSERT INTO quota_usage AS q (account_id, storage, messages, low_storage,"
    " low_messages) SELECT mb.account_id, $2::bigint, 1, $2::bigint, 1 FROM mb"
    " WHERE ($22::bigint IS NULL OR $2::bigint <= $22::bigint)"
    " AND ($23::bigint IS NULL OR 1 <= $23::bigint)"
    " ON CONFLICT (account_id) DO UPDATE SET storage = q.storage + excluded.storage,"
    " messages = q.messages + 1, low_storage = LEAST(q.low_storage, q.storage + excluded.storage),"
    " low_messages = LEAST(q.low_messages, q.messages + 1)"
    " WHERE ($22::bigint IS NULL OR q.storage + excluded.storage <= $22::bigint)"
    " AND ($23::bigint IS NULL OR q.messages + 1 <= $23::bigint) RETURNING 1 AS ok),"
)


def limit_args(quota: QuotaLimits | None) -> tuple[int | None, int | None]:
    """$22 and $23 of :data:`SMALL_APPEND_USAGE`."""
    if quota is None:
        return None, None
    return quota.storage, quota.messages


async def change_usage(conn: Any, account_id: int, octets: int, messages: int) -> None:
    """Add (or, negative, take away) messages from an account's usage."""
    if octets or messages:
        await conn.execute(_CHANGE, account_id, octets, messages)


def over_quota(what: str = "the message") -> OverQuota:
    return OverQuota(f"{what} would exceed the mailbox's quota")


async def enforce(
    conn: Any, mailbox_id: int, quota: QuotaLimits | None, what: str = "the message"
) -> None:
    """After a write that added to the usage of *mailbox_id*'s account (and holds its usage
    row): OverQuota, which rolls the transaction back, when the account is past a limit."""
    if quota is None or (quota.storage is None and quota.messages is None):
        return
    row = await conn.fetchrow(
        "SELECT coalesce(q.storage, 0), coalesce(q.messages, 0) FROM mailboxes b"
        " LEFT JOIN quota_usage q ON q.account_id = b.account_id WHERE b.id = $1",
        mailbox_id,
    )
    if row is None:
        raise NotFound("mailbox does not exist")
    if quota.exceeded(int(row[0]), int(row[1])):
        raise over_quota(what)


async def release_mailbox(conn: Any, mailbox_id: int) -> None:
    """A mailbox (its row locked) is about to go with all its messages: they leave the usage."""
    row = await conn.fetchrow(
        "SELECT b.account_id, coalesce(sum(m.size), 0)::bigint, count(m.uid) FROM mailboxes b"
        " LEFT JOIN messages m ON m.mailbox_id = b.id WHERE b.id = $1 GROUP BY b.id",
        mailbox_id,
    )
    if row is not None:
        await change_usage(conn, row[0], -int(row[1]), -int(row[2]))


async def check_mailbox_count(conn: Any, account_id: int, quota: QuotaLimits) -> None:
    """Before a mailbox is created: OverQuota when the account has as many as it may. The
    usage row is locked first, so two creations at once are counted one after the other."""
    if quota.mailboxes is None:
        return
    await conn.execute(
        "INSERT INTO quota_usage (account_id) VALUES ($1) ON CONFLICT (account_id) DO NOTHING",
        account_id,
    )
    await conn.execute("SELECT 1 FROM quota_usage WHERE account_id = $1 FOR UPDATE", account_id)
    count = await conn.fetchval("SELECT count(*) FROM mailboxes WHERE account_id = $1", account_id)
    if count >= quota.mailboxes:
        raise OverQuota(f"the account has {count} mailboxes, its quota allows {quota.mailboxes}")


_RECOUNT = (
    "SELECT a.id, a.address, coalesce(q.storage, 0), coalesce(q.messages, 0),"
    " coalesce(r.storage, 0)::bigint, coalesce(r.messages, 0)::bigint FROM accounts a"
    " LEFT JOIN quota_usage q ON q.account_id = a.id"
    " LEFT JOIN (SELECT b.account_id, sum(m.size) AS storage, count(*) AS messages"
    " FROM mailboxes b JOIN messages m ON m.mailbox_id = b.id GROUP BY b.account_id) r"
    " ON r.account_id = a.id ORDER BY a.id"
)


async def recount(conn: Any, repair: bool) -> list[str]:
    """Compare every account's usage with its messages; with *repair* (inside a transaction
    that locks the usage rows first), set it to theirs."""
    if repair:
        await conn.execute("SELECT 1 FROM quota_usage ORDER BY account_id FOR UPDATE")
    problems: list[str] = []
    for account_id, address, storage, messages, real_storage, real_messages in await conn.fetch(
        _RECOUNT
    ):
        if (storage, messages) == (real_storage, real_messages):
            continue
        problems.append(
            f"account {address}: quota usage {storage} octets in {messages} messages,"
            f" its mailboxes hold {real_storage} octets in {real_messages}"
        )
        if repair:
            await conn.execute(
                "INSERT INTO quota_usage (account_id, storage, messages, low_storage,"
                " low_messages) VALUES ($1, $2, $3, $2, $3) ON CONFLICT (account_id) DO"
                " UPDATE SET storage = $2, messages = $3, low_storage = $2, low_messages = $3",
                account_id,
                real_storage,
                real_messages,
            )
    return problems


class PostgresQuota:
    """The quota methods of :class:`~pobox.store.postgres.store.PostgresStore` (a mixin)."""

    if TYPE_CHECKING:

        async def _write(self, fn: Callable[[Tx], Awaitable[T]], *, single: bool = False) -> T: ...
        async def _read(
            self, fn: Callable[[Any], Awaitable[T]], *, snapshot: bool = False
        ) -> T: ...
        async def _append_in(
            self, tx: Tx, mailbox_id: MailboxId, message: NewMessage
        ) -> MessageMeta: ...

    async def quota_usage(self, account_id: AccountId) -> QuotaUsage:
        async def run(conn: Any) -> QuotaUsage:
            row = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM mailboxes WHERE account_id = $1),"
                " q.storage, q.messages, q.warned, q.low_storage, q.low_messages"
                " FROM (SELECT 1) AS one LEFT JOIN quota_usage q ON q.account_id = $1",
                account_id,
            )
            if row[1] is None:
                return QuotaUsage(0, 0, int(row[0]))
            return QuotaUsage(int(row[1]), int(row[2]), int(row[0]), *map(int, row[3:]))

        return await self._read(run)

    async def quota_warn(
        self,
        account_id: AccountId,
        seen: int,
        level: int,
        mailbox_id: MailboxId | None = None,
        message: NewMessage | None = None,
    ) -> bool:
        async def run(tx: Tx) -> bool:
            conn = tx.conn
            if message is not None and mailbox_id is not None:
                # the mailbox row before the usage row, as every writer locks them
                await conn.execute("SELECT 1 FROM mailboxes WHERE id = $1 FOR UPDATE", mailbox_id)
            await conn.execute(
                "INSERT INTO quota_usage (account_id) VALUES ($1)"
                " ON CONFLICT (account_id) DO NOTHING",
                account_id,
            )
            status = await conn.execute(
                "UPDATE quota_usage SET warned = $2, low_storage = storage,"
                " low_messages = messages WHERE account_id = $1 AND warned = $3",
                account_id,
                level,
                seen,
            )
            if status.endswith(" 0"):
                return False
            if message is not None and mailbox_id is not None:
                await self._append_in(tx, mailbox_id, message)
            return True

        try:
            return await self._write(run)
        finally:
            if message is not None:
                message.spool.discard()
