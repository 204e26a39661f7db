"""The one authentication routine for every protocol, with failed-login penalties.

Every front end (IMAP, POP3, later SMTP AUTH and the webmail) calls
:meth:`Authenticator.authenticate` with the client's IP address. The routine

* answers in the same time whether or not the account exists (an unknown name is checked
  against a dummy Argon2id hash, in a worker thread);
* counts failures per remote address and per account name (existing or not, so the counters
  say nothing about which accounts exist) and delays each failure by a growing penalty:
  0 s for the first, then 2, 4, 8 … seconds, capped at ``[auth] penalty_max`` — with
  ``asyncio.sleep``, never blocking the event loop;
* after ``[auth] max_failures`` failures blocks the address, or the account name, for
  ``[auth] block_seconds``: a blocked attempt raises :class:`Blocked` without looking at the
  password. A failure right after a block ends blocks again; counters are forgotten after a
  quiet ``block_seconds``.

The account block must not let an attacker lock the real user out: it never applies to an
address that has logged in to that account successfully before ("familiar" addresses, remembered
in memory for :data:`FAMILIAR_SECONDS`). The address block applies to every account, but only to
that address (IPv6 addresses count per /64). docs/security.md states these promises.

Counters live in memory, per process: a restart forgets them, and with several workers each
worker counts on its own.

A correct password is verified with Argon2id once, then found in the verified-credentials cache
(:mod:`pobox.service.credentials`) for ``[auth] cache_ttl`` seconds, keyed on the account's
stored hash as read at this login, so a password change or deletion is seen at once everywhere.
Argon2id runs in the process's pool of one thread per core (:func:`argon2_executor`); an attempt
waits for a free thread on the event loop and checks the blocks again once it has one, so a
block that began while it waited stops it before Argon2id is paid. Failures are never cached.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from pobox.config import AuthConfig
from pobox.errors import InvalidInput, Temporary
from pobox.service.accounts import normalise_address
from pobox.service.credentials import CredentialCache
from pobox.service.passwords import (
    argon2_executor,
    argon2_parallelism,
    hash_password,
    needs_rehash,
    verify_password,
)
from pobox.store.api import Account, Store

log = logging.getLogger("pobox.auth")

MonotonicClock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

#: How long a successful login makes its address "familiar" to the account.
FAMILIAR_SECONDS = 30 * 86400.0
#: Entries kept per table before stale ones are pruned (memory stays bounded).
MAX_ENTRIES = 100_000


class Blocked(Temporary):
    """Too many failed logins from this address or for this account: try again later."""

    def __init__(self, text: str, retry_after: float) -> None:
        super().__init__(text)
        self.retry_after = retry_after


@dataclass(slots=True)
class _Failures:
    count: int = 0
    last: float = 0.0
    blocked_until: float = 0.0


def address_key(remote: str) -> str:
    """The key an address is counted under: the IP itself, or its /64 for IPv6."""
    text = remote.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return text[:100] or "-"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class _Table:
    """Failure counters by key, with the block rule of the module docstring."""

    def __init__(self, config: AuthConfig) -> None:
        self.config = config
        self.entries: dict[str, _Failures] = {}

    def get(self, key: str, now: float) -> _Failures | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        quiet_since = max(entry.last, entry.blocked_until)
        if now - quiet_since > self.config.block_seconds:
            del self.entries[key]
            return None
        return entry

    def blocked(self, key: str, now: float) -> float:
        """Seconds left of the block on *key* (0: not blocked)."""
        entry = self.get(key, now)
        if entry is None or entry.blocked_until <= now:
            return 0.0
        return entry.blocked_until - now

    def count(self, key: str, now: float) -> int:
        entry = self.get(key, now)
        return entry.count if entry is not None else 0

    def fail(self, key: str, now: float) -> bool:
        """Count a failure; True when it starts a block."""
        entry = self.get(key, now)
        if entry is None:
            self._prune(now)
            entry = self.entries[key] = _Failures()
        entry.count += 1
        entry.last = now
        if entry.count >= self.config.max_failures:
            entry.blocked_until = now + self.config.block_seconds
            return True
        return False

    def forget(self, key: str) -> None:
        self.entries.pop(key, None)

    def _prune(self, now: float) -> None:
        if len(self.entries) < MAX_ENTRIES:
            return
        for key in list(self.entries):
            self.get(key, now)
        while len(self.entries) >= MAX_ENTRIES:  # still full: drop the oldest
            del self.entries[next(iter(self.entries))]


class Authenticator:
    def __init__(
        self,
        store: Store,
        config: AuthConfig | None = None,
        *,
        clock: MonotonicClock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.store = store
        self.config = config or AuthConfig()
        self.clock = clock
        self.sleep = sleep
        self.by_address = _Table(self.config)
        self.by_account = _Table(self.config)
        self._familiar: dict[tuple[str, str], float] = {}
        self.cache = CredentialCache(self.config.cache_ttl, clock=clock)
        # attempts wait for an Argon2id thread here, on the event loop, where they can be
        # stopped by a block that began meanwhile; the pool itself bounds the parallelism
        self._argon2_slots = asyncio.Semaphore(argon2_parallelism())

    def penalty(self, failures: int) -> float:
        """Seconds to wait before answering a failure that follows *failures* earlier ones."""
        if failures <= 0:
            return 0.0
        return min(self.config.penalty_max, float(2 ** min(failures, 30)))

    def _is_familiar(self, account_key: str, ip_key: str, now: float) -> bool:
        seen = self._familiar.get((account_key, ip_key))
        return seen is not None and now - seen < FAMILIAR_SECONDS

    def _remember(self, account_key: str, ip_key: str, now: float) -> None:
        if len(self._familiar) >= MAX_ENTRIES:
            for key, seen in list(self._familiar.items()):
                if now - seen >= FAMILIAR_SECONDS:
                    del self._familiar[key]
            while len(self._familiar) >= MAX_ENTRIES:
                del self._familiar[next(iter(self._familiar))]
        self._familiar.pop((account_key, ip_key), None)
        self._familiar[(account_key, ip_key)] = now

    def _check_blocks(
        self, ip_key: str, account_key: str, shown: str, remote: str, now: float
    ) -> None:
        """Raise :class:`Blocked` while the address, or (from an unfamiliar address) the account
        name, is blocked."""
        left = self.by_address.blocked(ip_key, now)
        if not left and not self._is_familiar(account_key, ip_key, now):
            left = self.by_account.blocked(account_key, now)
        if left:
            log.warning(
                "authentication refused (blocked) user=%r remote=%s retry_after=%.0fs",
                shown,
                remote,
                left,
            )
            raise Blocked("too many failed logins; try again later", left)

    async def authenticate(
        self, username: str, password: str, *, remote: str = ""
    ) -> Account | None:
        """The account if the credentials are right, else None (in the same time either way).

        *remote* is the client's IP address. Raises :class:`Blocked` (a :class:`Temporary`)
        while the address or the account name is blocked; the password is not checked then.
        """
        ip_key = address_key(remote)
        try:
            lookup = normalise_address(username)
        except InvalidInput:
            lookup = username.strip()[:320]
        # counted case-insensitively: spelling a name differently must not dodge its counter
        account_key = lookup.lower()
        shown = username[:100]
        self._check_blocks(ip_key, account_key, shown, remote, self.clock())

        account: Account | None = None
        try:
            # read at every login: the cache is keyed on the hash stored *now*
            account = await self.store.get_account(lookup)
        except InvalidInput:
            account = None
        stored = account.password_hash if account is not None else None
        if account is not None and self.cache.verified(account.id, account.password_hash, password):
            ok = True
        else:
            async with self._argon2_slots:
                # waiting for a thread is a delay: a block may have begun meanwhile
                self._check_blocks(ip_key, account_key, shown, remote, self.clock())
                ok = await asyncio.get_running_loop().run_in_executor(
                    argon2_executor(), verify_password, stored, password
                )
            if ok and account is not None:
                if needs_rehash(account.password_hash):
                    new_hash = await self._hash(password)
                    await self.store.set_password_hash(account.id, new_hash)
                    account = replace(account, password_hash=new_hash)
                self.cache.remember(account.id, account.password_hash, password)
        if ok and account is not None:
            now = self.clock()
            self.by_account.forget(account_key)
            self._remember(account_key, ip_key, now)
            return account

        now = self.clock()
        earlier = max(self.by_address.count(ip_key, now), self.by_account.count(account_key, now))
        delay = self.penalty(earlier)
        address_blocked = self.by_address.fail(ip_key, now)
        account_blocked = self.by_account.fail(account_key, now)
        log.info(
            "authentication failed user=%r remote=%s failures=%d delay=%.0fs",
            shown,
            remote,
            earlier + 1,
            delay,
        )
        if address_blocked:
            log.warning(
                "blocking address %s for %ds after %d failed logins (last user=%r)",
                ip_key,
                self.config.block_seconds,
                self.by_address.count(ip_key, now),
                shown,
            )
        if account_blocked:
            log.warning(
                "blocking logins to %r from unfamiliar addresses for %ds after %d failures"
                " (last remote=%s)",
                shown,
                self.config.block_seconds,
                self.by_account.count(account_key, now),
                remote,
            )
        if delay:
            await self.sleep(delay)
        return None

    async def _hash(self, password: str) -> str:
        async with self._argon2_slots:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(argon2_executor(), hash_password, password)
