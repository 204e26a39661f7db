"""Backups carry folder policies (docs/policies.md): backup, restore into SQLite and into
PostgreSQL, and a snapshot of either backend holds them."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.servers import pobox

from pobox.store.factory import create_store

POLICIES = [
    ("alice@example.org", "*", "expunge-after", "2000d"),
    ("alice@example.org", "INBOX", "archive-after", "365d"),
    ("alice@example.org", "INBOX", "archive-by", "year"),
    ("alice@example.org", "\\Trash", "expunge-after", "off"),
    ("bob@example.org", "Lists/Old", "expunge-after", "1w"),
]


async def stored(spec: str, data: Path) -> list[tuple[str, str, str, str]]:
    store = create_store(spec, data)
    await store.open()
    try:
        async with store.snapshot() as snapshot:
            images = await snapshot.accounts()
        return sorted((i.address, *p) for i in images for p in i.policies)
    finally:
        await store.close()


async def test_policies_survive_backup_and_restore(tmp_path: Path, pg_dsn: str) -> None:
    data = tmp_path / "data"
    store = create_store("sqlite", data)
    await store.open()
    try:
        ids = {}
        for address in ("alice@example.org", "bob@example.org", "carol@example.org"):
            ids[address] = (await store.create_account(address, "h")).id
        for address, folder, key, value in POLICIES:
            await store.set_folder_policy(ids[address], folder, key, value)
    finally:
        await store.close()
    assert await stored("sqlite", data) == sorted(POLICIES)
    dest = tmp_path / "backup"
    pobox("backup", str(dest), data=data)
    pobox("restore", str(dest), "--to", str(tmp_path / "restored"), data=data)
    assert await stored("sqlite", tmp_path / "restored") == sorted(POLICIES)
    pobox("restore", str(dest), "--to", pg_dsn, data=data)
    assert await stored(pg_dsn, tmp_path / "pg-spool") == sorted(POLICIES)
