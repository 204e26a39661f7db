"""Accepted means on disk: a SIGKILL of pobox (and of a process enqueueing) with 500 messages
queued loses none, and after the restart each recipient gets its message exactly once."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.helpers.servers import server_process
from tests.relay.fakes import fake_hop

from pobox.store.api import QUEUE_PENDING
from pobox.store.factory import create_store

# enqueues numbered messages into the store at argv[1] until killed; prints "<id> <n>" for
# each once enqueue() has returned (the acknowledgement)
ENQUEUER = """
import asyncio, sys
from pathlib import Path
from pobox.relay.queue import OutboundQueue
from pobox.store.factory import create_store

async def main() -> None:
    store = create_store("sqlite", Path(sys.argv[1]))
    await store.open()
    queue = OutboundQueue(store)
    n = 0
    while True:
        body = f"Subject: number {n}\\r\\n\\r\\nmessage {n}\\r\\n".encode()
        queue_id = await queue.enqueue("alice@localhost", [f"r{n}@remote.example"], body)
        print(queue_id, n, flush=True)
        n += 1

asyncio.run(main())
"""

pytestmark = pytest.mark.torture  # SIGKILLs a real pobox process


def _wait(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def _queued(data: Path) -> dict[str, tuple[str, bytes]]:
    store = create_store("sqlite", data)
    await store.open()
    try:
        found = {}
        for item in await store.queue_list():
            assert [r.state for r in item.recipients] == [QUEUE_PENDING]
            found[item.id] = (item.recipients[0].address, await store.queue_content(item.id))
        return found
    finally:
        await store.close()


async def _length(data: Path) -> int:
    store = create_store("sqlite", data)
    await store.open()
    try:
        return await store.queue_length()
    finally:
        await store.close()


def test_sigkill_with_500_queued_loses_none(tmp_path: Path) -> None:
    with fake_hop() as (hop, port):
        hop.defer_all = "451 4.3.0 not now"
        relay = (
            f'\n[relay]\nhost = "127.0.0.1"\nport = {port}\ntls = "none"\n'
            "retry_min = 1\nretry_max = 1\n"
        )
        with server_process(tmp_path, {}, relay) as server:
            child = subprocess.Popen(
                [sys.executable, "-c", ENQUEUER, str(server.data)],
                stdout=subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": str(Path.cwd() / "src")},
            )
            assert child.stdout is not None
            acknowledged: dict[str, int] = {}
            try:
                while len(acknowledged) < 500:
                    line = child.stdout.readline()
                    assert line, "the enqueuer died"
                    queue_id, number = line.split()
                    acknowledged[queue_id.decode()] = int(number)
                # the server's runner is at work on them (deferred by the smarthost)
                _wait(lambda: len(hop.rcpt_seen) > 0, 60, "the runner to send")
            finally:
                os.kill(child.pid, signal.SIGKILL)  # in the middle of its next enqueue
                child.wait(10)
                child.stdout.close()
            server.kill()  # SIGKILL, in the middle of a round
            queued = asyncio.run(_queued(server.data))
            for queue_id, number in acknowledged.items():
                assert queue_id in queued, f"acknowledged message {number} was lost"
                rcpt, content = queued[queue_id]
                assert rcpt == f"r{number}@remote.example"
                assert content == f"Subject: number {number}\r\n\r\nmessage {number}\r\n".encode()
            assert hop.received == []
            # started again, with a smarthost that accepts: everything goes, once
            hop.defer_all = None
            server.start()
            _wait(lambda: asyncio.run(_length(server.data)) == 0, 120, "the queue to empty")
        delivered = collections.Counter(hop.delivered_to())
        assert set(delivered.values()) == {1}
        assert set(delivered) == {queued[queue_id][0] for queue_id in queued}
        assert len(delivered) >= 500
