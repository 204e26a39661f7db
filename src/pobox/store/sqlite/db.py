"""Connections and threads for the SQLite backend.

One writer thread per process owns the write connection and commits in groups: every write job
waiting when a transaction starts joins it, each inside its own SAVEPOINT, and one COMMIT (one
fsync of the WAL) makes the whole group durable. A job may bring a *prepare* step that must be
done before its commit (an APPEND's message file fsync'd): a helper thread runs it and hands the
job straight to the writer, so the event loop hears only of the commit (one wake-up, not two),
and the writer never waits for a file's fsync. Readers use a small pool of threads, each with its
own connection; WAL lets them read while the writer writes, also across processes.

The writers of several processes (``[server] workers``, the CLI beside a running server) take
turns through an ``flock`` on ``<database>-writer.lock`` around each group transaction, so a
waiting writer is woken by the kernel the moment the lock is free. SQLite's own busy handler
would sleep 1, 2, 5, 10… ms between tries, which under a write load of two workers made every
other commit wait several milliseconds for a lock that was free long before. SQLite's lock stays
the guarantee (and its busy timeout the way to wait for writers that do not take the flock).

Small reads (one row, or a few hundred by key: the reads of an ordinary IMAP or POP3 command)
run on the event loop's own thread with a connection of its own (``read(..., inline=True)``):
measured under the IMAP stress mix, a hop to the pool and back (two thread switches and a GIL
handover each way) cost more than the indexed query itself. Such a read never waits for a lock:
if SQLite reports the database busy, it is run again in the pool, which may wait.
(docs/decisions/inline-reads.md)
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from pobox.errors import PoboxError, Temporary

T = TypeVar("T")
log = logging.getLogger("pobox.store")

BUSY_TIMEOUT_MS = 10000
MAX_GROUP = 256
#: Reads by key of at most this many keys may run on the event loop (``read(inline=True)``).
INLINE_MAX = 256


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
    )
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def as_store_error(exc: BaseException) -> BaseException:
    """Map database trouble to pobox's errors: busy and full are temporary."""
    if isinstance(exc, PoboxError):
        return exc
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        if "locked" in text or "busy" in text or "full" in text or "disk i/o" in text:
            return Temporary(f"database temporarily unavailable: {exc}")
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
        return Temporary(f"storage temporarily unavailable: {exc.strerror}")
    return exc


class TooBig(Exception):
    """Raised by a read running inline that found more rows than :data:`INLINE_MAX`: the read
    runs again in the pool."""


class _Job:
    __slots__ = ("fn", "future", "loop")

    def __init__(
        self,
        fn: Callable[[sqlite3.Connection], Any],
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
    ) -> None:
        self.fn = fn
        self.loop = loop
        self.future = future

    def fail(self, error: BaseException) -> None:
        self.loop.call_soon_threadsafe(_resolve, self.future, None, error)


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class Database:
    """The write thread (group commit) and the read pool of one store in one process."""

    def __init__(self, path: Path, readers: int = 4) -> None:
        self.path = path
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._local = threading.local()
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="pobox-read")
        self._reader_conns: list[sqlite3.Connection] = []
        #: the inline readers' connections, by thread (the event loop's)
        self._inline: dict[int, sqlite3.Connection] = {}
        self._lock = threading.Lock()
        #: the threads that run the jobs' prepare steps (made on first use)
        self._preparers: ThreadPoolExecutor | None = None
        self.commits = 0
        self.jobs_committed = 0

    def start(self) -> None:
        self._writer = threading.Thread(target=self._write_loop, name="pobox-write", daemon=True)
        self._writer.start()

    def stop(self) -> None:
        if self._preparers is not None:  # the jobs they hand on reach the writer before None
            self._preparers.shutdown(wait=True)
            self._preparers = None
        if self._writer is not None:
            self._jobs.put(None)
            self._writer.join()
            self._writer = None
        self._readers.shutdown(wait=True)
        with self._lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()
            self._inline.clear()

    # reads -------------------------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
            with self._lock:
                self._reader_conns.append(conn)
        return conn

    def _inline_reader(self) -> sqlite3.Connection:
        conn = self._inline.get(threading.get_ident())
        if conn is None:
            conn = connect(self.path)
            conn.execute("PRAGMA query_only = ON")
            conn.execute("PRAGMA busy_timeout = 0")  # never wait on the event loop
            with self._lock:
                self._inline[threading.get_ident()] = conn
                self._reader_conns.append(conn)
        return conn

    def _read_inline(self, fn: Callable[[sqlite3.Connection], T]) -> tuple[bool, T | None]:
        """Run *fn* here; (False, None) when the database was busy (the caller goes to the pool)."""
        conn = self._inline_reader()
        try:
            conn.execute("BEGIN")
            try:
                return True, fn(conn)
            finally:
                conn.execute("COMMIT")
        except TooBig:
            return False, None
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if "locked" in text or "busy" in text:
                return False, None
            raise

    def check_inline(self, conn: sqlite3.Connection, rows: int) -> None:
        """In a read that may run inline: raise :class:`TooBig` if *conn* is an inline reader
        and *rows* rows are more than an inline read may return."""
        if rows > INLINE_MAX and conn in self._inline.values():
            raise TooBig

    async def read(self, fn: Callable[[sqlite3.Connection], T], *, inline: bool = False) -> T:
        """Run *fn* in a read transaction. *inline*: a small read by key, run on the calling
        thread (the event loop) unless the database is busy (module docstring)."""
        if inline:
            try:
                done, value = self._read_inline(fn)
            except Exception as exc:
                raise as_store_error(exc) from exc
            if done:
                return value  # type: ignore[return-value]
        loop = asyncio.get_running_loop()

        def run() -> T:
            conn = self._reader()
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")

        try:
            return await loop.run_in_executor(self._readers, run)
        except Exception as exc:
            raise as_store_error(exc) from exc

    # writes ------------------------------------------------------------------------------
    async def write(
        self,
        fn: Callable[[sqlite3.Connection], T],
        *,
        prepare: Callable[[], None] | None = None,
    ) -> T:
        """Run *fn* in the next group transaction; returns once it is committed (durable).

        *prepare* (blocking) runs in a helper thread before the job joins a group; if it
        raises, *fn* does not run and the error is this call's."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        job = _Job(fn, loop, future)
        if prepare is None:
            self._jobs.put(job)
        else:
            self._prepare_pool().submit(self._prepared, job, prepare)
        return await future

    def _prepare_pool(self) -> ThreadPoolExecutor:
        if self._preparers is None:
            self._preparers = ThreadPoolExecutor(max_workers=8, thread_name_prefix="pobox-prep")
        return self._preparers

    def _prepared(self, job: _Job, prepare: Callable[[], None]) -> None:
        """In a helper thread: *prepare*, then *job* to the writer (or its error to the caller)."""
        try:
            prepare()
        except Exception as exc:
            job.fail(as_store_error(exc))
        else:
            self._jobs.put(job)

    def _write_loop(self) -> None:
        conn = connect(self.path)
        lock = self._open_lock()
        try:
            while True:
                first = self._jobs.get()
                if first is None:
                    return
                batch = [first]
                stop = False
                while len(batch) < MAX_GROUP:
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stop = True
                        break
                    batch.append(job)
                if lock >= 0:
                    fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    self._run_batch(conn, batch)
                finally:
                    if lock >= 0:
                        fcntl.flock(lock, fcntl.LOCK_UN)
                if stop:
                    return
        finally:
            conn.close()
            if lock >= 0:
                os.close(lock)

    def _open_lock(self) -> int:
        """The descriptor of the writers' lock file (module docstring); -1 when it cannot be
        opened (a read-only directory): SQLite's busy handler alone then orders the writers."""
        try:
            fd = os.open(f"{self.path}-writer.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            if os.geteuid() == 0:  # root (a CLI call): the file belongs to the database's owner
                owner = os.stat(self.path)
                os.fchown(fd, owner.st_uid, owner.st_gid)
            return fd
        except OSError as exc:
            log.warning(
                "no writer lock file next to %s (%s): writers wait in SQLite", self.path, exc
            )
            return -1

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        results: list[tuple[_Job, Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
        except Exception as exc:
            error = as_store_error(exc)
            for job in batch:
                job.fail(error)
            return
        for job in batch:
            conn.execute("SAVEPOINT job")
            try:
                value = job.fn(conn)
            except Exception as exc:
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                results.append((job, None, as_store_error(exc)))
            else:
                conn.execute("RELEASE job")
                results.append((job, value, None))
        try:
            conn.execute("COMMIT")
        except Exception as exc:
            log.warning("group commit of %d writes failed: %s", len(batch), exc)
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            error = as_store_error(exc)
            for job in batch:
                job.fail(error)
            return
        self.commits += 1
        self.jobs_committed += len(batch)
        for job, value, err in results:
            job.loop.call_soon_threadsafe(_resolve, job.future, value, err)
