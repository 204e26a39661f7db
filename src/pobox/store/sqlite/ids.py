"""Mailbox ids that SQLite never hands out twice.

``mailboxes.id`` is a plain ``INTEGER PRIMARY KEY``: SQLite would give a new row the largest id
plus one, so deleting the newest mailbox and creating another would reuse its id. Everything
that follows a mailbox by id (the change journal and its watchers in other processes, a
process's mailbox index, a session with the mailbox selected) would then take the new mailbox
for the deleted one. Every insert takes its id from here instead: one more than both the largest
id now in the table and the largest ever handed out (kept in ``counters``).
"""

from __future__ import annotations

import sqlite3

__all__ = ["next_mailbox_id"]


def next_mailbox_id(conn: sqlite3.Connection) -> int:
    """A mailbox id never used before in this store; call inside the inserting transaction."""
    row = conn.execute(
        "SELECT max(COALESCE((SELECT value FROM counters WHERE name = 'mailbox_id'), 0),"
        " COALESCE((SELECT max(id) FROM mailboxes), 0)) + 1"
    ).fetchone()
    value = int(row[0])
    conn.execute(
        "INSERT INTO counters (name, value) VALUES ('mailbox_id', ?)"
        " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        (value,),
    )
    return value
