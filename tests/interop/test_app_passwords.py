"""App passwords through real clients against `pobox serve` (docs/app-passwords.md).

Two people on one account, each with an app password of their own, in two imaplib sessions;
the owner keeps using the main password. One app password is revoked with the CLI in the middle:
a new login with it fails at once, its live session is told ``* BYE [EXPIRED]`` (at once while
it waits, in IDLE or not) and its next command fails, and the other sessions go on. The same
with poplib (``-ERR [AUTH]``) and submission (``421``). Run with two workers on SQLite, and on
two nodes sharing one PostgreSQL store, with the revoked session on the node that did not run
the CLI.
"""

from __future__ import annotations

import imaplib
import poplib
import re
import smtplib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers.postgres import session_database
from tests.helpers.servers import ServerProcess, postgres_nodes, server_process

pytestmark = pytest.mark.interop

OWNER = "family@localhost"
MAIN = "the family password"
# no failure delays; AUTH on the plain submission port (these tests are not about TLS)
AUTH = "\n[auth]\npenalty_max = 0.0\nmax_failures = 1000\n[tls]\nallow_plaintext_auth = true\n"
_PASSWORD = re.compile(rb"\b[a-z0-9]{4}(?:-[a-z0-9]{4}){3}\b")


def _add(server: ServerProcess, label: str) -> str:
    out = server.cli("user", "login", "add", OWNER, "--label", label).stdout
    found = _PASSWORD.search(out)
    assert found is not None, out
    return found.group().decode()


def _imap(server: ServerProcess, password: str) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=60)
    client.login(OWNER, password)
    assert client.select("INBOX")[0] == "OK"
    return client


def _imap_login_ok(server: ServerProcess, password: str) -> bool:
    client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=60)
    try:
        client.login(OWNER, password)
    except imaplib.IMAP4.error:
        return False
    finally:
        client.logout()
    return True


def _wait_for_log(server: ServerProcess, text: str) -> None:
    """Until the server logs *text* (the revocation reached the worker): a wait for an event,
    bounded so that a missing event fails the test."""
    for _ in range(600):
        if text in server.log.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise AssertionError(f"the server never logged {text!r}: {server.log.read_text()}")


@pytest.fixture(params=["sqlite-2-workers", "postgres-2-nodes"])
def servers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[ServerProcess]]:
    """[where the CLI runs, where the sessions are]: the same server with two workers, or two
    nodes on one PostgreSQL store."""
    if request.param == "sqlite-2-workers":
        with server_process(tmp_path, {OWNER: MAIN}, extra_config=AUTH, workers=2) as server:
            yield [server, server]
        return
    database = session_database()
    schema, dsn = database.new_schema()
    try:
        with postgres_nodes(tmp_path, dsn, {OWNER: MAIN}, AUTH) as nodes:
            yield nodes
    finally:
        database.drop_schema(schema)


def test_two_people_one_revoked_in_the_middle_over_imap(servers: list[ServerProcess]) -> None:
    admin, server = servers
    anna = _add(admin, "Anna's phone")
    ben = _add(admin, "Ben's laptop")
    anna_session = _imap(server, anna)
    ben_session = _imap(server, ben)
    owner_session = _imap(server, MAIN)
    for client in (anna_session, ben_session, owner_session):
        assert client.noop()[0] == "OK"

    deleted = admin.cli("user", "login", "del", OWNER, "Anna's phone").stdout.decode()
    assert 'revoked the app password "Anna\'s phone"' in deleted
    assert not _imap_login_ok(server, anna)  # refused at once, everywhere
    _wait_for_log(server, "app password revoked")

    with pytest.raises(imaplib.IMAP4.abort, match="revoked"):
        anna_session.noop()  # * BYE [EXPIRED] …, and the connection is closed
    anna_session.shutdown()
    assert ben_session.noop()[0] == "OK"
    assert ben_session.select("INBOX")[0] == "OK"
    assert owner_session.noop()[0] == "OK"
    assert _imap_login_ok(server, ben) and _imap_login_ok(server, MAIN)
    ben_session.logout()
    owner_session.logout()

    # the session log names the credential of each session, and why Anna's ended
    _wait_for_log(server, 'login="Ben\'s laptop"')
    log = server.log.read_text(errors="replace")
    assert re.search(
        r"event=session proto=imap user=family@localhost login=\"Anna's phone\""
        r" [^\n]* end=revoked",
        log,
    ), log
    assert MAIN not in log and anna not in log and ben not in log  # never a password

    listing = admin.cli("user", "login", "list", OWNER).stdout.decode()
    assert "Anna's phone" not in listing
    (line,) = [x for x in listing.splitlines() if x.startswith("Ben's laptop")]
    assert "never" not in line and "127.0.0.1" in line


def test_a_pop3_session_ends_at_its_next_command_when_revoked(
    servers: list[ServerProcess],
) -> None:
    admin, server = servers
    anna = _add(admin, "Anna")
    ben = _add(admin, "Ben")
    pop = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=60)
    pop.user(OWNER)
    pop.pass_(anna.replace("-", " ").upper())  # as typed on a phone: still her app password
    assert pop.stat() == (0, 0)
    ben_session = _imap(server, ben)

    admin.cli("user", "login", "del", OWNER, "Anna")
    _wait_for_log(server, "app password revoked")
    with pytest.raises(poplib.error_proto) as refused:
        pop.stat()
    assert refused.value.args[0] == b"-ERR [AUTH] this app password was revoked; nothing deleted"
    pop.close()
    assert ben_session.noop()[0] == "OK"
    ben_session.logout()
    again = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=60)
    again.user(OWNER)
    with pytest.raises(poplib.error_proto) as failed:
        again.pass_(anna)
    assert failed.value.args[0].startswith(b"-ERR [AUTH]")
    again.close()
    _wait_for_log(server, "end=revoked")
    log = server.log.read_text(errors="replace")
    assert re.search(
        r"event=session proto=pop3 user=family@localhost login=Anna [^\n]* end=revoked", log
    ), log


def test_submission_refuses_a_revoked_session(servers: list[ServerProcess]) -> None:
    admin, server = servers
    anna = _add(admin, "Anna")
    smtp = smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=60)
    smtp.ehlo("anna-phone")
    assert smtp.login(OWNER, anna)[0] == 235
    assert smtp.mail(OWNER)[0] == 250
    smtp.rset()

    admin.cli("user", "login", "del", OWNER, "Anna")
    _wait_for_log(server, "app password revoked")
    code, text = smtp.mail(OWNER)
    assert code == 421 and b"revoked" in text
    smtp.close()
    refused = smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=60)
    refused.ehlo("anna-phone")
    with pytest.raises(smtplib.SMTPAuthenticationError):
        refused.login(OWNER, anna)
    refused.close()
    _wait_for_log(server, "end=revoked")
    log = server.log.read_text(errors="replace")
    assert re.search(
        r"event=session proto=submission [^\n]* user=family@localhost login=Anna [^\n]*"
        r" end=revoked",
        log,
    ), log


def test_an_idle_session_is_told_at_once(servers: list[ServerProcess]) -> None:
    admin, server = servers
    anna = _add(admin, "Anna")
    with socket.create_connection(("127.0.0.1", server.ports["imap"]), timeout=60) as sock:
        stream = sock.makefile("rwb")
        assert stream.readline().startswith(b"* OK")
        stream.write(f'a1 LOGIN {OWNER} "{anna}"\r\n'.encode())
        stream.write(b"a2 SELECT INBOX\r\na3 IDLE\r\n")
        stream.flush()
        lines = []
        while not lines or not lines[-1].startswith(b"+ "):
            lines.append(stream.readline())
        admin.cli("user", "login", "del", OWNER, "Anna")
        rest = stream.read()  # until the server closes the connection
        assert rest == b"* BYE [EXPIRED] this app password was revoked\r\n", rest
