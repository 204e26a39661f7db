"""App passwords (docs/app-passwords.md) survive a backup and its restore into SQLite and into
PostgreSQL, and ``pobox store copy``; a restored app password still logs in."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.helpers.servers import pobox

from pobox.config import Config
from pobox.service.auth import Authenticator
from pobox.service.logins import Logins
from pobox.service.mail import MailService
from pobox.store.factory import create_store

Row = tuple[str, str, str, float, float | None, str | None]


async def stored(spec: str, data: Path) -> list[Row]:
    store = create_store(spec, data)
    await store.open()
    try:
        async with store.snapshot() as snapshot:
            images = await snapshot.accounts()
        return sorted(
            (i.address, x.label, x.password_hash, x.created, x.last_used, x.last_address)
            for i in images
            for x in i.logins
        )
    finally:
        await store.close()


async def logs_in(spec: str, data: Path, password: str) -> str | None:
    """The label the app password logs in with on the store at *spec* (None: refused)."""
    service = await MailService.open(Config(data_dir=str(data), store=spec))
    try:
        auth = Authenticator(service.store, service.config.auth)
        result = await auth.sign_in("alice@example.org", password, remote="192.0.2.1")
        auth.logins.close()
        return None if result is None else result.label
    finally:
        await service.close()


@pytest.fixture
async def source(tmp_path: Path) -> tuple[Path, str]:
    """A SQLite store with two app passwords for alice (one used), one for bob, none for carol;
    and alice's phone's password."""
    data = tmp_path / "data"
    service = await MailService.open(Config(data_dir=str(data)))
    try:
        for address in ("alice@example.org", "bob@example.org", "carol@example.org"):
            await service.accounts.add(address, "main")
        logins = Logins(service.store)
        phone = await logins.add("alice@example.org", "Anna's phone")
        laptop = await logins.add("alice@example.org", "laptop")
        await logins.add("bob@example.org", "tablet")
        await service.store.record_login_use([(laptop.login.id, 1234.5, "2001:db8::7")])
    finally:
        await service.close()
    return data, phone.password


async def test_logins_survive_backup_and_restore(
    tmp_path: Path, source: tuple[Path, str], pg_dsn: str
) -> None:
    data, password = source
    before = await stored("sqlite", data)
    assert [(r[0], r[1], r[4], r[5]) for r in before] == [
        ("alice@example.org", "Anna's phone", None, None),
        ("alice@example.org", "laptop", 1234.5, "2001:db8::7"),
        ("bob@example.org", "tablet", None, None),
    ]
    dest = tmp_path / "backup"
    pobox("backup", str(dest), data=data)
    assert password.encode() not in b"".join(p.read_bytes() for p in dest.rglob("*.json"))
    pobox("restore", str(dest), "--to", str(tmp_path / "restored"), data=data)
    assert await stored("sqlite", tmp_path / "restored") == before
    assert await logs_in("sqlite", tmp_path / "restored", password) == "Anna's phone"
    pobox("restore", str(dest), "--to", pg_dsn, data=data)
    assert await stored(pg_dsn, tmp_path / "pg-spool") == before
    assert await logs_in(pg_dsn, tmp_path / "pg-spool", password) == "Anna's phone"


async def test_store_copy_carries_logins(
    tmp_path: Path, source: tuple[Path, str], pg_dsn: str
) -> None:
    data, password = source
    before = await stored("sqlite", data)
    pobox("store", "copy", "--from", str(data), "--to", pg_dsn, data=tmp_path / "unused")
    assert await stored(pg_dsn, tmp_path / "pg-spool") == before
    assert await logs_in(pg_dsn, tmp_path / "pg-spool", password) == "Anna's phone"
    # new logins get ids above the copied ones
    service = await MailService.open(Config(data_dir=str(tmp_path / "pg-spool"), store=pg_dsn))
    try:
        made = await Logins(service.store).add("carol@example.org", "new")
        copied = await service.store.list_logins(
            (await service.accounts.require("alice@example.org")).id
        )
        assert made.login.id > max(x.id for x in copied)
    finally:
        await service.close()
