"""The per-process mailbox index (pobox.service.index) and the views over it (service/view.py).

Two stores opened on the same data stand for two workers (SQLite: two connections to one
database, the journal watcher between them) or two nodes (PostgreSQL: LISTEN/NOTIFY).
"""

from __future__ import annotations

import asyncio
import inspect
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import pytest
from tests.helpers.postgres import session_database
from tests.store.util import append, message_bytes, new_message

from pobox.imap.handlers import messages as messages_handlers
from pobox.server import Running
from pobox.service.index import MailIndex
from pobox.service.view import MailboxView
from pobox.store.api import SEEN, FlagOp, Mailbox, Store, Uid
from pobox.store.factory import create_store

ADDRESS = "index@example.org"
PASSWORD = "secret-password"


class Counting:
    """A store wrapper that counts the calls made to it (coroutine methods only)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return await attr(*args, **kwargs)

        return counted

    def total(self) -> int:
        return sum(self.calls.values())


@pytest.fixture(params=["sqlite", "postgres"])
async def nodes(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[list[Store]]:
    """Two stores on the same data: two workers (SQLite) or two nodes (PostgreSQL)."""
    schema: str | None = None
    spec = request.param
    if spec == "postgres":
        schema, spec = session_database().new_schema()
    stores = [create_store(spec, tmp_path / "data") for _ in range(2)]
    for store in stores:
        await store.open()
    try:
        yield stores
    finally:
        for store in stores:
            await store.close()
        if schema is not None:
            session_database().drop_schema(schema)


async def inbox_of(store: Store) -> Mailbox:
    account = await store.get_account(ADDRESS) or await store.create_account(ADDRESS, "x")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    return inbox


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


# ---- kept current across processes -------------------------------------------------------------
async def test_index_follows_the_other_worker(nodes: list[Store]) -> None:
    here, there = nodes
    inbox = await inbox_of(here)
    first = await append(there, inbox.id, message_bytes(1))
    counting = Counting(here)
    index = MailIndex(cast(Store, counting))
    views = [await MailboxView.open(index, inbox) for _ in range(3)]
    assert [len(v) for v in views] == [1, 1, 1]
    counting.calls.clear()

    second = await append(there, inbox.id, message_bytes(2))
    await there.set_flags(inbox.id, [first.uid], FlagOp.ADD, frozenset({SEEN}))
    await until(lambda: views[0].changed())
    updates = [await v.refresh() for v in views]
    # one changes_since for the process (or two if the watcher split the changes), never one
    # per session
    assert 1 <= counting.calls["changes_since"] <= 2
    for view, update in zip(views, updates, strict=True):
        assert update.exists == 2
        assert list(view.uids) == [first.uid, second.uid]
    seen = [(msn, SEEN in meta.flags) for msn, meta in updates[0].flags]
    if not seen:  # the flag change came in a second notification
        await until(lambda: views[0].changed())
        seen = [(msn, SEEN in meta.flags) for msn, meta in (await views[0].refresh()).flags]
    assert seen == [(1, True)]

    await there.expunge(inbox.id, [first.uid])
    await until(lambda: views[1].changed())
    held = await views[1].refresh(expunge=False)
    assert held.expunged == [] and views[1].is_expunged(first.uid)
    assert len(views[1]) == 2  # numbers stay while expunges may not be announced
    meta = views[1].meta(first.uid)
    assert meta is not None and meta.uid == first.uid  # what was known of it stays
    update = await views[1].refresh()
    assert update.expunged == [1] and list(views[1].uids) == [second.uid]
    assert (await views[2].refresh()).expunged == [1]
    for view in views:
        view.close()


async def test_own_writes_need_no_changes_since(nodes: list[Store]) -> None:
    here, _ = nodes
    inbox = await inbox_of(here)
    for n in range(3):
        await append(here, inbox.id, message_bytes(n))
    counting = Counting(here)
    index = MailIndex(cast(Store, counting))
    view, other = [await MailboxView.open(index, inbox) for _ in range(2)]
    counting.calls.clear()
    uids = [Uid(u) for u in view.uids]
    changed = await index.set_flags(inbox.id, uids[:2], FlagOp.ADD, frozenset({SEEN}))
    view.note_own(changed)
    await index.expunge(inbox.id, uids[2:])
    assert (await view.refresh()).flags == []  # reported by the session itself
    update = await other.refresh()
    assert [msn for msn, _ in update.flags] == [1, 2] and update.expunged == [3]
    await asyncio.sleep(0.5)  # SQLite's watcher must not report our own writes again
    assert not other.changed()
    assert counting.calls == Counter({"set_flags": 1, "expunge": 1})


class Deaf(Counting):
    """A store whose change notifications never arrive (a watcher that has not polled yet)."""

    def add_listener(self, listener: Any) -> None:
        pass

    def remove_listener(self, listener: Any) -> None:
        pass


async def test_a_new_view_sees_what_another_worker_committed(nodes: list[Store]) -> None:
    """A client that selects after another worker's command completed sees its effect, even
    before that worker's change notification has arrived: the mailbox row read at SELECT
    tells the index it is behind."""
    here, there = nodes
    inbox = await inbox_of(here)
    first = await append(there, inbox.id, message_bytes(1))
    index = MailIndex(cast(Store, Deaf(here)))
    view = await MailboxView.open(index, inbox)
    assert list(view.uids) == [first.uid]
    view.close()  # the index lingers, and hears nothing
    second = await append(there, inbox.id, message_bytes(2))
    await there.set_flags(inbox.id, [first.uid], FlagOp.ADD, frozenset({SEEN}))
    await there.expunge(inbox.id, [first.uid])
    fresh = await here.get_mailbox(inbox.account_id, "INBOX")
    assert fresh is not None
    again = await MailboxView.open(index, fresh)
    assert list(again.uids) == [second.uid]
    again.close()
    unchanged = await MailboxView.open(index, fresh)  # nothing new: nothing read
    assert list(unchanged.uids) == [second.uid]
    unchanged.close()


# ---- SELECT of an open mailbox reads nothing ---------------------------------------------------
async def test_second_view_reads_nothing(nodes: list[Store]) -> None:
    here, _ = nodes
    inbox = await inbox_of(here)
    for n in range(5):
        await append(here, inbox.id, message_bytes(n))
    counting = Counting(here)
    index = MailIndex(cast(Store, counting))
    first = await MailboxView.open(index, inbox)
    assert counting.total() > 0
    counting.calls.clear()
    second = await MailboxView.open(index, inbox)
    assert len(second) == 5 and counting.total() == 0
    assert not (await second.refresh()) and counting.total() == 0
    first.close()
    second.close()
    third = await MailboxView.open(index, inbox)  # the index lingers: still nothing to read
    assert len(third) == 5 and counting.total() == 0
    third.close()


# ---- over IMAP ---------------------------------------------------------------------------------
class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.n = reader, writer, 0

    @classmethod
    async def connect(cls, running: Running) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port("imap"))
        client = cls(reader, writer)
        await reader.readline()
        await client.command(f'LOGIN "{ADDRESS}" "{PASSWORD}"')
        return client

    async def command(self, text: str) -> list[bytes]:
        self.n += 1
        tag = b"t%d" % self.n
        self.writer.write(tag + b" " + text.encode() + b"\r\n")
        lines: list[bytes] = []
        while True:
            line = await self.reader.readline()
            assert line, lines
            lines.append(line)
            if line.startswith(tag + b" "):
                assert line.startswith(tag + b" OK"), lines
                return lines

    async def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def imap(running: Running) -> AsyncIterator[tuple[Running, Counting]]:
    service = running.service
    await service.accounts.add(ADDRESS, PASSWORD)
    inbox = await inbox_of(service.store)
    for n in range(40):
        await append(service.store, inbox.id, message_bytes(n))
    counting = Counting(service.store)
    service.index.store = cast(Store, counting)  # what the index and handlers ask, counted
    real_store = service.store
    service.store = cast(Store, counting)
    service.acl.store = cast(Store, counting)  # mailbox names are looked up through the ACL
    try:
        yield running, counting
    finally:
        service.store = real_store
        service.index.store = real_store
        service.acl.store = real_store


async def _measure(counting: Counting, step: Callable[[], Awaitable[Any]]) -> Counter[str]:
    counting.calls.clear()
    await step()
    return Counter(counting.calls)


async def test_imap_select_of_an_open_mailbox_reads_nothing(
    imap: tuple[Running, Counting],
) -> None:
    running, counting = imap
    a, b = await Client.connect(running), await Client.connect(running)
    try:
        await a.command("SELECT INBOX")
        # the mailbox row (one point read: has another process changed it?), no messages
        calls = await _measure(counting, lambda: b.command("EXAMINE INBOX"))
        assert calls == Counter({"get_mailbox": 1}), calls
        # SELECT also claims \Recent, but a's SELECT claimed every message, and this process
        # knows it: no write
        calls = await _measure(counting, lambda: b.command("SELECT INBOX"))
        assert calls == Counter({"get_mailbox": 1}), calls
        # NOOP is a poll: the mailbox row, to see what other processes committed
        calls = await _measure(counting, lambda: b.command("NOOP"))
        assert calls == Counter({"get_mailbox_by_id": 1}), calls
    finally:
        await a.close()
        await b.close()


async def test_imap_fetch_store_search_make_o1_store_calls(imap: tuple[Running, Counting]) -> None:
    running, counting = imap
    a, b = await Client.connect(running), await Client.connect(running)
    try:
        await a.command("SELECT INBOX")
        await b.command("SELECT INBOX")
        lines: list[bytes] = []

        async def fetch() -> None:
            lines.extend(await a.command("FETCH 1:* (FLAGS ENVELOPE BODY.PEEK[])"))

        calls = await _measure(counting, fetch)
        assert sum(1 for line in lines if b" FETCH (" in line) == 40
        # delivered without renderings: ENVELOPE rendered from the structures, kept for later
        assert calls == Counter(
            {"get_rendered": 1, "get_structures": 1, "open_contents": 1, "set_rendered": 1}
        ), calls
        await asyncio.gather(*messages_handlers._BACKFILLS)  # the renderings are kept
        calls = await _measure(counting, lambda: a.command("FETCH 1:* (ENVELOPE BODYSTRUCTURE)"))
        assert calls == Counter(), calls  # the renderings made above are kept in the process
        messages_handlers._KEPT.clear()  # as in another worker: one read for all of them
        calls = await _measure(counting, lambda: a.command("FETCH 1:* (ENVELOPE BODYSTRUCTURE)"))
        assert calls == Counter({"get_rendered": 1}), calls
        calls = await _measure(counting, lambda: a.command("FETCH 1:* (UID FLAGS RFC822.SIZE)"))
        assert calls == Counter(), calls
        calls = await _measure(counting, lambda: a.command("STORE 1:* +FLAGS.SILENT (\\Seen)"))
        assert calls == Counter({"set_flags": 1}), calls
        calls = await _measure(counting, lambda: a.command('SEARCH SUBJECT "message 3" BODY "3"'))
        assert calls["search_fields"] <= 1 and calls["open_contents"] <= 1, calls
        assert calls["get_structures"] <= 1 and calls["changes_since"] == 0, calls
        # the other session hears of the flags with no store call but NOOP's poll of the row
        answer: list[bytes] = []

        async def noop() -> None:
            answer.extend(await b.command("NOOP"))

        calls = await _measure(counting, noop)
        assert calls == Counter({"get_mailbox_by_id": 1}), calls
        assert sum(1 for line in answer if b"FETCH (FLAGS (\\Seen" in line) == 40
    finally:
        await a.close()
        await b.close()


async def test_imap_pending_expunge_during_fetch_by_number(imap: tuple[Running, Counting]) -> None:
    running, _ = imap
    a, b = await Client.connect(running), await Client.connect(running)
    try:
        await a.command("SELECT INBOX")
        await b.command("SELECT INBOX")
        await b.command("STORE 2 +FLAGS.SILENT (\\Deleted)")
        await b.command("EXPUNGE")
        # RFC 9051 §7.5.1: no EXPUNGE during FETCH/STORE/SEARCH by number; numbers stay
        lines = await a.command("FETCH 2:3 (UID)")
        assert not any(b"EXPUNGE" in line for line in lines), lines
        assert lines[0] == b"* 2 FETCH (UID 2)\r\n", lines
        lines = await a.command("SEARCH ALL")
        assert not any(b"EXPUNGE" in line for line in lines), lines
        lines = await a.command("NOOP")
        assert b"* 2 EXPUNGE\r\n" in lines, lines
        lines = await a.command("FETCH 2 (UID)")
        assert lines[0] == b"* 2 FETCH (UID 3)\r\n", lines
    finally:
        await a.close()
        await b.close()


async def test_keywords_past_64_bits(nodes: list[Store]) -> None:
    here, _ = nodes
    inbox = await inbox_of(here)
    first = await append(here, inbox.id, message_bytes(1), flags=frozenset({"$a", "\\Seen"}))
    index = MailIndex(here)
    view = await MailboxView.open(index, inbox)
    many = frozenset(f"$k{n}" for n in range(70))
    changed = await index.set_flags(inbox.id, [first.uid], FlagOp.ADD, many)
    assert changed and changed[0].flags == many | {"$a", "\\Seen"}
    meta = view.meta(first.uid)
    assert meta is not None and meta.flags == many | {"$a", "\\Seen"}
    assert view.index.keywords_in_use() == tuple(sorted(many | {"$a"}))
    again = MailIndex(here)  # loaded from the store's columns
    other = await MailboxView.open(again, inbox)
    loaded = other.meta(first.uid)
    assert loaded is not None and loaded.flags == meta.flags
    view.close()
    other.close()


async def test_a_new_message_with_keywords_past_64_bits(nodes: list[Store]) -> None:
    """The message that widens the flags column (past 64 bits) lands in the new column."""
    here, _ = nodes
    inbox = await inbox_of(here)
    await append(here, inbox.id, message_bytes(1), flags=frozenset({"\\Seen"}))
    index = MailIndex(here)
    view = await MailboxView.open(index, inbox)
    many = frozenset(f"$n{n}" for n in range(70))
    new = await index.append(inbox.id, await new_message(here, message_bytes(2), flags=many))
    await view.refresh()
    meta = view.meta(new.uid)
    assert meta is not None and meta.flags == many
    assert len(view) == 2
    view.close()
