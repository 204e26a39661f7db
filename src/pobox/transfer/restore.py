"""``pobox restore DEST``: accounts back from a backup, as they were (docs/backup.md).

Each account is written with its password hash, settings, aliases, subscriptions and mailboxes
(UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, expunge log), then its messages a batch at a time with
their UIDs, MODSEQs, flags, dates and POP3 state, then its recovery items. Every content is
checked against its SHA-256 before it is stored; a content several messages share is stored
once. A restore into a store that holds the account already is refused unless *replace*.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
from collections.abc import Sequence, Set
from dataclasses import dataclass
from pathlib import Path

from pobox.errors import InvalidInput, NotFound
from pobox.mail.parse import parse_message
from pobox.service.content import fields_of
from pobox.store.api import (
    AccountImage,
    BlobId,
    MailboxId,
    MessageImage,
    RestoreContent,
    Spool,
    Store,
)
from pobox.transfer import format as fmt
from pobox.transfer.backup import Reporter, _Silent

#: Messages per batch at most (one commit, and one flush to disk of their contents before
#: it), and their contents' bytes at most (beyond one message's own size).
BATCH = 2000
BATCH_BYTES = 32 * 1024 * 1024
#: Worker threads spooling one batch's contents (each is read, checked, written, and parsed
#: when the backup carries no parse of it): more contend for the GIL.
SPOOL_THREADS = 2


@dataclass
class RestoreReport:
    created: str = ""
    accounts: int = 0
    mailboxes: int = 0
    messages: int = 0
    bytes: int = 0


@dataclass
class Backup:
    """What a restore reads of a backup: its time, the images of the accounts to restore, and
    the parse the index carries of each content (by SHA-256; none in older backups)."""

    root: Path
    created: str
    images: list[AccountImage]
    parsed: fmt.Carried


def load_backup(root: Path, addresses: Sequence[str] | None) -> Backup:
    """Blocking: the backup in *root*, with the images of *addresses* (None: all).

    The garbage collector is off while the index is read (its hundreds of thousands of new
    objects, none of them garbage, set off one full collection after another), and what it
    read is frozen after (kept out of the collections of the rest of the restore)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        backup = _load_backup(root, addresses)
    finally:
        if enabled:
            gc.enable()
    gc.freeze()
    return backup


def _load_backup(root: Path, addresses: Sequence[str] | None) -> Backup:
    manifest = fmt.read_manifest(root)
    index = fmt.read_index(root, manifest)
    images = [fmt.account_image(document) for document in index["accounts"]]
    if addresses is not None:
        wanted = {a.lower() for a in addresses}
        found = {i.address.lower() for i in images}
        missing = sorted(wanted - found)
        if missing:
            raise NotFound(f"the backup holds no account {', '.join(missing)}")
        images = [i for i in images if i.address.lower() in wanted]
    return Backup(root, str(manifest.get("created", "")), images, fmt.carried_of(index))


def _spool(store: Store, backup: Backup, digest: str) -> RestoreContent:
    """Blocking: a content out of the backup (checked) into a spool written in one go
    (``Store.spool_content``; sealed later, a batch at a time: ``Store.seal_spools``), with
    what was parsed of it: carried by the index, or parsed here (older backups)."""
    data = fmt.read_object(backup.root, digest)
    carried = backup.parsed.get(digest)
    if carried is not None:
        structure, fields = carried
    else:
        parsed = parse_message(io.BytesIO(data))
        structure, fields = parsed.to_bytes(), fields_of(parsed)
    spool: Spool = store.spool_content(data)
    return RestoreContent(spool, structure, fields)


async def _contents(
    store: Store,
    backup: Backup,
    keys: Sequence[str],
    stored: dict[str, BlobId],
    pending: Set[str] = frozenset(),
) -> dict[str, RestoreContent | BlobId]:
    """The contents *keys* name: those stored before by their blobs, the others read out of the
    backup into spools in worker threads (the default executor's), then sealed together. Keys
    in *pending* (spooled for the batch before, not committed yet) are left out: the caller
    takes their blobs from *stored* once that batch is in."""
    contents: dict[str, RestoreContent | BlobId] = {}
    new = []
    for key in dict.fromkeys(keys):
        blob = stored.get(key)
        if blob is not None:
            contents[key] = blob
        elif key not in pending:
            new.append(key)

    def spool_many(keys: list[str]) -> list[RestoreContent]:
        done: list[RestoreContent] = []
        try:
            for key in keys:
                done.append(_spool(store, backup, key))
        except BaseException:
            for item in done:
                item.spool.discard()
            raise
        return done

    chunks = [new[n::SPOOL_THREADS] for n in range(SPOOL_THREADS) if new[n::SPOOL_THREADS]]
    results = await asyncio.gather(
        *(asyncio.to_thread(spool_many, chunk) for chunk in chunks), return_exceptions=True
    )
    failure: BaseException | None = None
    for chunk, result in zip(chunks, results, strict=True):
        if isinstance(result, BaseException):
            failure = failure or result
        else:
            contents.update(zip(chunk, result, strict=True))
    fresh = [item.spool for item in contents.values() if isinstance(item, RestoreContent)]
    try:
        if failure is not None:
            raise failure
        await store.seal_spools(fresh)  # durable before the restore's commit names them
    except BaseException:
        for spool in fresh:
            spool.discard()
        raise
    return contents


def _discard(contents: dict[str, RestoreContent | BlobId]) -> None:
    for item in contents.values():
        if isinstance(item, RestoreContent):
            item.spool.discard()


async def restore_image(
    store: Store,
    backup: Backup,
    image: AccountImage,
    *,
    replace: bool,
    stored: dict[str, BlobId],
    progress: Reporter,
) -> int:
    """Restore one account; *stored* maps the contents already in the store to their blobs
    (shared between accounts of one restore). Returns the bytes of content restored."""
    account = await store.restore_account(image, replace=replace)
    mailboxes = {m.name: m for m in await store.list_mailboxes(account.id)}
    batches: list[tuple[MailboxId, list[MessageImage]]] = []
    for mb in image.mailboxes:
        mailbox = mailboxes.get(mb.name)
        if mailbox is None:
            raise NotFound(f"mailbox {mb.name} of {image.address} was not created")
        batch: list[MessageImage] = []
        size = 0
        for m in mb.messages:
            batch.append(m)
            size += m.size
            if len(batch) >= BATCH or size >= BATCH_BYTES:
                batches.append((mailbox.id, batch))
                batch, size = [], 0
        if batch:
            batches.append((mailbox.id, batch))
    total = 0
    # one batch ahead: the next batch's contents are read, written and flushed while this
    # one's rows are committed (each batch's contents are sealed before its own commit)
    ahead: asyncio.Task[dict[str, RestoreContent | BlobId]] | None = None
    try:
        for n, (mailbox_id, batch) in enumerate(batches):
            keys = [m.content for m in batch]
            if ahead is None:
                contents = await _contents(store, backup, keys, stored)
            else:
                task, ahead = ahead, None
                contents = await task
                for key in keys:
                    if key not in contents:  # spooled for the batch before: stored by now
                        contents[key] = stored[key]
            if n + 1 < len(batches):
                spooled = {k for k, v in contents.items() if isinstance(v, RestoreContent)}
                following = [m.content for m in batches[n + 1][1]]
                ahead = asyncio.create_task(_contents(store, backup, following, stored, spooled))
            try:
                blobs = await store.restore_messages(mailbox_id, batch, contents)
            except BaseException:
                _discard(contents)
                raise
            for key, blob in blobs.items():
                stored.setdefault(key, blob)
            size = sum(m.size for m in batch)
            total += size
            progress.advance(len(batch), nbytes=size)
    finally:
        if ahead is not None:  # stopped: the contents read ahead are not stored
            with contextlib.suppress(BaseException):
                _discard(await ahead)
    if image.recoverable:
        keys = [r.content for r in image.recoverable if r.content is not None]
        contents = await _contents(store, backup, keys, stored)
        blobs = await store.restore_recoverable(account.id, image.recoverable, contents)
        for key, blob in blobs.items():
            stored.setdefault(key, blob)
    return total


async def restore(
    store: Store,
    root: Path,
    *,
    addresses: Sequence[str] | None = None,
    replace: bool = False,
    progress: Reporter | None = None,
) -> RestoreReport:
    reporter: Reporter = progress or _Silent()
    backup = await asyncio.to_thread(load_backup, root, addresses)
    images = backup.images
    if not replace:  # refuse before writing anything
        for image in images:
            if await store.get_account(image.address) is not None:
                raise InvalidInput(
                    f"{image.address} exists in the target store: restore it with --replace"
                    " (its mail there is deleted first) or restore into another store"
                )
    report = RestoreReport(created=backup.created)
    reporter.set_total(sum(len(mb.messages) for i in images for mb in i.mailboxes))
    stored: dict[str, BlobId] = {}
    for image in images:
        report.bytes += await restore_image(
            store, backup, image, replace=replace, stored=stored, progress=reporter
        )
        report.accounts += 1
        report.mailboxes += len(image.mailboxes)
        report.messages += sum(len(mb.messages) for mb in image.mailboxes)
    return report
