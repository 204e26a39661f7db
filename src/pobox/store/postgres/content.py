"""Message content of the PostgreSQL backend: spools on local disk, chunks in the database.

Receiving: :class:`TempSpool` writes the message to a local temporary file (blocking, in a worker
thread as the :class:`~pobox.store.api.Spool` protocol expects). ``append`` then streams that file
into ``blob_chunks`` rows of ``CHUNK_SIZE`` bytes, inside the transaction that makes the message
visible; the temporary file is removed afterwards. The database commit is what makes the message
durable, so the temporary file is flushed but never fsync'd.

Reading: :class:`PgContent` answers ``read(offset, length)``, a *blocking* call that POP3 makes on
the event loop and SEARCH makes in worker threads. Small messages (up to ``PRELOAD_MAX``) are
fetched whole by ``open_content`` with one query, so reading them never blocks. Larger ones fetch
only the chunks a read needs (plus a little read-ahead) through :class:`ChunkReader`: a
background thread with its own event loop and its own small connection pool, which any thread,
the store's event loop included, can wait on without deadlocking. At most ``CACHE_CHUNKS`` chunks
of a large message are held in memory at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, BinaryIO

from pobox.errors import NotFound, Temporary
from pobox.store.postgres.schema import CHUNK_SIZE

#: Messages up to this size are read whole when opened (no blocking reads later).
PRELOAD_MAX = 4 * CHUNK_SIZE
#: Chunks fetched in one round trip when a large message is read.
READ_AHEAD = 4
#: Chunks of a large message kept in memory.
CACHE_CHUNKS = 4
#: How long a blocking read waits for the database.
READ_TIMEOUT = 60.0


class TempSpool:
    """A message being received, in a local temporary file until ``append`` stores it."""

    def __init__(self, directory: Path | None) -> None:
        fd, name = tempfile.mkstemp(prefix="spool-", dir=directory)
        self.path = Path(name)
        self._fp: BinaryIO | None = os.fdopen(fd, "wb")
        self.size = 0
        self.sealed = False

    def write(self, data: bytes) -> None:
        if self._fp is None:
            raise ValueError("spool is closed")
        self._fp.write(data)
        self.size += len(data)

    def seal(self) -> None:
        # durability comes from the database commit in append(); the file only has to be whole
        if self._fp is not None:
            self._fp.flush()
            self._fp.close()
            self._fp = None
        self.sealed = True

    def open(self) -> BinaryIO:
        if self._fp is not None:
            self._fp.flush()
        return open(self.path, "rb")

    def discard(self) -> None:
        if self._fp is not None:
            self._fp.close()
            self._fp = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class ChunkReader:
    """Blocking chunk fetches for any thread: its own loop thread and connection pool."""

    def __init__(self, connect: Callable[[], Any]) -> None:
        self._connect = connect  # returns a coroutine creating an asyncpg pool
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pool: Any = None
        self.fetches = 0

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="pobox-pg-content", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    async def _fetch(self, blob: int, first: int, last: int) -> dict[int, bytes]:
        if self._pool is None:
            self._pool = await self._connect()
        rows = await self._pool.fetch(
            "SELECT seq, data FROM blob_chunks WHERE blob = $1 AND seq BETWEEN $2 AND $3",
            blob,
            first,
            last,
        )
        return {int(r[0]): bytes(r[1]) for r in rows}

    def fetch(self, blob: int, first: int, last: int) -> dict[int, bytes]:
        """Chunks *first*..*last* of *blob* (blocking; callable from any thread)."""
        loop = self._start()
        self.fetches += 1
        future: Future[dict[int, bytes]] = asyncio.run_coroutine_threadsafe(
            self._fetch(blob, first, last), loop
        )
        try:
            return future.result(READ_TIMEOUT)
        except TimeoutError:
            future.cancel()
            raise Temporary("the database did not send the message content in time") from None
        except (OSError, ConnectionError) as exc:
            raise Temporary(f"database unavailable: {exc}") from exc

    def stop(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            if self._pool is not None:
                try:
                    await asyncio.wait_for(self._pool.close(), 5)
                except Exception:
                    self._pool.terminate()
                self._pool = None

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


class PgContent:
    """A stored message's bytes: whole in memory when small, fetched chunk by chunk when large."""

    def __init__(
        self,
        blob: int,
        size: int,
        chunk_size: int,
        chunks: dict[int, bytes],
        reader: ChunkReader | None,
    ) -> None:
        self.blob = blob
        self.size = size
        self.chunk_size = chunk_size
        self.count = (size + chunk_size - 1) // chunk_size
        self._cache: OrderedDict[int, bytes] = OrderedDict(sorted(chunks.items()))
        self._whole = len(self._cache) >= self.count
        self._reader = reader

    def _chunk(self, index: int) -> bytes:
        data = self._cache.get(index)
        if data is not None:
            self._cache.move_to_end(index)
            return data
        if self._reader is None:
            raise NotFound("message content is gone")
        last = min(self.count - 1, index + READ_AHEAD - 1)
        fetched = self._reader.fetch(self.blob, index, last)
        if index not in fetched:
            raise NotFound("message content is gone")
        for seq in sorted(fetched):
            self._cache[seq] = fetched[seq]
        while len(self._cache) > max(CACHE_CHUNKS, READ_AHEAD):
            self._cache.popitem(last=False)
        return fetched[index]

    def read(self, offset: int, length: int) -> bytes:
        if offset >= self.size or length <= 0 or offset < 0:
            return b""
        end = min(self.size, offset + length)
        parts: list[bytes] = []
        pos = offset
        while pos < end:
            index, start = divmod(pos, self.chunk_size)
            data = self._chunk(index)
            piece = data[start : start + (end - pos)]
            if not piece:
                raise NotFound("message content is shorter than recorded")
            parts.append(piece)
            pos += len(piece)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def file(self) -> BinaryIO | None:
        return None  # no local file: callers stream with read()

    def close(self) -> None:
        self._cache.clear()
