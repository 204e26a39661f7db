"""Each mailbox's counters in the PostgreSQL store (docs/decisions/mailbox-counters.md).

``mailboxes.n_messages``, ``n_octets``, ``n_unseen``, ``n_deleted`` and ``n_deleted_octets``
are kept by statement triggers on ``messages`` (schema migration 13) in the transaction of
every write that adds, removes or re-flags messages, whichever code path writes them. Writers
lock the mailbox row before they touch its messages (pobox.store.postgres.store), so the
counters' update waits for no lock the writer does not hold already, and concurrent writers
add to them one after the other: they stay exact. STATUS reads them with one point read.
"""

from __future__ import annotations

from typing import Any

from pobox.errors import NotFound
from pobox.store.api import MailboxStatus, ModSeq, Uid

_STATUS = (
    "SELECT b.uidnext, b.uidvalidity, b.highestmodseq, b.n_messages, b.n_octets, b.n_unseen,"
    " b.n_deleted, b.n_deleted_octets,"
    # the first unseen message from the partial index messages_unseen (same predicate)
    " CASE WHEN b.n_unseen > 0 THEN (SELECT min(m.uid) FROM messages m"
    " WHERE m.mailbox_id = b.id AND m.flags & 1 = 0) END,"
    # the \Recent ones: the smaller side of the floor (each side holds at most as many
    # messages as it spans UIDs)
    " CASE WHEN b.n_messages = 0 OR b.recent_floor >= b.uidnext THEN 0"
    " WHEN b.uidnext - b.recent_floor <= b.recent_floor THEN (SELECT count(*) FROM messages m"
    " WHERE m.mailbox_id = b.id AND m.uid >= b.recent_floor)"
    " ELSE b.n_messages - (SELECT count(*) FROM messages m"
    " WHERE m.mailbox_id = b.id AND m.uid < b.recent_floor) END"
    " FROM mailboxes b WHERE b.id = $1"
)


async def status(conn: Any, mailbox_id: int) -> MailboxStatus:
    """STATUS of a mailbox from its row, in one statement."""
    row = await conn.fetchrow(_STATUS, mailbox_id)
    if row is None:
        raise NotFound("mailbox does not exist")
    return MailboxStatus(
        messages=row[3],
        size=row[4],
        unseen=row[5],
        deleted=row[6],
        first_unseen_uid=Uid(row[8]) if row[8] is not None else None,
        uidnext=Uid(row[0]),
        uidvalidity=row[1],
        highest_modseq=ModSeq(row[2]),
        recent=row[9],
        deleted_size=row[7],
    )


_RECOUNT = (
    "SELECT b.id, a.address, b.name, b.n_messages, b.n_octets, b.n_unseen, b.n_deleted,"
    " b.n_deleted_octets, coalesce(r.n, 0), coalesce(r.octets, 0), coalesce(r.unseen, 0),"
    " coalesce(r.deleted, 0), coalesce(r.deleted_octets, 0)"
    " FROM mailboxes b JOIN accounts a ON a.id = b.account_id"
    " LEFT JOIN (SELECT mailbox_id, count(*) AS n, sum(size)::bigint AS octets,"
    " count(*) FILTER (WHERE flags & 1 = 0) AS unseen,"
    " count(*) FILTER (WHERE flags & 8 <> 0) AS deleted,"
    " coalesce(sum(size) FILTER (WHERE flags & 8 <> 0), 0)::bigint AS deleted_octets"
    " FROM messages GROUP BY mailbox_id) r ON r.mailbox_id = b.id ORDER BY b.id"
)


async def recount(conn: Any, repair: bool) -> list[str]:
    """Compare every mailbox's counters with its messages; with *repair* (inside a transaction:
    the mailbox rows are locked first, as every writer does), set them to theirs."""
    if repair:
        await conn.execute("SELECT 1 FROM mailboxes ORDER BY id FOR UPDATE")
    problems: list[str] = []
    for row in await conn.fetch(_RECOUNT):
        mailbox_id, address, name = row[0], row[1], row[2]
        kept, real = tuple(row[3:8]), tuple(row[8:13])
        if kept == real:
            continue
        problems.append(
            f"mailbox {name} of {address}: counters (messages, octets, unseen, deleted,"
            f" deleted octets) {kept}, its messages {real}"
        )
        if repair:
            await conn.execute(
                "UPDATE mailboxes SET n_messages = $2, n_octets = $3, n_unseen = $4,"
                " n_deleted = $5, n_deleted_octets = $6 WHERE id = $1",
                mailbox_id,
                *real,
            )
    return problems
