"""SIGKILL of the server in the middle of a folder-policy sweep (docs/policies.md).

The sweeper archives 180 old messages of an INBOX into Archive/YYYY in batches of 5, slowed by
``[policy] batch_pause`` (a real setting) so that the kill lands mid-sweep. After the kill every
message is in exactly one place, whole and with its flags; after a restart the sweep finishes
and still no message is lost or doubled. On PostgreSQL two nodes run the sweeper: only one
sweeps at a time (the advisory lock), and when it is killed the other finishes.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest
from tests.helpers.postgres import session_database
from tests.helpers.servers import ServerProcess, postgres_nodes, server_process
from tests.store.util import message_bytes, new_message

from pobox.store.api import SEEN, Store
from pobox.store.factory import create_store

ADDRESS = "tidy@example.org"
OLD = 180  # archived: internal dates in 2019, 2020, 2021
NEW = 20  # stays: an internal date in the future
EXTRA = "\n[policy]\nbatch = 5\nbatch_pause = 0.2\ninterval = 1\n"
YEARS = (2019, 2020, 2021)


def flags_of(n: int) -> frozenset[str]:
    return frozenset({SEEN, "\\Flagged"}) if n % 3 == 0 else frozenset({SEEN})


def year_of(n: int) -> int:
    return YEARS[n % 3] if n < OLD else 2099


T = TypeVar("T")


async def with_store(spec: str, data: Path, fn: Callable[[Store], Awaitable[T]]) -> T:
    store = create_store(spec, data)
    await store.open()
    try:
        return await fn(store)
    finally:
        await store.close()


async def fill(store: Store) -> None:
    account = await store.get_account(ADDRESS)
    assert account is not None
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    for start in range(0, OLD + NEW, 50):
        batch = [
            await new_message(
                store,
                message_bytes(n),
                internal_date=datetime(year_of(n), 6, 1, tzinfo=UTC),
                flags=flags_of(n),
            )
            for n in range(start, min(start + 50, OLD + NEW))
        ]
        await store.append_many(inbox.id, batch)


async def census(store: Store) -> dict[str, list[tuple[int, frozenset[str]]]]:
    """mailbox name -> (message number, flags) of each message, from one pass over them."""
    account = await store.get_account(ADDRESS)
    assert account is not None
    found: dict[str, list[tuple[int, frozenset[str]]]] = {}
    for mailbox in await store.list_mailboxes(account.id):
        metas = await store.list_messages(mailbox.id)
        fields = await store.search_fields(mailbox.id)
        found[mailbox.name] = [
            (int(fields[m.uid].message_id.strip("<>").split("@")[0]), m.flags) for m in metas
        ]
    return found


def check(found: dict[str, list[tuple[int, frozenset[str]]]], *, finished: bool) -> int:
    """Every message exactly once, in INBOX or in the archive of its year, with its flags;
    returns how many are archived."""
    counts = Counter(n for items in found.values() for n, _ in items)
    assert sorted(counts) == list(range(OLD + NEW)), "a message is lost"
    assert set(counts.values()) == {1}, f"doubled: {[n for n, c in counts.items() if c > 1]}"
    archived = 0
    for name, items in found.items():
        for n, flags in items:
            assert flags == flags_of(n), (name, n, flags)
            if name != "INBOX":
                assert name == f"Archive/{year_of(n)}", (name, n)
                archived += 1
    if finished:
        assert sorted(n for n, _ in found["INBOX"]) == list(range(OLD, OLD + NEW))
    return archived


def batches(server: ServerProcess) -> int:
    return server.log.read_text(errors="replace").count("policy archived")


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.fixture(params=["sqlite", "postgres"])
def servers(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, list[ServerProcess]]]:
    users = {ADDRESS: "pw"}
    if request.param == "sqlite":
        with server_process(tmp_path, users, EXTRA) as server:
            yield "sqlite", [server]
        return
    database = session_database()
    schema, dsn = database.new_schema()
    try:
        with postgres_nodes(tmp_path, dsn, users, EXTRA) as nodes:
            yield dsn, nodes
    finally:
        database.drop_schema(schema)


@pytest.mark.torture
def test_sigkill_during_a_sweep_loses_and_doubles_nothing(
    servers: tuple[str, list[ServerProcess]],
) -> None:
    spec, nodes = servers
    data = nodes[0].data
    asyncio.run(with_store(spec, data, fill))
    nodes[0].cli("policy", "set", ADDRESS, "INBOX", "archive-after=365d", "archive-by=year")

    # the sweep starts within a second; kill the node that sweeps after a few batches
    wait_for(lambda: any(batches(node) >= 4 for node in nodes))
    sweeping = [node for node in nodes if batches(node) > 0]
    assert len(sweeping) == 1, "two nodes swept at once"
    sweeping[0].kill()
    if len(nodes) == 1:  # the only server is down: the store is as the kill left it
        found = asyncio.run(with_store(spec, data, census))
        archived = check(found, finished=False)
        assert 0 < archived < OLD, archived
        sweeping[0].log.write_bytes(b"")
        sweeping[0].start()
    else:  # the other node takes over
        sweeping[0].log.write_bytes(b"")
        sweeping[0].start()

    async def inbox_size(store: Store) -> int:
        account = await store.get_account(ADDRESS)
        assert account is not None
        inbox = await store.get_mailbox(account.id, "INBOX")
        assert inbox is not None
        return len(await store.list_messages(inbox.id))

    def done() -> bool:  # while the servers run (the census is for a store at rest)
        return asyncio.run(with_store(spec, data, inbox_size)) == NEW

    wait_for(done)
    for node in nodes:
        node.stop()
    found = asyncio.run(with_store(spec, data, census))
    assert check(found, finished=True) == OLD
    result = nodes[0].cli("check")
    assert b"consistent" in result.stdout, result.stdout + result.stderr
