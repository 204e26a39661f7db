"""``pobox backup DEST``: an online, consistent, incremental backup (docs/backup.md).

One run:

1. marks DEST as under way (``INCOMPLETE``) and takes a lock on it (one run at a time);
2. takes a snapshot of the store (``Store.snapshot``: one moment for every account, mailbox and
   message it names) and writes each content it names and DEST lacks to ``objects/``,
   compressed, named by its SHA-256 (contents a finished earlier run wrote are not read again:
   ``contents.json`` remembers which store content is which object);
3. flushes everything to disk, then writes the index of the snapshot, then the manifest
   (atomically: renamed into place), and removes the mark.

A run killed at any point leaves no manifest for what it did: the previous run's manifest (or
none) stays, and the ``INCOMPLETE`` mark tells ``pobox backup verify``.

On the embedded store a message expunged during the run may take its file with it before the
run has read it: the run then takes a new snapshot and goes on (what it wrote is not written
again), up to ``ATTEMPTS`` times.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import zstandard

from pobox import __version__
from pobox.errors import InvalidInput, NotFound, Temporary
from pobox.store.api import AccountImage, Store, StoreSnapshot
from pobox.transfer import format as fmt

#: Snapshots a run takes at most while messages vanish under it (embedded store).
ATTEMPTS = 5
#: Contents read, compressed and written per step, and steps under way at once (threads).
CHUNK = 64
PARALLEL = 3


class Reporter(Protocol):
    """What a long job tells about its progress (pobox.cli.progress.Progress is one)."""

    def set_total(self, total: int | None) -> None: ...
    def advance(self, count: int = 1, *, nbytes: int = 0, skipped: int = 0) -> None: ...


class _Silent:
    def set_total(self, total: int | None) -> None:
        pass

    def advance(self, count: int = 1, *, nbytes: int = 0, skipped: int = 0) -> None:
        pass


@dataclass
class BackupReport:
    accounts: int = 0
    mailboxes: int = 0
    messages: int = 0
    contents: int = 0  # distinct contents the backup names
    written: int = 0  # of them, written by this run
    bytes_written: int = 0  # their uncompressed size
    stored_bytes: int = 0  # their compressed size
    snapshots: int = 0
    index: str = ""
    created: str = ""
    problems: list[str] = field(default_factory=list)


def _is_backup_dir(root: Path) -> bool:
    names = {p.name for p in root.iterdir()}
    ours = {fmt.MANIFEST, fmt.INCOMPLETE, fmt.OBJECTS, fmt.INDEXES, fmt.CONTENTS, ".lock"}
    return not names or bool(names & ours)


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Temporary(f"another backup into {root} is under way") from None
        yield
    finally:
        os.close(fd)


class _Objects:
    """Contents going into ``objects/``: compressed and written in worker threads.

    A file is written straight under its final name, without fsync: nothing trusts it before
    the run has flushed everything (``sync``) and recorded it in ``contents.json``. A file a
    killed run left half-written is not recorded, so the next run writes it again (and
    ``verify`` would find it damaged meanwhile)."""

    def __init__(self, root: Path, vouched: set[str]) -> None:
        self.root = root
        self.vouched = vouched  # recorded by an earlier run: trusted when the file is there
        self.written: set[str] = set()  # by this run
        self.lock = threading.Lock()
        self.local = threading.local()
        self.bytes = 0
        self.stored = 0
        for n in range(256):
            (root / fmt.OBJECTS / f"{n:02x}").mkdir(parents=True, exist_ok=True)

    def _path(self, digest: str) -> str:
        return f"{self.root}/{fmt.OBJECTS}/{digest[:2]}/{digest}.zst"

    def have(self, digest: str) -> bool:
        if digest in self.written:
            return True
        return digest in self.vouched and os.path.isfile(self._path(digest))

    def put(self, data: bytes) -> tuple[str, bool]:
        """Blocking: store *data* unless it is there; returns its name and whether written."""
        digest = hashlib.sha256(data).hexdigest()
        with self.lock:  # two messages of one content may be put at once
            if self.have(digest):
                return digest, False
            self.written.add(digest)
        compressor = getattr(self.local, "compressor", None)
        if compressor is None:
            level = fmt.OBJECT_ZSTD_LEVEL
            compressor = self.local.compressor = zstandard.ZstdCompressor(level=level)
        packed = compressor.compress(data)
        try:
            # a bare descriptor, written in one go (no buffered file object per content)
            fd = os.open(self._path(digest), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC)
            try:
                view = memoryview(packed)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
        except BaseException:
            with self.lock:
                self.written.discard(digest)
            raise
        with self.lock:
            self.bytes += len(data)
            self.stored += len(packed)
        return digest, True


def _load_known(root: Path) -> dict[str, dict[str, str]]:
    path = root / fmt.CONTENTS
    if not path.is_file():
        return {}
    try:
        document = fmt.read_json(path)
    except InvalidInput:
        return {}  # only a cache: without it the run reads every content again
    known = document.get("stores", {}) if isinstance(document, dict) else {}
    return {str(k): dict(v) for k, v in known.items() if isinstance(v, dict)}


async def _copy_contents(
    snap: StoreSnapshot,
    images: list[AccountImage],
    objects: _Objects,
    known: dict[str, str],
    digests: dict[str, str],
    progress: Reporter,
) -> None:
    """Every content the images name into ``objects/``; *digests* gets key → SHA-256."""
    keys: dict[str, int] = {}
    for image in images:
        for mb in image.mailboxes:
            for m in mb.messages:
                keys[m.content] = m.size
        for r in image.recoverable:
            if r.content is not None:
                keys[r.content] = r.size
    progress.set_total(len(keys))
    pending: set[asyncio.Task[None]] = set()

    def put_many(datas: list[bytes]) -> list[tuple[str, bool]]:
        return [objects.put(data) for data in datas]

    async def put(chunk: list[str]) -> None:
        datas = await snap.read_contents(chunk)  # NotFound: gone since the snapshot began
        results = await asyncio.to_thread(put_many, datas)
        for key, data, (digest, written) in zip(chunk, datas, results, strict=True):
            digests[key] = digest
            progress.advance(1, nbytes=len(data), skipped=0 if written else 1)

    chunk: list[str] = []
    try:
        for key in [*keys, None]:
            if key is not None:
                if key in digests:
                    continue
                digest = known.get(key)
                if digest is not None and objects.have(digest):
                    digests[key] = digest
                    progress.advance(1, skipped=1)
                    continue
                chunk.append(key)
                if len(chunk) < CHUNK:
                    continue
            if not chunk:
                continue
            if len(pending) >= PARALLEL:
                finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    task.result()
            pending.add(asyncio.create_task(put(chunk)))
            chunk = []
        while pending:
            task = pending.pop()
            await task
    finally:
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(BaseException):
                await task


async def _parsed(snap: StoreSnapshot, digests: dict[str, str]) -> dict[str, fmt.Parsed]:
    """What the store parsed of the contents (store key → SHA-256 in *digests*), by SHA-256,
    for the index to carry (pobox.transfer.format); none from a store that cannot say."""
    if not isinstance(snap, fmt.ParsedSource):
        return {}
    found = await snap.read_parsed(list(digests))
    return {digests[key]: parsed for key, parsed in found.items()}


async def backup(
    store: Store,
    dest: Path,
    *,
    store_id: str,
    addresses: list[str] | None = None,
    progress: Reporter | None = None,
) -> BackupReport:
    """Back up the accounts at *addresses* (None: all) of *store* into *dest*.

    *store_id* names the store in ``contents.json`` (its data directory or DSN), so that a
    backup directory can serve several stores without mixing up their content keys."""
    reporter: Reporter = progress or _Silent()
    dest.mkdir(parents=True, exist_ok=True)
    if not _is_backup_dir(dest):
        raise InvalidInput(f"{dest} is not empty and holds no pobox backup: choose another place")
    report = BackupReport()
    with _locked(dest):
        stamp = datetime.now(UTC)
        report.created = stamp.isoformat(timespec="seconds")
        started = {"started": report.created, "pid": os.getpid()}
        fmt.write_atomically(dest / fmt.INCOMPLETE, fmt.dumps(started))
        all_known = _load_known(dest)
        known = all_known.get(store_id, {})
        vouched = {digest for keys in all_known.values() for digest in keys.values()}
        objects = _Objects(dest, vouched)
        digests: dict[str, str] = {}
        parsed: dict[str, fmt.Parsed] = {}
        images: list[AccountImage] = []
        try:
            for attempt in range(1, ATTEMPTS + 1):
                report.snapshots = attempt
                vanished: NotFound | None = None
                async with store.snapshot(addresses) as snap:
                    images = await snap.accounts()
                    digests = {}  # a new snapshot may name other contents
                    try:
                        await _copy_contents(snap, images, objects, known, digests, reporter)
                    except NotFound as exc:
                        vanished = exc
                    else:
                        parsed = await _parsed(snap, digests)
                if vanished is None:
                    break
                if attempt == ATTEMPTS:
                    raise Temporary(f"messages kept vanishing during the backup ({vanished})")
        except BaseException:
            # stopped (Ctrl-C, an error): what was written is flushed and remembered, so that
            # the next run goes on from there (a SIGKILL skips this: the next run writes again)
            if digests:
                await asyncio.to_thread(os.sync)
                all_known[store_id] = {**known, **digests}
                await asyncio.to_thread(
                    fmt.write_atomically, dest / fmt.CONTENTS, fmt.dumps({"stores": all_known})
                )
            raise
        # everything the index names is on disk before the index and the manifest say so
        await asyncio.to_thread(os.sync)
        index = {
            "format": "pobox-backup-index",
            "version": fmt.VERSION,
            "created": report.created,
            "accounts": [fmt.account_json(image, digests) for image in images],
            "parsed": fmt.parsed_index(parsed),
        }
        packed = zstandard.ZstdCompressor(level=fmt.ZSTD_LEVEL).compress(fmt.dumps(index))
        (dest / fmt.INDEXES).mkdir(exist_ok=True)
        name = f"{fmt.INDEXES}/{stamp:%Y%m%dT%H%M%SZ}-{os.getpid()}.json.zst"
        await asyncio.to_thread(fmt.write_atomically, dest / name, packed)
        all_known[store_id] = digests
        await asyncio.to_thread(
            fmt.write_atomically, dest / fmt.CONTENTS, fmt.dumps({"stores": all_known})
        )
        report.accounts = len(images)
        report.mailboxes = sum(len(i.mailboxes) for i in images)
        report.messages = sum(len(mb.messages) for i in images for mb in i.mailboxes)
        report.contents = len(set(digests.values()))
        report.written = len(objects.written)
        report.bytes_written = objects.bytes
        report.stored_bytes = objects.stored
        report.index = name
        manifest: dict[str, Any] = {
            "format": fmt.FORMAT,
            "version": fmt.VERSION,
            "created": report.created,
            "pobox": __version__,
            "scope": "accounts" if addresses is not None else "server",
            "accounts": [image.address for image in images],
            "index": name,
            "index_sha256": fmt.sha256_hex(packed),
            "messages": report.messages,
            "contents": report.contents,
            "content_bytes": sum(m.size for i in images for mb in i.mailboxes for m in mb.messages),
        }
        await asyncio.to_thread(
            fmt.write_atomically, dest / fmt.MANIFEST, json.dumps(manifest, indent=2).encode()
        )
        (dest / fmt.INCOMPLETE).unlink()
        fmt.fsync_dir(dest)
        for old in (dest / fmt.INDEXES).iterdir():
            if f"{fmt.INDEXES}/{old.name}" != name:
                with contextlib.suppress(FileNotFoundError):
                    old.unlink()
    return report
