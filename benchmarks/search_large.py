"""SEARCH on a large mailbox: build N small messages in a temporary store, time queries.

Run from the repository root:

    .venv/bin/python benchmarks/search_large.py                  # 100,000 messages
    .venv/bin/python benchmarks/search_large.py --messages 20000 --rounds 5

The store is built in a fresh temporary directory (on /dev/shm when it exists, so that the
per-message fsync of the build does not dominate; the queries only read). Messages are appended
concurrently, as clients would, and the store commits them in groups. Each query is run
``--rounds`` times against the session's view (``list_messages``, timed separately); the table
shows the fastest and the median run in milliseconds and the number of hits. Nothing here asserts
on time.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))

from pobox.service.content import chunked, spool_message  # noqa: E402
from pobox.service.search import (  # noqa: E402
    All,
    And,
    Body,
    FlagIs,
    From,
    Header,
    InternalDate,
    Not,
    Or,
    Query,
    SentDate,
    Size,
    Subject,
    Text,
    UidIn,
    search,
)
from pobox.store.api import MailboxId, MessageMeta, Store  # noqa: E402
from pobox.store.factory import create_store  # noqa: E402

WORDS = [
    "invoice",
    "meeting",
    "report",
    "lunch",
    "project",
    "update",
    "holiday",
    "budget",
    "review",
    "draft",
    "contract",
    "schedule",
    "travel",
    "receipt",
    "newsletter",
    "offer",
    "reminder",
    "question",
    "answer",
    "photo",
]
START = datetime(2025, 1, 1, tzinfo=UTC)


def make_message(n: int, rng: random.Random) -> tuple[bytes, frozenset[str], datetime]:
    words = " ".join(rng.choice(WORDS) for _ in range(3))
    subject = f"{words} #{n}"
    if n % 50 == 0:
        subject = "=?utf-8?q?R=C3=A9sum=C3=A9?= " + subject
    sent = START + timedelta(minutes=5 * n)
    body_words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 200)))
    if n % 997 == 0:
        body_words += " zanzibar"  # the rare BODY hit
    headers = (
        f"From: Sender {n % 1000} <sender{n % 1000}@example.org>\r\n"
        f"To: user@example.com\r\nSubject: {subject}\r\n"
        f"Date: {sent.strftime('%a, %d %b %Y %H:%M:%S +0000')}\r\n"
        f"Message-ID: <{n}@bench.example>\r\n"
    )
    if n % 10 == 0:
        headers += "X-Priority: 1\r\n"
    if n % 3 == 0:
        body = base64.encodebytes(body_words.encode()).decode()
        headers += (
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: base64\r\n"
        )
    else:
        body = body_words + "\r\n"
    flags: set[str] = set()
    if rng.random() < 0.8:
        flags.add("\\Seen")
    if rng.random() < 0.05:
        flags.add("\\Flagged")
    if rng.random() < 0.02:
        flags.add("\\Deleted")
    if rng.random() < 0.1:
        flags.add("$Work")
    return (headers + "\r\n" + body).encode(), frozenset(flags), sent


async def build(store: Store, mailbox: MailboxId, count: int, workers: int) -> float:
    rng = random.Random(20260115)
    items = [make_message(n, rng) for n in range(count)]
    started = time.perf_counter()
    next_index = 0
    done = 0

    async def worker() -> None:
        nonlocal next_index, done
        while next_index < len(items):
            content, flags, sent = items[next_index]
            next_index += 1
            message = await asyncio.to_thread(
                lambda c=content, f=flags, s=sent: spool_message(
                    store.new_spool(), chunked(c), flags=f, internal_date=s
                )
            )
            await store.append(mailbox, message)
            done += 1
            if done % 10000 == 0:
                rate = done / (time.perf_counter() - started)
                print(f"  {done:,} messages stored ({rate:,.0f}/s)", flush=True)

    await asyncio.gather(*(worker() for _ in range(workers)))
    return time.perf_counter() - started


async def timed(fn: Callable[[], object], rounds: int) -> tuple[list[float], object]:
    times: list[float] = []
    result: object = None
    for _ in range(rounds):
        t0 = time.perf_counter()
        result = fn()
        if asyncio.iscoroutine(result):
            result = await result
        times.append((time.perf_counter() - t0) * 1000)
    return times, result


def queries(count: int) -> Sequence[tuple[str, Query, int]]:
    """(IMAP form, query, rounds divisor: the dear ones run fewer times)."""
    mid = date(2025, 1, 1) + timedelta(minutes=5 * count // 2)
    return [
        ("ALL", All(), 1),
        ("UNSEEN", FlagIs("\\Seen", False), 1),
        ("FLAGGED UNDELETED", And((FlagIs("\\Flagged"), FlagIs("\\Deleted", False))), 1),
        ("KEYWORD $Work", FlagIs("$Work"), 1),
        ("LARGER 1000", Size(larger=1000), 1),
        (f"UID 1:{count // 10}", UidIn(((1, count // 10),)), 1),
        (f"SINCE {mid}", InternalDate("since", mid), 1),
        ("OR UNSEEN FLAGGED", Or(FlagIs("\\Seen", False), FlagIs("\\Flagged")), 1),
        ("FROM sender42@", From("sender42@"), 1),
        ("SUBJECT invoice", Subject("invoice"), 1),
        ("SUBJECT résumé", Subject("résumé"), 1),
        ("UNSEEN FROM sender7", And((FlagIs("\\Seen", False), From("sender7"))), 1),
        ("OR FROM sender1@ SUBJECT #4242", Or(From("sender1@"), Subject("#4242")), 1),
        ("NOT SUBJECT report", Not(Subject("report")), 1),
        (
            "NOT (OR SEEN LARGER 1000) SUBJECT lunch",
            And((Not(Or(FlagIs("\\Seen"), Size(larger=1000))), Subject("lunch"))),
            1,
        ),
        (f"SENTON {mid}", SentDate("on", mid), 1),
        (
            "UID 1:1000 HEADER X-Priority 1",
            And((UidIn(((1, 1000),)), Header("X-Priority", "1"))),
            1,
        ),
        (
            "UNSEEN FROM sender7 BODY travel",
            And((FlagIs("\\Seen", False), From("sender7"), Body("travel"))),
            1,
        ),
        ("UID 1:10000 BODY zanzibar", And((UidIn(((1, 10000),)), Body("zanzibar"))), 1),
        ("BODY zanzibar (whole mailbox)", Body("zanzibar"), 3),
        ("TEXT zanzibar (whole mailbox)", Text("zanzibar"), 3),
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=64, help="concurrent appends")
    parser.add_argument("--keep", action="store_true", help="keep the temporary store")
    args = parser.parse_args()

    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    workdir = Path(tempfile.mkdtemp(prefix="pobox-search-", dir=base))
    store = create_store("sqlite", workdir / "data")
    await store.open()
    try:
        account = await store.create_account("bench@example.com", "x")
        inbox = await store.get_mailbox(account.id, "INBOX")
        assert inbox is not None
        print(f"building {args.messages:,} messages in {workdir} ...", flush=True)
        elapsed = await build(store, inbox.id, args.messages, args.workers)
        print(f"built in {elapsed:.1f} s ({args.messages / elapsed:,.0f} messages/s)\n")

        view_times, view = await timed(lambda: store.list_messages(inbox.id), args.rounds)
        assert isinstance(view, list)
        messages: list[MessageMeta] = view
        print(f"view (list_messages): {min(view_times):.0f} ms for {len(messages):,} messages\n")
        print(f"{'query':<44} {'best ms':>9} {'median ms':>10} {'hits':>8}")
        for label, query, divisor in queries(args.messages):
            rounds = max(1, args.rounds // divisor)
            times, hits = await timed(lambda q=query: search(store, inbox.id, q, messages), rounds)
            assert isinstance(hits, list)
            print(
                f"{label:<44} {min(times):>9.1f} {statistics.median(times):>10.1f} {len(hits):>8,}",
                flush=True,
            )
    finally:
        await store.close()
        if args.keep:
            print(f"\nkept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
