"""Backup and restore speed beside a plain copy of the data directory.

A SQLite store is generated through the Store API (not timed): --messages messages of random
sizes around --size bytes (base64 text, which compresses like real mail bodies do, ~25%) in one
account. Then, on the same disk, each timed once per round:

* ``cp -r DATA COPY`` of the whole data directory (pobox.db + message files), then ``sync``;
* ``pobox backup DEST`` into an empty directory (first, full run: every content read, hashed,
  compressed, written, then sync'd);
* ``pobox backup DEST`` again (incremental: nothing new);
* ``pobox backup verify DEST``;
* ``pobox restore DEST --to NEW`` into an empty data directory;
* with ``--postgres DSN``, also ``pobox restore DEST --to DSN`` into an empty PostgreSQL
  database created for each round beside the DSN's (and dropped after).

With ``--imap-import N`` it also measures ``pobox import imap://…`` from a Dovecot on loopback
(tools/anchor_dovecot.py) holding N messages delivered over LMTP, in messages per second.

MB/s is message content (uncompressed) per second of wall time, each command run as a user
would (a `pobox` subprocess). "vs cp -r" is the time of the round's own ``cp -r`` over the
command's (1.0: as fast as the copy; the issue's goal is 0.5), the median over the rounds.
Prints figures; never asserts.

    .venv/bin/python benchmarks/backup_restore.py [--messages 100000] [--size 8000] [--rounds 1]
        [--imap-import 10000] [--postgres postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from common import (
    MB,
    PASSWORD,
    USER,
    deliver_concurrently,
    make_message,
    pobox_executable,
    print_environment,
    print_table,
    running,
    summary,
)

from pobox.service.content import chunked, spool_message
from pobox.store.factory import create_store


async def generate(data: Path, count: int, size: int) -> int:
    store = create_store("sqlite", data)
    await store.open()
    total = 0
    try:
        account = await store.create_account("bench@localhost", "x")
        inbox = await store.get_mailbox(account.id, "INBOX")
        assert inbox is not None
        rng = random.Random(7)
        for start in range(0, count, 500):
            batch = []
            for seq in range(start, min(count, start + 500)):
                content = make_message(max(300, int(rng.expovariate(1 / size))), seq)
                total += len(content)
                batch.append(
                    await asyncio.to_thread(spool_message, store.new_spool(), chunked(content))
                )
            await store.append_many(inbox.id, batch)
            print(f"\rgenerated {min(count, start + 500)}/{count}", end="", file=sys.stderr)
        print(file=sys.stderr)
    finally:
        await store.close()
    return total


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["sync"], check=True)
    return time.perf_counter() - start


@contextlib.contextmanager
def scratch_database(dsn: str, name: str) -> Iterator[str]:
    """An empty database *name* on the server of *dsn*, dropped afterwards."""
    import asyncpg

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f"DROP DATABASE IF EXISTS {name}"))
    asyncio.run(run(f"CREATE DATABASE {name}"))
    try:
        yield dsn.rsplit("/", 1)[0] + "/" + name
    finally:
        asyncio.run(run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def imap_import(count: int, size: int, root: Path) -> None:
    """Time ``pobox import imap://`` of *count* messages from Dovecot."""
    rng = random.Random(11)
    messages = [make_message(max(300, int(rng.expovariate(1 / size))), n) for n in range(count)]
    with running("dovecot") as dovecot:
        deliver_concurrently(dovecot, messages, 4)
        data = root / "import-data"
        pobox = [str(pobox_executable()), "--data", str(data)]
        subprocess.run([*pobox, "init"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(
            [*pobox, "user", "add", USER, "--password-stdin"],
            input=PASSWORD.encode() + b"\n",
            check=True,
            stdout=subprocess.DEVNULL,
        )
        url = f"imap://{USER.replace('@', '%40')}@{dovecot.host}:{dovecot.imap_port}"
        start = time.perf_counter()
        subprocess.run(
            [*pobox, "import", "--quiet", url, "--to", USER],
            input=PASSWORD.encode() + b"\n",
            check=True,
            stdout=subprocess.DEVNULL,
        )
        elapsed = time.perf_counter() - start
    octets = sum(len(m) for m in messages)
    print(
        f"IMAP import from Dovecot: {count} messages ({octets / MB:.1f} MB) in {elapsed:.2f} s:"
        f" {count / elapsed:.0f} messages/s, {octets / MB / elapsed:.1f} MB/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=8000, help="mean message size in bytes")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--dir", type=Path, default=None, help="where (default: a temp dir)")
    parser.add_argument(
        "--imap-import", type=int, default=0, metavar="N", help="also time an IMAP import of N"
    )
    parser.add_argument(
        "--postgres", metavar="DSN", default=None, help="also time a restore into PostgreSQL"
    )
    args = parser.parse_args()
    print_environment()
    root = Path(tempfile.mkdtemp(prefix="pobox-backup-bench-", dir=args.dir))
    try:
        if args.imap_import:
            imap_import(args.imap_import, args.size, root)
        if not args.messages:
            return
        data = root / "data"
        octets = asyncio.run(generate(data, args.messages, args.size))
        on_disk = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
        print(
            f"store: {args.messages} messages, {octets / MB:.1f} MB of content,"
            f" {on_disk / MB:.1f} MB on disk in {data}"
        )
        pobox = [str(pobox_executable()), "--data", str(data)]
        times: dict[str, list[float]] = {}
        backup_size = 0.0
        for round_ in range(args.rounds):
            work = root / f"round{round_}"
            work.mkdir()
            subprocess.run(["sync"], check=True)
            for label, cmd in (
                ("cp -r data dir", ["cp", "-r", str(data), str(work / "copy")]),
                ("pobox backup (full)", [*pobox, "backup", "--quiet", str(work / "bk")]),
                ("pobox backup (incremental)", [*pobox, "backup", "--quiet", str(work / "bk")]),
                ("pobox backup verify", [*pobox, "backup", "--quiet", "verify", str(work / "bk")]),
                (
                    "pobox restore --to NEW",
                    [*pobox, "restore", "--quiet", str(work / "bk"), "--to", str(work / "new")],
                ),
            ):
                times.setdefault(label, []).append(timed(cmd))
            if args.postgres:
                with scratch_database(args.postgres, f"pobox_restore_bench_{round_}") as dsn:
                    restore = [*pobox, "restore", "--quiet", str(work / "bk"), "--to", dsn]
                    times.setdefault("pobox restore --to postgresql", []).append(timed(restore))
            backup_size = sum(p.stat().st_size for p in (work / "bk").rglob("*") if p.is_file())
            shutil.rmtree(work)
        rows = []
        copies = times["cp -r data dir"]
        for label, values in times.items():
            median, spread = summary(values, 2)
            rate = octets / MB / float(median)
            # each round's own cp -r over its own time (the machine's load changes between
            # rounds more than between neighbouring commands): the median and the range
            ratios = [c / v for c, v in zip(copies, values, strict=True)]
            ratio, ratio_spread = summary(ratios, 2)
            rows.append([label, median, spread, f"{rate:.1f}", ratio, ratio_spread])
        print_table(["operation", "seconds", "range", "MB/s", "vs cp -r", "vs cp -r range"], rows)
        print(f"backup size: {backup_size / MB:.1f} MB ({backup_size / octets:.0%} of content)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
