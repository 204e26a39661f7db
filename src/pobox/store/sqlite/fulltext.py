"""The full-text index of the embedded store (docs/decisions/full-text-search.md).

Two FTS5 tables with the trigram tokenizer (case-sensitive: the text is stored folded), keyed by
blob id: ``text_index`` (header, body) and ``field_index`` (subject, from, to, cc, bcc). They keep
positions of nothing (``detail=none``, about half the size of the text): a search asks for rows
that hold every trigram of the string, then checks the string itself with ``instr`` on the
stored text, so the answer is exact. ``blobs.text_state`` says whether a content is indexed; it
changes in the same transaction as its rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

from pobox.store.api import (
    AccountId,
    BlobId,
    MailboxId,
    SearchFields,
    SearchText,
    TextMatches,
    Uid,
)
from pobox.store.rows import FIELD_COLUMNS, search_fields
from pobox.store.sqlite.db import Database

#: Index table and column of each SearchText attribute.
_WHERE: dict[str, tuple[str, str]] = {
    "header": ("text_index", "header"),
    "body": ("text_index", "body"),
    "subject": ("field_index", "subject"),
    "from_": ("field_index", "from_"),
    "to": ("field_index", "to_"),
    "cc": ("field_index", "cc"),
    "bcc": ("field_index", "bcc"),
}
#: At most this many trigrams go into the index query; the ``instr`` check does the rest.
MAX_TRIGRAMS = 12


def trigram_query(needle: str) -> str:
    """An FTS5 query for rows holding trigrams that cover *needle*: non-overlapping ones from
    the start, and the last one, at most MAX_TRIGRAMS."""
    starts = list(range(0, len(needle) - 2, 3))
    if starts[-1] != len(needle) - 3:
        starts.append(len(needle) - 3)
    if len(starts) > MAX_TRIGRAMS:
        step = len(starts) / MAX_TRIGRAMS
        starts = sorted({starts[int(i * step)] for i in range(MAX_TRIGRAMS)} | {starts[-1]})
    grams = dict.fromkeys(needle[i : i + 3] for i in starts)
    return " AND ".join('"' + g.replace('"', '""') + '"' for g in grams)


def _unindexed(conn: sqlite3.Connection, mailbox_id: MailboxId) -> list[Uid]:
    return [
        Uid(r[0])
        for r in conn.execute(
            # from the (few) unindexed contents to their messages: walking the mailbox and
            # looking at each message's content cost 125 ms on 100,000 messages
            "SELECT m.uid FROM blobs b CROSS JOIN messages m ON m.blob = b.id AND m.mailbox_id = ?"
            " WHERE b.text_state = 0 ORDER BY m.uid",
            (mailbox_id,),
        )
    ]


def drop_text(conn: sqlite3.Connection, blob: int) -> None:
    """Remove a content's rows from the index (the content is going)."""
    conn.execute("DELETE FROM text_index WHERE rowid = ?", (blob,))
    conn.execute("DELETE FROM field_index WHERE rowid = ?", (blob,))


class SqliteFullText:
    """The full-text methods of :class:`~pobox.store.sqlite.store.SqliteStore` (a mixin)."""

    _db: Database

    async def search_text(
        self, mailbox_id: MailboxId, columns: Sequence[str], needle: str
    ) -> TextMatches:
        tables = {_WHERE[c][0] for c in columns}
        query = trigram_query(needle)

        def run(conn: sqlite3.Connection) -> TextMatches:
            uids: set[Uid] = set()
            for table in tables:
                names = [_WHERE[c][1] for c in columns if _WHERE[c][0] == table]
                check = " OR ".join(f"instr(t.{n}, ?) > 0" for n in names)
                for row in conn.execute(
                    # CROSS JOIN: the index first, then each hit's messages (by messages_blob);
                    # left to itself the planner walks the mailbox and asks the index per row
                    f"SELECT m.uid FROM {table} t"
                    " CROSS JOIN messages m ON m.blob = t.rowid AND m.mailbox_id = ?"
                    f" WHERE {table} MATCH ? AND ({check})",
                    (mailbox_id, query, *([needle] * len(names))),
                ):
                    uids.add(Uid(row[0]))
            return TextMatches(sorted(uids), _unindexed(conn, mailbox_id))

        return await self._db.read(run)

    async def unindexed_contents(
        self, limit: int, account_id: AccountId | None = None
    ) -> dict[BlobId, SearchFields]:
        columns = "b.id, b.subject, b.from_, b.to_, b.cc, b.bcc, b.message_id, b.sent_date"
        if account_id is None:
            sql = f"SELECT {columns} FROM blobs b WHERE b.text_state = 0 ORDER BY b.id LIMIT ?"
            args: tuple[int, ...] = (limit,)
        else:
            sql = (
                f"SELECT DISTINCT {columns} FROM mailboxes x"
                " JOIN messages m ON m.mailbox_id = x.id JOIN blobs b ON b.id = m.blob"
                " WHERE x.account_id = ? AND b.text_state = 0 ORDER BY b.id LIMIT ?"
            )
            args = (account_id, limit)

        def run(conn: sqlite3.Connection) -> dict[BlobId, SearchFields]:
            return {BlobId(r[0]): search_fields(r) for r in conn.execute(sql, args)}

        return await self._db.read(run)

    async def set_search_text(self, items: Mapping[BlobId, SearchText]) -> None:
        entries = sorted(items.items())

        def run(conn: sqlite3.Connection) -> None:
            for blob, text in entries:
                row = conn.execute(
                    "UPDATE blobs SET text_state = 1 WHERE id = ? AND text_state = 0 RETURNING id",
                    (blob,),
                ).fetchone()
                if row is None:
                    continue  # indexed already, or gone
                drop_text(conn, blob)
                conn.execute(
                    "INSERT INTO text_index (rowid, header, body) VALUES (?, ?, ?)",
                    (blob, text.header, text.body),
                )
                conn.execute(
                    "INSERT INTO field_index (rowid, subject, from_, to_, cc, bcc)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (blob, text.subject, text.from_, text.to, text.cc, text.bcc),
                )

        if entries:
            await self._db.write(run)

    async def reset_search_text(self, account_id: AccountId | None = None) -> int:
        def run(conn: sqlite3.Connection) -> int:
            if account_id is None:
                conn.execute("DELETE FROM text_index")
                conn.execute("DELETE FROM field_index")
                return conn.execute("UPDATE blobs SET text_state = 0").rowcount
            blobs = [
                r[0]
                for r in conn.execute(
                    "SELECT DISTINCT m.blob FROM mailboxes x JOIN messages m"
                    " ON m.mailbox_id = x.id WHERE x.account_id = ?",
                    (account_id,),
                )
            ]
            for blob in blobs:
                drop_text(conn, blob)
                conn.execute("UPDATE blobs SET text_state = 0 WHERE id = ?", (blob,))
            return len(blobs)

        return await self._db.write(run)

    async def field_values(
        self, mailbox_id: MailboxId, field: str, uids: Sequence[Uid] | None = None
    ) -> dict[Uid, str | float | None]:
        column = FIELD_COLUMNS[field]
        select = (
            f"SELECT m.uid, b.{column} FROM messages m JOIN blobs b ON b.id = m.blob"
            " WHERE m.mailbox_id = ?"
        )
        wanted = None if uids is None else sorted(set(uids))

        def run(conn: sqlite3.Connection) -> dict[Uid, str | float | None]:
            if wanted is None:
                return dict(conn.execute(select, (mailbox_id,)).fetchall())
            found: dict[Uid, str | float | None] = {}
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                found.update(conn.execute(f"{select} AND m.uid IN ({marks})", (mailbox_id, *chunk)))
            return found

        return await self._db.read(run)

    async def date_page(
        self, mailbox_id: MailboxId, limit: int, *, newest_first: bool = True
    ) -> tuple[int, list[Uid]]:
        way = "DESC" if newest_first else "ASC"
        # the sort date (schema 14) in index messages_sort_date: one page of index entries;
        # the count from the mailbox row's counter (schema 13)
        select = (
            "SELECT uid FROM messages WHERE mailbox_id = ?"
            f" ORDER BY sort_date {way}, uid {way} LIMIT ?"
        )

        def run(conn: sqlite3.Connection) -> tuple[int, list[Uid]]:
            uids = [Uid(r[0]) for r in conn.execute(select, (mailbox_id, max(limit, 0)))]
            row = conn.execute(
                "SELECT n_messages FROM mailboxes WHERE id = ?", (mailbox_id,)
            ).fetchone()
            return int(row[0]) if row else 0, uids

        return await self._db.read(run)
