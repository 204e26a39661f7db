"""IMAP benchmarks: pobox against Dovecot on this machine.

Three workloads, each on a fresh server per target (``--workload`` picks them, default all):

select  The INBOX is filled with MESSAGES small messages over LMTP (FILL_CLIENTS connections;
        not timed). Then one session times ``SELECT INBOX`` and ``UID FETCH 1:* (UID FLAGS)``
        (to the tagged OK, every FETCH line read and counted): first after login (cold), then
        REPEAT more times, re-selecting (warm; the median is shown).
idle    CONNECTIONS sessions log in, SELECT INBOX and enter IDLE (each waits for the "+").
        Memory of the server before and after: RSS and PSS summed over the server's processes
        (pobox: the `pobox serve` process(es); Dovecot: the master and every child, i.e. its
        imap and login processes). Reported per connection.
mixed   CLIENTS client processes, each on its own mailbox pre-filled with PREFILL messages, loop
        for DURATION seconds: APPEND (2 KB), UID FETCH (FLAGS BODY.PEEK[]) of a random message,
        UID STORE +FLAGS.SILENT (\\Seen), UID SEARCH UNSEEN, then UID STORE \\Deleted and
        UID EXPUNGE of its oldest message (so the mailbox keeps its size). Commands per second.

Prints figures and the ratio pobox/dovecot; never asserts on time.

    .venv/bin/python benchmarks/imap_bench.py [--target pobox|dovecot|both]
        [--workload select,idle,mixed] [--messages 100000] [--connections 1000]
        [--clients 8] [--duration 20]
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import common
from common import (
    BenchError,
    Server,
    base_parser,
    deliver_concurrently,
    make_message,
    print_environment,
    print_table,
    target_list,
)

# pobox's default per-process limits (docs/security.md) are protective: 50 connections per IP,
# 50 IMAP sessions per account, 100 commands/s per connection. The benchmarks open 1000 sessions
# from 127.0.0.1 for one account and measure throughput, so they lift them, as the anchor
# Dovecot config does (mail_max_userip_connections = 1000). Nothing else is changed.
POBOX_LIMITS = (
    "\n[limits]\nmax_connections = 100000\nmax_connections_per_ip = 100000\n"
    "max_imap_sessions_per_account = 100000\ncommands_per_second = 1000000\n"
)

LITERAL = re.compile(rb"\{(\d+)\}\r\n$")


# --------------------------------------------------------------------------- a minimal client
class Imap:
    """One blocking IMAP connection: tagged commands, responses with literals inlined."""

    def __init__(self, server: Server, timeout: float = 300.0) -> None:
        self.sock = socket.create_connection((server.host, server.imap_port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb", buffering=1 << 16)
        self.tag = 0
        greeting = self.line()
        if not greeting.startswith(b"* OK"):
            raise BenchError(f"IMAP greeting: {greeting!r}")

    def line(self) -> bytes:
        parts = []
        while True:
            line = self.reader.readline()
            if not line:
                raise BenchError("IMAP connection closed")
            match = LITERAL.search(line)
            if match:
                parts.append(line)
                parts.append(self.reader.read(int(match[1])))
                continue
            parts.append(line)
            return b"".join(parts)

    def command(self, text: bytes, literal: bytes | None = None) -> tuple[bytes, list[bytes]]:
        self.tag += 1
        tag = b"b%d" % self.tag
        if literal is None:
            self.sock.sendall(tag + b" " + text + b"\r\n")
        else:
            self.sock.sendall(tag + b" " + text + b" {%d+}\r\n" % len(literal) + literal + b"\r\n")
        lines = []
        while True:
            line = self.line()
            if line.startswith(tag + b" "):
                status = line[len(tag) + 1 :].rstrip()
                if not status.startswith(b"OK"):
                    raise BenchError(f"{text[:60]!r} -> {status!r}")
                return status, lines
            lines.append(line)

    def login(self, server: Server) -> None:
        self.command(f'LOGIN "{server.user}" "{server.password}"'.encode())

    def close(self) -> None:
        try:
            self.command(b"LOGOUT")
        except (BenchError, OSError):
            pass
        self.reader.close()
        self.sock.close()


# --------------------------------------------------------------------------- process memory
def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def server_pids(server: Server) -> list[int]:
    """Every process of the server under test (found through /proc; both run as sessions)."""
    if server.name == "dovecot":
        leader = int((server.workdir / "run" / "master.pid").read_text().split()[0])
    else:
        marker = str(server.workdir / "pobox.toml").encode()
        leaders = [
            int(p.name)
            for p in Path("/proc").iterdir()
            if p.name.isdigit() and marker in _cmdline(int(p.name))
        ]
        if not leaders:
            raise BenchError("pobox serve process not found")
        leader = min(leaders)
    sid = os.getsid(leader)
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def memory(server: Server) -> tuple[int, int, int]:
    """(RSS kB, PSS kB, process count) summed over the server's processes."""
    pids = server_pids(server)
    return sum(_status_kb(p, "VmRSS") for p in pids), sum(_pss_kb(p) for p in pids), len(pids)


# --------------------------------------------------------------------------- 1. SELECT + FETCH
def fill(server: Server, count: int, clients: int, size: int) -> float:
    messages = [make_message(size, i, client=i % clients, seed=7) for i in range(count)]
    elapsed, _ = deliver_concurrently(server, messages, clients)
    return elapsed


def bench_select(server: Server, args: object) -> dict[str, float]:
    count: int = args.messages  # type: ignore[attr-defined]
    started = time.perf_counter()
    fill_s = fill(server, count, args.fill_clients, args.size)  # type: ignore[attr-defined]
    print(
        f"  {server.name}: filled {count} messages over LMTP in {fill_s:.1f} s "
        f"({count / fill_s:.0f} msg/s)"
    )
    del started
    imap = Imap(server)
    try:
        imap.login(server)
        selects, fetches = [], []
        for _round in range(1 + args.repeat):  # type: ignore[attr-defined]
            t0 = time.perf_counter()
            _, lines = imap.command(b"SELECT INBOX")
            t1 = time.perf_counter()
            exists = [int(m[1]) for m in (re.match(rb"\* (\d+) EXISTS", x) for x in lines) if m]
            if not exists or exists[-1] != count:
                raise BenchError(f"SELECT says {exists}, expected {count}")
            _, lines = imap.command(b"UID FETCH 1:* (UID FLAGS)")
            t2 = time.perf_counter()
            got = sum(1 for x in lines if b" FETCH " in x)
            if got != count:
                raise BenchError(f"UID FETCH 1:* returned {got} messages, expected {count}")
            selects.append((t1 - t0) * 1000)
            fetches.append((t2 - t1) * 1000)
            imap.command(b"UNSELECT")
    finally:
        imap.close()
    return {
        "select_cold_ms": selects[0],
        "fetch_cold_ms": fetches[0],
        "select_warm_ms": statistics.median(selects[1:]) if len(selects) > 1 else selects[0],
        "fetch_warm_ms": statistics.median(fetches[1:]) if len(fetches) > 1 else fetches[0],
    }


# --------------------------------------------------------------------------- 2. IDLE memory
def raise_dovecot_limits(server: Server, connections: int) -> None:
    """The anchor config allows 100 processes per service; IDLE sessions need one each."""
    conf = server.workdir / "dovecot.conf"
    limit = connections + 200
    with conf.open("a") as f:
        f.write(f"default_process_limit = {limit}\ndefault_client_limit = {limit * 2}\n")
    master = int((server.workdir / "run" / "master.pid").read_text().split()[0])
    os.kill(master, signal.SIGHUP)
    time.sleep(2.0)


async def _open_idle(server: Server, gate: asyncio.Semaphore) -> asyncio.StreamWriter:
    async with gate:
        reader, writer = await asyncio.open_connection(server.host, server.imap_port)

        async def expect(prefix: bytes) -> None:
            while True:
                line = await asyncio.wait_for(reader.readline(), 120)
                if line.startswith(prefix):
                    return
                if not line or line[:1] not in (b"*", b"+"):
                    raise BenchError(f"IDLE session setup: {line!r}")

        await expect(b"* OK")
        writer.write(f'a LOGIN "{server.user}" "{server.password}"\r\n'.encode())
        await expect(b"a OK")
        writer.write(b"b SELECT INBOX\r\n")
        await expect(b"b OK")
        writer.write(b"c IDLE\r\n")
        await expect(b"+")
        return writer


async def _idle_all(server: Server, connections: int) -> tuple[list[asyncio.StreamWriter], float]:
    gate = asyncio.Semaphore(32)
    t0 = time.perf_counter()
    writers = await asyncio.gather(*(_open_idle(server, gate) for _ in range(connections)))
    return list(writers), time.perf_counter() - t0


def bench_idle(server: Server, args: object) -> dict[str, float]:
    connections: int = args.connections  # type: ignore[attr-defined]
    if server.name == "dovecot":
        raise_dovecot_limits(server, connections)
    fill(server, 10, 1, 1024)
    warm = Imap(server)  # one full session first, so that lazy start-up costs are not counted
    warm.login(server)
    warm.command(b"SELECT INBOX")
    warm.close()
    time.sleep(1.0)
    rss0, pss0, procs0 = memory(server)

    async def run() -> tuple[int, int, int, float]:
        writers, setup = await _idle_all(server, connections)
        await asyncio.sleep(2.0)
        rss1, pss1, procs1 = memory(server)
        for w in writers:
            w.close()
        return rss1, pss1, procs1, setup

    rss1, pss1, procs1, setup = asyncio.run(run())
    print(
        f"  {server.name}: {connections} sessions in IDLE after {setup:.1f} s; processes "
        f"{procs0} -> {procs1}; RSS {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB, "
        f"PSS {pss0 / 1024:.1f} -> {pss1 / 1024:.1f} MiB"
    )
    return {
        "rss_before_mib": rss0 / 1024,
        "rss_after_mib": rss1 / 1024,
        "rss_per_conn_kib": (rss1 - rss0) / connections,
        "pss_per_conn_kib": (pss1 - pss0) / connections,
    }


# --------------------------------------------------------------------------- 3. mixed workload
def _mixed_client(
    server: Server, index: int, prefill: int, duration: float, barrier: object, out: object
) -> None:
    rng = random.Random(index)
    imap = Imap(server)
    imap.login(server)
    box = f"mix{index}".encode()
    try:
        imap.command(b"CREATE " + box)
    except BenchError:
        pass
    uids: list[int] = []
    seq = 0

    def append() -> None:
        nonlocal seq
        seq += 1
        status, _ = imap.command(b"APPEND " + box, make_message(2048, seq, client=index, seed=3))
        match = re.search(rb"APPENDUID \d+ (\d+)", status)
        if not match:
            raise BenchError(f"no APPENDUID in {status!r}")
        uids.append(int(match[1]))

    for _ in range(prefill):
        append()
    imap.command(b"SELECT " + box)
    barrier.wait()  # type: ignore[attr-defined]
    commands = 0
    deadline = time.perf_counter() + duration
    while time.perf_counter() < deadline:
        append()
        uid = rng.choice(uids)
        imap.command(b"UID FETCH %d (FLAGS BODY.PEEK[])" % uid)
        imap.command(b"UID STORE %d +FLAGS.SILENT (\\Seen)" % uid)
        imap.command(b"UID SEARCH UNSEEN")
        oldest = uids.pop(0)
        imap.command(b"UID STORE %d +FLAGS.SILENT (\\Deleted)" % oldest)
        imap.command(b"UID EXPUNGE %d" % oldest)
        commands += 6
    out.put(commands)  # type: ignore[attr-defined]
    imap.close()


def bench_mixed(server: Server, args: object) -> dict[str, float]:
    clients: int = args.clients  # type: ignore[attr-defined]
    duration: float = args.duration  # type: ignore[attr-defined]
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(clients + 1)
    out = ctx.Queue()
    procs = [
        ctx.Process(
            target=_mixed_client,
            args=(server, i, args.prefill, duration, barrier, out),  # type: ignore[attr-defined]
            daemon=True,
        )
        for i in range(clients)
    ]
    for p in procs:
        p.start()
    try:
        barrier.wait(timeout=600)
    except Exception as exc:
        for p in procs:
            p.kill()
        raise BenchError(f"mixed clients did not get ready: {exc!r}") from exc
    t0 = time.perf_counter()
    counts = [out.get(timeout=duration + 120) for _ in procs]
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.join(30)
    total = sum(counts)
    return {"commands": total, "seconds": elapsed, "commands_per_s": total / elapsed}


# --------------------------------------------------------------------------- servers
@contextlib.contextmanager
def running(target: str, keep: bool) -> Iterator[Server]:
    """common.running(), and for pobox a restart with POBOX_LIMITS added to its config."""
    with common.running(target, keep=keep, need=("imap",)) as server:
        if target != "pobox":
            yield server
            return
        server.stop()
        config = server.workdir / "pobox.toml"
        config.write_text(config.read_text() + POBOX_LIMITS)
        data = server.workdir / "data"
        exe = common.pobox_executable()
        with (server.workdir / "pobox.log").open("ab") as log:
            proc = subprocess.Popen(
                [str(exe), "--config", str(config), "--data", str(data), "serve"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + common.STARTUP_TIMEOUT
        while not all(common.port_open(p) for p in (server.imap_port, server.lmtp_port)):
            if proc.poll() is not None or time.monotonic() > deadline:
                common._stop_group(proc)
                raise BenchError(f"pobox did not restart (log {server.workdir}/pobox.log)")
            time.sleep(0.1)
        server._stop = lambda: common._stop_group(proc)
        server.description += "; [limits] lifted (see POBOX_LIMITS)"
        yield server


# --------------------------------------------------------------------------- main
WORKLOADS = {"select": bench_select, "idle": bench_idle, "mixed": bench_mixed}


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "IMAP benchmarks")
    parser.add_argument("--workload", default="select,idle,mixed", help="comma-separated")
    parser.add_argument("--messages", type=int, default=100_000, help="select: mailbox size")
    parser.add_argument("--size", type=int, default=300, help="select: message size (300)")
    parser.add_argument("--fill-clients", type=int, default=8, help="select: LMTP connections")
    parser.add_argument("--repeat", type=int, default=3, help="select: warm repetitions (3)")
    parser.add_argument("--connections", type=int, default=1000, help="idle: sessions (1000)")
    parser.add_argument("--clients", type=int, default=8, help="mixed: client processes (8)")
    parser.add_argument("--duration", type=float, default=20.0, help="mixed: seconds (20)")
    parser.add_argument("--prefill", type=int, default=200, help="mixed: messages per mailbox")
    args = parser.parse_args(argv)
    workloads = [w.strip() for w in args.workload.split(",") if w.strip()]
    for w in workloads:
        if w not in WORKLOADS:
            parser.error(f"unknown workload {w!r} (choose from {', '.join(WORKLOADS)})")

    print_environment()
    failed = False
    results: dict[str, dict[str, dict[str, float]]] = {w: {} for w in workloads}
    for workload in workloads:
        print(f"\n== {workload}")
        for target in target_list(args.target):
            try:
                with running(target, keep=args.keep) as server:
                    print(f"  {target}: {server.description}")
                    results[workload][target] = WORKLOADS[workload](server, args)
            except (BenchError, OSError) as exc:
                failed = True
                print(f"  {target}: FAILED: {exc}", file=sys.stderr)
    report(results, args)
    return 1 if failed else 0


def report(results: dict[str, dict[str, dict[str, float]]], args: object) -> None:
    def ratio(workload: str, key: str) -> str:
        r = results.get(workload, {})
        if "pobox" in r and "dovecot" in r and r["dovecot"][key]:
            return f"{r['pobox'][key] / r['dovecot'][key]:.2f}"
        return "-"

    if results.get("select"):
        print(f"\nSELECT and UID FETCH 1:* (UID FLAGS), {args.messages} messages, ms")  # type: ignore[attr-defined]
        keys = ["select_cold_ms", "fetch_cold_ms", "select_warm_ms", "fetch_warm_ms"]
        rows = [[t, *(f"{v[k]:.1f}" for k in keys)] for t, v in results["select"].items()]
        rows.append(["ratio p/d", *(ratio("select", k) for k in keys)])
        print_table(["target", "SELECT cold", "FETCH cold", "SELECT warm", "FETCH warm"], rows)
    if results.get("idle"):
        print(f"\nMemory of {args.connections} sessions in IDLE")  # type: ignore[attr-defined]
        keys = ["rss_before_mib", "rss_after_mib", "rss_per_conn_kib", "pss_per_conn_kib"]
        rows = [[t, *(f"{v[k]:.1f}" for k in keys)] for t, v in results["idle"].items()]
        rows.append(["ratio p/d", "-", "-", *(ratio("idle", k) for k in keys[2:])])
        print_table(
            ["target", "RSS before MiB", "RSS after MiB", "RSS/conn KiB", "PSS/conn KiB"], rows
        )
    if results.get("mixed"):
        print(
            f"\nMixed workload, {args.clients} clients, {args.duration:.0f} s"  # type: ignore[attr-defined]
        )
        rows = [
            [t, f"{v['commands']:.0f}", f"{v['commands_per_s']:.0f}"]
            for t, v in results["mixed"].items()
        ]
        rows.append(["ratio p/d", "-", ratio("mixed", "commands_per_s")])
        print_table(["target", "commands", "commands/s"], rows)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
