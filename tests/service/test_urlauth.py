"""pobox.service.urlauth (RFC 4467) where a transcript cannot say it: a URL that expires after
it was signed, and the HMAC computed even where no key exists (§6)."""

from __future__ import annotations

import datetime as dt

import pytest

import pobox.service.urlauth as urlauth_module
from pobox.errors import InvalidInput
from pobox.service.mail import MailService
from pobox.service.urlauth import UrlClaim

T0 = dt.datetime(2026, 12, 8, 12, 0, tzinfo=dt.UTC)


def _claim(owner: str, mailbox: str, expire: dt.datetime | None = None) -> UrlClaim:
    rump = f"imap://{owner}@example.org/{mailbox}/;UID=1;URLAUTH=authuser"
    return UrlClaim(owner, mailbox, rump, "authuser", None, expire)


def _full(claim: UrlClaim, url: str) -> UrlClaim:
    _, mechanism, token = url.rsplit(":", 2)
    return UrlClaim(
        claim.owner,
        claim.mailbox,
        claim.rump,
        claim.access,
        claim.access_user,
        claim.expire,
        mechanism.upper(),
        token,
    )


async def test_a_url_is_valid_up_to_its_expiry_and_not_after(service: MailService) -> None:
    joe = await service.accounts.add("joe@example.org", "secret")
    fred = await service.accounts.add("fred@example.org", "secret")
    urlauth = service.urlauth
    now = T0
    urlauth.clock = lambda: now
    claim = _claim("joe@example.org", "INBOX", T0 + dt.timedelta(minutes=1))
    full = _full(claim, await urlauth.generate(joe, claim, "INTERNAL"))
    assert full.token is not None and full.token.startswith("01") and len(full.token) == 66
    assert await urlauth.verify(fred, full) is not None
    now = T0 + dt.timedelta(minutes=1)  # the latest time it is valid (RFC 4467 §3)
    assert await urlauth.verify(fred, full) is not None
    now = T0 + dt.timedelta(minutes=1, microseconds=1)
    assert await urlauth.verify(fred, full) is None
    with pytest.raises(InvalidInput):  # and it is not signed any more
        await urlauth.generate(joe, claim, "INTERNAL")


async def test_unknown_owners_and_mailboxes_still_cost_an_hmac(
    service: MailService, monkeypatch: pytest.MonkeyPatch
) -> None:
    await service.accounts.add("joe@example.org", "secret")
    fred = await service.accounts.add("fred@example.org", "secret")
    calls: list[str] = []
    real = urlauth_module.token

    def counted(key: bytes, rump: str) -> str:
        calls.append(rump)
        return real(key, rump)

    monkeypatch.setattr(urlauth_module, "token", counted)
    for owner, mailbox in (
        ("nobody@example.org", "INBOX"),
        ("joe@example.org", "Nowhere"),
        ("joe@example.org", "INBOX"),  # exists, but has no key yet
        ("not an address", "INBOX"),
    ):
        claim = _claim(owner, mailbox)
        full = _full(claim, claim.rump + ":internal:01" + "0" * 64)
        assert await service.urlauth.verify(fred, full) is None
    assert len(calls) == 4


async def test_only_readable_mailboxes_are_signed(service: MailService) -> None:
    joe = await service.accounts.add("joe@example.org", "secret")
    fred = await service.accounts.add("fred@example.org", "secret")
    await service.store.create_mailbox(joe.id, "Team")
    team = await service.store.get_mailbox(joe.id, "Team")
    assert team is not None
    await service.store.set_acl(team.id, "fred@example.org", "l")
    claim = _claim("fred@example.org", "Shared/joe@example.org/Team")
    with pytest.raises(InvalidInput):  # l without r
        await service.urlauth.generate(fred, claim, "INTERNAL")
    await service.store.set_acl(team.id, "fred@example.org", "lr")
    url = await service.urlauth.generate(fred, claim, "internal")
    assert url.startswith(claim.rump + ":internal:01")
    with pytest.raises(InvalidInput):
        await service.urlauth.generate(fred, claim, "XSAMPLE")
