"""Password hashing with Argon2id (argon2-cffi), and the threads that run it.

The parameters are argon2-cffi's defaults, RFC 9106's second recommendation (t=3, m=64 MiB,
p=4): about 0.1 to 0.2 s of CPU per hash. They stay that heavy on purpose: logins are made cheap by
the verified-credentials cache (:mod:`pobox.service.credentials`), never by a weaker hash.

Hashing and verifying block for that long, so callers on an event loop run them in
:func:`argon2_executor`: one thread pool per process with one thread per core. argon2-cffi
releases the GIL while it hashes, so the event loop keeps serving other clients meanwhile, and
the pool bounds how many hashes run at once.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()

# A hash of a random password: verified against when an account does not exist, so that a wrong
# address costs the same time as a wrong password.
_DUMMY_HASH = _hasher.hash("pobox-no-such-account-7c1f0e")


def hash_password(password: str) -> str:
    """Blocking (about 0.1 s of CPU): on an event loop, run it in :func:`argon2_executor`."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Blocking (about 0.1 s of CPU): on an event loop, run it in :func:`argon2_executor`."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
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
