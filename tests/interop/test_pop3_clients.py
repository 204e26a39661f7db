"""Real POP3 clients against a real `pobox serve`: poplib, fetchmail, getmail6, curl.

The client programs come from Debian (`make test` installs fetchmail, getmail6 and curl); a
missing one is a failure, not a skip.
"""

from __future__ import annotations

import base64
import os
import poplib
import shutil
import smtplib
import subprocess
from pathlib import Path

import pytest
from tests.helpers.servers import ServerProcess

ADDRESS = "demo@localhost"
PASSWORD = "demo"

pytestmark = pytest.mark.interop


def message(n: int, extra: bytes = b"") -> bytes:
    return (
        b"From: sender@example.org\r\nTo: demo@localhost\r\n"
        b"Subject: message %d\r\nMessage-ID: <m%d@example.org>\r\n\r\nbody of message %d\r\n"
        % (n, n, n)
    ) + extra


def deliver(server: ServerProcess, *numbers: int, extra: bytes = b"") -> None:
    with smtplib.LMTP("127.0.0.1", server.ports["lmtp"], timeout=30) as lmtp:
        for n in numbers:
            assert lmtp.sendmail("sender@example.org", [ADDRESS], message(n, extra)) == {}


def inbox_count(server: ServerProcess) -> int:
    out = server.cli("mailbox", "list", ADDRESS).stdout.decode()
    for line in out.splitlines():
        if line.startswith("INBOX"):
            return int(line.split()[1])
    raise AssertionError(out)


def program(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} is not installed (make test installs it from Debian)"
    return path


def private_file(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def run(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, check=False)


# poplib ------------------------------------------------------------------------------------------
def test_poplib_session(pobox_server: ServerProcess) -> None:
    deliver(pobox_server, 1, 2, extra=b".dot line\r\n..two dots\r\n")
    pop = poplib.POP3("127.0.0.1", pobox_server.ports["pop3"], timeout=30)
    try:
        capa = pop.capa()
        assert capa["SASL"] == ["PLAIN", "LOGIN"]
        assert capa["EXPIRE"] == ["NEVER", "USER"]
        assert "STLS" not in capa
        with pytest.raises(poplib.error_proto):
            pop.stls()  # not offered until TLS exists
        assert pop.utf8().startswith(b"+OK")
        pop.user(ADDRESS)
        assert pop.pass_(PASSWORD).startswith(b"+OK maildrop has 2 messages")
        count, total = pop.stat()
        _, listing, _ = pop.list()
        sizes = [int(line.split()[1]) for line in listing]
        assert count == 2 and sum(sizes) == total
        _, uidls, _ = pop.uidl()
        assert len({line.split()[1] for line in uidls}) == 2
        _, lines, octets = pop.retr(1)
        assert octets == sizes[0]  # poplib counts the unstuffed lines plus CRLFs
        assert b".dot line" in lines and b"..two dots" in lines
        _, head, _ = pop.top(2, 0)
        assert head[-1] == b"" and b"Subject: message 2" in head
        pop.dele(1)
        assert pop.quit().startswith(b"+OK")
    finally:
        pop.close()
    assert inbox_count(pobox_server) == 1


def test_poplib_auth_plain_and_in_use(pobox_server: ServerProcess) -> None:
    token = base64.b64encode(f"\0{ADDRESS}\0{PASSWORD}".encode()).decode()
    first = poplib.POP3("127.0.0.1", pobox_server.ports["pop3"], timeout=30)
    second = poplib.POP3("127.0.0.1", pobox_server.ports["pop3"], timeout=30)
    try:
        reply = first._shortcmd(f"AUTH PLAIN {token}")
        assert reply.startswith(b"+OK"), reply
        second.user(ADDRESS)
        with pytest.raises(poplib.error_proto) as refused:
            second.pass_(PASSWORD)
        assert refused.value.args[0].startswith(b"-ERR [IN-USE]")
        first.quit()
        second.user(ADDRESS)
        assert second.pass_(PASSWORD).startswith(b"+OK")
        second.quit()
    finally:
        first.close()
        second.close()


# fetchmail ---------------------------------------------------------------------------------------
def test_fetchmail_downloads_and_deletes(pobox_server: ServerProcess, tmp_path: Path) -> None:
    fetchmail = program("fetchmail")
    deliver(pobox_server, 1, 2, 3, extra=b".leading dot\r\n")
    out = tmp_path / "delivered.mbox"
    rc = private_file(
        tmp_path / "fetchmailrc",
        f"set no syslog\n"
        f"poll 127.0.0.1 service {pobox_server.ports['pop3']} protocol pop3 auth password\n"
        f'  user "{ADDRESS}" password "{PASSWORD}"\n'
        f"  sslproto ''\n"
        f"  mda \"/bin/sh -c 'cat >> {out}; echo ==END== >> {out}'\"\n",
    )
    env = {**os.environ, "FETCHMAILHOME": str(tmp_path), "HOME": str(tmp_path)}
    result = run([fetchmail, "-f", str(rc), "--nodetach", "-v"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    text = out.read_text()
    assert text.count("==END==") == 3
    for n in (1, 2, 3):
        assert f"Subject: message {n}" in text
    assert "\n.leading dot\n" in text.replace("\r\n", "\n")
    assert inbox_count(pobox_server) == 0
    # nothing new: fetchmail exits 1 ("no mail")
    again = run([fetchmail, "-f", str(rc), "--nodetach"], env)
    assert again.returncode == 1, again.stdout + again.stderr


# getmail6 ----------------------------------------------------------------------------------------
def test_getmail_leaves_mail_and_fetches_only_new(
    pobox_server: ServerProcess, tmp_path: Path
) -> None:
    getmail = program("getmail")
    deliver(pobox_server, 1, 2)
    maildir = tmp_path / "getmail"
    maildir.mkdir()
    mbox = tmp_path / "inbox.mbox"
    mbox.touch()
    # an external MDA: getmail's own mbox/Maildir writers refuse to run as root (CI containers)
    rc = private_file(
        tmp_path / "getmailrc",
        "[retriever]\n"
        "type = SimplePOP3Retriever\n"
        "server = 127.0.0.1\n"
        f"port = {pobox_server.ports['pop3']}\n"
        f"username = {ADDRESS}\n"
        f"password = {PASSWORD}\n"
        "\n[destination]\n"
        "type = MDA_external\n"
        "path = /bin/sh\n"
        f'arguments = ("-c", "cat >> {mbox}")\n'
        "allow_root_commands = true\n"
        "\n[options]\n"
        "delete = false\n"
        "read_all = false\n"
        "verbose = 0\n",
    )
    cmd = [getmail, "--getmaildir", str(maildir), "--rcfile", str(rc)]
    first = run(cmd)
    assert first.returncode == 0, first.stdout + first.stderr

    def subjects() -> list[str]:
        return [line for line in mbox.read_text().splitlines() if line.startswith("Subject:")]

    assert subjects() == ["Subject: message 1", "Subject: message 2"]
    deliver(pobox_server, 3)
    second = run(cmd)
    assert second.returncode == 0, second.stdout + second.stderr
    assert subjects() == ["Subject: message 1", "Subject: message 2", "Subject: message 3"]
    assert inbox_count(pobox_server) == 3  # delete = false: all still on the server


# curl --------------------------------------------------------------------------------------------
def test_curl_list_retr_top_uidl(pobox_server: ServerProcess) -> None:
    curl = program("curl")
    deliver(pobox_server, 1, 2)
    url = f"pop3://127.0.0.1:{pobox_server.ports['pop3']}/"
    base = [curl, "-sS", "--max-time", "60", "-u", f"{ADDRESS}:{PASSWORD}"]

    listing = run([*base, url])
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["1", "2"]

    retr = run([*base, url + "2"])
    assert retr.returncode == 0, retr.stderr
    assert "Subject: message 2" in retr.stdout and "body of message 2" in retr.stdout

    top = run([*base, "-X", "TOP 1 0", url])
    assert top.returncode == 0, top.stderr
    assert "Subject: message 1" in top.stdout and "body of message" not in top.stdout

    uidl = run([*base, "-X", "UIDL", url])
    assert uidl.returncode == 0, uidl.stderr
    uidls = [line.split() for line in uidl.stdout.splitlines()]
    assert [u[0] for u in uidls] == ["1", "2"] and all(len(u[1]) == 16 for u in uidls)

    dele = run([*base, "-X", "DELE 1", "-I", url])
    assert dele.returncode == 0, dele.stderr
    assert inbox_count(pobox_server) == 1
