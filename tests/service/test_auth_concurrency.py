"""The authentication routine under concurrent attempts, trusted networks, invalid UTF-8 and
``pobox auth unblock`` (issue 16; docs/security.md)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest

from pobox.config import AuthConfig
from pobox.service.auth import Authenticator, Blocked
from pobox.service.mail import MailService

ADDRESS = "alice@example.org"
ATTACKER = "192.0.2.66"
HOME = "198.51.100.7"


@pytest.fixture
async def auth(service: MailService) -> AsyncIterator[Authenticator]:
    await service.accounts.add(ADDRESS, "right")
    config = AuthConfig(max_failures=10, block_seconds=300, penalty_max=0.01)
    yield Authenticator(service.store, config)


async def test_concurrent_attempts_are_not_verified_past_the_block(
    auth: Authenticator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eleven wrong logins at the same moment with nine failures counted: only one more is
    verified (it starts the block); the other ten are refused without a password check."""
    for n in range(9):
        assert await auth.authenticate(f"user{n}@example.org", "x", remote=ATTACKER) is None
    verified = 0
    lock = threading.Lock()

    def slow_verify(stored: str | None, password: str) -> bool:
        nonlocal verified
        with lock:
            verified += 1
        threading.Event().wait(0.05)  # Argon2id takes a while: let the others pile up
        return False

    monkeypatch.setattr("pobox.service.auth.verify_password", slow_verify)
    results = await asyncio.gather(
        *(auth.authenticate(ADDRESS, f"guess{n}", remote=ATTACKER) for n in range(11)),
        return_exceptions=True,
    )
    assert verified == 1
    assert sum(result is None for result in results) == 1
    assert sum(isinstance(result, Blocked) for result in results) == 10


async def test_concurrent_attempts_on_one_account_stop_at_the_account_block(
    auth: Authenticator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fifty addresses guessing at one account at once: at most max_failures are verified."""
    verified = 0

    def counting(stored: str | None, password: str) -> bool:
        nonlocal verified
        verified += 1
        threading.Event().wait(0.01)
        return False

    monkeypatch.setattr("pobox.service.auth.verify_password", counting)
    results = await asyncio.gather(
        *(auth.authenticate(ADDRESS, "guess", remote=f"192.0.2.{n}") for n in range(1, 51)),
        return_exceptions=True,
    )
    assert verified == auth.config.max_failures
    assert sum(isinstance(result, Blocked) for result in results) == 50 - verified


async def test_a_correct_login_among_concurrent_ones_still_succeeds(auth: Authenticator) -> None:
    results = await asyncio.gather(
        *(auth.authenticate(ADDRESS, "wrong", remote=ATTACKER) for _ in range(3)),
        auth.authenticate(ADDRESS, "right", remote=HOME),
    )
    assert results[:3] == [None, None, None]
    assert results[3] is not None and results[3].address == ADDRESS


async def test_trusted_networks_are_exempt_from_address_blocks(service: MailService) -> None:
    await service.accounts.add(ADDRESS, "right")
    config = AuthConfig(
        max_failures=3, block_seconds=300, penalty_max=0.0, trusted_networks=("127.0.0.0/8",)
    )
    auth = Authenticator(service.store, config)
    for n in range(6):  # many accounts from a trusted address: never an address block
        assert await auth.authenticate(f"user{n}@example.org", "x", remote="127.0.0.1") is None
    assert await auth.authenticate(ADDRESS, "right", remote="127.0.0.1") is not None
    assert not [b for b in auth.blocks() if b["kind"] == "address"]
    # the account block still applies (to addresses that never logged in to it: the trusted
    # address just did, so it is familiar and spared, the untrusted one is refused)
    for _ in range(3):
        assert await auth.authenticate(ADDRESS, "x", remote="127.0.0.2") is None
    with pytest.raises(Blocked):
        await auth.authenticate(ADDRESS, "right", remote="192.0.2.1")
    assert await auth.authenticate(ADDRESS, "right", remote="127.0.0.1") is not None
    # an untrusted address is blocked as before
    for n in range(3):
        await auth.authenticate(f"other{n}@example.org", "x", remote=ATTACKER)
    with pytest.raises(Blocked):
        await auth.authenticate(ADDRESS, "right", remote=ATTACKER)


async def test_invalid_utf8_is_an_ordinary_failure(auth: Authenticator) -> None:
    bad = b"al\xffce@example.org".decode("utf-8", "surrogateescape")
    assert await auth.authenticate(bad, "right", remote=ATTACKER) is None
    assert await auth.authenticate(ADDRESS, "ri\udcffght", remote=ATTACKER) is None
    assert await auth.authenticate("\udcff\udcfe", "\udc80", remote=ATTACKER) is None
    failures = auth.by_address.count(ATTACKER, auth.clock())
    assert failures == 3


async def test_unblock_lifts_address_and_account_blocks(auth: Authenticator) -> None:
    auth.config = AuthConfig(max_failures=2, block_seconds=300, penalty_max=0.0)
    auth.by_address.config = auth.by_account.config = auth.config
    for _ in range(2):
        await auth.authenticate(ADDRESS, "x", remote=ATTACKER)
    kinds = sorted((b["kind"], b["key"]) for b in auth.blocks())
    assert kinds == [("account", ADDRESS), ("address", ATTACKER)]
    with pytest.raises(Blocked):
        await auth.authenticate(ADDRESS, "right", remote=ATTACKER)
    assert auth.unblock(ATTACKER) == [f"address {ATTACKER}"]
    with pytest.raises(Blocked):  # the account block still stands for this unfamiliar address
        await auth.authenticate(ADDRESS, "right", remote=ATTACKER)
    assert auth.unblock("Alice@Example.ORG") == [f"account {ADDRESS}"]
    assert await auth.authenticate(ADDRESS, "right", remote=ATTACKER) is not None
    assert auth.blocks() == []
    assert auth.unblock("203.0.113.1") == []
