"""Backups carry METADATA entries (RFC 5464; docs/decisions/metadata.md): a mailbox's shared
entries and its owner's private ones, and each account's private server entries, come back from
a backup restored into SQLite and into PostgreSQL; `pobox store copy` moves every entry."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.servers import pobox

from pobox.store.api import Store
from pobox.store.factory import create_store

BINARY = b"\x00\x01\xff with NUL"


async def fill(store: Store) -> None:
    alice = await store.create_account("alice@example.org", "h")
    bob = await store.create_account("bob@example.org", "h")
    team = await store.create_mailbox(alice.id, "Team")
    await store.set_annotations(alice.id, team.id, [("/shared/comment", b"the team")])
    await store.set_annotations(alice.id, team.id, [("/private/blob", BINARY)])
    await store.set_annotations(bob.id, team.id, [("/private/comment", b"bob's, on alice's")])
    await store.set_annotations(alice.id, None, [("/private/vendor/x", b"alice's setting")])
    await store.set_annotations(alice.id, None, [("/shared/comment", b"message of the day")])


async def entries(spec: str, data: Path, *, everything: bool = False) -> list[tuple[object, ...]]:
    store = create_store(spec, data)
    await store.open()
    try:
        out: list[tuple[object, ...]] = []
        for address in ("alice@example.org", "bob@example.org"):
            account = await store.get_account(address)
            assert account is not None
            team = await store.get_mailbox(account.id, "Team")
            ids = [None] if team is None else [team.id, None]
            if team is None and everything:
                alice = await store.get_account("alice@example.org")
                assert alice is not None
                shared = await store.get_mailbox(alice.id, "Team")
                assert shared is not None
                ids = [shared.id, None]
            found = await store.get_annotations(account.id, ids)
            for key, items in found.items():
                out.extend((address, key is not None, name, value) for name, value in items)
        return sorted(out, key=repr)
    finally:
        await store.close()


async def test_entries_survive_backup_and_restore(tmp_path: Path, pg_dsn: str) -> None:
    data = tmp_path / "data"
    store = create_store("sqlite", data)
    await store.open()
    try:
        await fill(store)
    finally:
        await store.close()
    expected = sorted(
        [
            ("alice@example.org", True, "/private/blob", BINARY),
            ("alice@example.org", True, "/shared/comment", b"the team"),
            ("alice@example.org", False, "/private/vendor/x", b"alice's setting"),
        ],
        key=repr,
    )
    dest = tmp_path / "backup"
    pobox("backup", str(dest), data=data)
    pobox("restore", str(dest), "--to", str(tmp_path / "restored"), data=data)
    assert [
        e for e in await entries("sqlite", tmp_path / "restored") if e[0] == "alice@example.org"
    ] == expected
    pobox("restore", str(dest), "--to", pg_dsn, data=data)
    assert [
        e for e in await entries(pg_dsn, tmp_path / "pg-spool") if e[0] == "alice@example.org"
    ] == expected


async def test_store_copy_moves_every_entry(tmp_path: Path, pg_dsn: str) -> None:
    data = tmp_path / "data"
    store = create_store("sqlite", data)
    await store.open()
    try:
        await fill(store)
    finally:
        await store.close()
    before = await entries("sqlite", data, everything=True)
    assert ("bob@example.org", True, "/private/comment", b"bob's, on alice's") in before
    assert ("bob@example.org", False, "/shared/comment", b"message of the day") in before
    pobox("store", "copy", "--from", str(data), "--to", pg_dsn, data=data)
    assert await entries(pg_dsn, tmp_path / "pg-spool", everything=True) == before
