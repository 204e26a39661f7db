"""Quota usage in the embedded store (docs/quota.md, docs/decisions/quota.md).

``quota_usage`` holds one row per account: the octets and the number of the messages in its
mailboxes. Every write that adds or removes messages changes the row in its own transaction
(the helpers below, called by the store's writers), so the usage is exact at every commit. The
writer thread runs one write at a time, so a check that reads the row after its own change
sees every other write before it, also inside a group commit (each write is a savepoint).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

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
    from pobox.store.sqlite.db import Database

T = TypeVar("T")

_CHANGE = (
    "INSERT INTO quota_usage (account_id, storage, messages, low_storage, low_messages)"
    " VALUES (?1, ?2, ?3, ?2, ?3) ON CONFLICT (account_id) DO UPDATE SET"
    " storage = storage + excluded.storage, messages = messages + excluded.messages,"
    " low_storage = min(low_storage, storage + excluded.storage),"
    " low_messages = min(low_messages, messages + excluded.messages)"
)


def change_usage(
    conn: sqlite3.Connection, account_id: int, octets: int, messages: int
) -> tuple[int, int]:
    """Add (or, negative, take away) messages from an account's usage; returns the usage
    after (octets, messages)."""
    row = conn.execute(_CHANGE + " RETURNING storage, messages", (account_id, octets, messages))
    storage, count = row.fetchone()
    return int(storage), int(count)


def check(usage: tuple[int, int], quota: QuotaLimits | None, what: str = "the message") -> None:
    """OverQuota when *usage* (after a write that added to it) is past a limit of *quota*."""
    if quota is not None and quota.exceeded(*usage):
        raise over_quota(what)


def usage_of(conn: sqlite3.Connection, mailbox_id: int) -> tuple[int, int, int]:
    """(account id, octets, messages) of the account a mailbox belongs to."""
    row = conn.execute(
        "SELECT b.account_id, coalesce(q.storage, 0), coalesce(q.messages, 0) FROM mailboxes b"
        " LEFT JOIN quota_usage q ON q.account_id = b.account_id WHERE b.id = ?",
        (mailbox_id,),
    ).fetchone()
    if row is None:
        raise NotFound("mailbox does not exist")
    return int(row[0]), int(row[1]), int(row[2])


def over_quota(what: str) -> OverQuota:
    return OverQuota(f"{what} would exceed the mailbox's quota")


def enforce(
    conn: sqlite3.Connection,
    mailbox_id: int,
    quota: QuotaLimits | None,
    before: tuple[int, int] | None = None,
    what: str = "the message",
) -> None:
    """After a write to *mailbox_id*: OverQuota (the caller's savepoint is rolled back) when
    the account is past a limit of *quota* and the write added to that (*before*: the usage
    before it; None: it only added)."""
    if quota is None or (quota.storage is None and quota.messages is None):
        return
    _, storage, messages = usage_of(conn, mailbox_id)
    if not quota.exceeded(storage, messages):
        return
    if before is not None and storage <= before[0] and messages <= before[1]:
        return  # a move inside the account: nothing added
    raise over_quota(what)


def release_mailbox(conn: sqlite3.Connection, mailbox_id: int) -> None:
    """A mailbox is about to go with all its messages: they leave the usage."""
    row = conn.execute(
        "SELECT b.account_id, coalesce(sum(m.size), 0), count(m.uid) FROM mailboxes b"
        " LEFT JOIN messages m ON m.mailbox_id = b.id WHERE b.id = ? GROUP BY b.id",
        (mailbox_id,),
    ).fetchone()
    if row is not None:
        change_usage(conn, row[0], -int(row[1]), -int(row[2]))


def check_mailbox_count(conn: sqlite3.Connection, account_id: int, quota: QuotaLimits) -> None:
    if quota.mailboxes is None:
        return
    (count,) = conn.execute(
        "SELECT count(*) FROM mailboxes WHERE account_id = ?", (account_id,)
    ).fetchone()
    if count >= quota.mailboxes:
        raise OverQuota(f"the account has {count} mailboxes, its quota allows {quota.mailboxes}")


def recount(conn: sqlite3.Connection, repair: bool) -> list[str]:
    """Compare every account's usage with its messages; with *repair*, set it to theirs."""
    problems: list[str] = []
    rows = conn.execute(
        "SELECT a.id, a.address, coalesce(q.storage, 0), coalesce(q.messages, 0),"
        " (SELECT coalesce(sum(m.size), 0) FROM mailboxes b JOIN messages m"
        " ON m.mailbox_id = b.id WHERE b.account_id = a.id),"
        " (SELECT count(*) FROM mailboxes b JOIN messages m"
        " ON m.mailbox_id = b.id WHERE b.account_id = a.id)"
        " FROM accounts a LEFT JOIN quota_usage q ON q.account_id = a.id ORDER BY a.id"
    ).fetchall()
    for account_id, address, storage, messages, real_storage, real_messages in rows:
        if (storage, messages) != (real_storage, real_messages):
            problems.append(
                f"account {address}: quota usage {storage} octets in {messages} messages,"
                f" its mailboxes hold {real_storage} octets in {real_messages}"
            )
            if repair:
                conn.execute(
                    "INSERT INTO quota_usage (account_id, storage, messages, low_storage,"
                    " low_messages) VALUES (?1, ?2, ?3, ?2, ?3) ON CONFLICT (account_id) DO"
                    " UPDATE SET storage = ?2, messages = ?3, low_storage = ?2,"
                    " low_messages = ?3",
                    (account_id, real_storage, real_messages),
                )
    return problems


class SqliteQuota:
    """The quota methods of :class:`~pobox.store.sqlite.store.SqliteStore` (a mixin)."""

    _db: Database

    if TYPE_CHECKING:

        async def _write(
            self,
            fn: Callable[[sqlite3.Connection], T],
            *,
            prepare: Callable[[], None] | None = None,
        ) -> T: ...
        @staticmethod
        def _sealer(messages: Sequence[NewMessage]) -> Callable[[], None] | None: ...
        def _appender(
            self, mailbox_id: MailboxId, message: NewMessage, quota: QuotaLimits | None = None
        ) -> Callable[[sqlite3.Connection], MessageMeta]: ...
        def _notify(self, mailbox_ids: Iterable[MailboxId]) -> None: ...

    async def quota_usage(self, account_id: AccountId) -> QuotaUsage:
        def run(conn: sqlite3.Connection) -> QuotaUsage:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM mailboxes WHERE account_id = ?1),"
                " q.storage, q.messages, q.warned, q.low_storage, q.low_messages"
                " FROM (SELECT 1) LEFT JOIN quota_usage q ON q.account_id = ?1",
                (account_id,),
            ).fetchone()
            if row[1] is None:
                return QuotaUsage(0, 0, int(row[0]))
            return QuotaUsage(int(row[1]), int(row[2]), int(row[0]), *map(int, row[3:]))

        return await self._db.read(run, inline=True)

    async def quota_warn(
        self,
        account_id: AccountId,
        seen: int,
        level: int,
        mailbox_id: MailboxId | None = None,
        message: NewMessage | None = None,
    ) -> bool:
        append = (
            None if message is None or mailbox_id is None else self._appender(mailbox_id, message)
        )

        def run(conn: sqlite3.Connection) -> bool:
            conn.execute("INSERT OR IGNORE INTO quota_usage (account_id) VALUES (?)", (account_id,))
            cur = conn.execute(
                "UPDATE quota_usage SET warned = ?, low_storage = storage,"
                " low_messages = messages WHERE account_id = ? AND warned = ?",
                (level, account_id, seen),
            )
            if cur.rowcount == 0:
                return False
            if append is not None:
                append(conn)
            return True

        try:
            done = await self._write(
                run, prepare=None if message is None else self._sealer([message])
            )
        except BaseException:
            done = False
            raise
        finally:
            if message is not None and not done:
                message.spool.discard()  # not stored: no file
        if done and mailbox_id is not None and message is not None:
            self._notify([mailbox_id])
        return done
