"""A large mailbox, pobox against Dovecot: what a client feels on 100,000 (or 1,000,000) messages.

For each target, in a fresh server:

1. **Fill** the INBOX over LMTP (FILL_CLIENTS connections) with MESSAGES realistic messages:
   plain text in words from a vocabulary, one in ten HTML, one in twenty with a base64
   attachment, sizes from 1 to 16 KiB. The first DELIVERY_SAMPLE messages time delivery into an
   empty mailbox; the same number again at the end times delivery into the full one.
2. pobox only: wait until the background indexer has indexed everything (`pobox reindex
   --missing`), so that SEARCH is measured as it is in a running server.
3. **Restart** the server (cold: new processes, nothing in their caches; the kernel's page cache
   is not dropped), log in, and time each operation once (cold), then REPEAT more times
   (warm; the median is shown): SELECT; `UID FETCH 1:* (UID FLAGS)`; FETCH of the newest 50
   messages' ENVELOPE and BODYSTRUCTURE (what a phone does on opening the folder); SEARCH by
   flag, by date, FROM, SUBJECT, BODY of a word in 10 messages, BODY of a word in none, TEXT;
   STATUS from another session; one EXPUNGE (STORE \\Deleted and UID EXPUNGE of one message);
   one delivery (one LMTP transaction into the full mailbox).
4. The resident memory of the server's processes after the session.

Every command goes through the same raw IMAP client for both targets; answers are checked
(message counts, search hits). Prints a table with the ratio pobox/Dovecot (below 1: pobox
faster). Dovecot is Debian's, Maildir, without a full-text search plugin (its BODY search reads
the messages). Nothing here asserts on time.

    .venv/bin/python benchmarks/large_mailbox.py [--messages 100000] [--target both]
"""

from __future__ import annotations

import base64
import contextlib
import json
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import common
from bench_postgres import postgres_store
from common import (
    BenchError,
    LmtpClient,
    Server,
    base_parser,
    deliver_concurrently,
    dot_stuff,
    print_environment,
    print_table,
    target_list,
)
from imap_bench import Imap, _pss_kb, _status_kb, server_pids

WORDS = (  # noqa: SIM905 (a sentence is easier to read than 60 quoted words)
    "account agenda answer april archive budget call client contract customer data deadline "
    "delivery design draft email estimate event feedback figures final folder friday holiday "
    "invoice issue july launch lunch meeting minutes monday notes office order payment plan "
    "price project proposal question quote release report request review sales schedule "
    "server status summary support team thanks ticket today travel update version week"
).split()
NAMES = ["Alice Martin", "Bob Chen", "Carla Diaz", "Dmitri Ivanov", "Emma Brown", "Farid Haddad"]
RARE_SENDER = "Wilhelmina Quackenbush"  # the From of every 5,000th message
RARE_SUBJECT = "Quarterly reconciliation 4711"  # the Subject of every 7,000th message
RARE_WORD = "zanzibarite"  # in the body of exactly 10 messages
ABSENT_WORD = "qwxyzzyplugh"  # in no message
DELIVERY_SAMPLE = 2000


def _subject(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 7))).capitalize()


def reply_ids(n: int, seed: int = 7) -> tuple[str, ...]:
    """What message *n* answers (its References: grandparent and parent), for THREAD: one in
    four after the 60th replies to one of the 60 messages before it."""
    if n % 4 != 1 or n <= 60:
        return ()
    parent = n - 1 - (n * 7919) % 60
    grand = parent - 1 - (parent * 7919) % 60
    return (f"large-{seed}-{grand}@example.org", f"large-{seed}-{parent}@example.org")


def realistic(n: int, total: int, seed: int = 7) -> bytes:
    """Message *n* of *total*: the same bytes for both targets."""
    rng = random.Random(seed * 1_000_003 + n)
    name = RARE_SENDER if n % 5000 == 1 else rng.choice(NAMES)
    address = name.lower().replace(" ", ".") + "@example.org"
    subject = RARE_SUBJECT if n % 7000 == 3 else _subject(rng)
    day = 1 + n * 365 // max(total, 1)
    when = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(1735689600 + day * 86400))
    size = int(rng.lognormvariate(7.8, 0.8)) % 16000 + 600
    paragraphs: list[str] = []
    length = 0
    while length < size:
        sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 16))).capitalize()
        paragraphs.append(sentence + ".")
        length += len(sentence) + 2
    rare = total >= 10 and n % (total // 10) == 5 and n // (total // 10) < 10
    if rare:
        paragraphs.insert(len(paragraphs) // 2, f"The {RARE_WORD} samples arrived.")
    text = "\r\n".join(paragraphs)
    header = (
        f"From: {name} <{address}>\r\nTo: Bench <{common.USER}>\r\nSubject: {subject}\r\n"
        f"Date: {when}\r\nMessage-ID: <large-{seed}-{n}@example.org>\r\nMIME-Version: 1.0\r\n"
    )
    ids = reply_ids(n, seed)
    if ids:
        header += f"In-Reply-To: <{ids[1]}>\r\nReferences: <{ids[0]}> <{ids[1]}>\r\n"
    kind = n % 20
    if kind in (0, 10):  # HTML
        html = "".join(f"<p>{p}</p>\r\n" for p in text.split("\r\n"))
        return (
            header + "Content-Type: text/html; charset=utf-8\r\n\r\n"
            f"<html><body>\r\n{html}</body></html>\r\n"
        ).encode()
    if kind == 5:  # an attachment
        blob = base64.encodebytes(rng.randbytes(rng.randint(2000, 30000))).decode()
        blob = blob.replace("\n", "\r\n")
        return (
            header + 'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
            "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            f"{text}\r\n--b1\r\nContent-Type: application/pdf; name=scan-{n}.pdf\r\n"
            f"Content-Disposition: attachment; filename=scan-{n}.pdf\r\n"
            f"Content-Transfer-Encoding: base64\r\n\r\n{blob}--b1--\r\n"
        ).encode()
    return (header + "Content-Type: text/plain; charset=utf-8\r\n\r\n" + text + "\r\n").encode()


def fill(server: Server, total: int, clients: int) -> tuple[float, float]:
    """Deliver *total* messages; returns (rate into the empty mailbox, whole fill seconds)."""
    started = time.perf_counter()
    sample = min(DELIVERY_SAMPLE, total)
    seconds, _ = deliver_concurrently(server, [realistic(n, total) for n in range(sample)], clients)
    empty_rate = sample / seconds
    step = 5000
    for start in range(sample, total, step):
        batch = [realistic(n, total) for n in range(start, min(start + step, total))]
        deliver_concurrently(server, batch, clients)
        if (start // step) % 20 == 0:
            print(f"    {start + len(batch)} delivered", flush=True)
    return empty_rate, time.perf_counter() - started


def full_rate(server: Server, total: int, clients: int) -> float:
    extra = [realistic(total + n, total, seed=8) for n in range(DELIVERY_SAMPLE)]
    seconds, _ = deliver_concurrently(server, extra, clients)
    return DELIVERY_SAMPLE / seconds


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def count_fetches(lines: list[bytes]) -> int:
    return sum(1 for x in lines if b" FETCH " in x)


def search_hits(lines: list[bytes]) -> int:
    for line in lines:
        if line.startswith(b"* SEARCH"):
            return len(line.split()) - 2
    raise BenchError("no SEARCH response")


def operations(
    server: Server, imap: Imap, count: int, text: bool = True
) -> Iterator[tuple[str, Callable[[], None]]]:
    """(name, run-once) for each measured operation on a mailbox of about *count* messages;
    each checks its answer."""

    def select() -> None:
        _, lines = imap.command(b"SELECT INBOX")
        exists = [int(m[1]) for m in (re.match(rb"\* (\d+) EXISTS", x) for x in lines) if m]
        if not exists or exists[-1] < count - 5:
            raise BenchError(f"SELECT says {exists}, expected about {count}")

    def flags() -> None:
        _, lines = imap.command(b"UID FETCH 1:* (UID FLAGS)")
        if count_fetches(lines) < count - 5:
            raise BenchError(f"UID FETCH 1:* gave {count_fetches(lines)}")

    def newest50() -> None:
        first = max(count - 49 - 5, 1)
        _, lines = imap.command(b"FETCH %d:* (ENVELOPE BODYSTRUCTURE)" % first)
        if count_fetches(lines) < 50:
            raise BenchError(f"FETCH of the newest 50 gave {count_fetches(lines)}")

    def search(criteria: bytes, expect: Callable[[int], bool]) -> Callable[[], None]:
        def run() -> None:
            _, lines = imap.command(b"UID SEARCH " + criteria)
            hits = search_hits(lines)
            if not expect(hits):
                raise BenchError(f"SEARCH {criteria!r}: {hits} hits")

        return run

    yield "SELECT", select
    yield "UID FETCH 1:* (UID FLAGS)", flags
    yield "FETCH newest 50 ENVELOPE BODYSTRUCTURE", newest50
    yield "SEARCH UNSEEN (flag)", search(b"UNSEEN", lambda n: n >= count - 10)
    yield "SEARCH SINCE (date)", search(b"SINCE 1-Dec-2025", lambda n: n > 0)
    if not text:
        return
    yield "SEARCH FROM", search(f'FROM "{RARE_SENDER}"'.encode(), lambda n: 0 < n < 1000)
    yield "SEARCH SUBJECT", search(f'SUBJECT "{RARE_SUBJECT}"'.encode(), lambda n: 0 < n < 1000)
    yield "SEARCH BODY (10 hits)", search(f"BODY {RARE_WORD}".encode(), lambda n: n == 10)
    yield "SEARCH BODY (no hit)", search(f"BODY {ABSENT_WORD}".encode(), lambda n: n == 0)
    yield "SEARCH TEXT (10 hits)", search(f"TEXT {RARE_WORD}".encode(), lambda n: n == 10)


def sort_operations(
    imap: Imap, count: int, answers: dict[str, list[int]]
) -> Iterator[tuple[str, Callable[[], None]]]:
    """SORT and THREAD over the whole mailbox; each keeps its last answer (UIDs in order, or
    for THREAD the sizes of the threads in order) in *answers* for :func:`compare_answers`."""

    def sort(criteria: bytes, name: str) -> Callable[[], None]:
        def run() -> None:
            _, lines = imap.command(b"UID SORT " + criteria + b" UTF-8 ALL")
            found = [x for x in lines if x.startswith(b"* SORT")]
            if not found:
                raise BenchError(f"no SORT response to {criteria!r}")
            uids = [int(u) for u in found[0].split()[2:]]
            if len(uids) < count - 5:
                raise BenchError(f"SORT {criteria!r}: {len(uids)} messages")
            answers[name] = uids

        return run

    def thread() -> None:
        _, lines = imap.command(b"UID THREAD REFERENCES UTF-8 ALL")
        found = [x for x in lines if x.startswith(b"* THREAD")]
        if not found:
            raise BenchError("no THREAD response")
        threads = top_threads(found[0][len(b"* THREAD") :])
        if sum(len(t) for t in threads) < count - 5:
            raise BenchError(f"THREAD: {sum(len(t) for t in threads)} messages")
        answers["THREAD=REFERENCES"] = [len(t) for t in threads]
        THREADS[name_of(imap)] = threads

    yield "SORT (REVERSE DATE)", sort(b"(REVERSE DATE)", "SORT (REVERSE DATE)")
    yield "SORT (ARRIVAL)", sort(b"(ARRIVAL)", "SORT (ARRIVAL)")
    yield "SORT (FROM)", sort(b"(FROM)", "SORT (FROM)")
    yield "SORT (SUBJECT)", sort(b"(SUBJECT)", "SORT (SUBJECT)")
    yield "THREAD=REFERENCES", thread


def top_threads(text: bytes) -> list[list[int]]:
    """The messages (UIDs) of each top-level thread of a thread-list, in order."""
    threads: list[list[int]] = []
    depth = 0
    for token in re.findall(rb"[()]|\d+", text):
        if token == b"(":
            if depth == 0:
                threads.append([])
            depth += 1
        elif token == b")":
            depth -= 1
        else:
            threads[-1].append(int(token))
    return threads


def name_of(imap: Imap) -> str:
    return getattr(imap, "target_name", "")


def header_keys(imap: Imap) -> dict[int, tuple[str, str, str, str]]:
    """UID → (Message-ID, Date, From, Subject) as the server hands them out (untimed)."""
    _, lines = imap.command(
        b"UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID DATE FROM SUBJECT)])"
    )
    out: dict[int, tuple[str, str, str, str]] = {}
    # each literal's lines come one by one, after their FETCH line
    text = b"\n".join(lines).decode("utf-8", "replace")
    for block in re.split(r"\* \d+ FETCH ", text)[1:]:
        found_uid = re.search(r"UID (\d+)", block)
        if found_uid is None:
            continue
        fields = {}
        for name in ("Message-ID", "Date", "From", "Subject"):
            value = re.search(rf"(?im)^{name}: *(.*?)\r?$", block)
            fields[name] = value[1].strip() if value else ""
        out[int(found_uid[1])] = (
            fields["Message-ID"],
            fields["Date"],
            fields["From"],
            fields["Subject"],
        )
    return out


def status_once(server: Server) -> float:
    other = Imap(server)
    try:
        other.login(server)
        return timed(lambda: other.command(b"STATUS INBOX (MESSAGES UIDNEXT UNSEEN)"))
    finally:
        other.close()


def expunge_once(imap: Imap) -> float:
    _, lines = imap.command(b"FETCH 1 (UID)")
    uid = int(re.search(rb"UID (\d+)", lines[0])[1])  # type: ignore[index]

    def run() -> None:
        imap.command(b"UID STORE %d +FLAGS.SILENT (\\Deleted)" % uid)
        imap.command(b"UID EXPUNGE %d" % uid)

    return timed(run)


def deliver_once(server: Server, n: int) -> float:
    client = LmtpClient(server.host, server.lmtp_port)
    try:
        payload = dot_stuff(realistic(10_000_000 + n, 1))
        return timed(lambda: client.deliver("sender@example.org", [server.recipient], payload))
    finally:
        client.close()


def restart(server: Server, target: str) -> Server:
    server.stop()
    if target == "pobox":
        return common.start_pobox(server.workdir, ("imap",), create_user=False)
    from tools.anchor_dovecot import start_dovecot

    instance = start_dovecot(server.workdir, {common.USER: common.PASSWORD}, fsync=True)
    return Server(
        name="dovecot",
        lmtp_port=instance.lmtp_port,
        pop3_port=instance.pop3_port,
        imap_port=instance.imap_port,
        workdir=instance.workdir,
        _stop=instance.stop,
    )


def wait_indexed(server: Server) -> float:
    exe = common.pobox_executable()
    base = [str(exe), "--config", str(server.workdir / "pobox.toml")]
    base += ["--data", str(server.workdir / "data")]
    t0 = time.perf_counter()
    subprocess.run([*base, "reindex", "--missing", "--quiet"], check=True, capture_output=True)
    return time.perf_counter() - t0


def memory_mib(server: Server) -> tuple[float, float]:
    """(RSS, PSS) of every process of the server, MiB."""
    pids = server_pids(server)
    rss = sum(_status_kb(p, "VmRSS") for p in pids)
    pss = sum(_pss_kb(p) for p in pids)
    return rss / 1024, pss / 1024


def measure(target: str, args: object) -> dict[str, float]:
    total: int = args.messages  # type: ignore[attr-defined]
    out: dict[str, float] = {}
    with common.running(target, need=("imap",)) as started:
        server = started
        print(f"  {target}: filling {total} messages ...", flush=True)
        empty_rate, fill_s = fill(server, total, args.fill_clients)  # type: ignore[attr-defined]
        out["delivery into an empty mailbox (msg/s)"] = empty_rate
        out["delivery into the full mailbox (msg/s)"] = full_rate(
            server,
            total,
            args.fill_clients,  # type: ignore[attr-defined]
        )
        print(f"  {target}: filled in {fill_s:.0f} s", flush=True)
        if target == "pobox":
            out["indexing left after the fill (s)"] = wait_indexed(server)
        server = restart(server, target)
        try:
            out.update(session_figures(server, total + DELIVERY_SAMPLE, args))
        finally:
            server.stop()
    return out


def measure_existing(data: Path, args: object) -> dict[str, float]:
    """pobox on a data directory built before (benchmarks/README.md: a million messages)."""
    total: int = args.messages  # type: ignore[attr-defined]
    workdir = Path(tempfile.mkdtemp(prefix="bench-pobox-"))
    (workdir / "data").symlink_to(data.resolve())
    out: dict[str, float] = {}
    server = common.start_pobox(workdir, ("imap",), create_user=False)
    try:
        if getattr(args, "index", False):
            out["indexing (s)"] = wait_indexed(server)
            server = restart(server, "pobox")
        out.update(session_figures(server, total, args))
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return out


#: Per target: the last answer of each SORT and THREAD, and UID → header fields.
ANSWERS: dict[str, dict[str, list[int]]] = {}
#: Per target: the top-level threads of the last THREAD=REFERENCES (UIDs).
THREADS: dict[str, list[list[int]]] = {}
HEADERS: dict[str, dict[int, tuple[str, str, str, str]]] = {}


def measure_dovecot_maildir(total: int, args: object) -> dict[str, float]:
    """Dovecot on a Maildir of the same *total* messages written as files (no LMTP fill: for
    --prebuilt), indexed by one SELECT, then restarted: what a restart after the fill sees."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-dovecot-", dir="/dev/shm"))
    maildir = workdir / "dovecot" / "home" / common.USER / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    for n in range(total):
        data = realistic(n, total)
        name = f"{1735689600 + n}.M{n}P1.bench,S={len(data)}:2,"
        (maildir / "cur" / name).write_bytes(data)
    server = common.start_dovecot_server(workdir)
    try:
        imap = Imap(server)
        imap.login(server)
        imap.command(b"SELECT INBOX")
        imap.close()
        server = restart(server, "dovecot")
        return session_figures(server, total, args)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def session_figures(server: Server, count: int, args: object) -> dict[str, float]:
    """One session's figures on a freshly started server (the first round is cold)."""
    repeat: int = args.repeat  # type: ignore[attr-defined]
    out: dict[str, float] = {}
    imap = Imap(server)
    imap.login(server)
    # before anything has the mailbox open: the store answers from the mailbox's counters
    out["STATUS before any SELECT (ms)"] = status_once(server)
    results: dict[str, list[float]] = {}
    answers = ANSWERS.setdefault(server.name, {})
    imap.target_name = server.name  # type: ignore[attr-defined]
    for round_ in range(1 + repeat):
        for name, run in operations(server, imap, count, not getattr(args, "no_text", False)):
            results.setdefault(name, []).append(timed(run))
        if not getattr(args, "no_sort", False):
            for name, run in sort_operations(imap, count, answers):
                results.setdefault(name, []).append(timed(run))
        results.setdefault("STATUS (another session)", []).append(status_once(server))
        if round_ == 0:
            imap.command(b"UNSELECT")
            imap.command(b"SELECT INBOX")
    if not getattr(args, "no_sort", False):
        HEADERS[server.name] = header_keys(imap)  # before the EXPUNGE changes the mailbox
    out["EXPUNGE of one message (ms)"] = expunge_once(imap)
    out["one delivery into the full mailbox (ms)"] = deliver_once(server, 1)
    for name, values in results.items():
        out[f"{name} cold (ms)"] = values[0]
        out[f"{name} warm (ms)"] = statistics.median(values[1:]) if repeat else values[0]
    out["server RSS (MiB)"], out["server PSS (MiB)"] = memory_mib(server)
    imap.close()
    return out


def rethread(headers: dict[int, tuple[str, str, str, str]]) -> list[list[int]]:
    """The top-level threads (UIDs, parents first) that pobox's THREAD=REFERENCES makes of
    a server's messages in that server's UID order (the two fills deliver in different orders,
    and REFERENCES depends on the order: RFC 5256 §2.2 (1C) takes a message out of a parent
    that another message's References gave it when its own header names none)."""
    from email.utils import parsedate_to_datetime

    from pobox.mail.sortkeys import collate, subject_and_reply
    from pobox.mail.threading import Item, references

    items = []
    for seq, uid in enumerate(sorted(headers), 1):
        message_id, date, _, subject = headers[uid]
        found = re.match(r"<large-(\d+)-(-?\d+)@example.org>", message_id)
        refs = reply_ids(int(found[2]), int(found[1])) if found else ()
        base, reply = subject_and_reply(subject)
        sent = parsedate_to_datetime(date).timestamp()
        items.append(Item(uid, seq, message_id.strip("<>"), refs, collate(base), reply, sent))
    out = []
    for root in references(items):
        uids: list[int] = []
        stack = [root]
        while stack:
            node = stack.pop()
            if node.item is not None:
                uids.append(node.item.uid)
            stack.extend(reversed(node.children))
        out.append(uids)
    return out


def compare_answers() -> list[str]:
    """Whether pobox and Dovecot gave the same SORT and THREAD answers. The two fills deliver
    over several connections, so a message's UID differs between them: answers are compared
    by the header that is the sort key (equal keys may come in either order, as their sequence
    numbers differ), by message count, and by the first and last message's Message-ID."""
    if len(ANSWERS) != 2 or len(HEADERS) != 2:
        return []
    (a, a_answers), (b, b_answers) = ANSWERS.items()
    lines = []
    field = {"SORT (REVERSE DATE)": 1, "SORT (FROM)": 2, "SORT (SUBJECT)": 3}
    for name, mine in a_answers.items():
        theirs = b_answers.get(name)
        if theirs is None:
            continue
        if name == "THREAD=REFERENCES":
            same = sorted(mine) == sorted(theirs)
            lines.append(
                f"{name}: {len(mine)} and {len(theirs)} threads of {sum(mine)} and"
                f" {sum(theirs)} messages; thread sizes {'the same' if same else 'DIFFER'}"
            )
            sets = [
                {frozenset(HEADERS[t].get(u, ("?",) * 4)[0] for u in th) for th in THREADS[t]}
                for t in (a, b)
            ]
            only = [sets[0] - sets[1], sets[1] - sets[0]]
            lines.append(
                f"  threads (as sets of Message-IDs) only in {a}: {len(only[0])}, only in {b}:"
                f" {len(only[1])}"
            )
            for who, extra in zip((a, b), only, strict=True):
                for thread in sorted(extra, key=len, reverse=True)[:3]:
                    lines.append(f"    {who}: {sorted(thread)[:8]}")
            for target in (a, b):
                again = rethread(HEADERS[target]) == THREADS[target]
                lines.append(
                    f"  {target}'s messages in {target}'s order, threaded by"
                    f" pobox.mail.threading: {'the same as' if again else 'NOT'} {target}'s answer"
                )
            continue
        ids = [
            [HEADERS[t].get(u, ("?",) * 4) for u in answer]
            for t, answer in ((a, mine), (b, theirs))
        ]
        if name == "SORT (ARRIVAL)":  # the arrival order of two concurrent fills differs
            whole = [sorted(x) == sorted(HEADERS[t]) for t, x in ((a, mine), (b, theirs))]
            lines.append(
                f"{name}: {len(mine)} and {len(theirs)} messages; every message once:"
                f" {a} {whole[0]}, {b} {whole[1]}"
            )
            continue
        keys = [[h[field[name]] for h in answer] for answer in ids]
        differ = sum(1 for x, y in zip(*keys, strict=False) if x != y)
        ends = (ids[0][0][0], ids[0][-1][0]) == (ids[1][0][0], ids[1][-1][0])
        lines.append(
            f"{name}: {len(mine)} and {len(theirs)} messages; sort keys differ at {differ}"
            f" positions; first and last message {'the same' if ends else 'differ'}"
        )
    return lines


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--fill-clients", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--existing",
        metavar="DATA_DIR",
        help="measure pobox on this data directory (built before; --messages: its size)",
    )
    parser.add_argument(
        "--index", action="store_true", help="with --existing: index it all first, timed"
    )
    parser.add_argument(
        "--no-text", action="store_true", help="leave out the string searches (an unindexed store)"
    )
    parser.add_argument("--no-sort", action="store_true", help="leave out SORT and THREAD")
    parser.add_argument(
        "--prebuilt",
        metavar="DATA_DIR",
        help="no LMTP fill: pobox on this build_mailbox.py directory of --messages messages,"
        " Dovecot on a Maildir of the same messages written as files",
    )
    parser.add_argument("--answers", help="write the SORT/THREAD answers and headers here (JSON)")
    parser.add_argument(
        "--store",
        default="sqlite",
        metavar="sqlite|DSN",
        help="pobox's store: sqlite, or a PostgreSQL server's DSN (pobox then runs on a new"
        " database there, dropped after the run)",
    )
    args = parser.parse_args()
    if args.existing and args.store != "sqlite":
        parser.error("--existing measures a SQLite data directory")
    print_environment()
    print(f"mailbox: {args.messages} messages (+{DELIVERY_SAMPLE} for the full-mailbox rate)")
    print(f"pobox's store: {args.store}")
    results: dict[str, dict[str, float]] = {}
    targets = ["pobox"] if args.existing else target_list(args.target)
    if args.prebuilt:
        targets = target_list(args.target)
    store = contextlib.nullcontext() if args.store == "sqlite" else postgres_store(args.store)
    with store:
        for target in targets:
            if args.prebuilt:
                results[target] = (
                    measure_existing(Path(args.prebuilt), args)
                    if target == "pobox"
                    else measure_dovecot_maildir(args.messages, args)
                )
            elif args.existing:
                results[target] = measure_existing(Path(args.existing), args)
            else:
                results[target] = measure(target, args)
            for name, value in results[target].items():  # kept if a later target fails
                print(f"    {target}: {name}: {value:.1f}", flush=True)
    names = list(next(iter(results.values())))
    rows = []
    for name in names:
        row = [name] + [f"{results[t].get(name, float('nan')):.1f}" for t in results]
        if len(results) == 2:
            if name in results.get("dovecot", {}) and name in results.get("pobox", {}):
                ratio = results["pobox"][name] / max(results["dovecot"][name], 1e-9)
                row.append(f"{ratio:.2f}")
            else:
                row.append("")
        rows.append(row)
    headers = ["operation", *results]
    if len(results) == 2:
        headers.append("pobox/dovecot")
    print_table(headers, rows)
    for line in compare_answers():
        print(line)
    if args.answers:
        Path(args.answers).write_text(
            json.dumps({"answers": ANSWERS, "threads": THREADS, "headers": HEADERS})
        )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
