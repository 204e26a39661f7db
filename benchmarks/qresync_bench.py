"""QRESYNC resynchronisation: pobox against Dovecot, for growing mailboxes.

For each size in --sizes, on a fresh server per target: the INBOX is filled with that many
small messages over LMTP (not timed); a client enables QRESYNC, selects the INBOX and remembers
its UIDVALIDITY and HIGHESTMODSEQ; another session flags 5 messages and expunges 5 others; then
the client reconnects and times ``SELECT INBOX (QRESYNC (uidvalidity modseq 1:n))`` (to the
tagged OK), REPEAT times (EXAMINE after the first, so nothing changes between rounds; the median
is shown), counting the FETCH and VANISHED lines and the octets of the answer.

The point is the shape: the answer's size, and its time, should not grow with the mailbox (the
few changes are found from the mailbox index and the expunge log). Prints figures, never asserts
on time.

    .venv/bin/python benchmarks/qresync_bench.py [--target pobox|dovecot|both]
        [--sizes 1000,10000,100000] [--repeat 5]
"""

from __future__ import annotations

import re
import statistics
import sys
import time

from common import BenchError, Server, base_parser, print_environment, print_table, running
from common import target_list as targets
from imap_bench import Imap, fill


def _code(lines: list[bytes], name: bytes) -> int:
    for line in lines:
        m = re.search(rb"\[" + name + rb" (\d+)\]", line)
        if m:
            return int(m[1])
    raise BenchError(f"no {name.decode()} in the SELECT answer")


def resync(server: Server, count: int, repeat: int) -> dict[str, float]:
    fill(server, count, 8, 300)
    first = Imap(server)
    first.login(server)
    first.command(b"ENABLE QRESYNC")
    _, lines = first.command(b"SELECT INBOX")
    uidvalidity, modseq = _code(lines, b"UIDVALIDITY"), _code(lines, b"HIGHESTMODSEQ")
    first.close()

    other = Imap(server)
    other.login(server)
    other.command(b"SELECT INBOX")
    step = max(count // 6, 1)
    flagged = [1 + step * i for i in range(5)]
    doomed = [2 + step * i for i in range(5)]
    other.command(b"UID STORE %s +FLAGS.SILENT (\\Flagged)" % ",".join(map(str, flagged)).encode())
    other.command(b"UID STORE %s +FLAGS.SILENT (\\Deleted)" % ",".join(map(str, doomed)).encode())
    other.command(b"EXPUNGE")
    other.close()

    client = Imap(server)
    client.login(server)
    client.command(b"ENABLE QRESYNC")
    times: list[float] = []
    fetches = vanished = octets = 0
    for n in range(repeat):
        verb = b"SELECT" if n == 0 else b"EXAMINE"
        t0 = time.perf_counter()
        status, lines = client.command(
            b"%s INBOX (QRESYNC (%d %d 1:%d))" % (verb, uidvalidity, modseq, count)
        )
        times.append((time.perf_counter() - t0) * 1000)
        if n == 0:
            fetches = sum(1 for x in lines if b" FETCH " in x)
            vanished = sum(1 for x in lines if x.startswith(b"* VANISHED"))
            octets = sum(len(x) for x in lines) + len(status)
    client.close()
    return {
        "fetch": fetches,
        "vanished": vanished,
        "octets": octets,
        "first_ms": times[0],
        "median_ms": statistics.median(times[1:]) if len(times) > 1 else times[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "QRESYNC benchmark")
    parser.add_argument("--sizes", default="1000,10000,100000", help="mailbox sizes")
    parser.add_argument("--repeat", type=int, default=5, help="timed SELECTs per size (5)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    print_environment()
    failed = False
    rows: list[list[str]] = []
    for size in sizes:
        for target in targets(args.target):
            try:
                with running(target, keep=args.keep) as server:
                    r = resync(server, size, args.repeat)
            except (BenchError, OSError) as exc:
                failed = True
                print(f"  {target} {size}: FAILED: {exc}", file=sys.stderr)
                continue
            row = [
                target,
                str(size),
                str(int(r["fetch"])),
                str(int(r["vanished"])),
                str(int(r["octets"])),
                f"{r['first_ms']:.1f}",
                f"{r['median_ms']:.1f}",
            ]
            print("  " + " ".join(row), flush=True)  # (an interrupted run keeps what it measured)
            rows.append(row)
    print_table(
        ["target", "messages", "FETCH", "VANISHED", "octets", "first ms", "median ms"], rows
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
