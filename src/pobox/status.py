"""What a running server shows of itself: open connections per listener and per client address.

Each worker process of ``pobox serve`` keeps a small JSON file, ``DATA_DIR/run/status-PID.json``,
current to within :data:`INTERVAL` seconds (rewritten only when something changed, replaced
atomically, removed at shutdown). ``pobox status`` reads them all, leaves out (and removes) the
files of processes that are gone, and adds the workers up, so that an operator can tell a leak
(connections that stay open with nothing happening) from load.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger("pobox.status")

#: Seconds between two looks at the counters.
INTERVAL = 0.5

Snapshot = Callable[[], Mapping[str, Any]]


def run_dir(data_path: Path) -> Path:
    return data_path / "run"


def status_path(data_path: Path, pid: int | None = None) -> Path:
    return run_dir(data_path) / f"status-{pid if pid is not None else os.getpid()}.json"


class StatusBoard:
    """Publishes this process's counters (what *snapshot* returns) to its status file."""

    def __init__(self, data_path: Path, worker: int, snapshot: Snapshot) -> None:
        self.path = status_path(data_path)
        self.worker = worker
        self.snapshot = snapshot
        self.started = time.time()
        self._last = ""

    def publish(self) -> None:
        body = json.dumps(dict(self.snapshot()), sort_keys=True)
        if body == self._last:
            return
        document = (
            f'{{"pid": {os.getpid()}, "worker": {self.worker}, '
            f'"started": {self.started:.0f}, "counters": {body}}}\n'
        )
        temporary = self.path.with_suffix(".tmp")
        try:
            self.path.parent.mkdir(mode=0o750, exist_ok=True)
            temporary.write_text(document)
            temporary.replace(self.path)
        except OSError as exc:
            log.warning("cannot write %s: %s", self.path, exc.strerror)
            return
        self._last = body

    async def run(self, interval: float = INTERVAL) -> None:
        try:
            while True:
                self.publish()
                await asyncio.sleep(interval)
        finally:
            self.remove()

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_status(data_path: Path) -> list[dict[str, Any]]:
    """The status of every live worker serving *data_path*, by worker number."""
    workers: list[dict[str, Any]] = []
    directory = run_dir(data_path)
    if not directory.is_dir():
        return workers
    for path in directory.glob("status-*.json"):
        try:
            document = json.loads(path.read_text())
            pid = int(document["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being replaced, or not ours
        if not _alive(pid):
            with contextlib.suppress(OSError):
                path.unlink()  # left by a worker that was killed
            continue
        workers.append(document)
    workers.sort(key=lambda d: (d.get("worker", 0), d["pid"]))
    return workers


def totals(workers: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The workers' counters added up, per listener; ``by_ip`` merged."""
    out: dict[str, dict[str, Any]] = {}
    for document in workers:
        for name, counters in document.get("counters", {}).items():
            into = out.setdefault(name, {})
            for key, value in counters.items():
                if key == "by_ip":
                    merged = into.setdefault("by_ip", {})
                    for ip, count in value.items():
                        merged[ip] = merged.get(ip, 0) + count
                elif key.startswith("max"):
                    into[key] = value  # a per-process limit, the same in every worker
                elif isinstance(value, int):
                    into[key] = into.get(key, 0) + value
    return out


def format_status(workers: list[dict[str, Any]]) -> str:
    if not workers:
        return "pobox is not running on this store (no status from any worker)"
    lines = [f"{len(workers)} worker(s): " + ", ".join(str(d["pid"]) for d in workers)]
    summed = totals(workers)
    lines.append(f"{'listener':<22} {'open':>6} {'accepted':>9} {'refused':>8}  limit (per IP)")
    for name, counters in summed.items():
        limit = str(counters.get("max", "-"))
        if "max_per_ip" in counters:
            limit += f" ({counters['max_per_ip']})"
        lines.append(
            f"{name:<22} {counters.get('open', 0):>6} {counters.get('accepted', '-'):>9} "
            f"{counters.get('refused', '-'):>8}  {limit} per worker"
        )
    addresses = {
        (name, ip): count
        for name, counters in summed.items()
        for ip, count in counters.get("by_ip", {}).items()
    }
    if addresses:
        lines.append("")
        lines.append(f"{'open connections by client address':<40} {'listener':<8} {'open':>6}")
        for (name, ip), count in sorted(addresses.items(), key=lambda item: -item[1]):
            lines.append(f"{ip:<40} {name:<8} {count:>6}")
    return "\n".join(lines)
