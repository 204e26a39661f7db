"""The verified-credentials cache: a password Argon2id accepted is not verified again for a while.

After a successful Argon2id check, :class:`CredentialCache` remembers one digest,
``HMAC-SHA256(process key, account id ‖ the account's stored password hash ‖ the password)``,
with an expiry ``[auth] cache_ttl`` seconds later. The process key is random (``os.urandom``) and
is never written down (the supervisor hands it to its workers in memory), so the cache holds
neither a password nor a plain hash of one: without the key a digest is useless, and the key dies
with the server.

The digest includes the *stored hash*, which the login reads from the store every time (one
indexed point read). So a new password (a new hash, with a new salt), a deleted account (no hash)
or a revoked app password (its hash row gone) misses the cache in every worker and on every node
at once, with no invalidation message: the old entry can no longer be named, and it ages out of
the LRU. docs/decisions/credential-cache.md says why it is keyed this way.

The workers of one server share a key (drawn by the supervisor, :func:`set_process_key`) and
tell each other every digest they remember (:mod:`pobox.credential_share`), so a password is
verified once per server, not once per worker.

Only successes are remembered; a failure is never cached (and still pays Argon2id, the delay and
the counters of :mod:`pobox.service.auth`). The cache is bounded (least recently used entries are
dropped past :data:`MAX_ENTRIES`); a restart empties it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections import OrderedDict
from collections.abc import Callable

MonotonicClock = Callable[[], float]

#: Entries kept per process before the least recently used is dropped (~200 bytes each).
MAX_ENTRIES = 32_768

_KEY_BYTES = 32
_process_key = os.urandom(_KEY_BYTES)


def _new_process_key() -> None:
    global _process_key
    _process_key = os.urandom(_KEY_BYTES)


# A forked child is another process: it gets a key of its own (workers are spawned, but be safe).
os.register_at_fork(after_in_child=_new_process_key)


def process_key() -> bytes:
    """The random key of this process (drawn at start, and again in a forked child)."""
    return _process_key


def set_process_key(key: bytes) -> None:
    """Use *key* (drawn by the supervisor and handed to each worker it starts, never written
    down) instead of this process's own, so that the workers of one server can share verified
    digests (:mod:`pobox.credential_share`). Call it before any cache is made."""
    global _process_key
    if len(key) != _KEY_BYTES:
        raise ValueError(f"the process key must be {_KEY_BYTES} bytes")
    _process_key = key


class CredentialCache:
    """Digests of recently verified (account, stored hash, password) triples, with expiry.

    *ttl* is in seconds; ``ttl <= 0`` disables the cache (nothing is remembered or found).
    *clock* is monotonic and injectable for tests; *key* defaults to the process key.
    """

    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = MAX_ENTRIES,
        clock: MonotonicClock = time.monotonic,
        key: bytes | None = None,
    ) -> None:
        self.ttl = float(ttl)
        self.max_entries = max_entries
        self.clock = clock
        self._key = key if key is not None else process_key()
        self._entries: OrderedDict[bytes, float] = OrderedDict()  # digest -> expiry
        #: told of every digest remembered, with its time to live (the sibling workers' share)
        self.on_remember: Callable[[bytes, float], None] | None = None

    @property
    def enabled(self) -> bool:
        return self.ttl > 0 and self.max_entries > 0

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[tuple[bytes, float]]:
        """(digest, expiry) pairs, least recently used first: what the cache holds, for tests."""
        return list(self._entries.items())

    def clear(self) -> None:
        self._entries.clear()

    def _digest(self, account_id: int, stored_hash: str, password: str) -> bytes:
        stored = stored_hash.encode("utf-8", "surrogatepass")
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        # length-prefixed fields: no two different triples can give the same message
        mac.update(account_id.to_bytes(8, "big", signed=True))
        mac.update(len(stored).to_bytes(4, "big"))
        mac.update(stored)
        mac.update(password.encode("utf-8", "surrogatepass"))
        return mac.digest()

    def verified(self, account_id: int, stored_hash: str, password: str) -> bool:
        """True if this password was verified against this stored hash less than ttl ago."""
        if not self.enabled or not self._entries:
            return False
        digest = self._digest(account_id, stored_hash, password)
        expires = self._entries.get(digest)
        if expires is None:
            return False
        if self.clock() >= expires:
            del self._entries[digest]
            return False
        self._entries.move_to_end(digest)
        return True

    def remember(self, account_id: int, stored_hash: str, password: str) -> None:
        """Record a successful Argon2id verification (never call it for a failure)."""
        if not self.enabled:
            return
        digest = self._digest(account_id, stored_hash, password)
        self._insert(digest, self.ttl)
        if self.on_remember is not None:
            self.on_remember(digest, self.ttl)

    def learn(self, digest: bytes, ttl: float) -> None:
        """Take a digest that a sibling worker (same key) verified, for *ttl* seconds at most.
        A digest made without the key names no (account, hash, password) triple: harmless."""
        if self.enabled and len(digest) == hashlib.sha256().digest_size and ttl > 0:
            self._insert(digest, min(ttl, self.ttl))

    def _insert(self, digest: bytes, ttl: float) -> None:
        now = self.clock()
        self._entries[digest] = now + ttl
        self._entries.move_to_end(digest)
        # drop expired entries from the cold end, then whatever is over the bound
        while self._entries:
            oldest, expires = next(iter(self._entries.items()))
            if expires > now and len(self._entries) <= self.max_entries:
                break
            del self._entries[oldest]
