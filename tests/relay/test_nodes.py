"""Several nodes on one store: each node's runner has its own store connection (as separate
`pobox serve` processes on one PostgreSQL database, or processes on one SQLite file), they run
their rounds at the same time, and every recipient gets its message exactly once."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.helpers.clock import Time
from tests.helpers.postgres import session_database
from tests.relay.fakes import fake_hop, relay_config

from pobox.relay.queue import OutboundQueue
from pobox.relay.runner import Runner
from pobox.store.api import Store
from pobox.store.factory import create_store

NODES = 3


@pytest.fixture(params=["sqlite", "postgres"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[list[Store]]:
    spec, schema = "sqlite", None
    if request.param == "postgres":
        schema, spec = session_database().new_schema()
    opened: list[Store] = []
    try:
        for _ in range(NODES):
            store = create_store(spec, tmp_path / "data")
            await store.open()
            opened.append(store)
        yield opened
    finally:
        for store in opened:
            await store.close()
        if schema is not None:
            session_database().drop_schema(schema)


async def test_nodes_send_each_recipient_once(stores: list[Store], tmp_path: Path) -> None:
    clock = Time()
    clock.now = 1_900_000_000.0
    with fake_hop() as (hop, port):
        hop.rcpt = {f"r{n}@x.example": ["451 4.3.0 later"] for n in range(0, 60, 3)}
        config = relay_config(tmp_path, host="127.0.0.1", port=port, tls="none", retry_min=60)
        runners = [
            Runner(
                store,
                lambda: config,
                OutboundQueue(store, clock=clock),
                clock=clock,
                owner=f"node{n}",
                batch=4,
            )
            for n, store in enumerate(stores)
        ]
        queue = OutboundQueue(stores[0], clock=clock)
        for n in range(0, 60, 2):
            await queue.enqueue("a@example.org", [f"r{n}@x.example", f"r{n + 1}@x.example"], b"x")
        rounds = 0
        while await stores[1].queue_length():
            await asyncio.gather(*(runner.run_once() for runner in runners))
            clock.now += 60
            rounds += 1
            assert rounds < 50
    counts = collections.Counter(hop.delivered_to())
    assert sorted(counts) == sorted(f"r{n}@x.example" for n in range(60))
    assert set(counts.values()) == {1}
    # the deferred ones were tried twice, the others once
    assert len(hop.rcpt_seen) == 60 + 20
