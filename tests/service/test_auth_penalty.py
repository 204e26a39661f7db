"""Failed-login penalties of the one authentication routine (docs/security.md), on a fake clock."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from tests.helpers.clock import Time

from pobox.config import AuthConfig
from pobox.service.auth import Authenticator, Blocked, address_key
from pobox.service.mail import MailService

ADDRESS = "alice@example.org"
OTHER = "bob@example.org"
ATTACKER = "192.0.2.66"
HOME = "198.51.100.7"
ELSEWHERE = "203.0.113.9"


@pytest.fixture
def fake_time() -> Time:
    return Time()


@pytest.fixture
async def auth(service: MailService, fake_time: Time) -> AsyncIterator[Authenticator]:
    await service.accounts.add(ADDRESS, "right")
    await service.accounts.add(OTHER, "bobs")
    config = AuthConfig(max_failures=4, block_seconds=300, penalty_max=5.0)
    yield Authenticator(service.store, config, clock=fake_time, sleep=fake_time.sleep)


async def test_growing_delay_capped(auth: Authenticator, fake_time: Time) -> None:
    auth.config = AuthConfig(max_failures=100, block_seconds=300, penalty_max=5.0)
    auth.by_address.config = auth.by_account.config = auth.config
    for _ in range(5):
        assert await auth.authenticate(ADDRESS, "wrong", remote=ATTACKER) is None
    assert fake_time.slept == [2.0, 4.0, 5.0, 5.0]  # the first failure is answered at once


async def test_success_is_never_delayed(auth: Authenticator, fake_time: Time) -> None:
    for _ in range(2):
        assert await auth.authenticate(ADDRESS, "wrong", remote=HOME) is None
    slept = list(fake_time.slept)
    account = await auth.authenticate(ADDRESS, "right", remote=HOME)
    assert account is not None and account.address == ADDRESS
    assert fake_time.slept == slept


async def test_unknown_account_costs_the_same(auth: Authenticator, fake_time: Time) -> None:
    assert await auth.authenticate("nobody@example.org", "x", remote=ATTACKER) is None
    assert await auth.authenticate("nobody@example.org", "x", remote=ELSEWHERE) is None
    assert await auth.authenticate(ADDRESS, "x", remote="192.0.2.200") is None
    assert await auth.authenticate(ADDRESS, "x", remote="192.0.2.201") is None
    # the same penalties for a name that exists and one that does not
    assert fake_time.slept == [2.0, 2.0]


async def test_address_block_spares_other_addresses(
    auth: Authenticator, fake_time: Time, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pobox.auth")
    for n in range(4):  # four different accounts: only the address counter reaches the limit
        assert await auth.authenticate(f"user{n}@example.org", "x", remote=ATTACKER) is None
    with pytest.raises(Blocked) as blocked:
        await auth.authenticate(ADDRESS, "right", remote=ATTACKER)  # even the right password
    assert 0 < blocked.value.retry_after <= 300
    assert await auth.authenticate(OTHER, "bobs", remote=ELSEWHERE) is not None
    assert await auth.authenticate(ADDRESS, "right", remote=HOME) is not None
    text = caplog.text
    assert f"remote={ATTACKER}" in text
    assert f"blocking address {ATTACKER}" in text
    assert "authentication refused (blocked)" in text


async def test_block_ends_and_a_new_failure_blocks_again(
    auth: Authenticator, fake_time: Time
) -> None:
    for _ in range(4):
        await auth.authenticate(OTHER, "x", remote=ATTACKER)
    with pytest.raises(Blocked):
        await auth.authenticate(OTHER, "bobs", remote=ATTACKER)
    fake_time.now += 301
    assert await auth.authenticate(OTHER, "x", remote=ATTACKER) is None
    with pytest.raises(Blocked):
        await auth.authenticate(OTHER, "bobs", remote=ATTACKER)
    fake_time.now += 301 + 301  # a quiet period after the block: everything is forgotten
    assert await auth.authenticate(OTHER, "bobs", remote=ATTACKER) is not None


async def test_distributed_guessing_blocks_the_account_but_not_its_familiar_address(
    auth: Authenticator, fake_time: Time
) -> None:
    assert await auth.authenticate(ADDRESS, "right", remote=HOME) is not None  # familiar now
    for n in range(4):  # one failure each from four addresses
        assert await auth.authenticate(ADDRESS, "guess", remote=f"192.0.2.{n + 1}") is None
    with pytest.raises(Blocked):  # a fifth address, even with the right password
        await auth.authenticate(ADDRESS, "right", remote="192.0.2.99")
    with pytest.raises(Blocked):  # the name spelt differently is the same account
        await auth.authenticate("ALICE@example.org", "guess", remote="192.0.2.98")
    # the real user at their usual address is not locked out, and other accounts are untouched
    assert await auth.authenticate(ADDRESS, "right", remote=HOME) is not None
    assert await auth.authenticate(OTHER, "bobs", remote="192.0.2.99") is not None


async def test_account_block_is_bounded_in_time(auth: Authenticator, fake_time: Time) -> None:
    for n in range(4):
        await auth.authenticate(ADDRESS, "guess", remote=f"192.0.2.{n + 1}")
    with pytest.raises(Blocked):
        await auth.authenticate(ADDRESS, "right", remote=ELSEWHERE)
    fake_time.now += 301
    assert await auth.authenticate(ADDRESS, "right", remote=ELSEWHERE) is not None


async def test_blocked_attempts_do_not_check_the_password(
    auth: Authenticator, fake_time: Time, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(4):
        await auth.authenticate(ADDRESS, "x", remote=ATTACKER)
    calls = 0

    def counting(*args: object) -> bool:
        nonlocal calls
        calls += 1
        return False

    monkeypatch.setattr("pobox.service.auth.verify_password", counting)
    for _ in range(3):
        with pytest.raises(Blocked):
            await auth.authenticate(ADDRESS, "x", remote=ATTACKER)
    assert calls == 0


def test_address_keys() -> None:
    assert address_key("192.0.2.1") == "192.0.2.1"
    assert address_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert address_key("2001:db8:1:2:3:4:5:6") == address_key("2001:db8:1:2:ffff::1")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("") == "-"


async def test_service_uses_the_auth_config(service: MailService) -> None:
    assert service.auth.config == service.config.auth
