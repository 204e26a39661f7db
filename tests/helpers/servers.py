"""Running pobox for tests: in-process (fast) or as a real `pobox serve` subprocess."""

from __future__ import annotations

import contextlib
import imaplib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

POBOX = [sys.executable, "-m", "pobox"]
LISTENERS = ("imap", "pop3", "smtp", "lmtp", "web", "submission", "submissions")


#: Ports for test servers come from below Linux's ephemeral range (32768-60999 by default):
#: a port the OS handed out for it could meanwhile become the local port of some outgoing
#: connection, and a server restarted on it (the crash tests) would fail with EADDRINUSE. They
#: are handed out in a shuffled order, none twice in a run, so that two listeners of one
#: configuration never get the same one.
_PORTS = list(range(20000, 32768))
random.Random().shuffle(_PORTS)
_next_port = iter(_PORTS)


def free_port() -> int:
    for port in _next_port:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use (another service, or a socket still closing)
            return port
    with socket.socket() as sock:  # every port of the range handed out: let the OS choose
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(path: Path, data: Path, ports: dict[str, int], extra: str = "") -> Path:
    lines = [f'data_dir = "{data}"', ""]
    for name in LISTENERS:
        lines += [f"[{name}]", f"port = {ports[name]}", ""]
    path.write_text("\n".join(lines) + extra)
    return path


def pobox(
    *args: str,
    data: Path,
    stdin: bytes | None = None,
    check: bool = True,
    config: Path | None = None,
    ensure_store: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run `pobox ARGS`. Only `pobox init` creates a store: with *ensure_store* (the default) a
    SQLite data directory without one gets `pobox init` first, as an administrator would do."""
    cmd = [*POBOX, "--data", str(data)]
    if config is not None:
        cmd += ["--config", str(config)]
    if (
        ensure_store
        and args
        and args[0] not in ("init", "migrate", "store", "status", "auth", "serve")
        and not (data / "pobox.db").exists()
        and (config is None or "postgres" not in config.read_text())
    ):
        subprocess.run([*cmd, "init"], capture_output=True, timeout=120, check=False)
    result = subprocess.run(
        [*cmd, *args], input=stdin, capture_output=True, timeout=120, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"pobox {' '.join(args)} failed ({result.returncode}): {result.stderr.decode()}"
        )
    return result


def wait_port(
    port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"pobox exited early with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port}")


@dataclass
class ServerProcess:
    """A `pobox serve` subprocess on free loopback ports."""

    data: Path
    config: Path
    ports: dict[str, int]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    _log_from: int = 0

    def start(self, workers: int = 1) -> None:
        # a restart appends to the same log: only what this run writes counts as started
        self._log_from = self.log.stat().st_size if self.log.exists() else 0
        logf = open(self.log, "ab")  # noqa: SIM115 - handed to the child
        cmd = [*POBOX, "--data", str(self.data), "--config", str(self.config), "serve", "--init"]
        cmd += ["--workers", str(workers)]  # explicit: the default is one per core
        self.proc = subprocess.Popen(cmd, stdout=logf, stderr=logf, start_new_session=True)
        logf.close()
        try:
            self.wait_serving(workers)
        except BaseException:
            self.kill()
            raise

    def wait_serving(self, workers: int, timeout: float = 30.0) -> None:
        """Every worker logs 'serving' once all its listeners are open."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"pobox exited early with {self.proc.returncode}: {self.log.read_text()}"
                )
            with self.log.open("rb") as log:
                log.seek(self._log_from)
                if log.read().decode(errors="replace").count(") serving") >= workers:
                    return
            time.sleep(0.05)
        raise AssertionError(f"pobox did not start: {self.log.read_text()}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def cli(
        self, *args: str, stdin: bytes | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        return pobox(*args, data=self.data, stdin=stdin, check=check, config=self.config)


@contextlib.contextmanager
def server_process(
    tmp: Path, users: dict[str, str] | None = None, extra_config: str = "", workers: int = 1
) -> Iterator[ServerProcess]:
    data = tmp / "data"
    ports = {name: free_port() for name in LISTENERS}
    config = write_config(tmp / "pobox.toml", data, ports, extra_config)
    server = ServerProcess(data, config, ports, tmp / "server.log")
    for address, password in (users or {}).items():
        server.cli("user", "add", address, "--password-stdin", stdin=password.encode() + b"\n")
    server.start(workers)
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def postgres_nodes(
    tmp: Path, dsn: str, users: dict[str, str], extra_config: str = "", count: int = 2
) -> Iterator[list[ServerProcess]]:
    """*count* `pobox serve` nodes, each with its own ports and data directory, on one
    PostgreSQL store (*dsn*); the schema is migrated and *users* created through the first."""
    nodes: list[ServerProcess] = []
    for n in range(count):
        root = tmp / f"node{n}"
        root.mkdir()
        ports = {listener: free_port() for listener in LISTENERS}
        config = write_config(root / "pobox.toml", root / "data", ports, extra_config)
        config.write_text(f'store = "{dsn}"\n' + config.read_text())  # a top-level key first
        nodes.append(ServerProcess(root / "data", config, ports, root / "server.log"))
    nodes[0].cli("migrate")
    for address, password in users.items():
        nodes[0].cli("user", "add", address, "--password-stdin", stdin=password.encode() + b"\n")
    with contextlib.ExitStack() as started:
        for node in nodes:
            node.start()
            started.callback(node.stop)
        yield nodes


def imap_login(port: int, user: str, password: str) -> str:
    """Log in on a new IMAP connection to 127.0.0.1 and out again: "OK", or the server's
    refusal text (``[UNAVAILABLE] ...``, ``[AUTHENTICATIONFAILED] ...``)."""
    imap = imaplib.IMAP4("127.0.0.1", port, timeout=30)
    try:
        imap.login(user, password)
    except imaplib.IMAP4.error as exc:
        text = exc.args[0] if exc.args else b""  # imaplib passes the server's bytes
        return text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    finally:
        try:
            imap.logout()
        except (imaplib.IMAP4.error, OSError):
            pass
    return "OK"
