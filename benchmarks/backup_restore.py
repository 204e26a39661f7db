"""Backup and restore speed beside a plain copy of the data directory.

A SQLite store is generated through the Store API (not timed): --messages messages of random
sizes around --size bytes (base64 text, which compresses like real mail bodies do, ~25%) in one
account. Then, on the same disk, each timed once per round:

* ``cp -r DATA COPY`` of the whole data directory (pobox.db + message files), then ``sync``;
* ``pobox backup DEST`` into an empty directory (first, full run: every content read, hashed,
  compressed, written, then sync'd);
* ``pobox backup DEST`` again (incremental: nothing new);
* ``pobox backup verify DEST``;
* ``pobox restore DEST --to NEW`` into an empty data directory.

MB/s is message content (uncompressed) per second of wall time, each command run as a user
would (a `pobox` subprocess). Prints figures; never asserts.

    .venv/bin/python benchmarks/backup_restore.py [--messages 100000] [--size 8000] [--rounds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import MB, make_message, pobox_executable, print_environment, print_table, summary

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=8000, help="mean message size in bytes")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--dir", type=Path, default=None, help="where (default: a temp dir)")
    args = parser.parse_args()
    print_environment()
    root = Path(tempfile.mkdtemp(prefix="pobox-backup-bench-", dir=args.dir))
    try:
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
            backup_size = sum(p.stat().st_size for p in (work / "bk").rglob("*") if p.is_file())
            shutil.rmtree(work)
        rows = []
        copy = min(times["cp -r data dir"])
        for label, values in times.items():
            median, spread = summary(values, 2)
            rate = octets / MB / float(median)
            rows.append([label, median, spread, f"{rate:.1f}", f"{copy / float(median):.2f}"])
        print_table(["operation", "seconds", "range", "MB/s", "vs cp -r"], rows)
        print(f"backup size: {backup_size / MB:.1f} MB ({backup_size / octets:.0%} of content)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
