"""What a running server shows of itself, and how the command line reaches every worker.

Each worker process of ``pobox serve`` keeps a small JSON file, ``DATA_DIR/run/status-PID.json``,
current to within :data:`INTERVAL` seconds (rewritten only when something changed, replaced
atomically, removed at shutdown): its open connections per listener and client address, and its
authentication blocks. ``pobox status`` and ``pobox auth blocks`` read them all, leave out (and
remove) the files of processes that are gone, and add the workers up.

The other way round, a command such as ``pobox auth unblock`` writes a control file,
``DATA_DIR/run/control-ID.json``; every worker looks for new ones at each tick of its board,
carries them out once, and lists the ID with its result under ``"control"`` in its status file.
:func:`send_control` waits until every live worker has done so (docs/decisions/admin-control.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pobox.errors import InUse

log = logging.getLogger("pobox.status")

#: Seconds between two looks at the counters.
INTERVAL = 0.5

Snapshot = Callable[[], Mapping[str, Any]]
Control = Callable[[Mapping[str, Any]], Any]
#: Control results a worker keeps listing in its status file.
CONTROL_KEPT = 20
#: Seconds before a worker's start from which it still carries out a control file; also how
#: long an unanswered control file may stay before the next command removes it.
CONTROL_MAX_AGE = 60.0


def memory() -> dict[str, int]:
    """This process's memory, coarse enough that an idle server's status file stays as it is:
    the resident set in MiB, and the blocks Python has allocated (``sys.getallocatedblocks``,
    which moves with every object kept and is blind to native allocations) in thousands."""
    return {"rss_mib": resident_bytes() >> 20, "python_kblocks": sys.getallocatedblocks() // 1000}


def resident_bytes() -> int:
    """This process's resident set (Linux ``/proc``; 0 where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def run_dir(data_path: Path) -> Path:
    return data_path / "run"


def status_path(data_path: Path, pid: int | None = None) -> Path:
    return run_dir(data_path) / f"status-{pid if pid is not None else os.getpid()}.json"


class StatusBoard:
    """Publishes this process's counters (what *snapshot* returns), and what *details* returns
    (more top-level fields, such as ``blocks``), to its status file; carries out control files
    with *control* (which returns a JSON-able result)."""

    def __init__(
        self,
        data_path: Path,
        worker: int,
        snapshot: Snapshot,
        details: Snapshot | None = None,
        control: Control | None = None,
    ) -> None:
        self.data_path = data_path
        self.path = status_path(data_path)
        self.worker = worker
        self.snapshot = snapshot
        self.details = details
        self.control = control
        self.started = time.time()
        self._last = ""
        #: control IDs carried out, with their results (the newest :data:`CONTROL_KEPT`)
        self.done: dict[str, Any] = {}

    def poll_control(self) -> None:
        """Carry out the control files this worker has not seen yet."""
        if self.control is None:
            return
        directory = run_dir(self.data_path)
        try:
            names = sorted(p.name for p in directory.glob("control-*.json"))
        except OSError:
            return
        for name in names:
            ident = name.removeprefix("control-").removesuffix(".json")
            if ident in self.done:
                continue
            try:
                request = json.loads((directory / name).read_text())
                issued = float(request["at"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # being written, or removed meanwhile
            if issued < self.started - CONTROL_MAX_AGE:
                continue  # older than this worker: not meant for it
            try:
                result = self.control(request)
            except Exception as exc:
                log.exception("control request %s failed", ident)
                result = {"error": str(exc)}
            self.done[ident] = result
            while len(self.done) > CONTROL_KEPT:
                del self.done[next(iter(self.done))]

    def publish(self) -> None:
        details = dict(self.details()) if self.details is not None else {}
        details["control"] = self.done
        body = json.dumps(dict(self.snapshot()), sort_keys=True)
        extra = json.dumps(details, sort_keys=True)
        if body + extra == self._last:
            return
        document = (
            f'{{"pid": {os.getpid()}, "worker": {self.worker}, '
            f'"started": {self.started:.0f}, "counters": {body}, ' + extra[1:-1] + "}\n"
        )
        temporary = self.path.with_suffix(".tmp")
        try:
            self.path.parent.mkdir(mode=0o750, exist_ok=True)
            temporary.write_text(document)
            temporary.replace(self.path)
        except OSError as exc:
            log.warning("cannot write %s: %s", self.path, exc.strerror)
            return
        self._last = body + extra

    async def run(self, interval: float = INTERVAL) -> None:
        try:
            while True:
                self.poll_control()
                self.publish()
                await asyncio.sleep(interval)
        finally:
            self.remove()

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()


def alive(pid: int) -> bool:
    """True while process *pid* exists (one of another user counts too)."""
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
        if not alive(pid):
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
    versions = sorted({str(d.get("version", "?")) for d in workers})
    lines = [
        f"pobox {', '.join(versions)}, {len(workers)} worker(s): "
        + ", ".join(str(d["pid"]) for d in workers)
    ]
    memory = [d["memory"] for d in workers if isinstance(d.get("memory"), dict)]
    if memory:
        lines.append(
            f"memory: {sum(int(m.get('rss_mib', 0)) for m in memory)} MiB resident, "
            f"{sum(int(m.get('python_kblocks', 0)) for m in memory)} thousand Python blocks"
        )
    store = next((d["store"] for d in workers if isinstance(d.get("store"), dict)), None)
    if store is not None:  # worker 0 counts it every minute
        lines.append(
            f"store: accounts {store.get('accounts', 0)}, mailboxes {store.get('mailboxes', 0)}, "
            f"messages {store.get('messages', 0)}, {int(store.get('octets', 0)) / 1e6:.1f} MB"
        )
        if "queue" in store:
            lines.append(f"outbound queue: {store['queue']} message(s)")
    listeners = workers[0].get("listeners", {})
    if listeners:
        lines.append("listening: " + ", ".join(f"{k} {v}" for k, v in sorted(listeners.items())))
    blocks = sum(len(d.get("blocks", [])) for d in workers)
    if blocks:
        lines.append(f"failed-login blocks: {blocks} (pobox auth blocks)")
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


class ControlTimeout(Exception):
    """Not every worker answered a control request in time."""


def send_control(
    data_path: Path, request: Mapping[str, Any], timeout: float = 10.0
) -> dict[int, Any]:
    """Write a control file, wait until every live worker serving *data_path* has carried it
    out, remove it, and return each worker's result by pid. With no worker running, returns {}
    at once. Raises :class:`ControlTimeout` when a worker did not answer within *timeout*."""
    workers = read_status(data_path)
    if not workers:
        return {}
    directory = run_dir(data_path)
    _remove_stale_controls(directory)
    ident = f"{time.time_ns()}-{os.urandom(4).hex()}"
    path = directory / f"control-{ident}.json"
    temporary = directory / f".control-{ident}.tmp"
    temporary.write_text(json.dumps({**request, "id": ident, "at": time.time()}))
    os.chmod(temporary, 0o644)
    temporary.replace(path)
    deadline = time.monotonic() + timeout
    try:
        while True:
            results: dict[int, Any] = {}
            waiting = []
            for document in read_status(data_path):
                done = document.get("control", {})
                if ident in done:
                    results[int(document["pid"])] = done[ident]
                else:
                    waiting.append(int(document["pid"]))
            if not waiting:
                return results
            if time.monotonic() > deadline:
                raise ControlTimeout(
                    "no answer from worker(s) "
                    + ", ".join(map(str, waiting))
                    + f" in {timeout:.0f} s"
                )
            time.sleep(INTERVAL / 5)
    finally:
        with contextlib.suppress(OSError):
            path.unlink()


def _remove_stale_controls(directory: Path) -> None:
    now = time.time()
    for path in directory.glob("control-*.json"):
        with contextlib.suppress(OSError):
            if now - path.stat().st_mtime > CONTROL_MAX_AGE:
                path.unlink()


# the serving lock: a running server holds it shared, `pobox store copy` exclusively ---------------
def lock_path(data_path: Path) -> Path:
    return run_dir(data_path) / "serve.lock"


def _open_lock(data_path: Path) -> int:
    run_dir(data_path).mkdir(mode=0o750, parents=True, exist_ok=True)
    return os.open(lock_path(data_path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)


def hold_serving_lock(data_path: Path) -> int:
    """Take the serving lock (shared: every worker of every server on *data_path* holds it) and
    return its descriptor, to be kept open while serving. Raises :class:`InUse` while
    ``pobox store copy`` reads this store."""
    fd = _open_lock(data_path)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise InUse(
            f"`pobox store copy` is reading the store in {data_path}; start pobox when it is done"
        ) from None
    return fd


@contextlib.contextmanager
def no_server(data_path: Path) -> Iterator[None]:
    """Hold the serving lock exclusively: raises :class:`InUse` while a server uses the store
    in *data_path* (a live status file, or a worker holding the lock), and keeps servers from
    starting on it until the block ends."""
    workers = read_status(data_path)
    if workers:
        pids = ", ".join(str(document["pid"]) for document in workers)
        raise InUse(f"pobox is serving the store in {data_path} (pid {pids}): stop it first")
    if not data_path.is_dir():
        yield  # nothing to lock; the caller reports the missing store
        return
    fd = _open_lock(data_path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InUse(f"pobox is serving the store in {data_path}: stop it first") from None
        yield
    finally:
        os.close(fd)
