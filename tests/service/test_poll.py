"""NOOP and CHECK are explicit polls (RFC 9051 §6.1.2): what another worker or node committed
before the poll is announced by it, not only once the store's change notification arrives
(SQLite's journal watcher looks every 200 ms). MailIndex.poll reads the mailbox row once."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from tests.service.test_index import (  # noqa: F401 (fixtures)
    Client,
    Counting,
    _measure,
    imap,
    inbox_of,
    nodes,
)
from tests.store.util import append, message_bytes

from pobox.config import Config
from pobox.errors import NotFound
from pobox.server import Running
from pobox.service.index import MailIndex
from pobox.service.view import MailboxView
from pobox.store.api import FlagOp, Store
from pobox.store.factory import create_store


class _Deaf:
    """A store whose change notifications never arrive (as if the watcher were late)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def add_listener(self, listener: Callable[..., Any]) -> None:
        pass

    def remove_listener(self, listener: Callable[..., Any]) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def test_a_poll_sees_what_another_worker_committed(nodes: list[Store]) -> None:  # noqa: F811
    here, there = nodes
    inbox = await inbox_of(here)
    first = await append(there, inbox.id, message_bytes(1))
    index = MailIndex(cast(Store, _Deaf(here)))
    view = await MailboxView.open(index, inbox)
    assert len(view) == 1

    await append(there, inbox.id, message_bytes(2))
    assert not view.changed()  # no notification: without a poll nothing is known
    await index.poll(view.index)
    update = await view.refresh()
    assert update.exists == 2

    await there.set_flags(inbox.id, [first.uid], FlagOp.ADD, frozenset({"\\Deleted"}))
    await there.expunge(inbox.id, [first.uid])
    await index.poll(view.index)
    update = await view.refresh()
    assert update.expunged == [1] and len(view) == 1

    await index.poll(view.index)  # nothing new: nothing to do
    assert not view.changed()

    await there.delete_mailbox(inbox.id)
    await index.poll(view.index)
    with pytest.raises(NotFound):
        await view.refresh()
    view.close()


async def test_noop_and_check_read_the_mailbox_row_once(imap: tuple[Running, Counting]) -> None:  # noqa: F811
    running, counting = imap
    a = await Client.connect(running)
    try:
        await a.command("SELECT INBOX")
        for command in ("NOOP", "CHECK"):
            calls = await _measure(counting, lambda c=command: a.command(c))  # type: ignore[misc]
            assert calls == Counter({"get_mailbox_by_id": 1}), (command, calls)
        await a.command("UNSELECT")
        calls = await _measure(counting, lambda: a.command("NOOP"))
        assert calls == Counter(), calls  # nothing selected: nothing to poll
    finally:
        await a.close()


async def test_append_goes_to_the_mailbox_now_under_that_name(
    running: Running, config: Config
) -> None:
    # another worker deletes a mailbox this process still has indexed and creates one of the
    # same name; its notification has not arrived here yet: APPEND goes to the new mailbox
    service = running.service
    account = await service.accounts.add("poll@example.org", "secret")
    box = await service.store.create_mailbox(account.id, "Box")
    await append(service.store, box.id, message_bytes(1))
    index = service.index
    held = await index.acquire(box)
    service.store.remove_listener(index._on_change)  # the notification is late
    there = create_store("sqlite", Path(config.data_dir))
    await there.open()
    try:
        await there.delete_mailbox(box.id)
        new = await there.create_mailbox(account.id, "Box")
    finally:
        await there.close()
    try:
        assert not held.stale  # nothing told this process
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port("imap"))
        try:
            await reader.readline()
            writer.write(b'a LOGIN "poll@example.org" "secret"\r\n')
            writer.write(b"b APPEND Box {20+}\r\nSubject: again\r\n\r\nhi\r\n")
            lines = [await reader.readline() for _ in range(2)]
            assert lines[1].startswith(b"b OK [APPENDUID %d 1]" % new.uidvalidity), lines
        finally:
            writer.close()
        assert (await service.store.mailbox_status(new.id)).messages == 1
    finally:
        index.release(held)


async def test_expunge_sees_what_another_worker_did_before_it(
    running: Running, config: Config
) -> None:
    # RFC 9051 §6.4.3: EXPUNGE removes every message that has \Deleted, whoever set it; and a
    # message another session expunged meanwhile is announced (imaptest's "expunge" script,
    # with the two sessions on two workers)
    service = running.service
    account = await service.accounts.add("poll@example.org", "secret")
    inbox = await service.store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    metas = [await append(service.store, inbox.id, message_bytes(n)) for n in range(3)]
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port("imap"))
    try:
        await reader.readline()
        writer.write(b'a LOGIN "poll@example.org" "secret"\r\nb SELECT INBOX\r\n')
        while not (await reader.readline()).startswith(b"b OK"):
            pass
        service.store.remove_listener(service.index._on_change)  # notifications are late
        there = create_store("sqlite", Path(config.data_dir))
        await there.open()
        try:
            deleted = frozenset({"\\Deleted"})
            await there.set_flags(inbox.id, [metas[0].uid, metas[2].uid], FlagOp.ADD, deleted)
            await there.expunge(inbox.id, [metas[0].uid])
        finally:
            await there.close()
        writer.write(b"c EXPUNGE\r\n")
        lines = []
        while not (line := await reader.readline()).startswith(b"c "):
            lines.append(line)
        assert line.startswith(b"c OK"), lines
        # either order keeps every number valid when it is sent
        assert lines in (
            [b"* 1 EXPUNGE\r\n", b"* 2 EXPUNGE\r\n"],
            [b"* 3 EXPUNGE\r\n", b"* 1 EXPUNGE\r\n"],
        ), lines
        assert (await service.store.mailbox_status(inbox.id)).messages == 1
    finally:
        writer.close()
