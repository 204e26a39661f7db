"""The webmail's message list on a large folder: time from request to the rendered first page,
and list pages per second with concurrent sessions.

Builds (or reuses, ``--data``) a data directory whose INBOX holds MESSAGES realistic messages
(benchmarks/build_mailbox.py), runs ``pobox serve`` on it, logs in SESSIONS browsers' worth of
sessions over HTTP and measures:

1. the first page of the INBOX, newest first, cold (the server's first look at the folder: one
   store query for that page while the mailbox index loads in the background;
   docs/decisions/webmail-first-page.md) and warm (median of REPEAT, once the background
   ordering is done); the cold figure is taken COLD_ROUNDS times, each in a freshly started
   server, and all are shown;
2. the first page sorted by subject, cold and warm;
3. page 100 (newest first), warm;
4. list pages per second with SESSIONS sessions asking at once for SECONDS seconds.

The full-text index of the data directory is completed first (``pobox reindex --missing``, as
large_mailbox.py does), so that a cold page is not measured against the indexer's first pass
over 100,000 messages. Nothing here asserts on time. POBOX_BENCH_WORKERS sets ``serve
--workers``.

    .venv/bin/python benchmarks/web_list.py [--messages 100000] [--data /dev/shm/big100k]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import subprocess
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


def start(workdir: Path) -> tuple[common.Server, str]:
    """``pobox serve`` on workdir/data, and the base URL of its web listener once it answers."""
    server = common.start_pobox(workdir, ("imap",), create_user=False)
    port = tomllib.loads((workdir / "pobox.toml").read_text())["web"]["port"]
    deadline = time.monotonic() + 60  # the web listener opens after IMAP's
    while not common.port_open(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    return server, f"http://{common.HOST}:{port}"


def index_all(workdir: Path) -> None:
    exe = common.pobox_executable()
    base = [str(exe), "--config", str(workdir / "pobox.toml"), "--data", str(workdir / "data")]
    subprocess.run([*base, "reindex", "--missing", "--quiet"], check=True, capture_output=True)


def settled(client: httpx.Client, path: str, seconds: float = 30.0) -> None:
    """Wait until the page's folder is ordered in the server (its background work done): the
    page answers as fast twice in a row."""
    deadline = time.monotonic() + seconds
    last = timed(client, path)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = timed(client, path)
        if now < 50 and last < 50:
            return
        last = now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--data", type=Path, help="a data directory from build_mailbox.py")
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--cold-rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pobox-web-", dir="/dev/shm") as tmp:
        workdir = Path(tmp)
        data = args.data or workdir / "data"
        if args.data is None:
            print(f"building an INBOX of {args.messages} messages", flush=True)
            asyncio.run(build(data, args.messages))
        if args.data is not None:  # start_pobox runs in workdir/data: point it there
            (workdir / "data").symlink_to(args.data.resolve())
        server, _ = start(workdir)
        index_all(workdir)
        server.stop()
        colds: list[float] = []
        for _ in range(args.cold_rounds - 1):  # a fresh server each: its first page
            server, base = start(workdir)
            try:
                client = login(base)
                colds.append(timed(client, client.get("/").headers["location"]))
            finally:
                server.stop()
        server, base = start(workdir)
        try:
            client = login(base)
            inbox = client.get("/").headers["location"]
            colds.append(timed(client, inbox))
            settled(client, inbox)
            rows = [
                (
                    f"first page, newest first (cold, {len(colds)} fresh servers)",
                    " ".join(f"{c:.0f}" for c in colds),
                ),
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
