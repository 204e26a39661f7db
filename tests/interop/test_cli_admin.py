"""What a new user tripped on (issue 16), and the admin commands: `pobox auth blocks|unblock`,
`--json` listings, help texts, a missing store, Ctrl-D at the password prompt, `store copy`
while a server runs, the README's ways to run the CLI, and the log settings."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import time
from pathlib import Path

import pytest
from tests.helpers.servers import POBOX, free_port, imap_login, pobox, server_process

from pobox import __version__

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[2]


def test_a_missing_data_directory_is_an_error_not_a_new_store(tmp_path: Path) -> None:
    typo = tmp_path / "typo"
    for args in (
        ("user", "list"),
        ("alias", "list"),
        ("mailbox", "list", "demo@localhost"),
        ("migrate",),
        ("check",),
        ("sweep",),
        ("serve",),
    ):
        result = pobox(*args, data=typo, check=False, ensure_store=False)
        assert result.returncode == 1, (args, result)
        assert b"pobox init" in result.stderr and str(typo).encode() in result.stderr, args
        assert b"Traceback" not in result.stderr
        assert not typo.exists(), args
    # an MTA running `pobox deliver` defers the mail instead of bouncing it
    deliver = pobox(
        "deliver", "demo@localhost", data=typo, stdin=b"hi\r\n", check=False, ensure_store=False
    )
    assert deliver.returncode == 75 and b"pobox init" in deliver.stderr
    # an existing directory without a store is no store either
    typo.mkdir()
    result = pobox("user", "list", data=typo, check=False, ensure_store=False)
    assert result.returncode == 1 and b"holds no pobox store" in result.stderr
    assert list(typo.iterdir()) == []
    copy = pobox(
        "store", "copy", "--from", str(tmp_path / "nothing"), "--to", "postgresql://x@127.0.0.1:1/x",
        data=typo, check=False, ensure_store=False,
    )  # fmt: skip
    assert copy.returncode == 1 and b"no pobox SQLite store" in copy.stderr
    assert not (tmp_path / "nothing").exists()
    # init creates it; then the commands work
    assert b"store ready" in pobox("init", data=typo, ensure_store=False).stdout
    assert pobox("user", "list", data=typo, ensure_store=False).returncode == 0


def test_serve_init_creates_the_store(tmp_path: Path) -> None:
    with server_process(tmp_path) as server:  # runs `pobox serve --init` on a fresh directory
        assert (server.data / "pobox.db").is_file()
        assert server.cli("user", "list").returncode == 0


def test_end_of_input_at_the_password_prompt(tmp_path: Path) -> None:
    data = tmp_path / "data"
    pobox("init", data=data)
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [*POBOX, "--data", str(data), "user", "add", "bob@example.org"],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # no controlling terminal: getpass reads the pty
        )
        os.close(slave)
        slave = -1
        assert proc.stderr is not None
        seen = b""
        while b"Password" not in seen:  # getpass prompts on stderr without a terminal
            chunk = os.read(proc.stderr.fileno(), 100)
            assert chunk, seen
            seen += chunk
        os.write(master, b"\x04")  # Ctrl-D
        _, rest = proc.communicate(timeout=30)
        stderr = seen + rest
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert proc.returncode == 1
    assert b"no password given" in stderr
    assert b"internal error" not in stderr and b"Traceback" not in stderr
    assert b"bob" not in pobox("user", "list", data=data).stdout


def test_help_texts_and_exit_codes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    top = pobox("--help", data=data).stdout.decode()
    assert "exit codes:" in top and "75" in top and "pobox init" in top
    init = pobox("init", "--help", data=data).stdout
    migrate = pobox("migrate", "--help", data=data).stdout
    assert init != migrate and b"Never creates a store" in migrate
    assert b"pop3.retention" in pobox("user", "set", "--help", data=data).stdout


def test_json_for_every_list_command(tmp_path: Path) -> None:
    data = tmp_path / "data"
    pobox("user", "add", "alice@example.org", "--password-stdin", data=data, stdin=b"pw\n")
    pobox("alias", "add", "al@example.org", "alice@example.org", data=data)
    pobox("user", "set", "alice@example.org", "pop3.retention=keep", data=data)
    users = json.loads(pobox("user", "list", "--json", data=data).stdout)
    assert users == [
        {
            "address": "alice@example.org",
            "aliases": ["al@example.org"],
            "settings": {"pop3.retention": "keep"},
        }
    ]
    aliases = json.loads(pobox("alias", "list", "--json", data=data).stdout)
    assert aliases == [{"alias": "al@example.org", "address": "alice@example.org"}]
    boxes = json.loads(pobox("mailbox", "list", "alice@example.org", "--json", data=data).stdout)
    assert boxes[0] == {"mailbox": "INBOX", "messages": 0, "unseen": 0, "size": 0}
    deleted = pobox("pop3", "deleted", "alice@example.org", "--json", data=data).stdout
    assert json.loads(deleted) == []
    header = pobox("pop3", "deleted", "alice@example.org", data=data).stdout.decode()
    assert header.splitlines()[0].split() == ["DELETED", "UIDL", "MAILBOX", "SIZE", "STATE"]


def test_store_copy_refuses_while_a_server_uses_the_store(tmp_path: Path) -> None:
    with server_process(tmp_path, {"demo@localhost": "demo"}) as server:
        result = pobox(
            "store", "copy", "--from", str(server.data), "--to", "postgresql://x@127.0.0.1:1/x",
            data=server.data, check=False,
        )  # fmt: skip
        assert result.returncode == 1, result
        assert b"stop it first" in result.stderr
        # without the status file (say, a worker that has not written it yet), the lock holds
        for path in (server.data / "run").glob("status-*.json"):
            path.unlink()
        os.kill(server.proc.pid, signal.SIGSTOP)  # keeps its status board from writing again
        try:
            again = pobox(
                "store", "copy", "--from", str(server.data), "--to", "postgresql://x@127.0.0.1:1/x",
                data=server.data, check=False,
            )  # fmt: skip
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        assert again.returncode == 1 and b"stop it first" in again.stderr, again


def test_unblock_on_a_running_two_worker_server(tmp_path: Path) -> None:
    extra = "\n[auth]\nmax_failures = 2\nblock_seconds = 300\npenalty_max = 0.0\n"
    with server_process(tmp_path, {"demo@localhost": "demo"}, extra, workers=2) as server:
        assert server.cli("auth", "blocks").stdout.startswith(b"no blocks in 2 worker(s)")
        status = server.cli("status").stdout.decode()
        assert f"pobox {__version__}, 2 worker(s)" in status
        assert f"imap 127.0.0.1:{server.ports['imap']}" in status
        port = server.ports["imap"]
        # wrong passwords for names that do not exist, on new connections, until both workers
        # (the kernel spreads connections over them) block 127.0.0.1
        blocked: set[int] = set()
        for n in range(200):
            imap_login(port, f"nobody{n}@localhost", "wrong")
            if n % 4 == 3:
                time.sleep(0.6)  # the status board is written every 0.5 s
                listing = json.loads(server.cli("auth", "blocks", "--json").stdout)
                blocked = {b["pid"] for b in listing if b["kind"] == "address"}
                if len(blocked) == 2:
                    break
        assert len(blocked) == 2, "both workers should block 127.0.0.1"
        assert "UNAVAILABLE" in imap_login(port, "demo@localhost", "demo")
        text = server.cli("auth", "blocks").stdout.decode()
        assert "address" in text and "127.0.0.1" in text
        unblocked = server.cli("auth", "unblock", "127.0.0.1").stdout.decode()
        assert "lifted in 2 worker(s): address 127.0.0.1" in unblocked
        # right away, whichever worker takes the connection
        for _ in range(6):
            assert imap_login(port, "demo@localhost", "demo") == "OK"
        assert json.loads(server.cli("auth", "blocks", "--json").stdout) == []
        nothing = server.cli("auth", "unblock", "192.0.2.1").stdout
        assert b"no block or failure count for 192.0.2.1" in nothing
    stopped = pobox("auth", "unblock", "127.0.0.1", data=server.data, check=False)
    assert stopped.returncode == 3 and b"not running" in stopped.stdout


def test_readme_ways_to_run_the_cli(tmp_path: Path) -> None:
    """`. .venv/bin/activate` then `pobox …`, and `make cli ARGS="…"` (README)."""
    data = tmp_path / "data"
    pobox("user", "add", "alice@example.org", "--password-stdin", data=data, stdin=b"pw\n")
    venv = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv"))
    activated = subprocess.run(
        ["bash", "-c", f'. "{venv}/bin/activate" && pobox --data "{data}" user list'],
        capture_output=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert activated.returncode == 0, activated.stderr
    assert b"alice@example.org" in activated.stdout
    made = subprocess.run(
        ["make", "-s", "-o", ".venv/.installed", "cli", f"DATA={data}", "ARGS=user list"],
        capture_output=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    assert b"alice@example.org" in made.stdout


def test_json_log_to_a_file_reopened_on_sighup(tmp_path: Path) -> None:
    log = tmp_path / "server.log"  # the file server_process watches for "serving"
    extra = f'\n[server]\nlog_format = "json"\nlog_file = "{log}"\n'
    with server_process(tmp_path, {"demo@localhost": "demo"}, extra) as server:
        assert imap_login(server.ports["imap"], "demo@localhost", "not-the-password") != "OK"
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        assert any("serving" in line["message"] for line in lines)
        failed = [line for line in lines if "authentication failed" in line["message"]]
        assert failed and failed[0]["level"] == "info" and failed[0]["logger"] == "pobox.auth"
        assert "not-the-password" not in log.read_text()
        rotated = tmp_path / "server.log.1"
        log.rename(rotated)
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while not log.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert log.exists(), "SIGHUP reopens the log file"
        imap_login(server.ports["imap"], "demo@localhost", "wrong-again")
        deadline = time.monotonic() + 10
        while "authentication failed" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "authentication failed" in log.read_text()


def test_readme_examples_show_the_new_mail(tmp_path: Path) -> None:
    """The README's smtplib and curl lines, run as written (with this test's ports)."""
    readme = (REPO / "README.md").read_text()
    lines = [
        line.split("    #")[0].strip()
        for line in readme.splitlines()
        if line.startswith(("curl ", "python3 -c 'import smtplib"))
    ]
    assert len(lines) >= 4
    pobox("init", "--demo", data=tmp_path / "data")  # as `make serve` does
    imaps, pop3s = free_port(), free_port()
    extra = f"\n[imaps]\nport = {imaps}\n\n[pop3s]\nport = {pop3s}\n"
    with server_process(tmp_path, None, extra) as server:
        ports = {
            "1993": imaps,
            "1995": pop3s,
            "1143": server.ports["imap"],
            "1110": server.ports["pop3"],
            "2525": server.ports["smtp"],
        }
        outputs = []
        for line in lines:
            for default, port in ports.items():
                line = line.replace(f"127.0.0.1:{default}/", f"127.0.0.1:{port}/")
                line = line.replace(f'"127.0.0.1", {default})', f'"127.0.0.1", {port})')
            result = subprocess.run(
                ["bash", "-c", line], capture_output=True, timeout=60, check=False
            )
            assert result.returncode == 0, (line, result.stderr)
            outputs.append(result.stdout.decode())
    uid_fetch = next(o for line, o in zip(lines, outputs, strict=True) if ";UID=1" in line)
    assert "Subject: hi" in uid_fetch and "hello" in uid_fetch
    search = next(o for line, o in zip(lines, outputs, strict=True) if "SEARCH" in line)
    assert "* SEARCH 1" in search
    pop = next(o for line, o in zip(lines, outputs, strict=True) if "pop3://" in line)
    assert "hello" in pop
