"""The webmail's message list on a large folder: time from request to the rendered first page,
and list pages per second with concurrent sessions.

Builds (or reuses, ``--data``) a data directory whose INBOX holds MESSAGES realistic messages
(benchmarks/build_mailbox.py), runs ``pobox serve`` on it, logs in SESSIONS browsers' worth of
sessions over HTTP and measures:

1. the first page of the INBOX, newest first, cold (the server's first look at the folder: it
   loads the mailbox index and every message's Date: once) and warm (median of REPEAT);
2. the first page sorted by subject, cold and warm;
3. page 100 (newest first), warm;
4. list pages per second with SESSIONS sessions asking at once for SECONDS seconds.

Nothing here asserts on time. POBOX_BENCH_WORKERS sets ``serve --workers``.

    .venv/bin/python benchmarks/web_list.py [--messages 100000] [--data /dev/shm/big100k]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from build_mailbox import build


def login(base: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=120)
    form = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    if token is None:
        raise common.BenchError(f"no login form at {base}/login")
    answer = client.post(
        "/login",
        data={"csrf": token.group(1), "address": common.USER, "password": common.PASSWORD},
    )
    if answer.status_code != 303:
        raise common.BenchError(f"login refused: {answer.status_code}")
    return client


def timed(client: httpx.Client, path: str) -> float:
    started = time.perf_counter()
    response = client.get(path)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200 or "data-uid=" not in response.text:
        raise common.BenchError(f"{path}: {response.status_code}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--data", type=Path, help="a data directory from build_mailbox.py")
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pobox-web-", dir="/dev/shm") as tmp:
        workdir = Path(tmp)
        data = args.data or workdir / "data"
        if args.data is None:
            print(f"building an INBOX of {args.messages} messages", flush=True)
            asyncio.run(build(data, args.messages))
        if args.data is not None:  # start_pobox runs in workdir/data: point it there
            (workdir / "data").symlink_to(args.data.resolve())
        server = common.start_pobox(workdir, ("imap",), create_user=False)
        try:
            port = tomllib.loads((workdir / "pobox.toml").read_text())["web"]["port"]
            base = f"http://{common.HOST}:{port}"
            deadline = time.monotonic() + 60  # the web listener opens after IMAP's
            while not common.port_open(port) and time.monotonic() < deadline:
                time.sleep(0.1)
            client = login(base)
            inbox = client.get("/").headers["location"]
            rows = [
                ("first page, newest first (cold)", f"{timed(client, inbox):.0f}"),
                (
                    "first page, newest first (warm, median)",
                    f"{statistics.median(timed(client, inbox) for _ in range(args.repeat)):.0f}",
                ),
                ("first page by subject (cold)", f"{timed(client, inbox + '?sort=subject'):.0f}"),
                (
                    "first page by subject (warm, median)",
                    f"{statistics.median(timed(client, inbox + '?sort=subject') for _ in range(args.repeat)):.0f}",  # noqa: E501
                ),
                (
                    "page 100, newest first (warm, median)",
                    f"{statistics.median(timed(client, inbox + '?page=100') for _ in range(args.repeat)):.0f}",  # noqa: E501
                ),
            ]
            sessions = [login(base) for _ in range(args.sessions)]
            counts = [0] * len(sessions)
            stop = time.monotonic() + args.seconds

            def run(n: int) -> None:
                while time.monotonic() < stop:
                    timed(sessions[n], inbox)
                    counts[n] += 1

            threads = [threading.Thread(target=run, args=(n,)) for n in range(len(sessions))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            rate = sum(counts) / args.seconds
            common.print_environment()
            print(f"INBOX of {args.messages} messages; {args.sessions} sessions\n")
            common.print_table(
                ["measure", "ms"],
                [*rows, (f"list pages per second, {args.sessions} sessions", f"{rate:.0f}/s")],
            )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
