"""``pobox restore DEST``: accounts back from a backup, as they were (docs/backup.md).

Each account is written with its password hash, settings, aliases, subscriptions and mailboxes
(UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, expunge log), then its messages a batch at a time with
their UIDs, MODSEQs, flags, dates and POP3 state, then its recovery items. Every content is
checked against its SHA-256 before it is stored; a content several messages share is stored
once. A restore into a store that holds the account already is refused unless *replace*.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pobox.errors import InvalidInput, NotFound
from pobox.mail.parse import parse_message
from pobox.service.content import fields_of
from pobox.store.api import AccountImage, BlobId, MessageImage, RestoreContent, Spool, Store
from pobox.transfer import format as fmt
from pobox.transfer.backup import Reporter, _Silent

BATCH = 500
#: Contents spooled per worker-thread call (each is written, fsync'd and parsed).
SPOOL_CHUNK = 25


@dataclass
class RestoreReport:
    created: str = ""
    accounts: int = 0
    mailboxes: int = 0
    messages: int = 0
    bytes: int = 0


def load_images(root: Path, addresses: Sequence[str] | None) -> tuple[str, list[AccountImage]]:
    """Blocking: the backup's creation time and the images of *addresses* (None: all)."""
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
    return str(manifest.get("created", "")), images


def _spool(store: Store, root: Path, digest: str) -> RestoreContent:
    """Blocking: a content out of the backup (checked) into a spool (sealed later, a batch at
    a time: ``Store.seal_spools``), parsed once."""
    data = fmt.read_object(root, digest)
    spool: Spool = store.new_spool()
    try:
        spool.write(data)
        parsed = parse_message(io.BytesIO(data))  # the bytes just written, from memory
    except BaseException:
        spool.discard()
        raise
    return RestoreContent(spool, parsed.to_bytes(), fields_of(parsed))


async def _contents(
    store: Store, root: Path, keys: Sequence[str], stored: dict[str, BlobId]
) -> dict[str, RestoreContent | BlobId]:
    """The contents *keys* name: those stored before by their blobs, the others read out of the
    backup into spools in worker threads (the default executor's), then sealed together."""
    contents: dict[str, RestoreContent | BlobId] = {}
    new = []
    for key in dict.fromkeys(keys):
        blob = stored.get(key)
        if blob is not None:
            contents[key] = blob
        else:
            new.append(key)

    def spool_many(keys: list[str]) -> list[RestoreContent]:
        done: list[RestoreContent] = []
        try:
            for key in keys:
                done.append(_spool(store, root, key))
        except BaseException:
            for item in done:
                item.spool.discard()
            raise
        return done

    chunks = [new[i : i + SPOOL_CHUNK] for i in range(0, len(new), SPOOL_CHUNK)]
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


async def restore_image(
    store: Store,
    root: Path,
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
    total = 0
    for mb in image.mailboxes:
        mailbox = mailboxes.get(mb.name)
        if mailbox is None:
            raise NotFound(f"mailbox {mb.name} of {image.address} was not created")
        for start in range(0, len(mb.messages), BATCH):
            batch: list[MessageImage] = list(mb.messages[start : start + BATCH])
            contents = await _contents(store, root, [m.content for m in batch], stored)
            try:
                blobs = await store.restore_messages(mailbox.id, batch, contents)
            except BaseException:
                for item in contents.values():
                    if isinstance(item, RestoreContent):
                        item.spool.discard()
                raise
            for key, blob in blobs.items():
                stored.setdefault(key, blob)
            size = sum(m.size for m in batch)
            total += size
            progress.advance(len(batch), nbytes=size)
    if image.recoverable:
        keys = [r.content for r in image.recoverable if r.content is not None]
        contents = await _contents(store, root, keys, stored)
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
    created, images = await asyncio.to_thread(load_images, root, addresses)
    if not replace:  # refuse before writing anything
        for image in images:
            if await store.get_account(image.address) is not None:
                raise InvalidInput(
                    f"{image.address} exists in the target store: restore it with --replace"
                    " (its mail there is deleted first) or restore into another store"
                )
    report = RestoreReport(created=created)
    reporter.set_total(sum(len(mb.messages) for i in images for mb in i.mailboxes))
    stored: dict[str, BlobId] = {}
    for image in images:
        report.bytes += await restore_image(
            store, root, image, replace=replace, stored=stored, progress=reporter
        )
        report.accounts += 1
        report.mailboxes += len(image.mailboxes)
        report.messages += sum(len(mb.messages) for mb in image.mailboxes)
    return report
