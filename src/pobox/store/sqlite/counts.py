"""Each mailbox's counters in the embedded store (docs/decisions/mailbox-counters.md).

``mailboxes.n_messages``, ``n_octets``, ``n_unseen``, ``n_deleted`` and ``n_deleted_octets``
are kept by triggers on ``messages`` (schema migration 13) in the transaction of every write
that adds, removes or re-flags a message, whichever code path writes it: STATUS reads them with
one point read instead of reading every message of the mailbox.
"""

from __future__ import annotations

import sqlite3

from pobox.errors import NotFound
from pobox.store.api import MailboxStatus, ModSeq, Uid
from pobox.store.rows import DELETED_BIT, SEEN_BIT

#: What the counters must equal, per mailbox (messages, octets, unseen, deleted, deleted octets)
_REAL = (
    "SELECT count(*), coalesce(sum(size), 0), coalesce(sum((flags & ?1) = 0), 0),"
    " coalesce(sum((flags & ?2) != 0), 0),"
    " coalesce(sum(CASE WHEN flags & ?2 THEN size ELSE 0 END), 0)"
    " FROM messages WHERE mailbox_id = ?3"
)


def status(conn: sqlite3.Connection, mailbox_id: int) -> MailboxStatus:
    """STATUS of a mailbox from its row: no read of its messages beyond the first unseen one
    (a partial index of the unseen) and the \\Recent ones (a range of the primary key)."""
    row = conn.execute(
        "SELECT uidnext, uidvalidity, highestmodseq, recent_floor, n_messages, n_octets,"
        " n_unseen, n_deleted, n_deleted_octets FROM mailboxes WHERE id = ?",
        (mailbox_id,),
    ).fetchone()
    if row is None:
        raise NotFound("mailbox does not exist")
    uidnext, uidvalidity, modseq, floor, messages, octets, unseen, deleted, deleted_octets = row
    first_unseen = None
    if unseen:
        # the partial index of the unseen (named: without statistics SQLite would walk the
        # primary key, through every seen message before the first unseen one)
        first_unseen = conn.execute(
            "SELECT min(uid) FROM messages INDEXED BY messages_unseen"
            " WHERE mailbox_id = ? AND (flags & 1) = 0",
            (mailbox_id,),
        ).fetchone()[0]
    recent = 0
    if messages and floor < uidnext:
        # count the smaller side of the floor (UIDs are unique: each side holds at most as
        # many messages as it spans UIDs)
        if uidnext - floor <= floor:
            recent = conn.execute(
                "SELECT count(*) FROM messages WHERE mailbox_id = ? AND uid >= ?",
                (mailbox_id, floor),
            ).fetchone()[0]
        else:
            recent = (
                messages
                - conn.execute(
                    "SELECT count(*) FROM messages WHERE mailbox_id = ? AND uid < ?",
                    (mailbox_id, floor),
                ).fetchone()[0]
            )
    return MailboxStatus(
        messages=messages,
        size=octets,
        unseen=unseen,
        deleted=deleted,
        first_unseen_uid=Uid(first_unseen) if first_unseen is not None else None,
        uidnext=Uid(uidnext),
        uidvalidity=uidvalidity,
        highest_modseq=ModSeq(modseq),
        recent=recent,
        deleted_size=deleted_octets,
    )


def recount(conn: sqlite3.Connection, repair: bool) -> list[str]:
    """Compare every mailbox's counters with its messages; with *repair*, set them to theirs."""
    problems: list[str] = []
    rows = conn.execute(
        "SELECT b.id, a.address, b.name, b.n_messages, b.n_octets, b.n_unseen, b.n_deleted,"
        " b.n_deleted_octets FROM mailboxes b JOIN accounts a ON a.id = b.account_id"
        " ORDER BY b.id"
    ).fetchall()
    for mailbox_id, address, name, *kept in rows:
        real = list(conn.execute(_REAL, (SEEN_BIT, DELETED_BIT, mailbox_id)).fetchone())
        if kept != real:
            problems.append(
                f"mailbox {name} of {address}: counters (messages, octets, unseen, deleted,"
                f" deleted octets) {tuple(kept)}, its messages {tuple(real)}"
            )
            if repair:
                conn.execute(
                    "UPDATE mailboxes SET n_messages = ?, n_octets = ?, n_unseen = ?,"
                    " n_deleted = ?, n_deleted_octets = ? WHERE id = ?",
                    (*real, mailbox_id),
                )
    return problems
