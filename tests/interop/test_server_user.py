"""`[server] user`: started as root, every worker binds its ports, then runs as that user
(docs/deployment.md). CI runs as root; elsewhere the test is skipped."""

from __future__ import annotations

import imaplib
import os
import poplib
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers.servers import LISTENERS, ServerProcess, free_port, pobox, write_config

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to change user"),
]

USER = "pobox-test"


@pytest.fixture
def system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(USER)


@pytest.fixture
def public_tmp() -> Iterator[Path]:
    """A directory the unprivileged user can reach (pytest's tmp_path is root's, mode 0700)."""
    path = Path(tempfile.mkdtemp(prefix="pobox-user-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _proc_uid(pid: int) -> tuple[int, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    return int(fields["Uid"][1]), int(fields["Gid"][1])  # effective ids


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            out.append(int(entry.name))
    return out


@pytest.mark.parametrize("workers", [1, 2])
def test_every_worker_runs_as_the_configured_user(
    system_user: pwd.struct_passwd, public_tmp: Path, workers: int
) -> None:
    data = public_tmp / "data"
    ports = {name: free_port() for name in LISTENERS}
    config = write_config(public_tmp / "pobox.toml", data, ports, f'\n[server]\nuser = "{USER}"\n')
    pobox("init", "--demo", data=data, config=config)  # as root, as an installer would
    refused = ServerProcess(data, config, ports, public_tmp / "refused.log")
    with pytest.raises(AssertionError, match="not writable by the user"):
        refused.start(workers)
    shutil.chown(public_tmp, system_user.pw_uid, system_user.pw_gid)
    subprocess.run(["chown", "-R", f"{USER}:", str(data)], check=True)

    server = ServerProcess(data, config, ports, public_tmp / "server.log")
    server.start(workers)
    try:
        assert server.proc is not None
        pids = [server.proc.pid] if workers == 1 else _children(server.proc.pid)
        assert len(pids) == workers
        for pid in pids:
            assert _proc_uid(pid) == (system_user.pw_uid, system_user.pw_gid)
        # the listeners are open and serve: IMAP, POP3, and a delivery that the store accepts
        for _ in range(2 * workers):
            imap = imaplib.IMAP4("127.0.0.1", ports["imap"])
            assert imap.login("demo@localhost", "demo")[0] == "OK"
            imap.logout()
        pop = poplib.POP3("127.0.0.1", ports["pop3"])
        pop.user("demo@localhost")
        assert pop.pass_("demo").startswith(b"+OK")
        pop.quit()
        import smtplib

        with smtplib.SMTP("127.0.0.1", ports["smtp"]) as smtp:
            smtp.sendmail("a@example.org", ["demo@localhost"], b"Subject: hi\r\n\r\nhello\r\n")
        owners = {path.stat().st_uid for path in data.rglob("*")}
        assert owners == {system_user.pw_uid}, "every file the server made is the user's"
    finally:
        server.stop()
