"""Quota warnings (docs/quota.md): one message from the postmaster per crossing of a warning
level, again only after the usage fell below it; over-quota deliveries refused per
recipient, permanently or (over_quota_tempfail) for now."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from tests.conftest import make_config

from pobox.config import ConfigError, QuotaConfig, load_config, parse_size
from pobox.errors import InvalidInput
from pobox.service.delivery import Envelope
from pobox.service.mail import MailService
from pobox.store.api import AccountId

ADDRESS = "w@example.org"


def _message(n: int) -> bytes:
    return f"From: a@example.org\r\nSubject: mail {n}\r\n\r\nhello {n}\r\n".encode()


async def _deliver(service: MailService, n: int) -> bool:
    (result,) = await service.delivery.deliver(Envelope("a@example.org", (ADDRESS,)), _message(n))
    return result.delivered


async def _warnings(service: MailService, account_id: AccountId) -> list[str]:
    inbox = await service.store.get_mailbox(account_id, "INBOX")
    assert inbox is not None
    fields = await service.store.search_fields(inbox.id)
    return [f.subject for _, f in sorted(fields.items()) if "postmaster@" in f.from_]


async def test_one_warning_per_crossing_and_again_after_falling_below(
    service: MailService,
) -> None:
    account = await service.accounts.add(ADDRESS, "pw")
    await service.accounts.set_setting(ADDRESS, "quota.messages", "20")
    delivered = [await _deliver(service, n) for n in range(16)]
    assert all(delivered)
    # 16 of 20: 80 % reached, one warning (which makes 17)
    assert await _warnings(service, account.id) == ["Your mailbox is 80% full"]
    assert await _deliver(service, 16)  # 18 of 20: 90 %, no new level
    assert len(await _warnings(service, account.id)) == 1
    assert await _deliver(service, 17)  # 19 of 20: 95 %, the second level
    assert await _warnings(service, account.id) == [
        "Your mailbox is 80% full",
        "Your mailbox is 95% full",
    ]
    usage = await service.store.quota_usage(account.id)
    assert (usage.messages, usage.warned) == (20, 95)
    assert not await _deliver(service, 99)  # full: refused, no warning for a refusal
    assert len(await _warnings(service, account.id)) == 2
    # down to 10 of 20, then up again: 80 % is crossed anew and warned anew
    inbox = await service.store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    metas = await service.store.list_messages(inbox.id)
    await service.store.expunge(inbox.id, [m.uid for m in metas[:10]])
    for n in range(100, 105):
        assert await _deliver(service, n)
    assert len(await _warnings(service, account.id)) == 2  # 15 of 20: below 80 %
    assert await _deliver(service, 105)  # 16 of 20
    subjects = await _warnings(service, account.id)
    assert len(subjects) == 3 and subjects[-1] == "Your mailbox is 80% full"
    assert (await service.store.quota_usage(account.id)).warned == 80
    assert await service.store.check() == []


async def test_over_quota_delivery_is_refused_for_good_or_for_now(
    service: MailService,
) -> None:
    await service.accounts.add(ADDRESS, "pw")
    await service.accounts.set_setting(ADDRESS, "quota.storage", "1")
    (result,) = await service.delivery.deliver(Envelope("a@example.org", (ADDRESS,)), _message(1))
    assert (result.delivered, result.over_quota, result.temporary) == (False, True, False)
    service.quota.reconfigure(
        dataclasses.replace(service.quota.config, over_quota_tempfail=True), "localhost"
    )
    (result,) = await service.delivery.deliver(Envelope("a@example.org", (ADDRESS,)), _message(2))
    assert (result.delivered, result.over_quota, result.temporary) == (False, True, True)


async def test_server_default_and_account_override(tmp_path: Path) -> None:
    config = make_config(tmp_path / "data", quota={"messages": 2, "warn": ()})
    service = await MailService.open(config)
    try:
        await service.accounts.add(ADDRESS, "pw")
        assert [await _deliver(service, n) for n in range(3)] == [True, True, False]
        await service.accounts.set_setting(ADDRESS, "quota.messages", "0")  # 0: no limit
        # a process reads an account's limits again after LIMITS_TTL seconds; a reload (as
        # SIGHUP does) forgets them at once
        service.quota.reconfigure(service.quota.config, "localhost")
        assert await _deliver(service, 3)
        await service.accounts.set_setting(ADDRESS, "quota.messages", None)  # the default
        service.quota.reconfigure(service.quota.config, "localhost")
        assert not await _deliver(service, 4)
    finally:
        await service.close()


async def test_settings_are_validated_with_a_message_naming_the_problem(
    service: MailService,
) -> None:
    await service.accounts.add(ADDRESS, "pw")
    with pytest.raises(InvalidInput, match=r"quota\.storage: '2X' is not a size"):
        await service.accounts.set_setting(ADDRESS, "quota.storage", "2X")
    with pytest.raises(InvalidInput, match=r"quota\.messages: '-1' is not a count"):
        await service.accounts.set_setting(ADDRESS, "quota.messages", "-1")
    assert parse_size("2G") == 2 * 1024**3 and parse_size("512k") == 512 * 1024
    assert parse_size("0") is None and parse_size("unlimited") is None


def test_quota_config_is_checked(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[quota]\nstorage = "2G"\nwarn = [95, 80]\nadmins = ["a@example.org"]\n')
    quota = load_config(good).quota
    assert quota == QuotaConfig(storage="2G", warn=(80, 95), admins=("a@example.org",))
    bad = tmp_path / "bad.toml"
    bad.write_text('[quota]\nstorage = "lots"\n')
    with pytest.raises(ConfigError, match=r"'quota\.storage': 'lots' is not a size"):
        load_config(bad)
    bad.write_text("[quota]\nwarn = [80, 120]\n")
    with pytest.raises(ConfigError, match="percentages"):
        load_config(bad)
