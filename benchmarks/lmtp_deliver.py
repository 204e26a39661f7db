"""Durable LMTP deliveries per second: pobox against Dovecot on this machine.

Each target is started in its own temporary directory with one account. CLIENTS concurrent
connections (threads, one connection each: LHLO once, then MAIL FROM / RCPT TO / DATA / 250 /
RSET per message, no pipelining) deliver MESSAGES messages of SIZE bytes in total to that one
account. A short warm-up (not timed) comes first. Prints messages/s and MB/s (1 MB = 10^6 bytes
of message data) and the ratio pobox/dovecot. Never asserts on time. ``--connections 4,1``
measures each connection count in turn (one row each; a single connection shows the latency of
one durable delivery, with no group commit to share it).

    .venv/bin/python benchmarks/lmtp_deliver.py [--target pobox|dovecot|both] [--messages 2000]
        [--connections 4,1] [--quota]

``--quota`` measures pobox twice instead, with quotas off and on (``[quota]`` limits set far
above what the run stores, so every delivery is checked and counted but none refused), rounds
alternating, and prints the ratio on/off (docs/quota.md). Every other round runs the targets in
the opposite order: the second server of a round was measured up to 7 % slower, whichever it
was.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
from collections.abc import Iterator

from common import (
    MB,
    BenchError,
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

#: What --quota adds to POBOX_BENCH_CONFIG for the "pobox+quota" runs.
QUOTA_CONFIG = '\n[quota]\nstorage = "1T"\nmessages = 1000000000\n'


@contextlib.contextmanager
def _configured(target: str) -> Iterator[str]:
    """The server to start for *target*; "pobox+quota" is pobox with QUOTA_CONFIG."""
    if target != "pobox+quota":
        yield target
        return
    before = os.environ.get("POBOX_BENCH_CONFIG")
    os.environ["POBOX_BENCH_CONFIG"] = (before or "") + QUOTA_CONFIG
    try:
        yield "pobox"
    finally:
        if before is None:
            del os.environ["POBOX_BENCH_CONFIG"]
        else:
            os.environ["POBOX_BENCH_CONFIG"] = before


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "LMTP delivery benchmark")
    parser.add_argument("--messages", type=int, default=2000, help="timed messages (2000)")
    parser.add_argument(
        "--clients",
        "--connections",
        default="4",
        help="concurrent connections (4); a comma-separated list measures each, e.g. 4,1",
    )
    parser.add_argument("--size", type=int, default=10 * 1024, help="message size (10240)")
    parser.add_argument("--warmup", type=int, default=40, help="untimed messages first (40)")
    parser.add_argument(
        "--quota", action="store_true", help="pobox with quotas off and on (instead of --target)"
    )
    add_rounds_option(parser)
    args = parser.parse_args(argv)
    try:
        counts = [int(c) for c in str(args.clients).split(",")]
    except ValueError:
        parser.error("--connections takes a number or a comma-separated list of numbers")
    if min(args.messages, args.rounds, *counts) < 1:
        parser.error("--messages, --connections and --rounds must be positive")

    warmup = [make_message(args.size, i, client=99, seed=1) for i in range(args.warmup)]
    print(
        f"LMTP delivery: {args.messages} messages of {args.size} bytes, "
        f"{'/'.join(map(str, counts))} connections, one recipient, "
        f"{args.warmup} warm-up messages not timed"
    )

    print_environment()
    failed: set[str] = set()
    rows: list[list[str]] = []
    ratios: list[tuple[str, dict[str, list[float]]]] = []
    for clients in counts:
        messages = [make_message(args.size, i, client=i % clients) for i in range(args.messages)]
        targets = ["pobox", "pobox+quota"] if args.quota else target_list(args.target)
        rates: dict[str, list[float]] = {target: [] for target in targets}
        speeds: dict[str, list[float]] = {target: [] for target in rates}
        for _round in range(args.rounds):
            # every other round in the opposite order (A B, B A, …): whatever the first server
            # of a round leaves behind (dirty pages, a warm cache) falls on both targets alike
            order = list(rates) if _round % 2 == 0 else list(reversed(rates))
            for target in order:
                if target in failed:
                    continue
                try:
                    with (
                        _configured(target) as kind,
                        running(kind, keep=args.keep) as server,
                    ):
                        if _round == 0 and clients == counts[0]:
                            print(f"{target}: {server.description}", flush=True)
                        if warmup:
                            deliver_concurrently(server, warmup, min(clients, len(warmup)))
                        seconds, octets = deliver_concurrently(server, messages, clients)
                except (BenchError, OSError) as exc:
                    print(f"{target}: FAILED: {exc}", file=sys.stderr)
                    failed.add(target)
                    continue
                rates[target].append(args.messages / seconds)
                speeds[target].append(octets / MB / seconds)
                print(
                    f"  round {_round + 1} {target}, {clients} connection(s): "
                    f"{args.messages / seconds:.1f} msg/s",
                    flush=True,
                )
        for target, values in rates.items():
            if not values:
                rows.append([target, str(clients), str(args.messages), "0", "failed", "", "-"])
                continue
            rate, spread = summary(values)
            rows.append(
                [
                    target,
                    str(clients),
                    str(args.messages),
                    str(len(values)),
                    rate,
                    spread,
                    summary(speeds[target], 2)[0],
                ]
            )
        ratios.append((f"messages/s, {clients} connection(s)", rates))
    print()
    print_table(["target", "connections", "messages", "rounds", "msg/s", "range", "MB/s"], rows)
    for label, rates in ratios:
        print_ratio(label, {t: v for t, v in rates.items() if v})
        if rates.get("pobox") and rates.get("pobox+quota"):
            on_off = statistics.median(rates["pobox+quota"]) / statistics.median(rates["pobox"])
            print(f"ratio quotas on/off ({label}, medians): {on_off:.3f}")
            # each round runs off, then on, back to back: their ratio is less disturbed by
            # whatever else the machine does than the ratio of medians over all rounds
            pairs = [
                on / off for off, on in zip(rates["pobox"], rates["pobox+quota"], strict=False)
            ]
            paired = statistics.median(pairs)
            print(f"ratio quotas on/off ({label}, median of rounds): {paired:.3f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
