"""Message files of the embedded store.

A message is written straight to its final place, ``messages/<2 hex>/<32 hex>``, then the file
and its directory are fsync'd (``seal``). Only after that does a database commit make it visible,
so a crash at any moment leaves either a visible, whole message or an unreferenced file, which
``pobox check --repair`` removes.
"""

from __future__ import annotations

import os
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_HEX = frozenset("0123456789abcdef")


#: (process id, pool) of the threads for the directory fsyncs of :meth:`FileSpool.seal`
_DIR_SYNCS: tuple[int, ThreadPoolExecutor] | None = None
_DIR_SYNCS_LOCK = threading.Lock()


def _dir_syncs() -> ThreadPoolExecutor:
    """The pool of this process (made on first use; a forked worker makes its own, since the
    threads of its parent's are not in it)."""
    global _DIR_SYNCS
    held = _DIR_SYNCS
    pid = os.getpid()
    if held is None or held[0] != pid:
        with _DIR_SYNCS_LOCK:
            held = _DIR_SYNCS
            if held is None or held[0] != pid:
                pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="pobox-dirsync")
                held = _DIR_SYNCS = (pid, pool)
    return held[1]


class FileLayout:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.messages = root / "messages"
        self.locks = root / "locks"
        self._messages = str(self.messages)

    def prepare(self) -> None:
        self.messages.mkdir(parents=True, exist_ok=True)
        self.locks.mkdir(parents=True, exist_ok=True)

    def blob_path(self, name: str) -> Path:
        return Path(self.blob_file(name))

    def blob_file(self, name: str) -> str:
        """:meth:`blob_path` as a string (opening a file by it needs no Path object)."""
        if len(name) != 32 or not _HEX.issuperset(name):
            raise ValueError(f"not a blob name: {name!r}")
        return f"{self._messages}/{name[:2]}/{name}"

    def new_name(self) -> str:
        return secrets.token_hex(16)


class FileSpool:
    """A message being written to its file (see module docstring)."""

    def __init__(self, layout: FileLayout) -> None:
        self.name = layout.new_name()
        self.path = layout.blob_path(self.name)
        try:
            self._fp: BinaryIO | None = open(self.path, "xb")  # noqa: SIM115 - kept open
        except FileNotFoundError:  # the first file of its ``messages/<2 hex>`` directory
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fp = open(self.path, "xb")  # noqa: SIM115 - kept open while writing
        self.size = 0
        self.sealed = False
        self._unsynced = False  # closed without an fsync (``holding``)

    @classmethod
    def holding(cls, layout: FileLayout, data: bytes) -> FileSpool:
        """Blocking: a spool whose file is *data*, written whole and closed at once (a bare
        descriptor: no buffered file object for a content that is in memory already), not
        fsync'd: ``seal`` (or a ``sync`` before the commit that names it) does that."""
        spool = cls.__new__(cls)
        spool.name = name = layout.new_name()
        path = layout.blob_file(name)
        spool.path = Path(path)
        spool._fp = None
        spool.size = len(data)
        spool.sealed = False
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o644)
        except FileNotFoundError:  # the first file of its ``messages/<2 hex>`` directory
            spool.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, flags, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except BaseException:
            os.close(fd)
            spool.discard()
            raise
        os.close(fd)
        spool._unsynced = True
        return spool

    def write(self, data: bytes) -> None:
        if self._fp is None:
            raise ValueError("spool is closed")
        self._fp.write(data)
        self.size += len(data)

    def seal(self) -> None:
        """Blocking: the file's octets and its directory entry on disk. The two fsyncs run at
        the same time (the directory's in a helper thread): both only have to be done before
        the commit that makes the message visible, and one after the other they were two
        flushes of the disk's cache in a row on every delivery and APPEND."""
        if self._fp is not None:
            self._fp.flush()
            directory = _dir_syncs().submit(fsync_dir, self.path.parent)
            try:
                os.fsync(self._fp.fileno())
            finally:
                directory.result()  # its OSError (EIO, ENOSPC…) is the seal's
            self._fp.close()
            self._fp = None
        elif self._unsynced:
            directory = _dir_syncs().submit(fsync_dir, self.path.parent)
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            finally:
                directory.result()
        self._unsynced = False
        self.sealed = True

    def open(self) -> BinaryIO:
        if self._fp is not None:
            self._fp.flush()
        return open(self.path, "rb")

    def discard(self) -> None:
        if self._fp is not None:
            self._fp.close()
            self._fp = None
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


class FileContent:
    """A stored message file opened for reading: a bare descriptor read with ``pread`` (no
    Python file object: a POP3 TOP or an IMAP FETCH opens one per message)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._fd = -1
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.size = os.fstat(fd).st_size
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def read(self, offset: int, length: int) -> bytes:
        if offset >= self.size or length <= 0:
            return b""
        return os.pread(self._fd, min(length, self.size - offset), offset)

    def file(self) -> BinaryIO | None:
        if self._fd < 0:
            return None
        return open(self._fd, "rb", closefd=False)

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:  # a content nobody closed must not keep its descriptor
        self.close()
