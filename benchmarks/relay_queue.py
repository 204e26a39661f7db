"""Outbound mail: messages/s submitted into the durable queue, and sent on to a smarthost.

A real ``pobox serve`` (one worker, SQLite, a temporary directory) with one account and a local
aiosmtpd smarthost (in this process, accepting everything) as ``[relay] host``. CONNECTIONS
smtplib clients (threads) each open one submission connection (STARTTLS with a self-signed
certificate, AUTH PLAIN once) and submit their share of MESSAGES messages of SIZE bytes, each to
one remote recipient: every ``250`` means the message is committed to the queue. Printed:

- submitted/s: messages acknowledged per second (from the first MAIL to the last 250);
- relayed/s: messages the smarthost received per second, from the first submission until the
  queue runner had sent every one (submission and sending overlap);

``--path queue`` measures ``OutboundQueue.enqueue`` directly instead of the submission listener
(CONNECTIONS concurrent tasks in one process on a fresh store, no server): the cost of the
queue's store transaction alone. ``--postfix`` runs the same submission test against Debian's
Postfix (``apt-get install postfix``) as a relay: a private instance (its own configuration and
queue directories under a temporary directory, ``postfix -c DIR start-fg``) whose smtpd offers
STARTTLS with the same certificate and relays for 127.0.0.0/8 without AUTH (Postfix's AUTH needs
a SASL server) to the same kind of smarthost as ``relayhost``. Never asserts on time.

    .venv/bin/python benchmarks/relay_queue.py [--messages 1000] [--connections 4]
        [--size 10240] [--path submission|queue|both] [--postfix]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

REPO = Path(__file__).resolve().parent.parent
USER = "bench@localhost"
PASSWORD = "bench-password"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Sink:
    """The smarthost: counts what it is given."""

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.expected = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.count += 1
            if self.count >= self.expected:
                self.done.set()
        return "250 2.0.0 accepted"


def message(size: int, n: int) -> bytes:
    head = (
        f"From: Bench <{USER}>\r\nTo: <r{n}@remote.example>\r\nSubject: relay bench {n}\r\n"
        f"Message-ID: <bench-{n}@localhost>\r\nDate: Mon, 07 Dec 2026 12:00:00 +0000\r\n\r\n"
    ).encode()
    line = b"The quick brown fox jumps over the lazy dog, again and again.\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return head + body


@contextlib.contextmanager
def pobox_server(workdir: Path, relay_port: int) -> Iterator[int]:
    from pobox.net.tls import generate_certificate

    cert, key = generate_certificate(workdir / "certs")
    data = workdir / "data"
    ports = {name: free_port() for name in ("imap", "pop3", "smtp", "lmtp", "submission")}
    lines = [f'data_dir = "{data}"', "", "[server]", "workers = 1", ""]
    for name, port in ports.items():
        lines += [f"[{name}]", f"port = {port}", ""]
    lines += ["[web]", "enabled = false", "", "[submissions]", "enabled = false", ""]
    lines += ["[tls]", f'cert = "{cert}"', f'key = "{key}"', ""]
    lines += ["[relay]", 'host = "127.0.0.1"', f"port = {relay_port}", 'tls = "none"', ""]
    config = workdir / "pobox.toml"
    config.write_text("\n".join(lines))
    pobox = [sys.executable, "-m", "pobox", "--config", str(config)]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    subprocess.run([*pobox, "init"], check=True, capture_output=True, env=env)
    subprocess.run(
        [*pobox, "user", "add", USER, "--password-stdin"],
        input=PASSWORD.encode() + b"\n",
        check=True,
        capture_output=True,
        env=env,
    )
    log = open(workdir / "server.log", "wb")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [*pobox, "serve"], stdout=log, stderr=log, env=env, start_new_session=True
    )
    log.close()
    try:
        deadline = time.monotonic() + 60
        while b") serving" not in (workdir / "server.log").read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((workdir / "server.log").read_text())
            time.sleep(0.05)
        yield ports["submission"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)


@contextlib.contextmanager
def postfix_server(workdir: Path, relay_port: int) -> Iterator[int]:
    """A private Postfix instance relaying to 127.0.0.1:*relay_port*; yields its smtpd port."""
    import pwd
    import shutil

    from pobox.net.tls import generate_certificate

    if shutil.which("postfix") is None:
        raise RuntimeError("Postfix is not installed (apt-get install postfix)")
    cert, key = generate_certificate(workdir / "certs")
    conf, queue, data = workdir / "conf", workdir / "queue", workdir / "data"
    for directory in (conf, queue, data):
        directory.mkdir()
    workdir.chmod(0o755)
    owner = pwd.getpwnam("postfix")
    os.chown(data, owner.pw_uid, owner.pw_gid)
    port = free_port()
    master = Path("/etc/postfix/master.cf").read_text()
    master = "\n".join(
        f"127.0.0.1:{port} inet n - n - - smtpd"
        if line.startswith("smtp ") and line.split()[1] == "inet"
        else line
        for line in master.splitlines()
    )
    (conf / "master.cf").write_text(master + "\n")
    (conf / "main.cf").write_text(
        "\n".join(
            [
                "compatibility_level = 3.6",
                f"queue_directory = {queue}",
                f"data_directory = {data}",
                "myhostname = bench.localhost",
                "mydestination =",
                "inet_interfaces = 127.0.0.1",
                "inet_protocols = ipv4",
                "mynetworks = 127.0.0.0/8",
                f"relayhost = [127.0.0.1]:{relay_port}",
                "smtpd_relay_restrictions = permit_mynetworks, reject",
                f"smtpd_tls_cert_file = {cert}",
                f"smtpd_tls_key_file = {key}",
                "smtpd_tls_security_level = may",
                "maillog_file = /dev/stdout",  # start-fg: into postfix.log
                "alias_maps =",
                "alias_database =",
                "",
            ]
        )
    )
    log = open(workdir / "postfix.log", "wb")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        ["postfix", "-c", str(conf), "start-fg"], stdout=log, stderr=log, start_new_session=True
    )
    log.close()
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((workdir / "postfix.log").read_text())
            time.sleep(0.1)
        yield port
    finally:
        subprocess.run(["postfix", "-c", str(conf), "stop"], capture_output=True, check=False)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def submit(port: int, messages: list[tuple[int, bytes]], errors: list[str]) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the benchmark's own self-signed certificate
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
            smtp.starttls(context=context)
            smtp.ehlo()
            if smtp.has_extn("auth"):  # pobox; the Postfix instance relays for loopback
                smtp.login(USER, PASSWORD)
            for n, content in messages:
                smtp.sendmail(USER, [f"r{n}@remote.example"], content)
    except (OSError, smtplib.SMTPException) as exc:
        errors.append(f"{type(exc).__name__}: {exc}")


def bench_submission(count: int, connections: int, size: int, target: str = "pobox") -> None:
    sink = Sink()
    sink.expected = count
    relay_port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=relay_port)
    controller.start()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="pobox-relay-bench-") as tmp,
            (pobox_server if target == "pobox" else postfix_server)(Path(tmp), relay_port) as port,
        ):
            shares: list[list[tuple[int, bytes]]] = [[] for _ in range(connections)]
            for n in range(count):
                shares[n % connections].append((n, message(size, n)))
            errors: list[str] = []
            threads = [
                threading.Thread(target=submit, args=(port, share, errors)) for share in shares
            ]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            submitted = time.perf_counter() - started
            if errors:
                raise RuntimeError("; ".join(errors[:3]))
            if not sink.done.wait(600):
                raise RuntimeError(f"the smarthost got only {sink.count} of {count}")
            relayed = time.perf_counter() - started
    finally:
        controller.stop()
    print(
        f"{target} submission: {count} messages of {size} bytes over {connections} connections: "
        f"{count / submitted:.0f} submitted/s ({submitted:.2f} s), "
        f"{count / relayed:.0f} relayed/s ({relayed:.2f} s until the smarthost had all)",
        flush=True,
    )


async def bench_queue(count: int, connections: int, size: int) -> None:
    sys.path.insert(0, str(REPO / "src"))
    from pobox.relay.queue import OutboundQueue
    from pobox.store.factory import create_store

    with tempfile.TemporaryDirectory(prefix="pobox-queue-bench-") as tmp:
        store = create_store("sqlite", Path(tmp) / "data")
        await store.open()
        try:
            queue = OutboundQueue(store)

            async def worker(k: int) -> None:
                for n in range(k, count, connections):
                    await queue.enqueue(USER, [f"r{n}@remote.example"], message(size, n))

            started = time.perf_counter()
            await asyncio.gather(*(worker(k) for k in range(connections)))
            seconds = time.perf_counter() - started
        finally:
            await store.close()
    print(
        f"queue API: {count} enqueues of {size} bytes, {connections} concurrent: "
        f"{count / seconds:.0f} messages/s ({seconds:.2f} s)",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--messages", type=int, default=1000, help="messages (1000)")
    parser.add_argument("--connections", type=int, default=4, help="connections (4)")
    parser.add_argument("--size", type=int, default=10 * 1024, help="message size (10240)")
    parser.add_argument("--path", choices=("submission", "queue", "both"), default="both")
    parser.add_argument(
        "--postfix", action="store_true", help="the submission test against Postfix too"
    )
    args = parser.parse_args(argv)
    if min(args.messages, args.connections, args.size) < 1:
        parser.error("--messages, --connections and --size must be positive")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs", flush=True)
    if args.path in ("queue", "both"):
        asyncio.run(bench_queue(args.messages, args.connections, args.size))
    if args.path in ("submission", "both"):
        bench_submission(args.messages, args.connections, args.size)
        if args.postfix:
            bench_submission(args.messages, args.connections, args.size, "postfix")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
