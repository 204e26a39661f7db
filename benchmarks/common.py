"""Shared pieces of the benchmarks: start pobox or Dovecot, a minimal LMTP client, reporting.

The benchmark scripts import this as ``common`` (run them as ``python benchmarks/NAME.py``, so
their own folder is on ``sys.path``). Nothing here asserts on time; it only measures.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
USER = "bench@localhost"
PASSWORD = "bench-password"
TARGETS = ("pobox", "dovecot")
STARTUP_TIMEOUT = 60.0

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # for tools.anchor_dovecot, imported where needed


class BenchError(RuntimeError):
    """A server would not start or a protocol exchange went wrong."""


@dataclass
class Server:
    """A running server under test; ``stop()`` ends it."""

    name: str
    lmtp_port: int
    pop3_port: int
    imap_port: int
    workdir: Path
    user: str = USER
    password: str = PASSWORD
    host: str = HOST
    description: str = ""
    _stop: Callable[[], None] | None = field(default=None, repr=False)
    #: the process group of the server's processes (for :func:`group_cpu_seconds`), if known
    pgid: int | None = None

    @property
    def recipient(self) -> str:
        return self.user

    def stop(self) -> None:
        stop, self._stop = self._stop, None
        if stop is not None:
            stop()


# --------------------------------------------------------------------------- starting servers


def free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1 (held together while chosen, then released)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_open(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def pobox_executable() -> Path:
    """``.venv/bin/pobox`` of this checkout, else ``pobox`` on PATH."""
    candidates = [REPO / ".venv" / "bin" / "pobox", Path(sys.executable).parent / "pobox"]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    found = shutil.which("pobox")
    if found:
        return Path(found)
    raise BenchError(
        f"no pobox executable (looked at {', '.join(map(str, candidates))} and PATH); "
        f"install it with {REPO}/.venv/bin/pip install -e {REPO}"
    )


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def group_cpu_seconds(pgid: int | None) -> float:
    """CPU seconds (user + system) used so far by the processes of group *pgid*: the live
    ones, and the children they have reaped (a Dovecot master reaps its ended imap processes).
    Threads are included. NaN when *pgid* is unknown or /proc is not there."""
    if pgid is None or not Path("/proc").is_dir():
        return float("nan")
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # ended meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()
        # after the command: state ppid pgrp ... utime(12) stime(13) cutime(14) cstime(15)
        if int(fields[2]) == pgid:
            ticks += sum(int(f) for f in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def _stop_group(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


LISTENERS = ("imap", "pop3", "smtp", "lmtp", "web", "submission", "submissions")


def listener_config() -> tuple[dict[str, int], str]:
    """Free ports for every pobox listener, and the TOML tables that set them (so that a
    benchmark's server takes none of the default ports another pobox may hold)."""
    ports = dict(zip(LISTENERS, free_ports(len(LISTENERS)), strict=True))
    return ports, "".join(f"[{name}]\nport = {port}\n" for name, port in ports.items())


def start_pobox(
    workdir: Path, need: Sequence[str] = ("lmtp",), *, create_user: bool = True
) -> Server:
    """Create the account, then run ``pobox serve`` on free ports; wait for the *need* ports.

    *need* names listeners ('lmtp', 'pop3', 'imap'); LMTP is always waited for. Without
    *create_user* the data directory has the account already (a restart).
    """
    exe = pobox_executable()
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    ports, listeners = listener_config()
    imap, pop3, lmtp = ports["imap"], ports["pop3"], ports["lmtp"]
    config = workdir / "pobox.toml"
    # POBOX_BENCH_CONFIG: TOML appended to pobox's configuration (e.g. "[search]\nindex = false")
    config.write_text(listeners + os.environ.get("POBOX_BENCH_CONFIG", "").replace("\\n", "\n"))
    base = [str(exe), "--config", str(config), "--data", str(data)]
    # Only `pobox init` creates a store (other commands refuse a missing one); it is idempotent.
    subprocess.run([*base, "init"], capture_output=True, timeout=120, check=False)
    added = subprocess.run(
        [*base, "user", "add", USER, "--password-stdin"] if create_user else ["true"],
        input=f"{PASSWORD}\n".encode(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    if added.returncode != 0:
        raise BenchError(
            f"pobox user add failed ({added.returncode}):\n"
            f"{(added.stdout + added.stderr).decode(errors='replace')}"
        )
    log_path = workdir / "pobox.log"
    with log_path.open("wb") as log:
        # POBOX_BENCH_WORKERS=N|auto: `serve --workers`; unset: pobox's default (auto)
        workers = os.environ.get("POBOX_BENCH_WORKERS")
        proc = subprocess.Popen(
            [*base, "serve", *(["--workers", workers] if workers else [])],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    ports = {"lmtp": lmtp, "pop3": pop3, "imap": imap}
    pending = {name: ports[name] for name in ("lmtp", *need)}
    deadline = time.monotonic() + STARTUP_TIMEOUT
    try:
        while pending:
            pending = {name: port for name, port in pending.items() if not port_open(port)}
            if not pending:
                break
            if proc.poll() is not None:
                raise BenchError(
                    f"pobox serve exited with status {proc.returncode}:\n{_tail(log_path)}"
                )
            if "lmtp" not in pending:
                # The server is up; a listener still closed this long after is not coming.
                deadline = min(deadline, time.monotonic() + 10.0)
            if time.monotonic() > deadline:
                missing = ", ".join(f"{name.upper()} port {port}" for name, port in pending.items())
                raise BenchError(
                    f"pobox did not open {missing} in time (log {log_path}):\n{_tail(log_path)}"
                )
            time.sleep(0.1)
    except BaseException:
        _stop_group(proc)
        raise
    return Server(
        name="pobox",
        lmtp_port=lmtp,
        pop3_port=pop3,
        imap_port=imap,
        workdir=workdir,
        description=f"{exe} serve (default config, ports only)",
        _stop=lambda: _stop_group(proc),
    )


def dovecot_version() -> str:
    from tools.anchor_dovecot import dovecot_binary

    binary = dovecot_binary()
    if binary is None:
        return "not installed"
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or "unknown"


def start_dovecot_server(workdir: Path) -> Server:
    """Dovecot through tools/anchor_dovecot.py, mail_fsync = optimized (durable deliveries)."""
    from tools.anchor_dovecot import start_dovecot

    instance = start_dovecot(workdir / "dovecot", {USER: PASSWORD}, fsync=True)
    return Server(
        name="dovecot",
        lmtp_port=instance.lmtp_port,
        pop3_port=instance.pop3_port,
        imap_port=instance.imap_port,
        workdir=instance.workdir,
        description=f"Dovecot {dovecot_version()}, maildir, mail_fsync=optimized",
        _stop=instance.stop,
    )


@contextlib.contextmanager
def running(target: str, keep: bool = False, need: Sequence[str] = ("lmtp",)) -> Iterator[Server]:
    """Start *target* ('pobox' or 'dovecot') in a fresh temporary directory; stop it after.

    *need*: the listeners the workload uses (Dovecot always has all of them).
    """
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{target}-"))
    server: Server | None = None
    try:
        server = start_pobox(workdir, need) if target == "pobox" else start_dovecot_server(workdir)
    except BaseException:
        print(f"  ({target} did not start; its files are kept in {workdir})", file=sys.stderr)
        raise
    try:
        yield server
    finally:
        server.stop()
        if keep:
            print(f"  (kept {workdir})")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------- a minimal LMTP client


def make_message(size: int, seq: int, client: int = 0, seed: int = 0) -> bytes:
    """An RFC 5322 message of exactly *size* bytes (when *size* exceeds the header), CRLF ends.

    The body is base64 text in 76-character lines, different for every (seed, client, seq).
    """
    rng = random.Random(seed * 1_000_003 + client * 10_007 + seq)
    header = (
        f"From: Bench Sender <sender@example.org>\r\n"
        f"To: Bench <{USER}>\r\n"
        f"Subject: benchmark message {client}-{seq}\r\n"
        f"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
        f"Message-ID: <bench-{seed}-{client}-{seq}@example.org>\r\n"
        f"MIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=us-ascii\r\n"
        f"\r\n"
    ).encode()
    remaining = size - len(header)
    if remaining < 3:
        return header + b"x\r\n"
    text = base64.b64encode(rng.randbytes(remaining))[:remaining]
    lines = []
    pos = 0
    while remaining > 0:
        take = 76 if remaining - 78 >= 3 or remaining == 78 else remaining - 2
        lines.append(text[pos : pos + take] + b"\r\n")
        pos += take
        remaining -= take + 2
    return header + b"".join(lines)


def dot_stuff(message: bytes) -> bytes:
    """The DATA payload: dot-stuffed, ending with CRLF.CRLF."""
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    if message.startswith(b"."):
        message = b"." + message
    return message.replace(b"\r\n.", b"\r\n..") + b".\r\n"


class LmtpClient:
    """One LMTP connection: LHLO once, then MAIL/RCPT/DATA/RSET per message, no pipelining."""

    def __init__(self, host: str, port: int, timeout: float = 60.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")
        self._expect(220, "greeting")
        self._command(b"LHLO bench.localhost", 250)

    def _reply(self) -> tuple[int, list[bytes]]:
        lines = []
        while True:
            line = self.reader.readline(65536)
            if not line:
                raise BenchError("LMTP server closed the connection")
            lines.append(line.rstrip(b"\r\n"))
            if len(line) < 4 or line[3:4] != b"-":
                return int(line[:3]), lines

    def _expect(self, code: int, what: str) -> list[bytes]:
        got, lines = self._reply()
        if got != code:
            raise BenchError(f"LMTP {what}: expected {code}, got {b' / '.join(lines)!r}")
        return lines

    def _command(self, line: bytes, code: int) -> list[bytes]:
        self.sock.sendall(line + b"\r\n")
        return self._expect(code, line.split(b" ", 1)[0].decode())

    def deliver(self, sender: str, recipients: Sequence[str], payload: bytes) -> None:
        """Send one message (*payload* already dot-stuffed); every recipient must get 250."""
        self._command(f"MAIL FROM:<{sender}>".encode(), 250)
        for rcpt in recipients:
            self._command(f"RCPT TO:<{rcpt}>".encode(), 250)
        self._command(b"DATA", 354)
        self.sock.sendall(payload)
        for _rcpt in recipients:
            self._expect(250, "end of DATA")
        self._command(b"RSET", 250)

    def close(self) -> None:
        with contextlib.suppress(OSError, BenchError):
            self._command(b"QUIT", 221)
        self.reader.close()
        self.sock.close()


def deliver_concurrently(
    server: Server, messages: Sequence[bytes], clients: int
) -> tuple[float, int]:
    """Deliver *messages* (raw, not stuffed) over *clients* connections, each in its own thread.

    The connections are opened and greeted first; the clock runs from the moment all clients are
    released until the last reply. Returns (seconds, bytes of message data delivered).
    """
    payloads = [dot_stuff(m) for m in messages]
    shares = [payloads[i::clients] for i in range(clients)]
    conns = [LmtpClient(server.host, server.lmtp_port) for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)
    errors: list[BaseException] = []

    def run(conn: LmtpClient, share: list[bytes]) -> None:
        barrier.wait()
        try:
            for payload in share:
                conn.deliver("sender@example.org", [server.recipient], payload)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(c, s), daemon=True)
        for c, s in zip(conns, shares, strict=True)
    ]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    for conn in conns:
        conn.close()
    if errors:
        raise BenchError(f"{len(errors)} LMTP client(s) failed; first: {errors[0]!r}")
    return elapsed, sum(len(m) for m in messages)


# --------------------------------------------------------------------------- command line, report


def target_list(value: str) -> list[str]:
    return list(TARGETS) if value == "both" else [value]


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def base_parser(description: str) -> argparse.ArgumentParser:
    """The shared options. Also turns SIGTERM into KeyboardInterrupt, so that a script stopped by
    ``timeout`` or ``kill`` still stops the servers it started (they run in their own sessions).
    """
    signal.signal(signal.SIGTERM, _interrupt)
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--target",
        choices=[*TARGETS, "both"],
        default="both",
        help="server(s) to measure (default: both, pobox first)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep each server's temporary directory"
    )
    return parser


MB = 1_000_000


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )


def add_rounds_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure each target this many times, alternating, each on a fresh server; "
        "the table shows the median and the range (default 1)",
    )


def summary(values: Sequence[float], digits: int = 1) -> tuple[str, str]:
    """(median, 'min-max' or '') of *values*, formatted."""
    median = statistics.median(values)
    spread = f"{min(values):.{digits}f}-{max(values):.{digits}f}" if len(values) > 1 else ""
    return f"{median:.{digits}f}", spread


def print_ratio(label: str, results: dict[str, list[float]]) -> None:
    """Ratio of the medians, pobox over Dovecot, when both were measured."""
    pobox, dovecot = results.get("pobox"), results.get("dovecot")
    if pobox and dovecot:
        ratio = statistics.median(pobox) / statistics.median(dovecot)
        print(f"ratio pobox/dovecot ({label}, medians): {ratio:.2f}")


def print_environment() -> None:
    print(
        f"machine: {os.cpu_count()} CPUs; client: Python {sys.version.split()[0]} on the same "
        f"machine (its CPU use counts against the server's)"
    )
