"""URLAUTH mailbox access keys (RFC 4467 §2.2), on every backend."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.helpers.postgres import session_database

from pobox.errors import NotFound
from pobox.store.api import MailboxId, Store
from pobox.store.factory import create_store


async def test_a_key_is_made_once_and_kept(store: Store) -> None:
    anna = await store.create_account("anna@example.org", "h")
    ben = await store.create_account("ben@example.org", "h")
    inbox = await store.create_mailbox(anna.id, "Work")
    assert await store.mailbox_key(anna.id, inbox.id) is None  # asking makes none
    assert await store.mailbox_key(anna.id, inbox.id, b"k1" * 16) == b"k1" * 16
    # the first key stays: a second offer does not replace it
    assert await store.mailbox_key(anna.id, inbox.id, b"k2" * 16) == b"k1" * 16
    assert await store.mailbox_key(anna.id, inbox.id) == b"k1" * 16
    # per user and per mailbox: another account has its own key for the same mailbox
    assert await store.mailbox_key(ben.id, inbox.id) is None
    assert await store.mailbox_key(ben.id, inbox.id, b"b1" * 16) == b"b1" * 16
    assert await store.mailbox_key(anna.id, inbox.id) == b"k1" * 16


async def test_two_racing_callers_get_the_same_key(store: Store) -> None:
    anna = await store.create_account("anna@example.org", "h")
    inbox = await store.create_mailbox(anna.id, "Work")
    keys = await asyncio.gather(
        *(store.mailbox_key(anna.id, inbox.id, bytes([n]) * 32) for n in range(8))
    )
    assert len(set(keys)) == 1
    assert await store.mailbox_key(anna.id, inbox.id) == keys[0]


async def test_reset_replaces_one_key_or_removes_all(store: Store) -> None:
    anna = await store.create_account("anna@example.org", "h")
    ben = await store.create_account("ben@example.org", "h")
    inbox = await store.create_mailbox(anna.id, "Work")
    sent = await store.create_mailbox(anna.id, "Later")
    await store.mailbox_key(anna.id, inbox.id, b"i" * 32)
    await store.mailbox_key(anna.id, sent.id, b"s" * 32)
    await store.mailbox_key(ben.id, inbox.id, b"b" * 32)
    await store.reset_mailbox_keys(anna.id, inbox.id, b"n" * 32)
    assert await store.mailbox_key(anna.id, inbox.id) == b"n" * 32
    assert await store.mailbox_key(anna.id, sent.id) == b"s" * 32
    await store.reset_mailbox_keys(anna.id, sent.id)  # None: no key until one is made
    assert await store.mailbox_key(anna.id, sent.id) is None
    await store.reset_mailbox_keys(anna.id, None)
    assert await store.mailbox_key(anna.id, inbox.id) is None
    assert await store.mailbox_key(ben.id, inbox.id) == b"b" * 32  # another account's stays


async def test_keys_go_with_the_mailbox_and_the_account(store: Store) -> None:
    anna = await store.create_account("anna@example.org", "h")
    ben = await store.create_account("ben@example.org", "h")
    team = await store.create_mailbox(anna.id, "Team")
    await store.mailbox_key(anna.id, team.id, b"a" * 32)
    await store.mailbox_key(ben.id, team.id, b"b" * 32)
    renamed = await store.rename_mailbox(team.id, "Crew")  # a rename keeps the key
    assert await store.mailbox_key(anna.id, renamed.id) == b"a" * 32
    await store.delete_account(ben.id)
    await store.delete_mailbox(renamed.id)
    again = await store.create_mailbox(anna.id, "Team")
    assert await store.mailbox_key(anna.id, again.id) is None
    with pytest.raises(NotFound):
        await store.mailbox_key(anna.id, renamed.id, b"x" * 32)
    with pytest.raises(NotFound):
        await store.reset_mailbox_keys(anna.id, MailboxId(renamed.id), b"x" * 32)


async def test_store_copy_carries_the_keys(tmp_path: Path) -> None:
    """``pobox store copy`` (SQLite to PostgreSQL) keeps the keys: authorized URLs stay valid."""
    from pobox.store.postgres.copy import copy_sqlite_to_postgres

    source = create_store("sqlite", tmp_path / "data")
    await source.open()
    try:
        anna = await source.create_account("anna@example.org", "h")
        work = await source.create_mailbox(anna.id, "Work")
        await source.mailbox_key(anna.id, work.id, b"w" * 32)
    finally:
        await source.close()
    database = session_database()
    schema, spec = database.new_schema()
    try:
        await copy_sqlite_to_postgres(tmp_path / "data", spec)
        target = create_store(spec, tmp_path / "pg")
        await target.open()
        try:
            assert await target.mailbox_key(anna.id, work.id) == b"w" * 32
        finally:
            await target.close()
    finally:
        database.drop_schema(schema)
