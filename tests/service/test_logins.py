"""App passwords in the service: making them, logging in with them, revoking them
(pobox.service.logins and the one authentication routine, pobox.service.auth).

Argon2id calls are counted with a spy on ``verify_password``; clocks are fakes. A second
MailService on the same store stands for another worker (SQLite) or another node (PostgreSQL).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import make_config
from tests.helpers.clock import Time
from tests.helpers.postgres import session_database

from pobox.config import Config
from pobox.errors import AlreadyExists, InvalidInput, NotFound
from pobox.service import passwords
from pobox.service.auth import Authenticator
from pobox.service.logins import MAX_LOGINS, Logins, canonical, generate_password, normalise_label
from pobox.service.mail import MailService

ADDRESS = "alice@example.org"
MAIN = "main password of alice"
HOME = "198.51.100.7"
PHONE = "203.0.113.5"


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
def fake_time() -> Time:
    return Time()


def authenticator(service: MailService, fake_time: Time) -> Authenticator:
    config = dataclasses.replace(service.config.auth, max_failures=100, penalty_max=0.0)
    return Authenticator(service.store, config, clock=fake_time, sleep=fake_time.sleep)


@pytest.fixture
async def auth(service: MailService, fake_time: Time) -> AsyncIterator[Authenticator]:
    await service.accounts.add(ADDRESS, MAIN)
    authn = authenticator(service, fake_time)
    yield authn
    authn.logins.close()


def test_generated_passwords_are_four_groups_of_four() -> None:
    made = {generate_password() for _ in range(200)}
    assert len(made) == 200
    for password in made:
        assert re.fullmatch(r"[a-z0-9]{4}(-[a-z0-9]{4}){3}", password)
        assert canonical(password) == password.replace("-", "")


def test_how_an_app_password_may_be_typed() -> None:
    assert canonical("abcd-efgh-ijkl-mn0p") == "abcdefghijklmn0p"
    assert canonical("ABCD EFGH IJKL MN0P") == "abcdefghijklmn0p"
    assert canonical("abcdefghijklmn0p") == "abcdefghijklmn0p"
    for other in ("", "abcd-efgh-ijkl", "abcd-efgh-ijkl-mnop-q", "abcd-efgh-ijkl-mn!p", MAIN):
        assert canonical(other) is None


def test_labels() -> None:
    assert normalise_label("  Anna's   phone ") == "Anna's phone"
    for bad in ("", "   ", "x" * 101, "tab\x00null"):
        with pytest.raises(InvalidInput):
            normalise_label(bad)


async def test_add_list_delete(service: MailService) -> None:
    await service.accounts.add(ADDRESS, MAIN)
    logins = Logins(service.store)
    made = await logins.add(ADDRESS, "Anna's phone")
    assert made.login.label == "Anna's phone"
    assert canonical(made.password) is not None
    assert made.password not in made.login.password_hash  # only a hash is kept
    with pytest.raises(AlreadyExists):
        await logins.add(ADDRESS, " Anna's  phone")
    with pytest.raises(NotFound, match=re.escape("no account nobody@example.org")):
        await logins.add("nobody@example.org", "x")
    with pytest.raises(InvalidInput):
        await logins.add("not an address", "x")
    assert [x.label for x in await logins.list(ADDRESS)] == ["Anna's phone"]
    with pytest.raises(NotFound, match="no app password labelled 'laptop'"):
        await logins.delete(ADDRESS, "laptop")
    assert (await logins.delete(ADDRESS, "Anna's phone")).id == made.login.id
    assert await logins.list(ADDRESS) == []


async def test_at_most_max_logins(service: MailService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pobox.service.logins.hash_password", lambda secret: "h:" + secret)
    await service.accounts.add(ADDRESS, MAIN)
    logins = Logins(service.store)
    for n in range(MAX_LOGINS):
        await logins.add(ADDRESS, f"device {n}")
    with pytest.raises(InvalidInput, match="delete one first"):
        await logins.add(ADDRESS, "one more")


async def test_main_and_app_passwords_both_log_in_and_say_which(
    service: MailService, auth: Authenticator
) -> None:
    made = await Logins(service.store).add(ADDRESS, "Anna's phone")
    main = await auth.sign_in(ADDRESS, MAIN, remote=HOME)
    assert main is not None and main.account.address == ADDRESS
    assert main.login is None and main.label is None and not main.revoked
    app = await auth.sign_in(ADDRESS, made.password, remote=PHONE)
    assert app is not None and app.account.id == main.account.id
    assert app.label == "Anna's phone" and app.handle is not None and not app.revoked
    # typed in capitals without hyphens, as a phone keyboard might
    spaced = made.password.replace("-", " ").upper()
    assert (await auth.sign_in(ADDRESS, spaced, remote=PHONE)) is not None
    assert await auth.authenticate(ADDRESS, made.password, remote=PHONE) == app.account
    assert await auth.sign_in(ADDRESS, generate_password(), remote=PHONE) is None
    assert await auth.sign_in("bob@example.org", made.password, remote=PHONE) is None


async def test_app_passwords_are_cached_and_the_cache_forgets_a_deleted_one(
    service: MailService, auth: Authenticator, spy: Spy
) -> None:
    logins = Logins(service.store)
    phone = await logins.add(ADDRESS, "phone")
    laptop = await logins.add(ADDRESS, "laptop")
    assert (await auth.sign_in(ADDRESS, laptop.password, remote=HOME)) is not None
    first = spy.calls
    for _ in range(3):
        result = await auth.sign_in(ADDRESS, laptop.password, remote=HOME)
        assert result is not None and result.label == "laptop"
    assert spy.calls == first  # no Argon2id again
    await logins.delete(ADDRESS, "laptop")
    assert await auth.sign_in(ADDRESS, laptop.password, remote=HOME) is None
    assert (await auth.sign_in(ADDRESS, phone.password, remote=HOME)) is not None
    assert (await auth.sign_in(ADDRESS, MAIN, remote=HOME)) is not None


async def test_a_main_password_costs_one_argon2_whatever_the_app_passwords(
    service: MailService, auth: Authenticator, spy: Spy
) -> None:
    logins = Logins(service.store)
    for label in ("a", "b", "c"):
        await logins.add(ADDRESS, label)
    assert (await auth.sign_in(ADDRESS, MAIN, remote=HOME)) is not None
    assert spy.calls == 1
    assert await auth.sign_in(ADDRESS, "wrong", remote=HOME) is None
    assert spy.calls == 2


async def test_revocation_reaches_the_live_session_and_only_it(
    service: MailService, auth: Authenticator
) -> None:
    logins = Logins(service.store)
    anna = await logins.add(ADDRESS, "Anna")
    ben = await logins.add(ADDRESS, "Ben")
    anna_session = await auth.sign_in(ADDRESS, anna.password, remote=HOME)
    ben_session = await auth.sign_in(ADDRESS, ben.password, remote=PHONE)
    main_session = await auth.sign_in(ADDRESS, MAIN, remote=HOME)
    assert anna_session and ben_session and main_session
    assert auth.logins.live(anna_session.account.id) == 2
    await logins.delete(ADDRESS, "Anna")
    await auth.logins.settle()
    assert anna_session.revoked
    assert not ben_session.revoked and not main_session.revoked
    assert auth.logins.live(anna_session.account.id) == 1
    assert await auth.sign_in(ADDRESS, anna.password, remote=HOME) is None


async def test_last_use_is_written_at_most_once_a_minute(
    service: MailService, auth: Authenticator, fake_time: Time
) -> None:
    logins = Logins(service.store)
    made = await logins.add(ADDRESS, "phone")
    assert (await logins.list(ADDRESS))[0].last_used is None
    assert await auth.sign_in(ADDRESS, made.password, remote=HOME)
    (seen,) = await logins.list(ADDRESS)
    assert seen.last_used is not None and seen.last_address == HOME
    written = seen.last_used
    fake_time.now += 30
    assert await auth.sign_in(ADDRESS, made.password, remote=HOME)
    assert (await logins.list(ADDRESS))[0].last_used == written  # not again within a minute
    assert await auth.sign_in(ADDRESS, made.password, remote=PHONE)  # another address: at once
    assert (await logins.list(ADDRESS))[0].last_address == PHONE
    fake_time.now += 61
    assert await auth.sign_in(ADDRESS, made.password, remote=PHONE)
    assert (await logins.list(ADDRESS))[0].last_used != written


@pytest.fixture(params=["sqlite", "postgres"])
def shared_config(request: pytest.FixtureRequest, tmp_path: Path) -> Config:
    config = make_config(tmp_path / "data")
    if request.param == "postgres":
        schema, dsn = session_database().new_schema()
        request.addfinalizer(lambda: session_database().drop_schema(schema))
        config = dataclasses.replace(config, store=dsn)
    return config


async def test_a_revocation_in_another_process_reaches_the_session(
    shared_config: Config, fake_time: Time
) -> None:
    """The server's service and the CLI's are two stores on one database: the deletion made
    through the second reaches the first's session through its change watcher."""
    server = await MailService.open(shared_config)
    cli = await MailService.open(shared_config)
    try:
        await cli.accounts.add(ADDRESS, MAIN)
        anna = await Logins(cli.store).add(ADDRESS, "Anna")
        ben = await Logins(cli.store).add(ADDRESS, "Ben")
        auth = authenticator(server, fake_time)
        anna_session = await auth.sign_in(ADDRESS, anna.password, remote=HOME)
        ben_session = await auth.sign_in(ADDRESS, ben.password, remote=HOME)
        assert anna_session and anna_session.handle and ben_session
        revoked = asyncio.Event()
        anna_session.handle.on_revoke = revoked.set
        await Logins(cli.store).delete(ADDRESS, "Anna")
        await asyncio.wait_for(revoked.wait(), 30)
        assert anna_session.revoked and not ben_session.revoked
        auth.logins.close()
    finally:
        await cli.close()
        await server.close()


async def test_a_revocation_while_the_login_is_verified_refuses_it(
    service: MailService, auth: Authenticator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app password is read, then deleted while Argon2id runs: the login must not open a
    session that the revocation can no longer reach."""
    logins = Logins(service.store)
    made = await logins.add(ADDRESS, "phone")
    verify = auth._verify

    async def deleted_meanwhile(*args: Any) -> Any:
        result = await verify(*args)
        await logins.delete(ADDRESS, "phone")
        return result

    monkeypatch.setattr(auth, "_verify", deleted_meanwhile)
    assert await auth.sign_in(ADDRESS, made.password, remote=HOME) is None
    assert auth.logins.live(made.login.account_id) == 0
