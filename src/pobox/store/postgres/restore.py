"""Backup snapshots and restores of the PostgreSQL store (``Store.snapshot``, ``restore_*``).

A snapshot is one REPEATABLE READ, read-only transaction on its own connection, held for as long
as the backup runs: every row, and every content (``blob_chunks``), as of one moment, while the
other connections go on writing.

Restores write rows with the ids the image carries (UIDVALIDITY, UIDs, MODSEQs), which no other
write path does; everything else about them is as in pobox.store.postgres.store.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import asyncpg

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
from pobox.store.postgres.content import TempSpool
from pobox.store.postgres.quota import change_usage
from pobox.store.postgres.schema import CHUNK_SIZE
from pobox.store.rows import PARSED_COLUMNS, join_flags, keywords_text, split_flags

if TYPE_CHECKING:
    from pobox.store.postgres.store import PostgresStore, Tx


class PostgresSnapshot:
    def __init__(self, conn: Any, addresses: Sequence[str] | None) -> None:
        self.conn = conn
        self.addresses = None if addresses is None else list(addresses)
        self._lock = asyncio.Lock()  # one connection: one query at a time

    async def accounts(self) -> list[AccountImage]:
        conn = self.conn
        if self.addresses is None:
            rows = await conn.fetch(
                "SELECT id, address, password_hash, created FROM accounts"
                ' ORDER BY address COLLATE "C"'
            )
        else:
            rows = []
            for address in self.addresses:
                row = await conn.fetchrow(
                    "SELECT id, address, password_hash, created FROM accounts"
                    " WHERE lower(address) = lower($1)",
                    address,
                )
                if row is None:
                    raise NotFound(f"no account {address}")
                rows.append(row)
        return [await self._account(row) for row in rows]

    async def _account(self, row: Any) -> AccountImage:
        conn = self.conn
        account_id = row[0]
        settings = {
            r[0]: r[1]
            for r in await conn.fetch(
                "SELECT key, value FROM account_settings WHERE account_id = $1", account_id
            )
        }
        aliases = tuple(
            r[0]
            for r in await conn.fetch(
                'SELECT alias FROM aliases WHERE account_id = $1 ORDER BY alias COLLATE "C"',
                account_id,
            )
        )
        subscriptions = tuple(
            r[0]
            for r in await conn.fetch(
                'SELECT name FROM subscriptions WHERE account_id = $1 ORDER BY name COLLATE "C"',
                account_id,
            )
        )
        mailboxes = []
        for mb in await conn.fetch(
            "SELECT id, name, uidvalidity, uidnext, highestmodseq, recent_floor, special_use"
            ' FROM mailboxes WHERE account_id = $1 ORDER BY name COLLATE "C"',
            account_id,
        ):
            messages = tuple(
                MessageImage(
                    uid=int(r[0]),
                    modseq=int(r[1]),
                    flags=join_flags(r[2], r[3]),
                    internal_date=float(r[4]),
                    internal_tz=int(r[5]),
                    save_date=float(r[6]),
                    size=int(r[7]),
                    content=str(r[8]),
                    pop3_uidl=r[9],
                    pop3_hidden_at=r[10],
                )
                for r in await conn.fetch(
                    "SELECT uid, modseq, flags, keywords, internal_date, internal_tz, save_date,"
                    " size, blob, pop3_uidl, pop3_hidden_at FROM messages WHERE mailbox_id = $1"
                    " ORDER BY uid",
                    mb[0],
                )
            )
            expunged = tuple(
                Expunged(Uid(r[0]), ModSeq(r[1]))
                for r in await conn.fetch(
                    "SELECT uid, modseq FROM expunged WHERE mailbox_id = $1 ORDER BY uid", mb[0]
                )
            )
            mailboxes.append(
                MailboxImage(
                    mb[1],
                    int(mb[2]),
                    int(mb[3]),
                    int(mb[4]),
                    int(mb[5]),
                    mb[6],
                    messages,
                    expunged,
                    tuple(
                        (r[0], r[1])
                        for r in await conn.fetch(
                            "SELECT identifier, rights FROM mailbox_acl WHERE mailbox_id = $1"
                            " ORDER BY identifier",
                            mb[0],
                        )
                    ),
                    tuple(
                        (r[0], bytes(r[1]))
                        for r in await conn.fetch(
                            "SELECT name, value FROM annotations WHERE mailbox_id = $1"
                            ' AND (owner_id IS NULL OR owner_id = $2) ORDER BY name COLLATE "C"',
                            mb[0],
                            account_id,
                        )
                    ),
                )
            )
        recoverable = tuple(
            RecoverableImage(
                mailbox_name=r[0],
                uid=int(r[1]),
                uidl=r[2],
                deleted_at=float(r[3]),
                still_present=bool(r[4]),
                content=None if r[5] is None else str(r[5]),
                flags=join_flags(r[6], r[7]),
                internal_date=float(r[8]),
                internal_tz=int(r[9]),
                size=int(r[10]),
            )
            for r in await conn.fetch(
                "SELECT mailbox_name, uid, uidl, deleted_at, still_present, blob, flags,"
                " keywords, internal_date, internal_tz, size FROM recoverable"
                " WHERE account_id = $1 ORDER BY id",
                account_id,
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
                for r in await conn.fetch(
                    "SELECT folder, key, value FROM folder_policies WHERE account_id = $1"
                    ' ORDER BY folder COLLATE "C", key COLLATE "C"',
                    account_id,
                )
            ),
            annotations=tuple(
                (r[0], bytes(r[1]))
                for r in await conn.fetch(
                    "SELECT name, value FROM annotations WHERE mailbox_id IS NULL"
                    ' AND owner_id = $1 ORDER BY name COLLATE "C"',
                    account_id,
                )
            ),
            logins=tuple(
                LoginImage(r[0], r[1], float(r[2]), None if r[3] is None else float(r[3]), r[4])
                for r in await conn.fetch(
                    "SELECT label, password_hash, created, last_used, last_address FROM logins"
                    " WHERE account_id = $1 ORDER BY id",
                    account_id,
                )
            ),
        )

    async def read_content(self, key: str) -> bytes:
        try:
            blob = int(key)
        except ValueError:
            raise InvalidInput(f"not a content of this store: {key!r}") from None
        async with self._lock:
            rows = await self.conn.fetch(
                "SELECT data FROM blob_chunks WHERE blob = $1 ORDER BY seq", blob
            )
            size = (
                None
                if rows
                else await self.conn.fetchval("SELECT size FROM blobs WHERE id = $1", blob)
            )
        if not rows:
            if size is None:
                raise NotFound(f"content {key} is gone")
            return b""
        return b"".join(bytes(r[0]) for r in rows)

    async def read_parsed(self, keys: list[str]) -> dict[str, tuple[bytes, SearchFields]]:
        """What was parsed of the contents *keys* when they were stored (the structure and
        search columns of their blobs), as of the snapshot (pobox.transfer.format.Parsed)."""
        try:
            blobs = [int(key) for key in keys]
        except ValueError:
            raise InvalidInput(f"not contents of this store: {list(keys)!r}") from None
        found: dict[str, tuple[bytes, SearchFields]] = {}
        async with self._lock:
            columns = {
                r[0]
                for r in await self.conn.fetch(
                    "SELECT attname FROM pg_attribute WHERE attrelid = 'blobs'::regclass"
                    " AND attnum > 0 AND NOT attisdropped"
                )
            }
            names = [name for name in PARSED_COLUMNS if PARSED_COLUMNS[name] in columns]
            select = ", ".join(PARSED_COLUMNS[name] for name in names)
            for start in range(0, len(blobs), 5000):
                for row in await self.conn.fetch(
                    f"SELECT id, structure, {select} FROM blobs WHERE id = ANY($1::bigint[])",
                    blobs[start : start + 5000],
                ):
                    values = dict(zip(names, list(row)[2:], strict=True))
                    sent = values.get("sent_date")
                    if sent is not None:
                        values["sent_date"] = datetime.fromtimestamp(sent, UTC)
                    found[str(row[0])] = (bytes(row[1]), SearchFields(**values))
        return found

    async def read_contents(self, keys: Sequence[str]) -> list[bytes]:
        try:
            blobs = [int(key) for key in keys]
        except ValueError:
            raise InvalidInput(f"not contents of this store: {list(keys)!r}") from None
        async with self._lock:
            rows = await self.conn.fetch(
                "SELECT b.id, c.data FROM blobs b LEFT JOIN blob_chunks c ON c.blob = b.id"
                " WHERE b.id = ANY($1::bigint[]) ORDER BY b.id, c.seq",
                blobs,
            )
        parts: dict[int, list[bytes]] = {}
        for row in rows:
            chunks = parts.setdefault(row[0], [])
            if row[1] is not None:
                chunks.append(bytes(row[1]))
        missing = [key for key, blob in zip(keys, blobs, strict=True) if blob not in parts]
        if missing:
            raise NotFound(f"content {missing[0]} is gone")
        return [b"".join(parts[blob]) for blob in blobs]


@contextlib.asynccontextmanager
async def snapshot(
    store: PostgresStore, addresses: Sequence[str] | None
) -> AsyncIterator[PostgresSnapshot]:
    from pobox.store.postgres.store import as_store_error

    try:
        conn = await asyncpg.connect(store.dsn, timeout=10)
    except Exception as exc:
        raise as_store_error(exc) from exc
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            await conn.fetchval("SELECT count(*) FROM accounts")  # the snapshot starts here
            yield PostgresSnapshot(conn, addresses)
    finally:
        await conn.close()


# -- restore --------------------------------------------------------------------------------


async def restore_account(store: PostgresStore, image: AccountImage, replace: bool) -> Account:
    existing = await store.get_account(image.address)
    if existing is not None:
        if not replace:
            raise AlreadyExists(f"{image.address} already exists (restore with --replace)")
        await store.delete_account(existing.id)

    async def run(tx: Tx) -> Account:
        conn = tx.conn
        for address in (image.address, *image.aliases):
            if await store._address_taken(conn, address):
                raise AlreadyExists(f"{address} already exists")
        account_id = await conn.fetchval(
            "INSERT INTO accounts (address, password_hash, created) VALUES ($1, $2, $3)"
            " RETURNING id",
            image.address,
            image.password_hash,
            image.created,
        )
        if image.settings:
            await conn.executemany(
                "INSERT INTO account_settings (account_id, key, value) VALUES ($1, $2, $3)",
                [(account_id, k, v) for k, v in image.settings.items()],
            )
        if image.policies:
            await conn.executemany(
                "INSERT INTO folder_policies (account_id, folder, key, value)"
                " VALUES ($1, $2, $3, $4)",
                [(account_id, *policy) for policy in image.policies],
            )
        if image.logins:
            await conn.executemany(
                "INSERT INTO logins (account_id, label, password_hash, created, last_used,"
                " last_address) VALUES ($1, $2, $3, $4, $5, $6)",
                [
                    (account_id, x.label, x.password_hash, x.created, x.last_used, x.last_address)
                    for x in image.logins
                ],
            )
        if image.aliases:
            await conn.executemany(
                "INSERT INTO aliases (alias, account_id) VALUES ($1, $2)",
                [(alias, account_id) for alias in image.aliases],
            )
        if image.annotations:
            await conn.executemany(
                "INSERT INTO annotations (mailbox_id, owner_id, name, value)"
                " VALUES (NULL, $1, $2, $3)",
                [(account_id, name, value) for name, value in image.annotations],
            )
        if image.subscriptions:
            await conn.executemany(
                "INSERT INTO subscriptions (account_id, name) VALUES ($1, $2)",
                [(account_id, name) for name in image.subscriptions],
            )
        for mb in image.mailboxes:
            mailbox_id = await conn.fetchval(
                "INSERT INTO mailboxes (account_id, name, uidvalidity, uidnext, highestmodseq,"
                " recent_floor, special_use) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                account_id,
                mb.name,
                mb.uidvalidity,
                mb.uidnext,
                mb.highest_modseq,
                mb.recent_floor,
                mb.special_use,
            )
            if mb.expunged:
                await conn.executemany(
                    "INSERT INTO expunged (mailbox_id, uid, modseq) VALUES ($1, $2, $3)",
                    [(mailbox_id, e.uid, e.modseq) for e in mb.expunged],
                )
            if mb.acl:
                await conn.executemany(
                    "INSERT INTO mailbox_acl (mailbox_id, identifier, rights) VALUES ($1, $2, $3)",
                    [(mailbox_id, who, rights) for who, rights in mb.acl],
                )
            if mb.annotations:
                await conn.executemany(
                    "INSERT INTO annotations (mailbox_id, owner_id, name, value)"
                    " VALUES ($1, $2, $3, $4)",
                    [
                        (mailbox_id, account_id if n.startswith("/private/") else None, n, v)
                        for n, v in mb.annotations
                    ],
                )
            await tx.journal(mailbox_id)
        top = max((mb.uidvalidity for mb in image.mailboxes), default=0)
        await conn.execute(
            "INSERT INTO counters (name, value) VALUES ('uidvalidity', $1)"
            " ON CONFLICT (name) DO UPDATE SET value = greatest(counters.value, excluded.value)",
            top,
        )
        return Account(AccountId(account_id), image.address, image.password_hash, image.settings)

    return await store._write(run)


#: Content bytes sent in one statement at most (beyond one message's own size).
CHUNKS_BYTES = 16 * 1024 * 1024
#: Restored contents up to this size wait for their commit in memory (MemorySpool), larger
#: ones in a temporary file (a restore has two batches of contents at most under way).
MEMORY_SPOOL = CHUNK_SIZE


class MemorySpool:
    """A restored content held in memory until the commit that stores it: its bytes were in
    memory already (read out of a backup), a temporary file would only be written and read
    back. Nothing to make durable: the commit writing its chunks does that."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)
        self.sealed = False

    def write(self, data: bytes) -> None:
        if self.sealed:
            raise ValueError("spool is sealed")
        self.data += data
        self.size += len(data)

    def seal(self) -> None:
        self.sealed = True

    def open(self) -> BinaryIO:
        return io.BytesIO(self.data)

    def discard(self) -> None:
        self.data = b""


def spool_content(directory: Path | None, data: bytes) -> Spool:
    """Blocking: *data* as a spool for a restore (Store.spool_content): in memory up to
    MEMORY_SPOOL, else in a temporary file in *directory*."""
    if len(data) <= MEMORY_SPOOL:
        return MemorySpool(data)
    spool = TempSpool(directory)
    try:
        spool.write(data)
    except BaseException:
        spool.discard()
        raise
    return spool


def _read_chunks(
    spools: Sequence[TempSpool | MemorySpool],
) -> tuple[list[int], list[int], list[bytes]]:
    """Blocking: every spool's content cut in ``blob_chunks`` rows: (spool index, seq, data)."""
    owners: list[int] = []
    seqs: list[int] = []
    datas: list[bytes] = []
    for n, spool in enumerate(spools):
        if isinstance(spool, MemorySpool):
            data = spool.data
            for seq, start in enumerate(range(0, spool.size, CHUNK_SIZE)):
                owners.append(n)
                seqs.append(seq)
                datas.append(data[start : start + CHUNK_SIZE])  # the whole: no copy
            continue
        with open(spool.path, "rb") as fp:
            for seq in range((spool.size + CHUNK_SIZE - 1) // CHUNK_SIZE):
                owners.append(n)
                seqs.append(seq)
                datas.append(fp.read(CHUNK_SIZE))
    return owners, seqs, datas


async def _blobs(
    conn: Any, keys: Sequence[str], contents: Mapping[str, RestoreContent | BlobId]
) -> tuple[dict[str, int], list[TempSpool | MemorySpool]]:
    """BlobIds for *keys* (one reference each), storing the new contents among them (a few
    statements for all of them); returns the spools to discard after the commit."""
    out: dict[str, int] = {}
    new: list[tuple[str, RestoreContent, TempSpool | MemorySpool, int]] = []
    for key, count in Counter(keys).items():
        try:
            item = contents[key]
        except KeyError:
            raise InvalidInput(f"no content given for {key}") from None
        if isinstance(item, RestoreContent):
            spool = item.spool
            if not isinstance(spool, TempSpool | MemorySpool) or not spool.sealed:
                raise ValueError("restore needs sealed spools of this store")
            new.append((key, item, spool, count))
        else:
            status = await conn.execute(
                "UPDATE blobs SET refs = refs + $2 WHERE id = $1", int(item), count
            )
            if status.endswith(" 0"):
                raise NotFound(f"content {key} is gone")
            out[key] = int(item)
    if not new:
        return out, []
    # contents stored by this transaction are compressed with lz4 where the server has it
    # (PostgreSQL 14 and later), not pglz: several times faster, the size about the same
    await conn.execute(
        "SELECT set_config('default_toast_compression', 'lz4', true) FROM pg_settings"
        " WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)"
    )
    ids = [
        int(r[0])
        for r in await conn.fetch(
            "SELECT nextval(pg_get_serial_sequence('blobs', 'id')) FROM generate_series(1, $1)",
            len(new),
        )
    ]
    fields = [item.fields for _, item, _, _ in new]
    await conn.execute(
        "INSERT INTO blobs (id, size, refs, structure, subject, from_, to_, cc, bcc, message_id,"
        " sent_date, thread_refs) SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::int[],"
        " $4::bytea[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],"
        " $11::float8[], $12::text[])",
        ids,
        [spool.size for _, _, spool, _ in new],
        [count for _, _, _, count in new],
        [item.structure for _, item, _, _ in new],
        [f.subject for f in fields],
        [f.from_ for f in fields],
        [f.to for f in fields],
        [f.cc for f in fields],
        [f.bcc for f in fields],
        [f.message_id for f in fields],
        [f.sent_date.timestamp() if f.sent_date else None for f in fields],
        [f.references for f in fields],
    )
    spools = [spool for _, _, spool, _ in new]
    group: list[int] = []  # indexes into spools, up to about CHUNKS_BYTES of content
    size = 0
    for n, pending in enumerate([*spools, None]):
        if pending is not None:
            group.append(n)
            size += pending.size
            if size < CHUNKS_BYTES:
                continue
        if not group:
            break
        owners, seqs, datas = await asyncio.to_thread(_read_chunks, [spools[i] for i in group])
        if owners:
            # binary COPY: the server parses no statement and no array of chunks
            await conn.copy_records_to_table(
                "blob_chunks",
                records=zip([ids[group[i]] for i in owners], seqs, datas, strict=True),
                columns=("blob", "seq", "data"),
            )
        group, size = [], 0
    for blob, (key, _, _, _) in zip(ids, new, strict=True):
        out[key] = blob
    return out, spools


def _discard(contents: Mapping[str, RestoreContent | BlobId]) -> None:
    """The spools of new contents a failed restore did not store."""
    for item in contents.values():
        if isinstance(item, RestoreContent):
            item.spool.discard()


async def restore_messages(
    store: PostgresStore,
    mailbox_id: MailboxId,
    messages: Sequence[MessageImage],
    contents: Mapping[str, RestoreContent | BlobId],
) -> dict[str, BlobId]:
    spools: list[TempSpool | MemorySpool] = []

    async def run(tx: Tx) -> dict[str, BlobId]:
        conn = tx.conn
        row = await conn.fetchrow(
            "SELECT uidnext, highestmodseq FROM mailboxes WHERE id = $1 FOR UPDATE", mailbox_id
        )
        if row is None:
            raise NotFound("mailbox does not exist")
        for m in messages:
            if m.uid >= row[0] or m.uid < 1:
                raise InvalidInput(f"UID {m.uid} is not below the mailbox's UIDNEXT {row[0]}")
            if m.modseq > row[1]:
                raise InvalidInput(f"MODSEQ {m.modseq} is above the mailbox's {row[1]}")
        blobs, used = await _blobs(conn, [m.content for m in messages], contents)
        spools[:] = used
        split = [split_flags(m.flags) for m in messages]
        try:
            await conn.execute(
                "INSERT INTO messages (mailbox_id, uid, modseq, flags, keywords, internal_date,"
                " internal_tz, save_date, size, blob, pop3_uidl, pop3_hidden_at, sort_date)"
                " SELECT $1::bigint, u, m, f, k, i, z, sv, s, b, p, h,"
                " coalesce((SELECT sent_date FROM blobs WHERE id = b), i) FROM unnest("
                "$2::bigint[], $3::bigint[], $4::int[], $5::text[], $6::float8[], $7::int[],"
                " $8::float8[], $9::bigint[], $10::bigint[], $11::text[], $12::float8[])"
                " AS d(u, m, f, k, i, z, sv, s, b, p, h)",
                mailbox_id,
                [m.uid for m in messages],
                [m.modseq for m in messages],
                [bits for bits, _ in split],
                [keywords_text(kw) for _, kw in split],
                [m.internal_date for m in messages],
                [m.internal_tz for m in messages],
                [m.save_date for m in messages],
                [m.size for m in messages],
                [blobs[m.content] for m in messages],
                [m.pop3_uidl for m in messages],
                [m.pop3_hidden_at for m in messages],
            )
        except asyncpg.exceptions.UniqueViolationError:
            raise InvalidInput("a restored UID is in the mailbox already") from None
        if messages:
            account_id = await conn.fetchval(
                "SELECT account_id FROM mailboxes WHERE id = $1", mailbox_id
            )
            await change_usage(conn, account_id, sum(m.size for m in messages), len(messages))
        if messages:
            await tx.journal(mailbox_id)
        return {key: BlobId(blob) for key, blob in blobs.items()}

    try:
        return await store._write(run)
    except BaseException:
        _discard(contents)  # none of them stored
        raise
    finally:
        for spool in spools:
            spool.discard()


async def restore_recoverable(
    store: PostgresStore,
    account_id: AccountId,
    items: Sequence[RecoverableImage],
    contents: Mapping[str, RestoreContent | BlobId],
) -> dict[str, BlobId]:
    spools: list[TempSpool | MemorySpool] = []

    async def run(tx: Tx) -> dict[str, BlobId]:
        conn = tx.conn
        mailboxes = {
            r[0]: r[1]
            for r in await conn.fetch(
                "SELECT name, id FROM mailboxes WHERE account_id = $1", account_id
            )
        }
        keys = [i.content for i in items if i.content is not None]
        blobs, used = await _blobs(conn, keys, contents)
        spools[:] = used
        for item in items:
            bits, keywords = split_flags(item.flags)
            await conn.execute(
                "INSERT INTO recoverable (account_id, mailbox_id, mailbox_name, uid, uidl,"
                " deleted_at, still_present, blob, flags, keywords, internal_date, internal_tz,"
                " size) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                account_id,
                mailboxes.get(item.mailbox_name),
                item.mailbox_name,
                item.uid,
                item.uidl,
                item.deleted_at,
                item.still_present,
                None if item.content is None else blobs[item.content],
                bits,
                keywords_text(keywords),
                item.internal_date,
                item.internal_tz,
                item.size,
            )
        return {key: BlobId(blob) for key, blob in blobs.items()}

    try:
        return await store._write(run)
    except BaseException:
        _discard(contents)  # none of them stored
        raise
    finally:
        for spool in spools:
            spool.discard()


async def restore_mailbox(
    store: PostgresStore, account_id: AccountId, image: MailboxImage
) -> Mailbox:
    async def run(tx: Tx) -> Mailbox:
        conn = tx.conn
        values = (image.uidvalidity, image.uidnext, image.highest_modseq, image.recent_floor)
        row = await conn.fetchrow(
            "SELECT id, uidnext FROM mailboxes WHERE account_id = $1 AND name = $2 FOR UPDATE",
            account_id,
            image.name,
        )
        if row is None:
            if not await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM accounts WHERE id = $1)", account_id
            ):
                raise NotFound("no such account")
            mailbox_id = await conn.fetchval(
                "INSERT INTO mailboxes (account_id, name, uidvalidity, uidnext, highestmodseq,"
                " recent_floor, special_use) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                " ON CONFLICT (account_id, name) DO NOTHING RETURNING id",
                account_id,
                image.name,
                *values,
                image.special_use,
            )
            if mailbox_id is None:
                raise AlreadyExists(f"mailbox {image.name!r} was created meanwhile")
        elif row[1] != 1:
            raise AlreadyExists(f"mailbox {image.name!r} has held messages")
        else:
            mailbox_id = row[0]
            await conn.execute(
                "UPDATE mailboxes SET uidvalidity = $2, uidnext = $3, highestmodseq = $4,"
                " recent_floor = $5 WHERE id = $1",
                mailbox_id,
                *values,
            )
            await conn.execute("DELETE FROM expunged WHERE mailbox_id = $1", mailbox_id)
        if image.expunged:
            await conn.executemany(
                "INSERT INTO expunged (mailbox_id, uid, modseq) VALUES ($1, $2, $3)",
                [(mailbox_id, e.uid, e.modseq) for e in image.expunged],
            )
        await conn.execute(
            "INSERT INTO counters (name, value) VALUES ('uidvalidity', $1)"
            " ON CONFLICT (name) DO UPDATE SET value = greatest(counters.value, excluded.value)",
            image.uidvalidity,
        )
        await tx.journal(mailbox_id)
        mailbox = await store._get_mailbox(conn, "id = $1", mailbox_id)
        assert mailbox is not None
        return mailbox

    return await store._write(run)


async def seal_spools(spools: Sequence[Spool]) -> None:
    """Temporary files: whole once written (durability comes with the restore's commit)."""
    for spool in spools:
        if not isinstance(spool, TempSpool | MemorySpool):
            raise ValueError("seal_spools needs spools of this store")
        spool.seal()
