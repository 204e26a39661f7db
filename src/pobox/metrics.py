"""Prometheus metrics: the one small API every room counts through (docs/decisions/metrics.md).

Nothing is counted until :func:`enable` is called, which ``pobox serve`` does in each worker
when ``[metrics] listen`` is set; until then every function here returns at once. Once enabled,
the numbers live in prometheus-client's multiprocess files under ``DATA_DIR/run/metrics``
(one memory-mapped file per kind of metric and process): an increment is a write to shared
memory, never a system call, and a scrape of any worker (:func:`exposition`) reads the files of
them all. Every series carries a ``worker`` label; ``sum without (worker)`` adds them up.

prometheus-client chooses between plain and multiprocess values when it is first imported, from
the ``PROMETHEUS_MULTIPROC_DIR`` environment variable: this module imports it only in
:func:`enable`, after setting that variable.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pobox.status import alive, resident_bytes

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

#: Upper bounds (seconds) of the command latency buckets.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
#: What a command that was not parsed (or not recognised) is counted as.
INVALID = "INVALID"

_FILE = re.compile(r"^[a-z_]+_(\d+)\.db$")


class _Metrics:
    """The metric objects of one worker process."""

    def __init__(self, directory: Path, worker: int) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        from prometheus_client.multiprocess import MultiProcessCollector

        self.directory = directory
        # registered nowhere: a scrape reads every worker's files. Gauges are "livesum": the
        # values of the processes still running (each has its own ``worker`` label, so nothing
        # is actually summed)
        self.connections_open = _Labelled(
            Gauge(
                "pobox_connections_open",
                "Open connections per listener",
                ["listener", "worker"],
                multiprocess_mode="livesum",
                registry=None,
            ),
            worker,
        )
        self.connections = _Labelled(
            Counter(
                "pobox_connections",
                "Connections accepted per listener",
                ["listener", "worker"],
                registry=None,
            ),
            worker,
        )
        self.refused = _Labelled(
            Counter(
                "pobox_connections_refused",
                "Connections refused per listener (over [limits])",
                ["listener", "worker"],
                registry=None,
            ),
            worker,
        )
        self.sessions_open = _Labelled(
            Gauge(
                "pobox_sessions_open",
                "Logged-in IMAP sessions and POP3 sessions holding their maildrop",
                ["protocol", "worker"],
                multiprocess_mode="livesum",
                registry=None,
            ),
            worker,
        )
        self.sessions = _Labelled(
            Counter(
                "pobox_sessions",
                "Logged-in sessions begun, per protocol",
                ["protocol", "worker"],
                registry=None,
            ),
            worker,
        )
        self.commands = _Labelled(
            Counter(
                "pobox_commands",
                "Commands answered, by protocol, command and result",
                ["protocol", "command", "result", "worker"],
                registry=None,
            ),
            worker,
        )
        self.latency = _Labelled(
            Histogram(
                "pobox_command_duration_seconds",
                "Time from a command's arrival to its completion reply",
                ["protocol", "worker"],
                buckets=LATENCY_BUCKETS,
                registry=None,
            ),
            worker,
        )
        self.logins = _Labelled(
            Counter(
                "pobox_logins",
                "Login attempts by protocol and result (ok, failed, blocked, unavailable)",
                ["protocol", "result", "worker"],
                registry=None,
            ),
            worker,
        )
        self.blocks = _Labelled(
            Gauge(
                "pobox_auth_blocks",
                "Failed-login blocks in force, by kind (address, account)",
                ["kind", "worker"],
                multiprocess_mode="livesum",
                registry=None,
            ),
            worker,
        )
        self.deliveries = _Labelled(
            Counter(
                "pobox_deliveries",
                "Deliveries per recipient, by result (delivered, deferred, rejected) and reason",
                ["result", "reason", "worker"],
                registry=None,
            ),
            worker,
        )
        self.sweeps = _Labelled(
            Counter(
                "pobox_sweeps",
                "Runs of the retention sweeper, by result (ok, failed)",
                ["result", "worker"],
                registry=None,
            ),
            worker,
        )
        self.memory = _Labelled(
            Gauge(
                "pobox_process_resident_memory_bytes",
                "Resident memory of the worker process",
                ["worker"],
                multiprocess_mode="livesum",
                registry=None,
            ),
            worker,
        )
        self.store = _Labelled(
            Gauge(
                "pobox_store_objects",
                "What the store holds, by kind (accounts, mailboxes, messages); worker 0 counts",
                ["kind", "worker"],
                multiprocess_mode="livesum",
                registry=None,
            ),
            worker,
        )
        self.store_bytes = _Labelled(
            Gauge(
                "pobox_store_message_bytes",
                "Octets of the stored messages (a copy counts again); worker 0 counts",
                ["worker"],
                multiprocess_mode="livesum",
                registry=None,
            ),
            worker,
        )
        self.queue = _Labelled(
            Gauge(
                "pobox_queue_messages",
                "Messages in the outbound queue (all nodes'); the queue runner counts",
                ["worker"],
                multiprocess_mode="livesum",
                registry=None,
            ),
            worker,
        )
        self.registry: CollectorRegistry = CollectorRegistry()
        MultiProcessCollector(self.registry, path=str(directory))  # type: ignore[no-untyped-call]


class _Labelled:
    """A labelled metric's children by label values, the ``worker`` label added: a dict
    lookup (``labels()`` takes a lock and builds its key on every call)."""

    __slots__ = ("children", "metric", "worker")

    def __init__(self, metric: Any, worker: int) -> None:
        self.metric = metric
        self.worker = str(worker)
        self.children: dict[tuple[str, ...], Any] = {}

    def __getitem__(self, values: tuple[str, ...]) -> Any:
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = self.metric.labels(*values, self.worker)
        return child


_active: _Metrics | None = None


def enabled() -> bool:
    return _active is not None


def metrics_dir(data_path: Path) -> Path:
    return data_path / "run" / "metrics"


def enable(directory: Path, worker: int) -> None:
    """Start counting in this process, into *directory* (shared by every worker). Removes the
    files left there by processes that are gone (an earlier run)."""
    global _active
    directory.mkdir(mode=0o750, parents=True, exist_ok=True)
    remove_stale(directory)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    from prometheus_client import values

    if not getattr(values.ValueClass, "_multiprocess", False):
        # imported before the variable was set (only in tests that serve in-process)
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    _active = _Metrics(directory, worker)


def disable() -> None:
    """Stop counting (a worker shutting down): its gauges leave the sums; counters stay."""
    global _active
    active, _active = _active, None
    if active is None:
        return
    from prometheus_client import multiprocess, values

    values.close_all_multiprocess_files()  # type: ignore[no-untyped-call]
    with contextlib.suppress(OSError):
        multiprocess.mark_process_dead(os.getpid(), str(active.directory))  # type: ignore[no-untyped-call]


def remove_stale(directory: Path) -> None:
    for path in directory.glob("*.db"):
        match = _FILE.match(path.name)
        if match is None or alive(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):
            path.unlink()


def exposition() -> bytes:
    """Every worker's metrics in the Prometheus text format (reads files: not on the loop)."""
    active = _active
    if active is None:
        return b""
    from prometheus_client import generate_latest

    return generate_latest(active.registry)


# what the rooms call -------------------------------------------------------------------------
def connection_opened(listener: str) -> None:
    active = _active
    if active is not None:
        active.connections[listener,].inc()
        active.connections_open[listener,].inc()


def connection_closed(listener: str) -> None:
    active = _active
    if active is not None:
        active.connections_open[listener,].dec()


def connection_refused(listener: str) -> None:
    active = _active
    if active is not None:
        active.refused[listener,].inc()


def session_opened(protocol: str) -> None:
    active = _active
    if active is not None:
        active.sessions[protocol,].inc()
        active.sessions_open[protocol,].inc()


def session_closed(protocol: str) -> None:
    active = _active
    if active is not None:
        active.sessions_open[protocol,].dec()


def command(protocol: str, name: str, result: str, seconds: float | None) -> None:
    """A command answered: *result* is its status (OK/NO/BAD, +OK/-ERR, 2xx/4xx/5xx);
    *seconds* from its arrival to that answer (None: not a latency worth recording)."""
    active = _active
    if active is not None:
        active.commands[protocol, name, result].inc()
        if seconds is not None:
            active.latency[protocol,].observe(seconds)


def login(protocol: str, result: str) -> None:
    active = _active
    if active is not None:
        active.logins[protocol, result].inc()


def delivery(result: str, reason: str) -> None:
    active = _active
    if active is not None:
        active.deliveries[result, reason].inc()


def sweep(result: str) -> None:
    active = _active
    if active is not None:
        active.sweeps[result,].inc()


def reason_of(error: BaseException) -> str:
    """A bounded label for an error: its class name in snake case (``OverQuota`` →
    ``over_quota``)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(error).__name__).lower()


def update(blocks: Iterable[Mapping[str, object]]) -> None:
    """The gauges a worker sets now and then (pobox.server): auth blocks, memory."""
    active = _active
    if active is None:
        return
    counts = {"address": 0, "account": 0}
    for block in blocks:
        kind = str(block.get("kind", ""))
        counts[kind] = counts.get(kind, 0) + 1
    for kind, count in counts.items():
        active.blocks[kind,].set(count)
    active.memory[()].set(resident_bytes())


def store_totals(accounts: int, mailboxes: int, messages: int, octets: int) -> None:
    """The store's size, as worker 0 counted it last (pobox.server)."""
    active = _active
    if active is None:
        return
    active.store["accounts",].set(accounts)
    active.store["mailboxes",].set(mailboxes)
    active.store["messages",].set(messages)
    active.store_bytes[()].set(octets)


def queue_length(messages: int) -> None:
    """The outbound queue's length, as the queue runner (worker 0) counted it last."""
    active = _active
    if active is None:
        return
    active.queue[()].set(messages)
