"""Password hashing with Argon2id (argon2-cffi), and the threads that run it.

The parameters come from ``[auth] argon2_memory_kib``, ``argon2_time_cost`` and ``argon2_lanes``
(:func:`configure`, called by the mail service with its config). The default is OWASP's first
recommendation for Argon2id, m = 19 MiB, t = 2, p = 1: about 30 ms of CPU per hash on this
project's test machine. argon2-cffi's own default (RFC 9106's second recommendation, m = 64 MiB,
t = 3, p = 4) cost about 0.2 s of wall time and twice that in CPU on two cores, so a server
restart with a thousand clients reconnecting, or ten wrong passwords a second (failures are never
cached), kept every core busy with Argon2id alone. docs/decisions/password-hashing.md has the
reasoning. A stored hash made with other parameters still verifies, and is rehashed with the
configured ones at its next successful login.

Logins are made cheaper still by the verified-credentials cache (:mod:`pobox.service.credentials`).

Hashing and verifying block, so callers on an event loop run them in :func:`argon2_executor`: one
thread pool per process with one thread per core. argon2-cffi releases the GIL while it hashes,
so the event loop keeps serving other clients meanwhile, and the pool bounds how many hashes run
at once.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

#: OWASP's first recommendation for Argon2id (and the defaults of ``[auth]``)
DEFAULT_MEMORY_KIB = 19 * 1024
DEFAULT_TIME_COST = 2
DEFAULT_LANES = 1

_hasher = PasswordHasher(
    time_cost=DEFAULT_TIME_COST, memory_cost=DEFAULT_MEMORY_KIB, parallelism=DEFAULT_LANES
)
_dummy_hash: str | None = None


def configure(time_cost: int, memory_kib: int, lanes: int) -> None:
    """Hash new passwords with these Argon2id parameters from now on (in this process)."""
    global _hasher, _dummy_hash
    current = (_hasher.time_cost, _hasher.memory_cost, _hasher.parallelism)
    if current != (time_cost, memory_kib, lanes):
        _hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=lanes)
        _dummy_hash = None


def _dummy() -> str:
    """A hash of a random password with the current parameters: verified against when an
    account does not exist, so that a wrong address costs the same time as a wrong password."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _hasher.hash(os.urandom(16).hex())
    return _dummy_hash


def hash_password(password: str) -> str:
    """Blocking (tens of milliseconds): on an event loop, run it in :func:`argon2_executor`."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Blocking (tens of milliseconds): on an event loop, run it in :func:`argon2_executor`."""
    try:
        return _hasher.verify(password_hash or _dummy(), password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return False


def argon2_parallelism() -> int:
    """How many Argon2id computations a process runs at once: the number of cores."""
    return max(1, os.cpu_count() or 1)


_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def argon2_executor() -> ThreadPoolExecutor:
    """The process's pool for Argon2id work, created on first use (:func:`argon2_parallelism`
    threads). It is kept apart from asyncio's default pool so that a burst of logins never
    starves file reads and other short jobs waiting there."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=argon2_parallelism(), thread_name_prefix="pobox-argon2"
            )
        return _executor


def _forget_executor() -> None:
    # a forked child has none of its parent's threads: it starts a pool of its own
    global _executor, _executor_lock
    _executor = None
    _executor_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_executor)
