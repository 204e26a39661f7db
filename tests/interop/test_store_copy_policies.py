"""`pobox store copy` carries every account's folder policies into PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers.postgres import session_database
from tests.helpers.servers import pobox

from pobox.store.api import FolderPolicy
from pobox.store.factory import create_store

pytestmark = pytest.mark.interop


@pytest.fixture
def target() -> Iterator[str]:
    database = session_database()
    name, dsn = database.new_database()
    yield dsn
    database.drop_database(name)


async def test_policies_are_copied(tmp_path: Path, target: str) -> None:
    data = tmp_path / "data"
    source = create_store("sqlite", data)
    await source.open()
    try:
        alice = await source.create_account("alice@example.org", "h")
        bob = await source.create_account("bob@example.org", "h")
        await source.set_folder_policy(alice.id, "INBOX", "archive-after", "365d")
        await source.set_folder_policy(alice.id, "INBOX", "archive-by", "year")
        await source.set_folder_policy(bob.id, "\\Trash", "expunge-after", "off")
        await source.set_folder_policy(bob.id, "*", "expunge-after", "2000d")
        before = await source.list_folder_policies()
    finally:
        await source.close()
    assert len(before) == 4
    pobox("store", "copy", "--from", str(data), "--to", target, data=tmp_path / "unused")
    copy = create_store(target, tmp_path / "pg-data")
    await copy.open()
    try:
        after = await copy.list_folder_policies()
        assert after == before
        assert FolderPolicy(bob.id, "\\Trash", "expunge-after", "off") in after
    finally:
        await copy.close()
