"""The outbound queue's length in `pobox status` and in the metrics (pobox_queue_messages) of a
real `pobox serve`, with a smarthost that defers everything."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.helpers.servers import free_port, pobox, server_process
from tests.relay.fakes import fake_hop

from pobox.relay.queue import OutboundQueue
from pobox.store.factory import create_store

pytestmark = pytest.mark.interop  # a real pobox process


async def _enqueue(data: Path, count: int) -> None:
    store = create_store("sqlite", data)
    await store.open()
    try:
        queue = OutboundQueue(store)
        for n in range(count):
            await queue.enqueue("a@localhost", [f"r{n}@x.example"], b"Subject: s\r\n\r\nx\r\n")
    finally:
        await store.close()


def _queue_gauge(port: int) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        if family.name == "pobox_queue_messages":
            return sum(sample.value for sample in family.samples)
    return None


def test_queue_length_in_status_and_metrics(tmp_path: Path) -> None:
    data = tmp_path / "data"
    pobox("init", data=data)
    asyncio.run(_enqueue(data, 3))
    metrics_port = free_port()
    with fake_hop() as (hop, port):
        hop.defer_all = "451 4.3.0 not now"
        extra = (
            f'\n[relay]\nhost = "127.0.0.1"\nport = {port}\ntls = "none"\n'
            f'\n[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n'
        )
        with server_process(tmp_path, {}, extra) as server:
            deadline = time.monotonic() + 30
            while _queue_gauge(metrics_port) != 3.0:
                assert time.monotonic() < deadline, "no pobox_queue_messages 3"
                time.sleep(0.2)
            deadline = time.monotonic() + 30
            while True:
                status = server.cli("status").stdout.decode()
                if "outbound queue: 3 message(s)" in status:
                    break
                assert time.monotonic() < deadline, status
                time.sleep(0.2)
            assert sorted(set(hop.rcpt_seen)) == ["r0@x.example", "r1@x.example", "r2@x.example"]
