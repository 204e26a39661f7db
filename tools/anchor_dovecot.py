"""Run a private Dovecot instance as a side-by-side anchor for tests and benchmarks.

``start_dovecot(workdir, users)`` writes its own ``dovecot.conf`` into *workdir* (runtime
directory, state, log, password file and the users' homes all live there), picks free ports on
127.0.0.1 for IMAP, POP3 and LMTP, starts ``dovecot -F -c <conf>`` and waits until the three
ports accept connections. ``DovecotInstance.stop()`` ends it and its children.

Any system-wide Dovecot (the Debian package may have started one on 143/110) is neither used nor
touched: this instance has its own ports, base_dir and state_dir.

Mail is stored as Maildir under ``<workdir>/home/<user>/Maildir``. Dovecot refuses to deliver as
root, so when we run as root the mail processes run as ``nobody`` (or the ``pobox-anchor`` user if
one exists); the homes are given to that user, and any directory above *workdir* that it cannot
traverse gets the ``o+x`` bit (traverse only, no listing) so that, for instance, pytest's 0700
``/tmp/pytest-of-root`` works.

Run ``python -m tools.anchor_dovecot [--user NAME:PASSWORD ...]`` to start one by hand; it prints
the ports and runs until interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import grp
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DovecotError", "DovecotInstance", "dovecot_binary", "start_dovecot"]

HOST = "127.0.0.1"
_STARTUP_TIMEOUT = 20.0
_STOP_TIMEOUT = 10.0
# Unix socket paths are limited to 107 bytes; the longest socket Dovecot makes under base_dir is
# about 30 characters, so keep base_dir well under that.
_MAX_BASE_DIR = 70


class DovecotError(RuntimeError):
    """Dovecot is missing, or would not start; the message carries the log tail."""


def dovecot_binary() -> str | None:
    """Path of the ``dovecot`` master binary, or None when Dovecot is not installed."""
    found = shutil.which("dovecot")
    if found:
        return found
    for candidate in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


@dataclass
class DovecotInstance:
    workdir: Path
    imap_port: int
    pop3_port: int
    lmtp_port: int
    host: str = HOST
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    base_dir: Path | None = field(default=None, repr=False)
    _cleanup: list[Path] = field(default_factory=list, repr=False)

    @property
    def log_path(self) -> Path:
        return self.workdir / "dovecot.log"

    @property
    def config_path(self) -> Path:
        return self.workdir / "dovecot.conf"

    def maildir(self, user: str) -> Path:
        """The Maildir root of *user* (it exists once something was delivered or logged in)."""
        return self.workdir / "home" / user / "Maildir"

    def log_tail(self, lines: int = 30) -> str:
        return _tail(self.log_path, lines) or _tail(self.workdir / "dovecot.stderr", lines)

    def stop(self) -> None:
        """Stop the master and every process it started; safe to call twice."""
        proc = self.process
        self.process = None
        if proc is not None:
            _stop_process_group(proc)
        for path in self._cleanup:
            with contextlib.suppress(OSError):
                if path.is_symlink() or not path.is_dir():
                    path.unlink()
                else:
                    path.rmdir()
        self._cleanup.clear()

    def __enter__(self) -> DovecotInstance:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _stored_password(password: str, scheme: str) -> str:
    """The passwd-file form of *password* under *scheme* (``{PLAIN}pw`` or a real hash)."""
    if scheme == "PLAIN":
        return "{PLAIN}" + password
    cached = _HASHES.get((scheme, password))
    if cached is None:
        made = subprocess.run(
            ["doveadm", "pw", "-s", scheme, "-p", password],
            capture_output=True,
            check=True,
            timeout=60,
        )
        cached = _HASHES[(scheme, password)] = made.stdout.decode().strip()
    return cached  # salted once per password: every user with it shares the hash


_HASHES: dict[tuple[str, str], str] = {}


def start_dovecot(
    workdir: Path,
    users: dict[str, str],
    *,
    fsync: bool = True,
    scheme: str = "PLAIN",
    auth_cache: bool = False,
    extra_config: tuple[str, ...] = (),
) -> DovecotInstance:
    """Write a configuration into *workdir*, start Dovecot and wait until it serves.

    *users* maps login names (used verbatim as the LMTP recipient too) to plaintext passwords.
    With ``fsync=False`` Dovecot runs with ``mail_fsync = never``; the default keeps Dovecot's
    own default, ``optimized``, which makes every delivery durable. *scheme* is how the passwords
    are stored: ``PLAIN`` (no hashing cost), or ``ARGON2ID`` (hashed by ``doveadm pw``, the
    scheme pobox uses, for login benchmarks that compare like with like); *auth_cache* turns on
    Dovecot's auth cache (off by default, as in Dovecot). *extra_config* lines are appended to
    the configuration (``imap_metadata = yes`` and a ``mail_attribute_dict`` for METADATA).
    """
    binary = dovecot_binary()
    if binary is None:
        raise DovecotError(
            "dovecot is not installed (apt-get install dovecot-imapd dovecot-pop3d dovecot-lmtpd)"
        )
    for name, password in users.items():
        if not name or any(c in name for c in ":\n\r\t/ ") or name in (".", ".."):
            raise ValueError(f"unusable Dovecot user name {name!r}")
        if any(c in password for c in ":\n\r"):
            raise ValueError(f"password of {name!r} contains ':' or a line break")

    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    mail_uid, mail_gid = _mail_identity()
    as_root = os.geteuid() == 0

    run_dir = workdir / "run"
    state_dir = workdir / "state"
    home_root = workdir / "home"
    for directory in (run_dir, state_dir, home_root):
        directory.mkdir(exist_ok=True)
    cleanup: list[Path] = []
    base_dir = run_dir
    if len(str(base_dir)) > _MAX_BASE_DIR:
        # Too long for Unix sockets: reach the same directory through a short symlink.
        short = Path(tempfile.mkdtemp(prefix="dva-", dir="/tmp"))
        short.chmod(0o755)
        base_dir = short / "r"
        base_dir.symlink_to(run_dir)
        cleanup += [base_dir, short]

    passwd_file = workdir / "passwd"
    passwd_file.write_text(
        "".join(f"{name}:{_stored_password(pw, scheme)}\n" for name, pw in users.items())
    )
    passwd_file.chmod(0o600)
    for name in users:
        home = home_root / name
        home.mkdir(exist_ok=True)
        if as_root:
            for path in (home, *home.rglob("*")):
                os.chown(path, mail_uid, mail_gid, follow_symlinks=False)
    if as_root:
        workdir.chmod(workdir.stat().st_mode | stat.S_IXOTH)
        home_root.chmod(0o755)
        _grant_traverse(workdir, mail_uid, mail_gid)

    with _free_ports(3) as (imap_port, pop3_port, lmtp_port):
        config = _render_config(
            workdir=workdir,
            base_dir=base_dir,
            state_dir=state_dir,
            passwd_file=passwd_file,
            home_root=home_root,
            imap_port=imap_port,
            pop3_port=pop3_port,
            lmtp_port=lmtp_port,
            mail_uid=mail_uid,
            mail_gid=mail_gid,
            fsync=fsync,
            as_root=as_root,
            auth_cache=auth_cache,
        )
    config_path = workdir / "dovecot.conf"
    config_path.write_text(config + "".join(line + "\n" for line in extra_config))

    log_path = workdir / "dovecot.log"
    with contextlib.suppress(FileNotFoundError):
        log_path.unlink()
    stderr = (workdir / "dovecot.stderr").open("wb")
    try:
        proc = subprocess.Popen(
            [binary, "-F", "-c", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        stderr.close()
    instance = DovecotInstance(
        workdir=workdir,
        imap_port=imap_port,
        pop3_port=pop3_port,
        lmtp_port=lmtp_port,
        process=proc,
        base_dir=base_dir,
        _cleanup=cleanup,
    )
    try:
        _wait_ready(instance, proc)
    except BaseException:
        instance.stop()
        raise
    return instance


def _render_config(
    *,
    workdir: Path,
    base_dir: Path,
    state_dir: Path,
    passwd_file: Path,
    home_root: Path,
    imap_port: int,
    pop3_port: int,
    lmtp_port: int,
    mail_uid: int,
    mail_gid: int,
    fsync: bool,
    as_root: bool,
    auth_cache: bool = False,
) -> str:
    """dovecot.conf for Dovecot 2.3 (Debian 12 ships 2.3.19)."""
    lines = [
        "# Written by tools/anchor_dovecot.py; regenerated on every start.",
        "protocols = imap pop3 lmtp",
        f"instance_name = pobox-anchor-{lmtp_port}",
        f"base_dir = {base_dir}",
        f"state_dir = {state_dir}",
        f"log_path = {workdir / 'dovecot.log'}",
        f"info_log_path = {workdir / 'dovecot.log'}",
        f"listen = {HOST}",
        "ssl = no",
        "disable_plaintext_auth = no",
        "auth_mechanisms = plain login",
        "login_trusted_networks = 127.0.0.0/8",
        # A failed login is answered at once (Dovecot's default waits 2 s).
        "auth_failure_delay = 0",
        f"auth_cache_size = {'10M' if auth_cache else '0'}",
        "mail_location = maildir:~/Maildir",
        f"mail_fsync = {'optimized' if fsync else 'never'}",
        "pop3_uidl_format = %08Xu%08Xv",
        "lmtp_save_to_detail_mailbox = no",
        "first_valid_uid = 1",
        "first_valid_gid = 1",
        "default_process_limit = 100",
        "default_client_limit = 1000",
        "mail_max_userip_connections = 1000",
        "passdb {",
        "  driver = passwd-file",
        f"  args = scheme=PLAIN username_format=%u {passwd_file}",
        "}",
        "userdb {",
        "  driver = static",
        f"  args = uid={mail_uid} gid={mail_gid} home={home_root}/%u",
        "}",
        "service imap-login {",
        "  inet_listener imap {",
        f"    address = {HOST}",
        f"    port = {imap_port}",
        "  }",
        "  inet_listener imaps {",
        "    port = 0",
        "  }",
        "}",
        "service pop3-login {",
        "  inet_listener pop3 {",
        f"    address = {HOST}",
        f"    port = {pop3_port}",
        "  }",
        "  inet_listener pop3s {",
        "    port = 0",
        "  }",
        "}",
        "service lmtp {",
        "  inet_listener lmtp {",
        f"    address = {HOST}",
        f"    port = {lmtp_port}",
        "  }",
        "}",
        # No auth penalty: auth looks for base_dir/anvil-auth-penalty and, not finding it, skips
        # the growing delay (up to 15 s) it would add after a failed login from 127.0.0.1.
        "service anvil {",
        "  unix_listener anvil-auth-penalty {",
        "    path = anvil-auth-penalty-disabled",
        "  }",
        "}",
        # Mail processes run as the mail user and report to stats; let them.
        "service stats {",
        "  unix_listener stats-writer {",
        "    mode = 0666",
        "  }",
        "}",
    ]
    if as_root:
        # The password file sits in workdir, which may be below a directory only root can enter.
        lines += ["service auth {", "  user = root", "}"]
    else:
        # Unprivileged: every service runs as us, and nothing can chroot.
        me = pwd.getpwuid(os.geteuid()).pw_name
        group = grp.getgrgid(os.getegid()).gr_name
        lines += [f"default_internal_user = {me}", f"default_login_user = {me}"]
        lines += [f"default_internal_group = {group}"]
        for service in ("imap-login", "pop3-login", "anvil"):
            lines += [f"service {service} {{", "  chroot =", "}"]
    return "\n".join(lines) + "\n"


def _mail_identity() -> tuple[int, int]:
    """uid/gid the mail processes run as: ourselves, or a harmless user when we are root."""
    if os.geteuid() != 0:
        return os.geteuid(), os.getegid()
    for name in ("pobox-anchor", "nobody", "mail"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        if entry.pw_uid != 0 and entry.pw_gid != 0:
            return entry.pw_uid, entry.pw_gid
    raise DovecotError("no unprivileged system user (pobox-anchor, nobody, mail) to deliver as")


def _can_traverse(st: os.stat_result, uid: int, gid: int) -> bool:
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def _grant_traverse(path: Path, uid: int, gid: int) -> None:
    """Make every directory from / down to *path* traversable (not listable) for uid/gid."""
    for directory in [*reversed(path.parents), path]:
        st = directory.stat()
        if not _can_traverse(st, uid, gid):
            directory.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)


@contextlib.contextmanager
def _free_ports(count: int) -> Iterator[tuple[int, ...]]:
    """Distinct free ports on 127.0.0.1, held until the block ends so they stay distinct."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            sockets.append(sock)
        yield tuple(sock.getsockname()[1] for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _wait_ready(instance: DovecotInstance, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + _STARTUP_TIMEOUT
    pending = {instance.imap_port, instance.pop3_port, instance.lmtp_port}
    while pending:
        if proc.poll() is not None:
            raise DovecotError(
                f"dovecot exited with status {proc.returncode} during startup "
                f"(config {instance.config_path}):\n{instance.log_tail()}"
            )
        pending = {port for port in pending if not _port_open(instance.host, port)}
        if not pending:
            return
        if time.monotonic() > deadline:
            raise DovecotError(
                f"dovecot did not open ports {sorted(pending)} within {_STARTUP_TIMEOUT:.0f} s "
                f"(config {instance.config_path}):\n{instance.log_tail()}"
            )
        time.sleep(0.05)


def _stop_process_group(proc: subprocess.Popen[bytes]) -> None:
    pgid = proc.pid  # started with start_new_session, so the master leads its own group
    if proc.poll() is None:
        # Signal the whole group at once: when only the master is told, idle login processes
        # wait five seconds for a stats handshake before they exit.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    # Children normally exit with the master; make sure none linger.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a private Dovecot on 127.0.0.1.")
    parser.add_argument("--workdir", type=Path, help="default: a new temporary directory")
    parser.add_argument(
        "--user", action="append", default=[], metavar="NAME:PASSWORD", help="repeatable"
    )
    parser.add_argument("--no-fsync", action="store_true")
    args = parser.parse_args(argv)
    users = dict(u.split(":", 1) for u in args.user) or {"test": "test"}
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pobox-anchor-"))

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    instance = start_dovecot(workdir, users, fsync=not args.no_fsync)
    sys.stdout.write(
        f"dovecot in {instance.workdir}: imap {instance.imap_port} pop3 {instance.pop3_port} "
        f"lmtp {instance.lmtp_port}; users {', '.join(users)}; Ctrl-C stops it\n"
    )
    sys.stdout.flush()
    try:
        while instance.process is not None and instance.process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        instance.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
