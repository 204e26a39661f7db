"""A restore in many small batches (pobox.transfer.restore.BATCH, BATCH_BYTES): contents shared
between batches, spooled one batch ahead and flushed before each commit, come back as they
were on both backends; a restore stopped before a batch's commit shows none of that batch."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.transfer.util import fill, observed

from pobox.store.api import Store
from pobox.store.factory import create_store
from pobox.transfer import restore as restore_module
from pobox.transfer.backup import backup
from pobox.transfer.restore import restore


async def _open(spec: str, data: Path) -> Store:
    store = create_store(spec, data)
    await store.open()
    return store


async def _backup(tmp_path: Path) -> tuple[Path, list[object]]:
    source = await _open("sqlite", tmp_path / "source")
    try:
        await fill(source)
        before = await observed(source)
        dest = tmp_path / "backup"
        await backup(source, dest, store_id="source")
    finally:
        await source.close()
    return dest, before


@pytest.mark.parametrize("target", ["sqlite", "postgres"])
async def test_small_batches_restore_everything(
    tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    dest, before = await _backup(tmp_path)
    monkeypatch.setattr(restore_module, "BATCH", 3)
    monkeypatch.setattr(restore_module, "BATCH_BYTES", 1000)  # and a batch of the large one
    spec = "sqlite" if target == "sqlite" else pg_dsn
    store = await _open(spec, tmp_path / "restored")
    try:
        report = await restore(store, dest)
        assert report.accounts == 2
        assert await observed(store) == before
    finally:
        await store.close()


async def test_a_restore_stopped_before_a_commit_shows_none_of_that_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest, _ = await _backup(tmp_path)
    monkeypatch.setattr(restore_module, "BATCH", 3)
    store = await _open("sqlite", tmp_path / "restored")
    try:
        real = store.restore_messages
        calls = 0

        async def failing(*args: object, **kwargs: object) -> object:
            nonlocal calls
            calls += 1
            if calls == 2:
                raise OSError(5, "I/O error")  # the second batch's commit fails
            return await real(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(store, "restore_messages", failing)
        with pytest.raises(OSError):
            await restore(store, dest)
        account = await store.get_account("alice@example.org")
        assert account is not None
        counts = [
            len(await store.list_messages(mailbox.id))
            for mailbox in await store.list_mailboxes(account.id)
        ]
        assert sum(counts) == 3  # the first batch only
        # every message file is one a committed row names: none of the spooled ones is left
        files = {p.name for p in (tmp_path / "restored" / "messages").rglob("*") if p.is_file()}
        async with store.snapshot() as snap:
            named = {
                m.content
                for image in await snap.accounts()
                for mailbox in image.mailboxes
                for m in mailbox.messages
            }
        assert files == named
    finally:
        await store.close()
