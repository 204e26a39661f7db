"""``Store.spool_content``: a restore's contents, in memory already, spooled in one go (both
backends), and what the embedded store's one-go files promise about durability."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from tests.store.util import message_bytes, new_message

from pobox.errors import InvalidInput
from pobox.store.api import (
    AccountImage,
    MailboxImage,
    MessageImage,
    RestoreContent,
    Store,
    Uid,
)
from pobox.store.sqlite.files import FileLayout, FileSpool


def _image(address: str, sizes: list[int]) -> AccountImage:
    messages = tuple(
        MessageImage(n + 1, n + 1, frozenset(), 1.6e9, 0, 1.7e9, size, f"c{n}")
        for n, size in enumerate(sizes)
    )
    inbox = MailboxImage("INBOX", 1234, len(sizes) + 1, len(sizes) + 1, 1, None, messages)
    return AccountImage(
        address=address,
        password_hash="$argon2id$x",
        created=1.5e9,
        settings={},
        aliases=(),
        subscriptions=(),
        mailboxes=(inbox,),
        recoverable=(),
    )


async def _content(store: Store, data: bytes) -> RestoreContent:
    parsed = await new_message(store, data)  # only for its structure and fields
    parsed.spool.discard()
    spool = await asyncio.to_thread(store.spool_content, data)
    assert spool.size == len(data) and not spool.sealed
    return RestoreContent(spool, parsed.structure, parsed.fields)


async def test_spooled_contents_are_stored_whole(store: Store) -> None:
    # small ones, and one of a megabyte (beyond what PostgreSQL keeps in memory, and more than
    # one of its chunks)
    datas = [message_bytes(1), message_bytes(2, 300_000), message_bytes(3, 1_100_000)]
    image = _image("spooled@example.org", [len(d) for d in datas])
    account = await store.restore_account(image)
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    contents = {f"c{n}": await _content(store, data) for n, data in enumerate(datas)}
    with pytest.raises(ValueError):  # not sealed: refused
        await store.restore_messages(inbox.id, image.mailboxes[0].messages, contents)
    contents = {f"c{n}": await _content(store, data) for n, data in enumerate(datas)}
    await store.seal_spools([c.spool for c in contents.values()])
    await store.restore_messages(inbox.id, image.mailboxes[0].messages, contents)
    for n, data in enumerate(datas):
        content = await store.open_message(inbox.id, Uid(n + 1))
        try:
            assert content.size == len(data)
            assert content.read(0, len(data) + 10) == data
        finally:
            content.close()


async def test_a_refused_restore_keeps_none_of_its_spooled_contents(store: Store) -> None:
    image = _image("refused@example.org", [len(message_bytes(1))])
    account = await store.restore_account(image)
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    content = await _content(store, message_bytes(1))
    await store.seal_spools([content.spool])
    beyond = (MessageImage(7, 1, frozenset(), 1.6e9, 0, 1.7e9, content.spool.size, "c0"),)
    with pytest.raises(InvalidInput):  # UID 7 is not below UIDNEXT 2
        await store.restore_messages(inbox.id, beyond, {"c0": content})
    assert await store.list_messages(inbox.id) == []
    path = getattr(content.spool, "path", None)
    if path is not None:  # a file of the embedded store, or a temporary one: removed
        assert not Path(path).exists()


def test_a_file_written_in_one_go_is_fsynced_when_sealed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = FileLayout(tmp_path)
    layout.prepare()
    spool = FileSpool.holding(layout, b"whole\r\n")
    assert spool.path.read_bytes() == b"whole\r\n" and not spool.sealed
    synced: list[int] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.fstat(fd).st_ino)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    spool.seal()
    assert spool.sealed
    assert spool.path.stat().st_ino in synced  # the file itself
    assert spool.path.parent.stat().st_ino in synced  # and its directory entry
    synced.clear()
    spool.seal()  # once is enough
    assert synced == []


def test_a_file_that_cannot_be_written_whole_is_not_left_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = FileLayout(tmp_path)
    layout.prepare()

    def full(fd: int, data: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError):
        FileSpool.holding(layout, b"x" * 100)
    assert [p for p in layout.messages.rglob("*") if p.is_file()] == []
