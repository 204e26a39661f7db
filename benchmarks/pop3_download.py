"""POP3 download throughput: pobox against Dovecot on this machine.

Each target is started in its own temporary directory with one account whose maildrop is filled
with MESSAGES messages of SIZE bytes over LMTP (4 connections, not timed). Then one poplib session
is timed from connect to QUIT: USER/PASS, STAT, LIST, and RETR of every message, each checked
against its LIST size (nothing is deleted). Prints MB/s (1 MB = 10^6 bytes as the server counts
them) and the ratio pobox/dovecot. A second timed session does ``TOP n 0`` (the header only) of
every message, as clients that list a maildrop do; each must be a header ending in a blank line.
poplib reads line by line in Python, so the client's own cost is part of every figure. Never
asserts on time.

    .venv/bin/python benchmarks/pop3_download.py [--target pobox|dovecot|both] [--messages 1000]
"""

from __future__ import annotations

import poplib
import sys
import time

from common import (
    MB,
    BenchError,
    Server,
    add_rounds_option,
    base_parser,
    deliver_concurrently,
    make_message,
    print_environment,
    print_ratio,
    print_table,
    running,
    summary,
    target_list,
)


def download_all(server: Server, expected: int, min_size: int) -> tuple[float, int]:
    """One timed POP3 session that RETRs every message; returns (seconds, octets received)."""
    started = time.perf_counter()
    pop = poplib.POP3(server.host, server.pop3_port, timeout=120)
    try:
        pop.user(server.user)
        pop.pass_(server.password)
        count, _total = pop.stat()
        if count != expected:
            raise BenchError(f"maildrop holds {count} messages, expected {expected}")
        _resp, listing, _octets = pop.list()
        sizes: dict[int, int] = {}
        for entry in listing:
            num, size = entry.split()
            sizes[int(num)] = int(size)
        received = 0
        for number, listed in sorted(sizes.items()):
            _resp, _lines, octets = pop.retr(number)
            if octets != listed:
                raise BenchError(f"RETR {number}: got {octets} octets, LIST said {listed}")
            if octets < min_size:
                raise BenchError(f"RETR {number}: {octets} octets, below the {min_size} sent")
            received += octets
        pop.quit()
    except poplib.error_proto as exc:
        pop.close()
        raise BenchError(f"POP3 error: {exc}") from exc
    return time.perf_counter() - started, received


def top_all(server: Server, expected: int) -> float:
    """One timed POP3 session that sends ``TOP n 0`` for every message; returns seconds."""
    started = time.perf_counter()
    pop = poplib.POP3(server.host, server.pop3_port, timeout=120)
    try:
        pop.user(server.user)
        pop.pass_(server.password)
        count, _total = pop.stat()
        if count != expected:
            raise BenchError(f"maildrop holds {count} messages, expected {expected}")
        for number in range(1, count + 1):
            _resp, lines, _octets = pop.top(number, 0)
            if not lines or lines[-1] != b"" or not any(x.startswith(b"From: ") for x in lines):
                raise BenchError(f"TOP {number} 0: not a header and a blank line: {lines[:3]!r}")
        pop.quit()
    except poplib.error_proto as exc:
        pop.close()
        raise BenchError(f"POP3 error: {exc}") from exc
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "POP3 download benchmark")
    parser.add_argument("--messages", type=int, default=1000, help="messages in the drop (1000)")
    parser.add_argument("--size", type=int, default=50 * 1024, help="message size (51200)")
    parser.add_argument("--fill-clients", type=int, default=4, help="LMTP connections to fill")
    add_rounds_option(parser)
    args = parser.parse_args(argv)
    if min(args.messages, args.fill_clients, args.rounds) < 1:
        parser.error("--messages, --fill-clients and --rounds must be positive")

    messages = [make_message(args.size, i, client=i % 4, seed=2) for i in range(args.messages)]
    print(
        f"POP3 download: {args.messages} messages of {args.size} bytes, one session, RETR each, "
        f"filled over LMTP (not timed)"
    )

    print_environment()
    rates: dict[str, list[float]] = {target: [] for target in target_list(args.target)}
    tops: dict[str, list[float]] = {target: [] for target in rates}
    details: dict[str, tuple[float, float]] = {}
    failed: set[str] = set()
    for _round in range(args.rounds):
        for target in rates:
            if target in failed:
                continue
            try:
                with running(target, keep=args.keep, need=("lmtp", "pop3")) as server:
                    if _round == 0:
                        print(f"{target}: {server.description}", flush=True)
                    fill_seconds, _ = deliver_concurrently(
                        server, messages, min(args.fill_clients, len(messages))
                    )
                    seconds, octets = download_all(server, len(messages), args.size)
                    top_seconds = top_all(server, len(messages))
            except (BenchError, OSError) as exc:
                print(f"{target}: FAILED: {exc}", file=sys.stderr)
                failed.add(target)
                continue
            rates[target].append(octets / MB / seconds)
            tops[target].append(len(messages) / top_seconds)
            details[target] = (octets / MB, fill_seconds)
            print(
                f"  round {_round + 1} {target}: {octets / MB / seconds:.1f} MB/s; "
                f"TOP n 0: {len(messages) / top_seconds:.0f} messages/s",
                flush=True,
            )

    rows: list[list[str]] = []
    for target, values in rates.items():
        if not values:
            rows.append([target, str(args.messages), "-", "0", "failed", "", "-", "-"])
            continue
        megabytes, fill_seconds = details[target]
        rate, spread = summary(values)
        rows.append(
            [
                target,
                str(args.messages),
                f"{megabytes:.1f}",
                str(len(values)),
                rate,
                spread,
                summary(tops[target], 0)[0],
                f"{fill_seconds:.1f}",
            ]
        )
    print()
    print_table(
        [
            "target",
            "messages",
            "MB",
            "rounds",
            "MB/s",
            "range",
            "TOP n 0 msg/s",
            "fill s (untimed)",
        ],
        rows,
    )
    print_ratio("MB/s", {t: v for t, v in rates.items() if v})
    print_ratio("TOP n 0 messages/s", {t: v for t, v in tops.items() if v})
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
