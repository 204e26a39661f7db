"""The workers of one server tell each other which credentials they verified.

Each worker process keeps a verified-credentials cache (:mod:`pobox.service.credentials`). The
kernel hands a client's connections to any worker, so without sharing, a password would be
verified with Argon2id once in every worker. The supervisor draws one key for all its workers
(:func:`pobox.service.credentials.set_process_key`); a digest one worker remembers is then
valid in every other, and :class:`CredentialShare` sends it to them.

Each worker binds a datagram socket ``DATA_DIR/run/verified-N.sock`` (mode 0600) and sends
every digest it remembers, with its time to live, to the other workers' sockets: 40 octets, no
password, no hash, nothing that means anything without the key, which is never written down.
A datagram that is lost (a worker starting or stopping) costs one more Argon2id, nothing else;
one that was not made with the key names no credential, so a local process that writes to the
socket gains nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
from pathlib import Path

from pobox.service.credentials import CredentialCache

log = logging.getLogger("pobox.credential_share")

_MESSAGE = struct.Struct("!32sd")  # digest, seconds to live


class CredentialShare:
    """Worker *worker*'s end: sends what *cache* remembers, learns what the others send."""

    def __init__(self, run_dir: Path, worker: int, cache: CredentialCache) -> None:
        self.run_dir = run_dir
        self.cache = cache
        self.path = run_dir / f"verified-{worker}.sock"
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Bind this worker's socket and start listening; from now on, tell the others."""
        self.run_dir.mkdir(mode=0o750, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left by a worker that did not stop cleanly
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(str(self.path))
            os.chmod(self.path, 0o600)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            log.warning("cannot share verified credentials with other workers: %s", exc)
            return
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._receive)
        self.cache.on_remember = self.tell

    def tell(self, digest: bytes, ttl: float) -> None:
        """Send *digest* to every other worker's socket (best effort, never blocks)."""
        if self._sock is None:
            return
        message = _MESSAGE.pack(digest, ttl)
        try:
            siblings = [p for p in self.run_dir.glob("verified-*.sock") if p != self.path]
        except OSError:
            return
        for path in siblings:
            with contextlib.suppress(OSError):  # gone, full or not listening: it verifies itself
                self._sock.sendto(message, str(path))

    def _receive(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(_MESSAGE.size + 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if len(data) == _MESSAGE.size:
                digest, ttl = _MESSAGE.unpack(data)
                self.cache.learn(digest, ttl)

    def close(self) -> None:
        if self.cache.on_remember == self.tell:
            self.cache.on_remember = None
        if self._sock is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
            with contextlib.suppress(OSError):
                self.path.unlink()
