"""The verified-credentials cache (service/credentials.py) inside the one authentication routine.

Behaviour only, never time: Argon2id calls are counted with a spy on ``verify_password``, clocks
and sleeps are fakes. Invalidation is checked the way it happens in production: a second
MailService on the same store stands for a second worker (SQLite) or a second node (PostgreSQL).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from tests.conftest import make_config
from tests.helpers.clock import Time
from tests.helpers.postgres import session_database

from pobox.config import AuthConfig, Config, ConfigError, load_config
from pobox.service import passwords
from pobox.service.auth import Authenticator, Blocked
from pobox.service.credentials import CredentialCache
from pobox.service.mail import MailService

ADDRESS = "alice@example.org"
PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "new and improved"
HOME = "198.51.100.7"
ATTACKER = "192.0.2.66"


class Spy:
    """Counts Argon2id verifications (and the threads they ran in), then does the real one."""

    def __init__(self) -> None:
        self.calls = 0
        self.threads: list[str] = []

    def __call__(self, password_hash: str | None, password: str) -> bool:
        self.calls += 1
        self.threads.append(threading.current_thread().name)
        return passwords.verify_password(password_hash, password)


@pytest.fixture
def fake_time() -> Time:
    return Time()


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    counting = Spy()
    monkeypatch.setattr("pobox.service.auth.verify_password", counting)
    return counting


def authenticator(service: MailService, fake_time: Time, **auth: object) -> Authenticator:
    config = dataclasses.replace(service.config.auth, **auth)  # type: ignore[arg-type]
    return Authenticator(service.store, config, clock=fake_time, sleep=fake_time.sleep)


@pytest.fixture
async def auth(service: MailService, fake_time: Time) -> Authenticator:
    await service.accounts.add(ADDRESS, PASSWORD)
    return authenticator(service, fake_time, max_failures=100)


async def test_second_login_does_not_call_argon2(auth: Authenticator, spy: Spy) -> None:
    first = await auth.authenticate(ADDRESS, PASSWORD, remote=HOME)
    assert first is not None and first.address == ADDRESS
    assert spy.calls == 1
    for _ in range(5):
        again = await auth.authenticate(ADDRESS, PASSWORD, remote=HOME)
        assert again is not None and again.id == first.id
    assert spy.calls == 1
    # the cache is not per address: the same password from elsewhere is found too
    assert await auth.authenticate(ADDRESS, PASSWORD, remote=ATTACKER) is not None
    assert spy.calls == 1


async def test_wrong_password_is_never_accepted_from_the_cache(
    auth: Authenticator, spy: Spy
) -> None:
    assert await auth.authenticate(ADDRESS, PASSWORD, remote=HOME) is not None
    wrong = ["", "x", PASSWORD[:-1], PASSWORD + " ", PASSWORD.upper(), " " + PASSWORD, NEW_PASSWORD]
    for guess in wrong:
        assert await auth.authenticate(ADDRESS, guess, remote=HOME) is None
    # every wrong password paid Argon2id; none was remembered
    assert spy.calls == 1 + len(wrong)
    assert len(auth.cache) == 1
    assert await auth.authenticate(ADDRESS, PASSWORD, remote=HOME) is not None
    assert spy.calls == 1 + len(wrong)


async def test_another_account_with_the_same_password_is_not_found(
    service: MailService, auth: Authenticator, spy: Spy
) -> None:
    other = "bob@example.org"
    await service.accounts.add(other, "bobs own")
    assert await auth.authenticate(ADDRESS, PASSWORD, remote=HOME) is not None
    assert await auth.authenticate(other, PASSWORD, remote=HOME) is None
    assert spy.calls == 2


async def test_failures_are_not_cached_and_keep_their_penalties(
    service: MailService, fake_time: Time, spy: Spy
) -> None:
    await service.accounts.add(ADDRESS, PASSWORD)
    auth = authenticator(service, fake_time, max_failures=4, block_seconds=300, penalty_max=5.0)
    assert await auth.authenticate(ADDRESS, PASSWORD, remote=HOME) is not None
    for _ in range(4):
        assert await auth.authenticate(ADDRESS, "guess", remote=ATTACKER) is None
    assert fake_time.slept == [2.0, 4.0, 5.0]  # the same delays as without a cache
    assert spy.calls == 5
    # blocked: even the cached right password is refused from that address, unchecked
    with pytest.raises(Blocked):
        await auth.authenticate(ADDRESS, PASSWORD, remote=ATTACKER)
    # … while the familiar address still gets in, from the cache
    assert await auth.authenticate(ADDRESS, PASSWORD, remote=HOME) is not None
    assert spy.calls == 5
    assert len(auth.cache) == 1


async def test_a_block_that_begins_while_waiting_for_argon2_stops_the_attempt(
    auth: Authenticator, spy: Spy
) -> None:
    auth._argon2_slots = asyncio.Semaphore(1)
    await auth._argon2_slots.acquire()  # every Argon2id thread is busy
    attempt = asyncio.create_task(auth.authenticate(ADDRESS, PASSWORD, remote=ATTACKER))
    for _ in range(1000):  # let it read the account and queue for a thread
        if auth._argon2_slots._waiters:
            break
        await asyncio.sleep(0.01)
    assert auth._argon2_slots._waiters and not attempt.done()
    for _ in range(auth.config.max_failures):  # meanwhile, other attempts block the address
        auth.by_address.fail(ATTACKER, auth.clock())
    auth._argon2_slots.release()
    with pytest.raises(Blocked):
        await attempt
    assert spy.calls == 0


async def test_argon2_runs_in_the_shared_pool_of_one_thread_per_core(
    auth: Authenticator, spy: Spy
) -> None:
    await asyncio.gather(
        *(auth.authenticate(ADDRESS, f"wrong {n}", remote=f"192.0.2.{n}") for n in range(3))
    )
    assert spy.calls == 3
    assert all(name.startswith("pobox-argon2") for name in spy.threads), spy.threads
    assert passwords.argon2_executor() is passwords.argon2_executor()
    assert passwords.argon2_executor()._max_workers == passwords.argon2_parallelism()
    assert passwords.argon2_parallelism() == (os.cpu_count() or 1)


async def test_the_cache_holds_no_password(auth: Authenticator, service: MailService) -> None:
    assert await auth.authenticate(ADDRESS, PASSWORD, remote=HOME) is not None
    account = await service.accounts.require(ADDRESS)
    secret = PASSWORD.encode()
    plain_hashes = {
        hashlib.new(name, secret).digest() for name in ("md5", "sha1", "sha256", "sha512")
    } | {hashlib.new(name, secret).hexdigest().encode() for name in ("md5", "sha1", "sha256")}
    entries = auth.cache.entries()
    assert len(entries) == 1
    for digest, _expiry in entries:
        assert len(digest) == 32
        assert secret not in digest
        assert digest not in plain_hashes
        assert digest != account.password_hash.encode()
        assert all(plain not in digest for plain in plain_hashes)
    # nothing else in the cache holds it either
    everything = repr(vars(auth.cache)) + repr(entries)
    assert PASSWORD not in everything and secret.hex() not in everything
    assert account.password_hash not in everything


async def test_cache_ttl_zero_disables_the_cache(
    service: MailService, fake_time: Time, spy: Spy
) -> None:
    await service.accounts.add(ADDRESS, PASSWORD)
    auth = authenticator(service, fake_time, cache_ttl=0)
    for _ in range(3):
        assert await auth.authenticate(ADDRESS, PASSWORD, remote=HOME) is not None
    assert spy.calls == 3
    assert len(auth.cache) == 0 and not auth.cache.enabled


async def test_entries_expire_after_cache_ttl(
    service: MailService, fake_time: Time, spy: Spy
) -> None:
    await service.accounts.add(ADDRESS, PASSWORD)
    auth = authenticator(service, fake_time, cache_ttl=60)
    assert await auth.authenticate(ADDRESS, PASSWORD, remote=HOME) is not None
    fake_time.now += 59
    assert await auth.authenticate(ADDRESS, PASSWORD, remote=HOME) is not None
    assert spy.calls == 1  # a hit does not extend the entry's life
    fake_time.now += 1
    assert await auth.authenticate(ADDRESS, PASSWORD, remote=HOME) is not None
    assert spy.calls == 2
    fake_time.now += 59
    assert await auth.authenticate(ADDRESS, PASSWORD, remote=HOME) is not None
    assert spy.calls == 2


async def test_a_rehashed_password_is_remembered_under_its_new_hash(
    service: MailService, auth: Authenticator, spy: Spy
) -> None:
    account = await service.accounts.require(ADDRESS)
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
    await service.store.set_password_hash(account.id, weak)
    assert await auth.authenticate(ADDRESS, PASSWORD, remote=HOME) is not None
    stored = (await service.accounts.require(ADDRESS)).password_hash
    assert stored != weak and not passwords.needs_rehash(stored)
    assert await auth.authenticate(ADDRESS, PASSWORD, remote=HOME) is not None
    assert spy.calls == 1


def test_the_cache_is_bounded_least_recently_used_first() -> None:
    clock = Time()
    cache = CredentialCache(3600, max_entries=3, clock=clock, key=b"k" * 32)
    for n in range(3):
        cache.remember(n, f"hash{n}", "pw")
    assert cache.verified(0, "hash0", "pw")  # 0 is now the most recently used
    cache.remember(3, "hash3", "pw")
    assert len(cache) == 3
    assert not cache.verified(1, "hash1", "pw")
    assert all(cache.verified(n, f"hash{n}", "pw") for n in (0, 2, 3))


def test_expired_entries_are_dropped_as_new_ones_arrive() -> None:
    clock = Time()
    cache = CredentialCache(10, clock=clock, key=b"k" * 32)
    cache.remember(1, "h1", "pw")
    cache.remember(2, "h2", "pw")
    clock.now += 10
    cache.remember(3, "h3", "pw")
    assert len(cache) == 1


def test_the_digest_separates_its_fields() -> None:
    cache = CredentialCache(3600, clock=Time(), key=b"k" * 32)
    cache.remember(1, "ab", "c")
    assert not cache.verified(1, "a", "bc")
    assert not cache.verified(2, "ab", "c")
    assert cache.verified(1, "ab", "c")
    # another process (another key) cannot use this one's entries
    other = CredentialCache(3600, clock=Time(), key=b"j" * 32)
    assert other._digest(1, "ab", "c") not in dict(cache.entries())


def test_cache_ttl_config(tmp_path: Path) -> None:
    assert AuthConfig().cache_ttl == 3600
    path = tmp_path / "pobox.toml"
    path.write_text("[auth]\ncache_ttl = 0\n")
    assert load_config(path).auth.cache_ttl == 0
    path.write_text("[auth]\ncache_ttl = -1\n")
    with pytest.raises(ConfigError, match=r"auth\.cache_ttl"):
        load_config(path)


def argon2_parameters(password_hash: str) -> str:
    return password_hash.split("$")[3]  # $argon2id$v=19$m=...,t=...,p=...$salt$hash


async def test_new_hashes_use_the_configured_argon2_parameters(tmp_path: Path) -> None:
    default = await MailService.open(make_config(tmp_path / "a"))
    try:
        account = await default.accounts.add(ADDRESS, PASSWORD)
        assert argon2_parameters(account.password_hash) == "m=19456,t=2,p=1"  # OWASP's first
    finally:
        await default.close()
    auth = {"argon2_memory_kib": 65536, "argon2_time_cost": 3, "argon2_lanes": 4}
    strong = await MailService.open(make_config(tmp_path / "b", auth=auth))
    try:
        account = await strong.accounts.add(ADDRESS, PASSWORD)
        assert argon2_parameters(account.password_hash) == "m=65536,t=3,p=4"
        # a hash made with other parameters still verifies, and is upgraded at that login
        old = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1).hash(PASSWORD)
        await strong.store.set_password_hash(account.id, old)
        assert await strong.auth.authenticate(ADDRESS, PASSWORD, remote=HOME) is not None
        stored = (await strong.accounts.require(ADDRESS)).password_hash
        assert argon2_parameters(stored) == "m=65536,t=3,p=4"
        assert await strong.auth.authenticate(ADDRESS, "wrong", remote=HOME) is None
    finally:
        await strong.close()
        passwords.configure(2, 19456, 1)


def test_argon2_parameters_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "pobox.toml"
    for line, key in (
        ("argon2_memory_kib = 1024", "argon2_memory_kib"),
        ("argon2_time_cost = 0", "argon2_time_cost"),
        ("argon2_lanes = 65", "argon2_lanes"),
    ):
        path.write_text(f"[auth]\n{line}\n")
        with pytest.raises(ConfigError, match=rf"auth\.{key}"):
            load_config(path)


# -- invalidation across workers (SQLite) and nodes (PostgreSQL) ---------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
async def two_services(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[MailService, MailService]]:
    """Two MailServices on one store: two workers (SQLite) or two nodes (PostgreSQL)."""
    schema: str | None = None
    spec = "sqlite"
    if request.param == "postgres":
        schema, spec = session_database().new_schema()
    config: Config = dataclasses.replace(make_config(tmp_path / "data"), store=spec)
    a = await MailService.open(config)
    try:
        b = await MailService.open(config)
        try:
            yield a, b
        finally:
            await b.close()
    finally:
        await a.close()
        if schema is not None:
            session_database().drop_schema(schema)


def _fake_auth(services: tuple[MailService, MailService], fake_time: Time) -> None:
    for svc in services:
        svc.auth = authenticator(svc, fake_time, max_failures=1000)


async def _login(svc: MailService, password: str) -> bool:
    return await svc.auth.authenticate(ADDRESS, password, remote=HOME) is not None


async def test_a_changed_password_is_seen_at_once_by_every_worker_and_node(
    two_services: tuple[MailService, MailService], fake_time: Time, spy: Spy
) -> None:
    a, b = two_services
    _fake_auth(two_services, fake_time)
    await a.accounts.add(ADDRESS, PASSWORD)
    for svc in (a, b):  # both remember the old password
        assert await _login(svc, PASSWORD) and await _login(svc, PASSWORD)
    assert spy.calls == 2

    await a.accounts.set_password(ADDRESS, NEW_PASSWORD)
    for svc in (b, a, b, a):
        assert not await _login(svc, PASSWORD)
    for svc in (b, a):
        assert await _login(svc, NEW_PASSWORD)

    # and back again, changed through the other one
    await b.accounts.set_password(ADDRESS, PASSWORD)
    for svc in (a, b):
        assert not await _login(svc, NEW_PASSWORD)
        assert await _login(svc, PASSWORD)


async def test_a_deleted_account_is_refused_at_once_by_every_worker_and_node(
    two_services: tuple[MailService, MailService], fake_time: Time
) -> None:
    a, b = two_services
    _fake_auth(two_services, fake_time)
    await a.accounts.add(ADDRESS, PASSWORD)
    for svc in (a, b):
        assert await _login(svc, PASSWORD)
    await b.accounts.delete(ADDRESS)
    for svc in (a, b, a, b):
        assert not await _login(svc, PASSWORD)
    # a new account of the same name with the same password is verified afresh, and works
    await a.accounts.add(ADDRESS, PASSWORD)
    for svc in (a, b):
        assert await _login(svc, PASSWORD)
