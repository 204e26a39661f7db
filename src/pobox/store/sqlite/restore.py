"""Backup snapshots and restores of the embedded store (``Store.snapshot``, ``restore_*``).

A snapshot is one read transaction on its own connection: WAL keeps showing it the database as
it was when it began while the server goes on writing. Message files are immutable once named
(a new content gets a new random name), so a file named in the snapshot has the bytes it had
then, as long as it is there: the last message using it may be expunged meanwhile and its file
removed, which ``read_content`` reports as NotFound (pobox.transfer.backup then takes a new
snapshot).

Restores write rows with the ids the image carries (UIDVALIDITY, UIDs, MODSEQs), which no
other write path does; everything else about them is as in pobox.store.sqlite.store.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pobox.errors import AlreadyExists, InvalidInput, NotFound
from pobox.store.api import (
    Account,
    AccountId,
    AccountImage,
    BlobId,
    Expunged,
    LoginImage,
    Mailbox,
    MailboxId,
    MailboxImage,
    MessageImage,
    ModSeq,
    RecoverableImage,
    RestoreContent,
    SearchFields,
    Spool,
    Uid,
)
from pobox.store.rows import PARSED_COLUMNS, join_flags, keywords_text, split_flags
from pobox.store.sqlite.db import as_store_error
from pobox.store.sqlite.files import FileSpool
from pobox.store.sqlite.ids import next_mailbox_id
from pobox.store.sqlite.quota import change_usage, usage_of

if TYPE_CHECKING:
    from pobox.store.sqlite.store import SqliteStore


class SqliteSnapshot:
    """The embedded store as of one moment (see the module docstring)."""

    def __init__(self, store: SqliteStore, addresses: Sequence[str] | None) -> None:
        self.store = store
        self.addresses = None if addresses is None else list(addresses)
        self.conn: sqlite3.Connection | None = None

    def _open(self) -> None:
        conn = sqlite3.connect(self.store.db_path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("PRAGMA query_only = ON")
            conn.execute("BEGIN")
            conn.execute("SELECT count(*) FROM accounts").fetchone()  # the snapshot starts here
        except BaseException:
            conn.close()
            raise
        self.conn = conn

    def _close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("COMMIT")
            self.conn.close()
            self.conn = None

    def _accounts(self) -> list[AccountImage]:
        conn = self.conn
        assert conn is not None
        if self.addresses is None:
            rows = conn.execute(
                "SELECT id, address, password_hash, created FROM accounts ORDER BY address"
            ).fetchall()
        else:
            rows = []
            for address in self.addresses:
                row = conn.execute(
                    "SELECT id, address, password_hash, created FROM accounts WHERE address = ?",
                    (address,),
                ).fetchone()
                if row is None:
                    raise NotFound(f"no account {address}")
                rows.append(row)
        return [self._account(conn, row) for row in rows]

    @staticmethod
    def _account(conn: sqlite3.Connection, row: Sequence[Any]) -> AccountImage:
        account_id = row[0]
        settings = dict(
            conn.execute(
                "SELECT key, value FROM account_settings WHERE account_id = ?", (account_id,)
            ).fetchall()
        )
        aliases = tuple(
            r[0]
            for r in conn.execute(
                "SELECT alias FROM aliases WHERE account_id = ? ORDER BY alias", (account_id,)
            )
        )
        subscriptions = tuple(
            r[0]
            for r in conn.execute(
                "SELECT name FROM subscriptions WHERE account_id = ? ORDER BY name", (account_id,)
            )
        )
        mailboxes = []
        for mb in conn.execute(
            "SELECT id, name, uidvalidity, uidnext, highestmodseq, recent_floor, special_use"
            " FROM mailboxes WHERE account_id = ? ORDER BY name",
            (account_id,),
        ).fetchall():
            messages = tuple(
                MessageImage(
                    uid=r[0],
                    modseq=r[1],
                    flags=join_flags(r[2], r[3]),
                    internal_date=float(r[4]),
                    internal_tz=int(r[5]),
                    save_date=float(r[6]),
                    size=int(r[7]),
                    content=r[8],
                    pop3_uidl=r[9],
                    pop3_hidden_at=None if r[10] is None else float(r[10]),
                )
                for r in conn.execute(
                    "SELECT m.uid, m.modseq, m.flags, m.keywords, m.internal_date,"
                    " m.internal_tz, m.save_date, m.size, b.name, m.pop3_uidl, m.pop3_hidden_at"
                    " FROM messages m JOIN blobs b ON b.id = m.blob WHERE m.mailbox_id = ?"
                    " ORDER BY m.uid",
                    (mb[0],),
                )
            )
            expunged = tuple(
                Expunged(Uid(r[0]), ModSeq(r[1]))
                for r in conn.execute(
                    "SELECT uid, modseq FROM expunged WHERE mailbox_id = ? ORDER BY uid", (mb[0],)
                )
            )
            acl = tuple(
                (r[0], r[1])
                for r in conn.execute(
                    "SELECT identifier, rights FROM mailbox_acl WHERE mailbox_id = ?"
                    " ORDER BY identifier",
                    (mb[0],),
                )
            )
            annotations = tuple(
                (r[0], bytes(r[1]))
                for r in conn.execute(
                    "SELECT name, value FROM annotations WHERE mailbox_id = ?"
                    " AND (owner_id IS NULL OR owner_id = ?) ORDER BY name",
                    (mb[0], account_id),
                )
            )
            mailboxes.append(
                MailboxImage(
                    mb[1], mb[2], mb[3], mb[4], mb[5], mb[6], messages, expunged, acl, annotations
                )
            )
        recoverable = tuple(
            RecoverableImage(
                mailbox_name=r[0],
                uid=r[1],
                uidl=r[2],
                deleted_at=float(r[3]),
                still_present=bool(r[4]),
                content=r[5],
                flags=join_flags(r[6], r[7]),
                internal_date=float(r[8]),
                internal_tz=int(r[9]),
                size=int(r[10]),
            )
            for r in conn.execute(
                "SELECT r.mailbox_name, r.uid, r.uidl, r.deleted_at, r.still_present, b.name,"
                " r.flags, r.keywords, r.internal_date, r.internal_tz, r.size"
                " FROM recoverable r LEFT JOIN blobs b ON b.id = r.blob WHERE r.account_id = ?"
                " ORDER BY r.id",
                (account_id,),
            )
        )
        return AccountImage(
            address=row[1],
            password_hash=row[2],
            created=float(row[3]),
            settings=settings,
            aliases=aliases,
            subscriptions=subscriptions,
            mailboxes=tuple(mailboxes),
            recoverable=recoverable,
            policies=tuple(
                (r[0], r[1], r[2])
                for r in conn.execute(
                    "SELECT folder, key, value FROM folder_policies WHERE account_id = ?"
                    " ORDER BY folder, key",
                    (account_id,),
                )
            ),
            annotations=tuple(
                (r[0], bytes(r[1]))
                for r in conn.execute(
                    "SELECT name, value FROM annotations WHERE mailbox_id IS NULL"
                    " AND owner_id = ? ORDER BY name",
                    (account_id,),
                )
            ),
            logins=tuple(
                LoginImage(r[0], r[1], float(r[2]), r[3], r[4])
                for r in conn.execute(
                    "SELECT label, password_hash, created, last_used, last_address FROM logins"
                    " WHERE account_id = ? ORDER BY id",
                    (account_id,),
                )
            ),
        )

    async def accounts(self) -> list[AccountImage]:
        try:
            return await asyncio.to_thread(self._accounts)
        except sqlite3.Error as exc:
            raise as_store_error(exc) from exc

    def _read(self, key: str) -> bytes:
        try:
            path = self.store.layout.blob_file(key)
        except ValueError:
            raise InvalidInput(f"not a content of this store: {key!r}") from None
        try:
            with open(path, "rb", buffering=0) as fp:  # no buffer: one read of the whole file
                return fp.readall()
        except FileNotFoundError:
            raise NotFound(f"message file {key} is gone") from None

    async def read_content(self, key: str) -> bytes:
        return await asyncio.to_thread(self._read, key)

    def _parsed(self, keys: list[str]) -> dict[str, tuple[bytes, SearchFields]]:
        conn = self.conn
        assert conn is not None
        columns = {r[1] for r in conn.execute("PRAGMA table_info(blobs)")}
        names = [name for name in PARSED_COLUMNS if PARSED_COLUMNS[name] in columns]
        select = ", ".join(PARSED_COLUMNS[name] for name in names)
        found: dict[str, tuple[bytes, SearchFields]] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            for row in conn.execute(
                f"SELECT name, structure, {select} FROM blobs WHERE name IN ({marks})", chunk
            ):
                values = dict(zip(names, row[2:], strict=True))
                sent = values.get("sent_date")
                if sent is not None:
                    values["sent_date"] = datetime.fromtimestamp(sent, UTC)
                found[row[0]] = (bytes(row[1]), SearchFields(**values))
        return found

    async def read_parsed(self, keys: list[str]) -> dict[str, tuple[bytes, SearchFields]]:
        """What was parsed of the contents *keys* when they were stored (the structure and
        search columns of their blobs), as of the snapshot (pobox.transfer.format.Parsed)."""
        try:
            return await asyncio.to_thread(self._parsed, keys)
        except sqlite3.Error as exc:
            raise as_store_error(exc) from exc

    async def read_contents(self, keys: Sequence[str]) -> list[bytes]:
        return await asyncio.to_thread(lambda: [self._read(key) for key in keys])


@contextlib.asynccontextmanager
async def snapshot(
    store: SqliteStore, addresses: Sequence[str] | None
) -> AsyncIterator[SqliteSnapshot]:
    snap = SqliteSnapshot(store, addresses)
    try:
        await asyncio.to_thread(snap._open)
    except sqlite3.Error as exc:
        raise as_store_error(exc) from exc
    try:
        yield snap
    finally:
        await asyncio.to_thread(snap._close)


# -- restore --------------------------------------------------------------------------------


def _taken(conn: sqlite3.Connection, address: str) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM accounts WHERE address = ? UNION ALL"
            " SELECT 1 FROM aliases WHERE alias = ?",
            (address, address),
        ).fetchone()
        is not None
    )


async def restore_account(store: SqliteStore, image: AccountImage, replace: bool) -> Account:
    existing = await store.get_account(image.address)
    if existing is not None:
        if not replace:
            raise AlreadyExists(f"{image.address} already exists (restore with --replace)")
        await store.delete_account(existing.id)

    def run(conn: sqlite3.Connection) -> Account:
        for address in (image.address, *image.aliases):
            if _taken(conn, address):
                raise AlreadyExists(f"{address} already exists")
        cur = conn.execute(
            "INSERT INTO accounts (address, password_hash, created) VALUES (?, ?, ?)",
            (image.address, image.password_hash, image.created),
        )
        account_id = cur.lastrowid or 0
        conn.executemany(
            "INSERT INTO account_settings (account_id, key, value) VALUES (?, ?, ?)",
            [(account_id, k, v) for k, v in image.settings.items()],
        )
        conn.executemany(
            "INSERT INTO folder_policies (account_id, folder, key, value) VALUES (?, ?, ?, ?)",
            [(account_id, *policy) for policy in image.policies],
        )
        conn.executemany(
            "INSERT INTO logins (account_id, label, password_hash, created, last_used,"
            " last_address) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (account_id, x.label, x.password_hash, x.created, x.last_used, x.last_address)
                for x in image.logins
            ],
        )
        conn.executemany(
            "INSERT INTO aliases (alias, account_id) VALUES (?, ?)",
            [(alias, account_id) for alias in image.aliases],
        )
        conn.executemany(
            "INSERT INTO annotations (mailbox_id, owner_id, name, value) VALUES (NULL, ?, ?, ?)",
            [(account_id, name, value) for name, value in image.annotations],
        )
        conn.executemany(
            "INSERT INTO subscriptions (account_id, name) VALUES (?, ?)",
            [(account_id, name) for name in image.subscriptions],
        )
        for mb in image.mailboxes:
            mailbox_id = next_mailbox_id(conn)
            conn.execute(
                "INSERT INTO mailboxes (id, account_id, name, uidvalidity, uidnext, highestmodseq,"
                " recent_floor, special_use) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    mailbox_id,
                    account_id,
                    mb.name,
                    mb.uidvalidity,
                    mb.uidnext,
                    mb.highest_modseq,
                    mb.recent_floor,
                    mb.special_use,
                ),
            )
            conn.executemany(
                "INSERT INTO expunged (mailbox_id, uid, modseq) VALUES (?, ?, ?)",
                [(mailbox_id, e.uid, e.modseq) for e in mb.expunged],
            )
            conn.executemany(
                "INSERT INTO mailbox_acl (mailbox_id, identifier, rights) VALUES (?, ?, ?)",
                [(mailbox_id, who, rights) for who, rights in mb.acl],
            )
            conn.executemany(
                "INSERT INTO annotations (mailbox_id, owner_id, name, value) VALUES (?, ?, ?, ?)",
                [
                    (mailbox_id, account_id if name.startswith("/private/") else None, name, value)
                    for name, value in mb.annotations
                ],
            )
            store._journal(conn, mailbox_id)
        top = max((mb.uidvalidity for mb in image.mailboxes), default=0)
        conn.execute(
            "INSERT INTO counters (name, value) VALUES ('uidvalidity', ?)"
            " ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)",
            (top,),
        )
        return Account(AccountId(account_id), image.address, image.password_hash, image.settings)

    return await store._write(run)


#: Rows per INSERT statement of a restore (the messages table has triggers: one statement for
#: many rows journals each page it touches once, not once per row).
ROWS_PER_INSERT = 500


def _insert_rows(
    conn: sqlite3.Connection, head: str, rows: Sequence[Sequence[Any]], tail: str = ""
) -> None:
    """``head VALUES (...), (...), ... tail``: *rows* in as few statements as ROWS_PER_INSERT
    allows."""
    if not rows:
        return
    marks = "(" + ", ".join("?" * len(rows[0])) + ")"
    for start in range(0, len(rows), ROWS_PER_INSERT):
        chunk = rows[start : start + ROWS_PER_INSERT]
        conn.execute(
            f"{head} VALUES {', '.join([marks] * len(chunk))}{tail}",
            [value for row in chunk for value in row],
        )


def _blobs(
    conn: sqlite3.Connection, keys: Sequence[str], contents: Mapping[str, RestoreContent | BlobId]
) -> dict[str, int]:
    """BlobIds for *keys* (one reference each), storing the new contents among them (their ids
    taken here, after every id ``blobs`` has had: AUTOINCREMENT's rule)."""
    out: dict[str, int] = {}
    uses = Counter(keys)
    new: list[tuple[str, RestoreContent, int]] = []
    for key, count in uses.items():
        try:
            item = contents[key]
        except KeyError:
            raise InvalidInput(f"no content given for {key}") from None
        if isinstance(item, RestoreContent):
            spool = item.spool
            if not isinstance(spool, FileSpool) or not spool.sealed:
                raise ValueError("restore needs sealed spools of this store")
            new.append((key, item, count))
        else:
            if (
                conn.execute(
                    "UPDATE blobs SET refs = refs + ? WHERE id = ?", (count, item)
                ).rowcount
                == 0
            ):
                raise NotFound(f"content {key} is gone")
            out[key] = int(item)
    if not new:
        return out
    first = (
        1
        + conn.execute(
            "SELECT max(coalesce((SELECT max(id) FROM blobs), 0),"
            " coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'blobs'), 0))"
        ).fetchone()[0]
    )
    rows = []
    for n, (key, item, count) in enumerate(new):
        spool = item.spool
        assert isinstance(spool, FileSpool)
        fields = item.fields
        rows.append(
            (
                first + n,
                spool.name,
                spool.size,
                count,
                item.structure,
                fields.subject,
                fields.from_,
                fields.to,
                fields.cc,
                fields.bcc,
                fields.message_id,
                fields.sent_date.timestamp() if fields.sent_date else None,
                fields.references,
            )
        )
        out[key] = first + n
    _insert_rows(
        conn,
        "INSERT INTO blobs (id, name, size, refs, structure, subject, from_, to_, cc, bcc,"
        " message_id, sent_date, thread_refs)",
        rows,
    )
    return out


async def restore_messages(
    store: SqliteStore,
    mailbox_id: MailboxId,
    messages: Sequence[MessageImage],
    contents: Mapping[str, RestoreContent | BlobId],
) -> dict[str, BlobId]:
    def run(conn: sqlite3.Connection) -> dict[str, BlobId]:
        row = conn.execute(
            "SELECT uidnext, highestmodseq FROM mailboxes WHERE id = ?", (mailbox_id,)
        ).fetchone()
        if row is None:
            raise NotFound("mailbox does not exist")
        for m in messages:
            if m.uid >= row[0] or m.uid < 1:
                raise InvalidInput(f"UID {m.uid} is not below the mailbox's UIDNEXT {row[0]}")
            if m.modseq > row[1]:
                raise InvalidInput(f"MODSEQ {m.modseq} is above the mailbox's {row[1]}")
        blobs = _blobs(conn, [m.content for m in messages], contents)
        rows = []
        for m in messages:
            bits, keywords = split_flags(m.flags)
            rows.append(
                (
                    mailbox_id,
                    m.uid,
                    m.modseq,
                    bits,
                    keywords_text(keywords),
                    m.internal_date,
                    m.internal_tz,
                    m.save_date,
                    m.size,
                    blobs[m.content],
                    m.pop3_uidl,
                    m.pop3_hidden_at,
                )
            )
        try:
            # the sort date (schema 14): the content's sent date, else the internal date
            _insert_rows(
                conn,
                "INSERT INTO messages (mailbox_id, uid, modseq, flags, keywords, internal_date,"
                " internal_tz, save_date, size, blob, pop3_uidl, pop3_hidden_at, sort_date)"
                " SELECT *, coalesce((SELECT sent_date FROM blobs WHERE id = column10), column6)"
                " FROM (",
                rows,
                ")",
            )
        except sqlite3.IntegrityError:
            raise InvalidInput("a restored UID is in the mailbox already") from None
        if messages:
            account_id = usage_of(conn, mailbox_id)[0]
            change_usage(conn, account_id, sum(m.size for m in messages), len(messages))
            store._journal(conn, mailbox_id)
        return {key: BlobId(blob) for key, blob in blobs.items()}

    try:
        result = await store._write(run)
    except BaseException:
        _discard(contents)
        raise
    if messages:
        store._notify([mailbox_id])
    return result


def _discard(contents: Mapping[str, RestoreContent | BlobId]) -> None:
    """The files of new contents a failed restore did not store."""
    for item in contents.values():
        if isinstance(item, RestoreContent):
            item.spool.discard()


async def restore_recoverable(
    store: SqliteStore,
    account_id: AccountId,
    items: Sequence[RecoverableImage],
    contents: Mapping[str, RestoreContent | BlobId],
) -> dict[str, BlobId]:
    def run(conn: sqlite3.Connection) -> dict[str, BlobId]:
        mailboxes = dict(
            conn.execute(
                "SELECT name, id FROM mailboxes WHERE account_id = ?", (account_id,)
            ).fetchall()
        )
        blobs = _blobs(conn, [i.content for i in items if i.content is not None], contents)
        for item in items:
            bits, keywords = split_flags(item.flags)
            conn.execute(
                "INSERT INTO recoverable (account_id, mailbox_id, mailbox_name, uid, uidl,"
                " deleted_at, still_present, blob, flags, keywords, internal_date, internal_tz,"
                " size) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    account_id,
                    mailboxes.get(item.mailbox_name),
                    item.mailbox_name,
                    item.uid,
                    item.uidl,
                    item.deleted_at,
                    int(item.still_present),
                    None if item.content is None else blobs[item.content],
                    bits,
                    keywords_text(keywords),
                    item.internal_date,
                    item.internal_tz,
                    item.size,
                ),
            )
        return {key: BlobId(blob) for key, blob in blobs.items()}

    try:
        return await store._write(run)
    except BaseException:
        _discard(contents)
        raise


async def restore_mailbox(
    store: SqliteStore, account_id: AccountId, image: MailboxImage
) -> Mailbox:
    def run(conn: sqlite3.Connection) -> Mailbox:
        row = conn.execute(
            "SELECT id, uidnext FROM mailboxes WHERE account_id = ? AND name = ?",
            (account_id, image.name),
        ).fetchone()
        values = (image.uidvalidity, image.uidnext, image.highest_modseq, image.recent_floor)
        if row is None:
            if (
                conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone()
                is None
            ):
                raise NotFound("no such account")
            mailbox_id = next_mailbox_id(conn)
            conn.execute(
                "INSERT INTO mailboxes (id, account_id, name, uidvalidity, uidnext, highestmodseq,"
                " recent_floor, special_use) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (mailbox_id, account_id, image.name, *values, image.special_use),
            )
        elif row[1] != 1:
            raise AlreadyExists(f"mailbox {image.name!r} has held messages")
        else:
            mailbox_id = row[0]
            conn.execute(
                "UPDATE mailboxes SET uidvalidity = ?, uidnext = ?, highestmodseq = ?,"
                " recent_floor = ? WHERE id = ?",
                (*values, mailbox_id),
            )
            conn.execute("DELETE FROM expunged WHERE mailbox_id = ?", (mailbox_id,))
        conn.executemany(
            "INSERT INTO expunged (mailbox_id, uid, modseq) VALUES (?, ?, ?)",
            [(mailbox_id, e.uid, e.modseq) for e in image.expunged],
        )
        conn.execute(
            "INSERT INTO counters (name, value) VALUES ('uidvalidity', ?)"
            " ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)",
            (image.uidvalidity,),
        )
        store._journal(conn, mailbox_id)
        mailbox = store._get_mailbox(conn, "id = ?", (mailbox_id,))
        assert mailbox is not None
        return mailbox

    mailbox = await store._write(run)
    store._notify([mailbox.id])
    return mailbox


def _seal_spools(spools: Sequence[FileSpool]) -> None:
    """Blocking: every file closed, then one ``sync`` for all of them and their directories
    (instead of two fsyncs per file, as ``FileSpool.seal`` does for one message)."""
    for spool in spools:
        if spool._fp is not None:
            spool._fp.flush()
            spool._fp.close()
            spool._fp = None
    os.sync()
    for spool in spools:
        spool._unsynced = False
        spool.sealed = True


async def seal_spools(spools: Sequence[Spool]) -> None:
    mine = []
    for spool in spools:
        if not isinstance(spool, FileSpool):
            raise ValueError("seal_spools needs spools of this store")
        mine.append(spool)
    await asyncio.to_thread(_seal_spools, mine)
