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

Addresses in ``[auth] trusted_networks`` are never counted or blocked per address (account
blocks still apply to them). No attempt is verified once enough attempts for its address or
account name are already being verified to start a block: it waits for them to settle, then
checks the blocks again (so fifty concurrent guesses with nine failures counted get one check,
not fifty). A name or password that is not valid UTF-8 is an ordinary failure.

Counters live in memory, per process: a restart forgets them, and with several workers each
worker counts on its own. :meth:`Authenticator.blocks` and :meth:`Authenticator.unblock` serve
``pobox auth blocks|unblock`` through each worker's status board (:mod:`pobox.status`).

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
from pobox.service.logins import LoginHandle, LoginWatch, UsageRecorder, canonical
from pobox.service.passwords import (
    argon2_executor,
    argon2_parallelism,
    hash_password,
    needs_rehash,
    verify_password,
)
from pobox.store.api import Account, AuthBlock, Login, Store

log = logging.getLogger("pobox.auth")

MonotonicClock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

#: How long a successful login makes its address "familiar" to the account.
FAMILIAR_SECONDS = 30 * 86400.0
#: Entries kept per table before stale ones are pruned (memory stays bounded).
MAX_ENTRIES = 100_000


@dataclass(frozen=True, slots=True)
class Authenticated:
    """Who logged in: the account, and the app password used (None: the main password) with
    the handle that tells the session when that app password is revoked."""

    account: Account
    login: Login | None = None
    handle: LoginHandle | None = None

    @property
    def label(self) -> str | None:
        """The app password's label, for the session log (None: the main password)."""
        return None if self.login is None else self.login.label

    @property
    def revoked(self) -> bool:
        """True once the app password of this session was deleted (a flag: no store call)."""
        return self.handle is not None and self.handle.revoked


def login_fact(result: Authenticated | None) -> dict[str, object]:
    """``{"login": label}`` for a session log line when an app password was used, else
    nothing (the line of a main-password session is unchanged)."""
    if result is None or result.login is None:
        return {}
    return {"login": result.login.label}


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


def _is_utf8(text: str) -> bool:
    """False for text holding lone surrogates (bytes that were not UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(text: str) -> str:
    """*text* with undecodable bytes shown as ``\\xNN`` (for counters and logs)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


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


def unblock_keys(target: str) -> list[tuple[str, str]]:
    """The (kind, key) pairs ``pobox auth unblock TARGET`` lifts: an IP address (its /64 for
    IPv6), a network as ``pobox auth blocks`` shows it, or an account name."""
    target = target.strip()
    keys: list[tuple[str, str]] = []
    try:
        ipaddress.ip_address(target.strip("[]"))
    except ValueError:
        pass
    else:
        keys.append(("address", address_key(target)))
    if "/" in target:  # a /64 as shown by ``pobox auth blocks``
        keys.append(("address", target))
    try:
        keys.append(("account", normalise_address(target).lower()))
    except InvalidInput:
        keys.append(("account", target.lower()))
    return keys


def _cache_key(login: Login) -> str:
    """What the credentials cache keys an app password on: its id and its stored hash (a
    deleted login has neither, so nothing remembered for it can be found again)."""
    return f"login:{login.id}:{login.password_hash}"


def _first_match(pairs: list[tuple[str | None, str]]) -> int | None:
    """The index of the first (stored hash, password) pair that verifies (blocking: Argon2id
    for each pair until one matches; run it in :func:`argon2_executor`)."""
    for index, (stored, password) in enumerate(pairs):
        if verify_password(stored, password):
            return index
    return None


class _Table:
    """Failure counters by key, with the block rule of the module docstring."""

    def __init__(self, config: AuthConfig) -> None:
        self.config = config
        self.entries: dict[str, _Failures] = {}
        #: keys that were blocked at some point and are still in entries (for blocks())
        self.blocking: set[str] = set()

    def get(self, key: str, now: float) -> _Failures | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        quiet_since = max(entry.last, entry.blocked_until)
        if now - quiet_since > self.config.block_seconds:
            del self.entries[key]
            self.blocking.discard(key)
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
            self.blocking.add(key)
            return True
        return False

    def forget(self, key: str) -> None:
        self.entries.pop(key, None)
        self.blocking.discard(key)

    def _prune(self, now: float) -> None:
        if len(self.entries) < MAX_ENTRIES:
            return
        for key in list(self.entries):
            self.get(key, now)
        while len(self.entries) >= MAX_ENTRIES:  # still full: drop the oldest
            oldest = next(iter(self.entries))
            del self.entries[oldest]
            self.blocking.discard(oldest)


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
        #: live app-password sessions and their revocations; last uses (pobox.service.logins)
        self.logins = LoginWatch(store)
        self.usage = UsageRecorder(store, clock)
        # attempts wait for an Argon2id thread here, on the event loop, where they can be
        # stopped by a block that began meanwhile; the pool itself bounds the parallelism
        self._argon2_slots = asyncio.Semaphore(argon2_parallelism())
        self._trusted = [
            ipaddress.ip_network(n, strict=False) for n in self.config.trusted_networks
        ]
        #: attempts being verified now, per address and account key (see :meth:`_room`)
        self._inflight: dict[str, int] = {}
        #: set (and replaced) whenever an attempt settles or a block is lifted
        self._settled = asyncio.Event()
        #: blocks recorded in the store, by (kind, key): an unblock on another node deletes
        #: the row, and the next attempt that meets the block here finds it gone
        self._shared: set[tuple[str, str]] = set()

    def reconfigure(self, config: AuthConfig) -> None:
        """A reloaded ``[auth]`` (SIGHUP): the new limits apply from the next attempt; blocks in
        force keep their end. A shorter ``cache_ttl`` empties the verified-credentials cache, so
        that no entry outlives it."""
        if config.cache_ttl < self.config.cache_ttl:
            self.cache.clear()
        self.config = config
        self.by_address.config = config
        self.by_account.config = config
        self.cache.ttl = float(config.cache_ttl)
        self._trusted = [ipaddress.ip_network(n, strict=False) for n in config.trusted_networks]

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
        self, ip_key: str, trusted: bool, account_key: str, shown: str, remote: str, now: float
    ) -> None:
        """Raise :class:`Blocked` while the address (unless *trusted*), or (from an unfamiliar
        address) the account name, is blocked."""
        left = 0.0 if trusted else self.by_address.blocked(ip_key, now)
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

    def is_trusted(self, remote: str) -> bool:
        """True if *remote* is in ``[auth] trusted_networks`` (never blocked per address)."""
        if not self._trusted:
            return False
        try:
            ip = ipaddress.ip_address(remote.strip().strip("[]"))
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == net.version and ip in net for net in self._trusted)

    def _room(self, ip_key: str | None, account_key: str | None, now: float) -> bool:
        """True while the failures counted plus the attempts being verified stay below
        ``max_failures`` for every key that could block this attempt (or nothing is under way
        for it): no attempt is verified once enough of them are under way to start a block."""
        limit = self.config.max_failures
        for table, key in ((self.by_address, ip_key), (self.by_account, account_key)):
            if key is None:
                continue
            inflight = self._inflight.get(key, 0)
            # after a block ends the count stays at the limit: one attempt at a time may try
            if inflight and table.count(key, now) + inflight >= limit:
                return False
        return True

    async def _reserve(
        self, ip_key: str, trusted: bool, account_key: str, shown: str, remote: str
    ) -> tuple[str | None, str | None]:
        """Wait until this attempt may be verified, checking the blocks after every wait; then
        count it as in flight (under the keys returned, for :meth:`_release`)."""
        while True:
            now = self.clock()
            await self._confirm_shared(ip_key, trusted, account_key, now)
            now = self.clock()
            self._check_blocks(ip_key, trusted, account_key, shown, remote, now)
            # the account block spares familiar addresses: no need to hold them back for it
            held_account = None if self._is_familiar(account_key, ip_key, now) else account_key
            held_address = None if trusted else ip_key
            if self._room(held_address, held_account, now):
                break
            await self._settled.wait()
        for key in (held_address, held_account):
            if key is not None:
                self._inflight[key] = self._inflight.get(key, 0) + 1
        return held_address, held_account

    def _release(self, keys: tuple[str | None, str | None]) -> None:
        for key in keys:
            if key is not None:
                left = self._inflight.get(key, 0) - 1
                if left > 0:
                    self._inflight[key] = left
                else:
                    self._inflight.pop(key, None)
        settled, self._settled = self._settled, asyncio.Event()
        settled.set()

    async def authenticate(
        self, username: str, password: str, *, remote: str = ""
    ) -> Account | None:
        """The account if the credentials are right, else None: :meth:`sign_in` without the
        credential it tells of."""
        result = await self.sign_in(username, password, remote=remote)
        return None if result is None else result.account

    async def sign_in(
        self, username: str, password: str, *, remote: str = ""
    ) -> Authenticated | None:
        """Who logged in if the credentials are right (the main password, or an app password:
        docs/app-passwords.md), else None.

        *remote* is the client's IP address. Raises :class:`Blocked` (a :class:`Temporary`)
        while the address or the account name is blocked; the password is not checked then.
        A name or password that is not valid UTF-8 (a front end decoded it with
        ``surrogateescape``) is an ordinary failure.
        """
        ip_key = address_key(remote)
        trusted = self.is_trusted(remote)
        valid = _is_utf8(username) and _is_utf8(password)
        clean = username if _is_utf8(username) else _printable(username)
        try:
            lookup = normalise_address(clean)
        except InvalidInput:
            lookup = clean.strip()[:320]
        # counted case-insensitively: spelling a name differently must not dodge its counter
        account_key = lookup.lower()
        shown = clean[:100]
        reserved = await self._reserve(ip_key, trusted, account_key, shown, remote)
        self.logins.listen()
        epoch = self.logins.epoch
        try:
            result = await self._verify(
                lookup, password, valid, (ip_key, trusted, account_key, shown, remote)
            )
            if result is not None and result.login is not None:
                result = await self._open_login(result, epoch, remote)
            now = self.clock()
            if result is not None:
                self.by_account.forget(account_key)
                self._remember(account_key, ip_key, now)
                return result
            earlier = max(
                0 if trusted else self.by_address.count(ip_key, now),
                self.by_account.count(account_key, now),
            )
            delay = self.penalty(earlier)
            address_blocked = False if trusted else self.by_address.fail(ip_key, now)
            account_blocked = self.by_account.fail(account_key, now)
        finally:
            self._release(reserved)
        log.info(
            "authentication failed user=%r remote=%s failures=%d delay=%.0fs",
            shown,
            remote,
            earlier + 1,
            delay,
        )
        if address_blocked:
            await self._share("address", ip_key, self.by_address, now)
        if account_blocked:
            await self._share("account", account_key, self.by_account, now)
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

    async def _verify(
        self,
        lookup: str,
        password: str,
        valid: bool,
        block_check: tuple[str, bool, str, str, str],
    ) -> Authenticated | None:
        """Who logged in if *password* is the main password or one of the account's app
        passwords (from the cache, else Argon2id), else None."""
        account: Account | None = None
        logins: list[Login] = []
        if valid:
            try:
                # read at every login: the cache is keyed on the hashes stored *now*
                found = await self.store.get_account_logins(lookup)
            except InvalidInput:
                found = None
            if found is not None:
                account, logins = found
        # (stored hash, cache key, secret, login): app passwords first for a password of
        # their form, then the main password
        secret = canonical(password) if logins and valid else None
        candidates: list[tuple[str, str, str, Login | None]] = []
        if account is not None:
            if secret is not None:
                candidates += [(x.password_hash, _cache_key(x), secret, x) for x in logins]
            candidates.append((account.password_hash, account.password_hash, password, None))
            for _stored, key, text, login in candidates:
                if self.cache.verified(account.id, key, text):
                    return Authenticated(account, login)
        async with self._argon2_slots:
            # waiting for a thread is a delay: a block may have begun meanwhile
            self._check_blocks(*block_check, self.clock())
            # an invalid name or password still costs one Argon2id (against the dummy hash)
            pairs: list[tuple[str | None, str]] = [(x[0], x[2]) for x in candidates]
            if not pairs:
                pairs.append((None, password if valid else ""))
            matched = await asyncio.get_running_loop().run_in_executor(
                argon2_executor(), _first_match, pairs
            )
        if matched is None or account is None:
            return None
        _stored, key, text, login = candidates[matched]
        if login is None and needs_rehash(account.password_hash):
            new_hash = await self._hash(password)
            await self.store.set_password_hash(account.id, new_hash)
            account = replace(account, password_hash=new_hash)
            key = new_hash
        self.cache.remember(account.id, key, text)
        return Authenticated(account, login)

    async def _open_login(
        self, result: Authenticated, epoch: int, remote: str
    ) -> Authenticated | None:
        """Give a session opened with an app password its revocation handle, and record the
        use. A revocation announced while it was being verified is checked with one read."""
        login = result.login
        assert login is not None
        handle = self.logins.open(result.account.id, login)
        if self.logins.epoch != epoch:
            alive = {x.id for x in await self.store.list_logins(result.account.id)}
            if login.id not in alive:
                handle.revoke()
                return None
        await self.usage.used(login, remote)
        return replace(result, handle=handle)

    # blocks shared through the store, for every node ------------------------------------------
    async def _share(self, kind: str, key: str, table: _Table, now: float) -> None:
        """Record a block that has just started in the store, so that ``pobox auth blocks``
        lists it and ``pobox auth unblock`` lifts it on any node. A store that cannot take it
        leaves the block local (still in force here)."""
        entry = table.entries.get(key)
        if entry is None:
            return
        until = time.time() + (entry.blocked_until - now)
        try:
            await self.store.save_auth_block(AuthBlock(kind, key, entry.count, until))
        except Exception as exc:
            log.warning("block on %s %s kept on this node only: %s", kind, key, exc)
            return
        self._shared.add((kind, key))

    async def _confirm_shared(
        self, ip_key: str, trusted: bool, account_key: str, now: float
    ) -> None:
        """Before a block recorded in the store refuses an attempt, check that it is still
        recorded: ``pobox auth unblock`` on any node deletes it (one read, only for attempts
        that meet a block)."""
        if not self._shared:
            return
        candidates = [("account", self.by_account, account_key)]
        if not trusted:
            candidates.append(("address", self.by_address, ip_key))
        for kind, table, key in candidates:
            if (kind, key) not in self._shared or not table.blocked(key, now):
                continue
            try:
                recorded = await self.store.get_auth_block(kind, key)
            except Exception as exc:
                log.warning("cannot read the shared block on %s %s: %s", kind, key, exc)
                continue
            if recorded is None:
                self._shared.discard((kind, key))
                if key in table.entries:
                    table.forget(key)
                    log.warning("unblocked %s %s (lifted on another node)", kind, key)

    async def shared_blocks(self) -> list[AuthBlock]:
        """The blocks recorded in the store and in force now, whichever node started them."""
        return await self.store.list_auth_blocks(time.time())

    async def lift_shared(self, target: str) -> list[str]:
        """``pobox auth unblock TARGET`` for every node: delete the recorded blocks (each node
        sees it at the next attempt that meets its block); returns ``kind key`` strings."""
        lifted = await self.store.delete_auth_blocks(unblock_keys(target))
        return [f"{block.kind} {block.key}" for block in lifted]

    # blocks, for ``pobox auth blocks`` and ``pobox auth unblock`` (via pobox.status) -------
    def blocks(self) -> list[dict[str, object]]:
        """The blocks in force now: kind ("address" or "account"), key, failures and the wall
        clock time (seconds since the epoch, rounded) at which each ends."""
        now = self.clock()
        wall = time.time()
        out: list[dict[str, object]] = []
        for kind, table in (("address", self.by_address), ("account", self.by_account)):
            for key in sorted(table.blocking):
                left = table.blocked(key, now)
                if left:
                    entry = table.entries[key]
                    until = round(wall + left)
                    out.append({"kind": kind, "key": key, "failures": entry.count, "until": until})
        return out

    def unblock(self, target: str) -> list[str]:
        """Lift the block and forget the failures of an IP address (its /64 for IPv6) or an
        account name; returns what was lifted, as ``kind key`` strings."""
        lifted: list[str] = []
        tables = {"address": self.by_address, "account": self.by_account}
        for kind, key in unblock_keys(target):
            table = tables[kind]
            self._shared.discard((kind, key))
            if key in table.entries:
                table.forget(key)
                lifted.append(f"{kind} {key}")
                log.warning("unblocked %s %s (pobox auth unblock)", kind, key)
        if lifted:
            settled, self._settled = self._settled, asyncio.Event()
            settled.set()
        return lifted

    async def _hash(self, password: str) -> str:
        async with self._argon2_slots:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(argon2_executor(), hash_password, password)
