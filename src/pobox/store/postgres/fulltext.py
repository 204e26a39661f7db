"""The full-text index of the PostgreSQL backend (docs/decisions/full-text-search.md).

``blob_text`` keeps each content's folded text with pg_trgm GIN indexes; a search is a ``LIKE
'%string%'`` on the columns asked for, which the trigram indexes answer and PostgreSQL rechecks
exactly. The text is stored folded, so the comparison is exact, not ``ILIKE``. PostgreSQL text
cannot hold NUL: it is stored as the segment separator, which no search string holds either, so
no answer changes. ``blobs.text_state`` says whether a content is indexed; it changes in the
same transaction as its row, and ``ON DELETE CASCADE`` removes the row with the content.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pobox.mail.text import SEPARATOR
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

if TYPE_CHECKING:
    from pobox.store.postgres.store import Tx

T = TypeVar("T")

_COLUMN = {
    "header": "header",
    "body": "body",
    "subject": "subject",
    "from_": "from_",
    "to": "to_",
    "cc": "cc",
    "bcc": "bcc",
}


def like_pattern(needle: str) -> str:
    escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _clean(text: str) -> str:
    return text.replace("\x00", SEPARATOR)


class PostgresFullText:
    """The full-text methods of :class:`~pobox.store.postgres.store.PostgresStore` (a mixin)."""

    if TYPE_CHECKING:

        async def _write(self, fn: Callable[[Tx], Awaitable[T]], *, single: bool = False) -> T: ...
        async def _read(
            self, fn: Callable[[Any], Awaitable[T]], *, snapshot: bool = False
        ) -> T: ...

    async def search_text(
        self, mailbox_id: MailboxId, columns: Sequence[str], needle: str
    ) -> TextMatches:
        # one trigram index per column: a UNION lets each answer its own column (an OR of
        # the columns made PostgreSQL read every row)
        hits = " UNION ".join(
            f"SELECT blob FROM blob_text WHERE {_COLUMN[c]} LIKE $2 ESCAPE '\\'" for c in columns
        )
        sql = (
            f"SELECT m.uid FROM messages m JOIN ({hits}) t ON t.blob = m.blob"
            " WHERE m.mailbox_id = $1 ORDER BY m.uid"
        )
        unindexed = (
            "SELECT m.uid FROM messages m JOIN blobs b ON b.id = m.blob"
            " WHERE m.mailbox_id = $1 AND b.text_state = 0 ORDER BY m.uid"
        )

        async def run(conn: Any) -> TextMatches:
            hits = await conn.fetch(sql, mailbox_id, like_pattern(needle))
            rest = await conn.fetch(unindexed, mailbox_id)
            return TextMatches([Uid(r[0]) for r in hits], [Uid(r[0]) for r in rest])

        return await self._read(run, snapshot=True)

    async def unindexed_contents(
        self, limit: int, account_id: AccountId | None = None
    ) -> dict[BlobId, SearchFields]:
        columns = "b.id, b.subject, b.from_, b.to_, b.cc, b.bcc, b.message_id, b.sent_date"

        async def run(conn: Any) -> dict[BlobId, SearchFields]:
            if account_id is None:
                rows = await conn.fetch(
                    f"SELECT {columns} FROM blobs b WHERE b.text_state = 0 ORDER BY b.id LIMIT $1",
                    limit,
                )
            else:
                rows = await conn.fetch(
                    f"SELECT {columns} FROM blobs b WHERE b.text_state = 0 AND b.id IN"
                    " (SELECT m.blob FROM mailboxes x JOIN messages m ON m.mailbox_id = x.id"
                    "  WHERE x.account_id = $2) ORDER BY b.id LIMIT $1",
                    limit,
                    account_id,
                )
            return {BlobId(r[0]): search_fields(r) for r in rows}

        return await self._read(run)

    async def set_search_text(self, items: Mapping[BlobId, SearchText]) -> None:
        entries = sorted(items.items())
        if not entries:
            return

        async def run(tx: Tx) -> None:
            claimed = {
                r[0]
                for r in await tx.conn.fetch(
                    "UPDATE blobs SET text_state = 1 WHERE id = ANY($1::bigint[])"
                    " AND text_state = 0 RETURNING id",
                    [b for b, _ in entries],
                )
            }
            rows = [
                (
                    b,
                    _clean(t.header),
                    _clean(t.body),
                    _clean(t.subject),
                    _clean(t.from_),
                    _clean(t.to),
                    _clean(t.cc),
                    _clean(t.bcc),
                )
                for b, t in entries
                if b in claimed
            ]
            if rows:
                await tx.conn.executemany(
                    "INSERT INTO blob_text (blob, header, body, subject, from_, to_, cc, bcc)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                    " ON CONFLICT (blob) DO UPDATE SET header = EXCLUDED.header,"
                    " body = EXCLUDED.body, subject = EXCLUDED.subject, from_ = EXCLUDED.from_,"
                    " to_ = EXCLUDED.to_, cc = EXCLUDED.cc, bcc = EXCLUDED.bcc",
                    rows,
                )

        await self._write(run)

    async def reset_search_text(self, account_id: AccountId | None = None) -> int:
        async def run(tx: Tx) -> int:
            if account_id is None:
                await tx.conn.execute("DELETE FROM blob_text")
                status = await tx.conn.execute("UPDATE blobs SET text_state = 0")
            else:
                blobs = (
                    "(SELECT m.blob FROM mailboxes x JOIN messages m ON m.mailbox_id = x.id"
                    " WHERE x.account_id = $1)"
                )
                await tx.conn.execute(f"DELETE FROM blob_text WHERE blob IN {blobs}", account_id)
                status = await tx.conn.execute(
                    f"UPDATE blobs SET text_state = 0 WHERE id IN {blobs}", account_id
                )
            return int(status.split()[-1])

        return await self._write(run)

    async def field_values(
        self, mailbox_id: MailboxId, field: str, uids: Sequence[Uid] | None = None
    ) -> dict[Uid, str | float | None]:
        column = FIELD_COLUMNS[field]
        select = (
            f"SELECT m.uid, b.{column} FROM messages m JOIN blobs b ON b.id = m.blob"
            " WHERE m.mailbox_id = $1"
        )

        async def run(conn: Any) -> dict[Uid, str | float | None]:
            if uids is None:
                rows = await conn.fetch(select, mailbox_id)
            else:
                rows = await conn.fetch(
                    f"{select} AND m.uid = ANY($2::bigint[])", mailbox_id, list(uids)
                )
            return {Uid(r[0]): r[1] for r in rows}

        return await self._read(run)

    async def date_page(
        self, mailbox_id: MailboxId, limit: int, *, newest_first: bool = True
    ) -> tuple[int, list[Uid]]:
        way = "DESC" if newest_first else "ASC"
        # the sort date (schema 14) in index messages_sort_date: one page of index entries;
        # the count from the mailbox row's counter (schema 13), in the same snapshot
        select = (
            "SELECT uid FROM messages WHERE mailbox_id = $1"
            f" ORDER BY sort_date {way}, uid {way} LIMIT $2"
        )

        async def run(conn: Any) -> tuple[int, list[Uid]]:
            rows = await conn.fetch(select, mailbox_id, max(limit, 0))
            count = await conn.fetchval(
                "SELECT n_messages FROM mailboxes WHERE id = $1", mailbox_id
            )
            return int(count or 0), [Uid(r[0]) for r in rows]

        return await self._read(run, snapshot=True)
