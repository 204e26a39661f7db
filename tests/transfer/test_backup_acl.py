"""Backups carry shares (docs/sharing.md): the access lists of every mailbox come back from a
backup restored into SQLite and into PostgreSQL, and `pobox store copy` moves them too."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.servers import pobox

from pobox.store.factory import create_store

LISTS = [
    ("alice@example.org", "INBOX", "-bob@example.org", "w"),
    ("alice@example.org", "INBOX", "bob@example.org", "lrsw"),
    ("alice@example.org", "Team/Plans", "anyone", "lr"),
    ("alice@example.org", "Team/Plans", "carol@example.org", "lrswipkxtea"),
    ("bob@example.org", "Sent", "alice@example.org", "l"),
]


async def stored(spec: str, data: Path) -> list[tuple[str, str, str, str]]:
    store = create_store(spec, data)
    await store.open()
    try:
        async with store.snapshot() as snapshot:
            images = await snapshot.accounts()
        return sorted(
            (i.address, mb.name, *entry) for i in images for mb in i.mailboxes for entry in mb.acl
        )
    finally:
        await store.close()


async def test_access_lists_survive_backup_restore_and_copy(tmp_path: Path, pg_dsn: str) -> None:
    data = tmp_path / "data"
    store = create_store("sqlite", data)
    await store.open()
    try:
        ids = {}
        for address in ("alice@example.org", "bob@example.org", "carol@example.org"):
            ids[address] = (await store.create_account(address, "h")).id
        for address, folder, who, rights in LISTS:
            mailbox = await store.get_mailbox(ids[address], folder)
            if mailbox is None:
                mailbox = await store.create_mailbox(ids[address], folder)
            await store.set_acl(mailbox.id, who, rights)
    finally:
        await store.close()
    assert await stored("sqlite", data) == sorted(LISTS)
    dest = tmp_path / "backup"
    pobox("backup", str(dest), data=data)
    pobox("restore", str(dest), "--to", str(tmp_path / "restored"), data=data)
    assert await stored("sqlite", tmp_path / "restored") == sorted(LISTS)
    pobox("restore", str(dest), "--to", pg_dsn, data=data)
    assert await stored(pg_dsn, tmp_path / "pg-spool") == sorted(LISTS)


async def test_store_copy_moves_access_lists(tmp_path: Path, pg_dsn: str) -> None:
    data = tmp_path / "data"
    store = create_store("sqlite", data)
    await store.open()
    try:
        alice = await store.create_account("alice@example.org", "h")
        await store.create_account("bob@example.org", "h")
        team = await store.create_mailbox(alice.id, "Team")
        await store.set_acl(team.id, "bob@example.org", "lr")
    finally:
        await store.close()
    pobox("store", "copy", "--from", str(data), "--to", pg_dsn, data=data)
    assert await stored(pg_dsn, tmp_path / "pg-spool") == [
        ("alice@example.org", "Team", "bob@example.org", "lr")
    ]
