"""pobox on PostgreSQL next to pobox on SQLite, in the same run, on this machine.

Two workloads, each on a fresh server per backend (one account):

* LMTP delivery: CLIENTS connections deliver MESSAGES messages of SIZE bytes (as
  benchmarks/lmtp_deliver.py does); prints messages/s.
* IMAP mixed: IMAP_CLIENTS connections, each logged in with INBOX selected (filled by the
  delivery workload), repeat for IMAP_SECONDS: UID FETCH of a random message's body, UID STORE
  +FLAGS of a random message, UID SEARCH UNSEEN, APPEND of a small message, NOOP. Prints
  operations/s (one IMAP command is one operation).

The PostgreSQL server is POBOX_TEST_PG (or --dsn, default postgresql://postgres@127.0.0.1:5432/
postgres); a database is created for the run and dropped after it. Never asserts on time.

    .venv/bin/python benchmarks/pg_compare.py [--messages 2000] [--imap-seconds 10]
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from common import (
    PASSWORD,
    USER,
    BenchError,
    Server,
    _stop_group,
    base_parser,
    deliver_concurrently,
    listener_config,
    make_message,
    pobox_executable,
    port_open,
    print_environment,
    print_table,
)

BACKENDS = ("sqlite", "postgresql")


def _with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))


def _admin(dsn: str, statement: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


@contextlib.contextmanager
def pobox_on(store: str, workdir: Path) -> Iterator[Server]:
    """``pobox serve`` with the given ``store`` setting, on free ports."""
    exe = pobox_executable()
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    ports, listeners = listener_config()
    imap, pop3, lmtp = ports["imap"], ports["pop3"], ports["lmtp"]
    config = workdir / "pobox.toml"
    config.write_text(f'store = "{store}"\n' + listeners)
    base = [str(exe), "--config", str(config), "--data", str(data)]
    subprocess.run([*base, "init"], capture_output=True, timeout=120, check=True)
    added = subprocess.run(
        [*base, "user", "add", USER, "--password-stdin"],
        input=f"{PASSWORD}\n".encode(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    if added.returncode != 0:
        raise BenchError(f"pobox user add failed: {(added.stdout + added.stderr).decode()}")
    log_path = workdir / "pobox.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*base, "serve"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while not (port_open(lmtp) and port_open(imap)):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"pobox did not start: {log_path.read_text(errors='replace')}")
            time.sleep(0.1)
        yield Server(
            name=f"pobox/{store.split(':', 1)[0]}",
            lmtp_port=lmtp,
            pop3_port=pop3,
            imap_port=imap,
            workdir=workdir,
        )
    finally:
        _stop_group(proc)


@contextlib.contextmanager
def backend(name: str, dsn: str) -> Iterator[Server]:
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-pg-compare-{name}-"))
    database = f"pobox_bench_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        if name == "sqlite":
            with pobox_on("sqlite", workdir) as server:
                yield server
        else:
            _admin(dsn, f'CREATE DATABASE "{database}"')
            try:
                with pobox_on(_with_database(dsn, database), workdir) as server:
                    yield server
            finally:
                _admin(dsn, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def imap_mixed(server: Server, clients: int, seconds: float) -> tuple[int, float]:
    """Run the mixed IMAP workload; returns (operations, seconds)."""
    counts = [0] * clients
    errors: list[BaseException] = []
    stop = threading.Event()
    barrier = threading.Barrier(clients + 1)

    def run(index: int) -> None:
        rng = random.Random(index)
        try:
            client = imaplib.IMAP4(server.host, server.imap_port, timeout=60)
            client.login(USER, PASSWORD)
            client.select("INBOX")
            _status, data = client.uid("SEARCH", "ALL")
            uids = [int(u) for u in (data[0] or b"").split()]
            if not uids:
                raise BenchError("INBOX is empty")
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()
            return
        try:
            barrier.wait()
            n = 0
            while not stop.is_set():
                step = n % 5
                if step == 0:
                    status, _ = client.uid("FETCH", str(rng.choice(uids)), "(BODY.PEEK[])")
                elif step == 1:
                    status, _ = client.uid("STORE", str(rng.choice(uids)), "+FLAGS", "(\\Seen)")
                elif step == 2:
                    status, _ = client.uid("SEARCH", "UNSEEN")
                elif step == 3:
                    body = f"Subject: appended {index} {n}\r\n\r\nshort body\r\n".encode()
                    status, _ = client.append("INBOX", None, None, body)
                else:
                    status, _ = client.noop()
                if status != "OK":
                    raise BenchError(f"IMAP command {step} answered {status}")
                n += 1
            counts[index] = n
            client.logout()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    started = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(60)
    elapsed = time.perf_counter() - started
    if errors:
        raise BenchError(f"{len(errors)} IMAP client(s) failed; first: {errors[0]!r}")
    return sum(counts), elapsed


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "pobox PostgreSQL vs SQLite")
    parser.add_argument("--messages", type=int, default=2000, help="delivered messages (2000)")
    parser.add_argument("--clients", type=int, default=4, help="LMTP connections (4)")
    parser.add_argument("--size", type=int, default=10 * 1024, help="message size (10240)")
    parser.add_argument("--imap-clients", type=int, default=4, help="IMAP connections (4)")
    parser.add_argument("--imap-seconds", type=float, default=10.0, help="IMAP run time (10)")
    parser.add_argument(
        "--dsn",
        default=os.environ.get("POBOX_TEST_PG") or "postgresql://postgres@127.0.0.1:5432/postgres",
        help="a PostgreSQL server to create the benchmark database on",
    )
    args = parser.parse_args(argv)
    messages = [make_message(args.size, i, client=i % args.clients) for i in range(args.messages)]
    print(
        f"pobox PostgreSQL vs SQLite: LMTP {args.messages} x {args.size} bytes over"
        f" {args.clients} connections; IMAP mixed {args.imap_clients} connections for"
        f" {args.imap_seconds:.0f} s"
    )
    print_environment()
    rows: list[list[str]] = []
    failed = False
    for name in BACKENDS:
        try:
            with backend(name, args.dsn) as server:
                seconds, octets = deliver_concurrently(server, messages, args.clients)
                rate = args.messages / seconds
                print(f"  {name}: LMTP {rate:.1f} msg/s", flush=True)
                try:
                    ops, elapsed = imap_mixed(server, args.imap_clients, args.imap_seconds)
                    imap = f"{ops / elapsed:.1f}"
                    print(f"  {name}: IMAP mixed {ops / elapsed:.1f} ops/s", flush=True)
                except BenchError as exc:
                    imap = "failed"
                    print(f"  {name}: IMAP mixed failed: {exc}", file=sys.stderr)
                rows.append([name, f"{rate:.1f}", f"{octets / 1e6 / seconds:.2f}", imap])
        except (BenchError, OSError) as exc:
            print(f"{name}: FAILED: {exc}", file=sys.stderr)
            rows.append([name, "failed", "", ""])
            failed = True
    print()
    print_table(["store", "LMTP msg/s", "LMTP MB/s", "IMAP mixed ops/s"], rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
