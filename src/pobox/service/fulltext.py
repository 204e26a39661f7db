"""The full-text index: what goes into it, and the indexer that fills it.

See docs/decisions/full-text-search.md. Each content (a message file, shared by its copies) gets
one entry: its searchable text as pobox.mail.text defines it, folded, so that the store can
compare exactly. The indexer runs in the background (in one worker of ``pobox serve``, and in
``pobox reindex``): delivery and APPEND never wait for it, and SEARCH scans the few contents
that are not indexed yet, so an answer never depends on how far the indexer has come.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from pobox.errors import NotFound, Temporary
from pobox.mail.structure import ParsedMessage
from pobox.mail.text import SEPARATOR, Reader, body_segments, fold, header_text
from pobox.store.api import (
    AccountId,
    BlobId,
    Content,
    MailboxId,
    SearchFields,
    SearchText,
    Store,
)

log = logging.getLogger("pobox.fulltext")

#: Contents read and indexed together (one store write for the batch).
BATCH = 64
#: The indexer looks for new contents this often when nothing woke it.
POLL_SECONDS = 2.0
#: Characters of text written to the index per transaction (one transaction holds SQLite's
#: single writer for about 25 ms of this).
WRITE_TEXT = 128 * 1024
#: The running indexer writes only after this long without new mail ...
QUIET_SECONDS = 0.5
#: ... or after this long, so that a steady stream of mail cannot hold it off for good.
MAX_DEFER = 30.0


def usable(needle: str) -> bool:
    """Whether the index can answer a search for *needle* (folded): three characters or more
    (a trigram), and neither NUL nor the segment separator."""
    if len(needle) < 3 or "\x00" in needle or SEPARATOR in needle:
        return False
    try:
        needle.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def search_text(parsed: ParsedMessage, read: Reader, fields: SearchFields) -> SearchText:
    """A content's index entry (blocking: reads and decodes its text parts)."""
    return dataclasses.replace(
        _fields_only(fields),
        header=fold(header_text(parsed.header)),
        body=SEPARATOR.join(fold(s) for s in body_segments(parsed, read)),
    )


def _fields_only(fields: SearchFields) -> SearchText:
    return SearchText(
        subject=fold(fields.subject),
        from_=fold(fields.from_),
        to=fold(fields.to),
        cc=fold(fields.cc),
        bcc=fold(fields.bcc),
    )


@dataclass(frozen=True, slots=True)
class BatchResult:
    contents: int  # contents indexed
    octets: int  # their size


async def index_batch(
    store: Store,
    limit: int = BATCH,
    account_id: AccountId | None = None,
    before_write: Callable[[], Awaitable[None]] | None = None,
) -> BatchResult | None:
    """Index up to *limit* contents that are not indexed yet; None when there were none.
    The entries are written WRITE_TEXT characters at a time, each after *before_write*."""
    pending = await store.unindexed_contents(limit, account_id)
    if not pending:
        return None
    structures = await store.get_structures(pending)
    contents = await store.open_contents(structures)
    try:
        texts, octets = await asyncio.to_thread(_extract, pending, structures, contents)
    finally:
        for content in contents.values():
            content.close()
    chunk: dict[BlobId, SearchText] = {}
    size = 0
    for blob, text in texts.items():
        chunk[blob] = text
        size += len(text.header) + len(text.body)
        if size >= WRITE_TEXT:
            await _write(store, chunk, before_write)
            chunk, size = {}, 0
    if chunk:
        await _write(store, chunk, before_write)
    return BatchResult(len(texts), octets)


async def _write(
    store: Store,
    chunk: Mapping[BlobId, SearchText],
    before_write: Callable[[], Awaitable[None]] | None,
) -> None:
    if before_write is not None:
        await before_write()
    await store.set_search_text(chunk)


def _extract(
    pending: Mapping[BlobId, SearchFields],
    structures: Mapping[BlobId, bytes],
    contents: Mapping[BlobId, Content],
) -> tuple[dict[BlobId, SearchText], int]:
    texts: dict[BlobId, SearchText] = {}
    octets = 0
    for blob, fields in pending.items():
        raw = structures.get(blob)
        if raw is None:
            continue  # gone meanwhile
        parsed = ParsedMessage.from_bytes(raw)
        content = contents.get(blob)
        try:
            if content is None:
                raise NotFound("its message file is missing")
            texts[blob] = search_text(parsed, content.read, fields)
        except (OSError, NotFound) as exc:
            # A scan finds nothing in a content it cannot read either: index the header fields
            # alone, so that both agree (`pobox reindex` tries again once it is readable).
            log.warning("content %s indexed without its text: %s", blob, exc)
            texts[blob] = _fields_only(fields)
        except Exception:  # a defect in decoding: keep it from stopping the indexer
            log.exception("content %s: text not indexed", blob)
            texts[blob] = _fields_only(fields)
        octets += parsed.size
    return texts, octets


class Indexer:
    """Keeps the index current in a running server: woken by the store's change events (a
    delivery or APPEND anywhere), and every POLL_SECONDS otherwise."""

    def __init__(self, store: Store, *, batch: int = BATCH) -> None:
        self.store = store
        self.batch = batch
        self._wake = asyncio.Event()
        self._last_change = 0.0
        self.indexed = 0

    def _on_change(self, mailbox: MailboxId) -> None:
        self._last_change = time.monotonic()
        self._wake.set()

    async def _quiet(self) -> None:
        """Wait until no mail has arrived for QUIET_SECONDS (at most MAX_DEFER): SQLite has one
        writer, and a delivery waiting for the index's transaction is a delivery slowed down."""
        deadline = time.monotonic() + MAX_DEFER
        while True:
            now = time.monotonic()
            left = min(QUIET_SECONDS - (now - self._last_change), deadline - now)
            if left <= 0:
                return
            await asyncio.sleep(left)

    async def run(self) -> None:
        """Index until cancelled."""
        self.store.add_listener(self._on_change)
        try:
            while True:
                result = await self._batch()
                if result is not None and result.contents:
                    self.indexed += result.contents
                    await asyncio.sleep(0)  # let sessions in between batches
                    continue
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
        finally:
            self.store.remove_listener(self._on_change)

    async def _batch(self) -> BatchResult | None:
        try:
            return await index_batch(self.store, self.batch, before_write=self._quiet)
        except Temporary as exc:  # busy, or the database is away: try again later
            log.warning("full-text indexing paused: %s", exc)
        except Exception:
            log.exception("full-text indexing failed; trying again later")
        return None


async def reindex(
    store: Store,
    account_id: AccountId | None,
    *,
    missing_only: bool = False,
    started: Callable[[int], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Rebuild the index of one account's contents (or of all): take them out of it, then index
    them again; with *missing_only*, index only what is not indexed yet (what an interrupted
    run left). *started* hears how many contents were taken out, *progress* of each batch
    (contents, octets). Returns the number of contents indexed."""
    if not missing_only:
        total = await store.reset_search_text(account_id)
        if started is not None:
            started(total)
    done = 0
    while (result := await index_batch(store, BATCH, account_id)) is not None:
        done += result.contents
        if progress is not None:
            progress(result.contents, result.octets)
    return done
