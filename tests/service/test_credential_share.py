"""The workers of one server share verified credentials (pobox/credential_share.py).

Two MailServices on one SQLite store stand for two workers; each has its CredentialShare on a
socket in the same run directory, as ``pobox serve --workers 2`` sets them up. Argon2id calls
are counted with a spy on ``verify_password``; behaviour only, never time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.conftest import make_config

from pobox.credential_share import CredentialShare
from pobox.service import credentials, passwords
from pobox.service.mail import MailService

ADDRESS = "alice@example.org"
PASSWORD = "correct horse battery staple"
HOME = "198.51.100.7"


class Spy:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, password_hash: str | None, password: str) -> bool:
        self.calls += 1
        return passwords.verify_password(password_hash, password)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    counting = Spy()
    monkeypatch.setattr("pobox.service.auth.verify_password", counting)
    return counting


@pytest.fixture
async def workers(tmp_path: Path) -> AsyncIterator[tuple[MailService, MailService, Path]]:
    """Two workers' services with the supervisor's one key, sharing through *run*."""
    saved = credentials.process_key()
    credentials.set_process_key(os.urandom(32))
    config = make_config(tmp_path / "data")
    run = tmp_path / "data" / "run"
    a = await MailService.open(config)
    b = await MailService.open(config)
    shares = [CredentialShare(run, n, s.auth.cache) for n, s in enumerate((a, b))]
    for share in shares:
        share.start()
    try:
        await a.accounts.add(ADDRESS, PASSWORD)
        yield a, b, run
    finally:
        for share in shares:
            share.close()
        await b.close()
        await a.close()
        credentials.set_process_key(saved)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.01)


async def test_a_password_verified_in_one_worker_is_known_in_the_other(
    workers: tuple[MailService, MailService, Path], spy: Spy
) -> None:
    a, b, run = workers
    assert sorted(p.name for p in run.glob("verified-*.sock")) == [
        "verified-0.sock",
        "verified-1.sock",
    ]
    assert await a.auth.authenticate(ADDRESS, PASSWORD, remote=HOME) is not None
    assert spy.calls == 1
    await settle()
    assert await b.auth.authenticate(ADDRESS, PASSWORD, remote=HOME) is not None
    assert spy.calls == 1  # no second Argon2id
    # a wrong password is never accepted from the shared entry, and still pays Argon2id
    assert await b.auth.authenticate(ADDRESS, "wrong", remote=HOME) is None
    assert spy.calls == 2


async def test_a_new_password_is_not_found_under_the_shared_entry(
    workers: tuple[MailService, MailService, Path], spy: Spy
) -> None:
    a, b, _run = workers
    assert await a.auth.authenticate(ADDRESS, PASSWORD, remote=HOME) is not None
    await settle()
    await a.accounts.set_password(ADDRESS, "another one")
    assert await b.auth.authenticate(ADDRESS, PASSWORD, remote=HOME) is None
    assert await b.auth.authenticate(ADDRESS, "another one", remote=HOME) is not None


async def test_datagrams_without_the_key_verify_nothing(
    workers: tuple[MailService, MailService, Path], spy: Spy
) -> None:
    _a, b, run = workers
    intruder = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        target = str(run / "verified-1.sock")
        intruder.sendto(b"x" * 40, target)  # 32 octets of "digest" and a time to live
        intruder.sendto(b"short", target)
        intruder.sendto(b"y" * 400, target)
    finally:
        intruder.close()
    await settle()
    assert len(b.auth.cache) == 1  # the forged digest names no credential
    assert await b.auth.authenticate(ADDRESS, PASSWORD, remote=HOME) is not None
    assert spy.calls == 1  # verified with Argon2id: nothing was taken from the forgery
    assert (run / "verified-1.sock").stat().st_mode & 0o777 == 0o600


async def test_a_shared_entry_lives_no_longer_than_the_receivers_ttl(tmp_path: Path) -> None:
    cache = credentials.CredentialCache(60, key=b"k" * 32)
    cache.learn(b"d" * 32, 3600)
    cache.learn(b"e" * 32, float("nan"))
    cache.learn(b"f" * 31, 10)
    ((digest, expiry),) = cache.entries()
    assert digest == b"d" * 32 and expiry <= cache.clock() + 60
    off = dataclasses.replace(make_config(tmp_path).auth, cache_ttl=0)
    disabled = credentials.CredentialCache(off.cache_ttl, key=b"k" * 32)
    disabled.learn(b"d" * 32, 10)
    assert len(disabled) == 0
