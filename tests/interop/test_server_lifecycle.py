"""A real `pobox serve` through its life: SIGHUP reloads the configuration, SIGTERM drains the
sessions, and the log holds one line per session and per delivery (docs/configuration.md,
docs/deployment.md)."""

from __future__ import annotations

import imaplib
import json
import os
import poplib
import signal
import smtplib
import socket
import time
from pathlib import Path

import pytest
from tests.helpers.servers import ServerProcess, free_port, server_process

pytestmark = pytest.mark.interop

PASSWORD = "s3cret-Pa55word"
USERS = {"demo@localhost": PASSWORD}
MESSAGE = b"From: a@example.org\r\nTo: demo@localhost\r\nSubject: hi\r\n\r\nhello\r\n"


def _wait_log(server: ServerProcess, text: str, count: int = 1, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = server.log.read_text(errors="replace")
        if log.count(text) >= count:
            return log
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not logged {count} time(s):\n{server.log.read_text()}")


def _hup(server: ServerProcess) -> None:
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGHUP)


def _greeting(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        return sock.makefile("rb").readline()


def _inbox_count(server: ServerProcess) -> int:
    listing = json.loads(server.cli("mailbox", "list", "demo@localhost", "--json").stdout)
    return next(int(m["messages"]) for m in listing if m["mailbox"] == "INBOX")


# -- SIGHUP -------------------------------------------------------------------------------------
def test_sighup_applies_new_settings_and_keeps_those_that_need_a_restart(tmp_path: Path) -> None:
    with server_process(tmp_path, USERS) as server:
        original = server.config.read_text()
        moved = free_port()
        changed = original.replace(f"port = {server.ports['imap']}", f"port = {moved}")
        server.config.write_text(changed + "\n[limits]\nmax_connections_per_ip = 1\n")
        _hup(server)
        log = _wait_log(server, "configuration reloaded")
        assert "imap.port changed" in log and "needs a restart" in log
        # the new limit is in force; the IMAP listener stays where it was
        with socket.create_connection(("127.0.0.1", server.ports["imap"]), timeout=30) as first:
            assert first.makefile("rb").readline().startswith(b"* OK")
            assert _greeting(server.ports["imap"]).startswith(b"* BYE [UNAVAILABLE]")
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", moved), timeout=5).close()

        # a file with an error is refused as a whole, naming the key; the old settings stay
        server.config.write_text(
            original + '\n[limits]\nmax_connections_per_ip = "many"\n\n[auth]\nmax_failures = 1\n'
        )
        _hup(server)
        log = _wait_log(server, "configuration reload refused")
        assert "limits.max_connections_per_ip" in log
        with socket.create_connection(("127.0.0.1", server.ports["imap"]), timeout=30) as first:
            assert first.makefile("rb").readline().startswith(b"* OK")
            assert _greeting(server.ports["imap"]).startswith(b"* BYE [UNAVAILABLE]")

        # back to no per-address limit, and JSON lines from now on
        server.config.write_text(original + '\n[server]\nlog_format = "json"\n')
        _hup(server)
        _wait_log(server, '"message": "configuration reloaded', 1)
        with socket.create_connection(("127.0.0.1", server.ports["imap"]), timeout=30) as first:
            assert first.makefile("rb").readline().startswith(b"* OK")
            assert _greeting(server.ports["imap"]).startswith(b"* OK")


def test_sighup_reaches_every_worker(tmp_path: Path) -> None:
    with server_process(tmp_path, USERS, workers=2) as server:
        server.config.write_text(server.config.read_text() + "\n[auth]\nmax_failures = 3\n")
        _hup(server)
        log = _wait_log(server, "configuration reloaded", count=2)
        workers = {line.split()[2] for line in log.splitlines() if "configuration reloaded" in line}
        assert workers == {"w0", "w1"}


# -- SIGTERM ------------------------------------------------------------------------------------
def test_sigterm_says_goodbye_and_finishes_the_delivery_under_way(tmp_path: Path) -> None:
    with server_process(tmp_path, USERS) as server:
        with smtplib.LMTP("127.0.0.1", server.ports["lmtp"], timeout=30) as lmtp:
            assert lmtp.sendmail("a@example.org", ["demo@localhost"], MESSAGE) == {}

        imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
        imap.login("demo@localhost", PASSWORD)
        imap.select("INBOX")
        pop = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=30)
        pop.user("demo@localhost")
        pop.pass_(PASSWORD)
        assert pop.dele(1).startswith(b"+OK")  # marked; only QUIT would commit it
        smtp = smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30)
        smtp.ehlo("client.test")
        lmtp = smtplib.LMTP("127.0.0.1", server.ports["lmtp"], timeout=30)
        lmtp.ehlo("client.test")
        lmtp.mail("b@example.org")
        assert lmtp.rcpt("demo@localhost")[0] == 250
        lmtp.putcmd("data")
        assert lmtp.getreply()[0] == 354
        lmtp.send(b"From: b@example.org\r\nSubject: in flight\r\n\r\nfirst half\r\n")

        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGTERM)
        # RFC 9051 §7.1.5: an untagged BYE, then the connection closes
        assert imap.readline().startswith(b"* BYE Server shutting down")
        assert imap.readline() == b""
        assert pop._getline()[0].startswith(b"-ERR [SYS/TEMP] server shutting down")
        assert smtp.getreply()[0] == 421
        # the message in the middle of DATA is taken, stored and acknowledged
        lmtp.send(b"second half\r\n.\r\n")
        code, text = lmtp.getreply()
        assert code == 250, text
        code, text = lmtp.getreply()  # then the session ends: 421 4.3.2
        assert code == 421 and text.startswith(b"4.3.2"), text
        assert server.proc.wait(60) == 0
        for client in (pop, smtp, lmtp):
            client.close()
        imap.shutdown()

        log = server.log.read_text()
        assert "end=shutdown" in log
        # the POP3 deletion was not committed; the late delivery was
        assert _inbox_count(server) == 2


def test_sigterm_cuts_off_sessions_after_the_grace_period(tmp_path: Path) -> None:
    with server_process(tmp_path, USERS, "\n[server]\nshutdown_grace = 0.5\n") as server:
        lmtp = smtplib.LMTP("127.0.0.1", server.ports["lmtp"], timeout=30)
        lmtp.ehlo("client.test")
        lmtp.mail("b@example.org")
        lmtp.rcpt("demo@localhost")
        lmtp.putcmd("data")
        assert lmtp.getreply()[0] == 354
        lmtp.send(b"Subject: never finished\r\n\r\n")
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGTERM)
        assert server.proc.wait(60) == 0
        with pytest.raises(smtplib.SMTPServerDisconnected):
            lmtp.getreply()
        lmtp.close()
        assert "still open after shutdown_grace" in server.log.read_text()
        assert _inbox_count(server) == 0  # never acknowledged, never stored


# -- the log ------------------------------------------------------------------------------------
def _traffic(server: ServerProcess) -> None:
    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    imap.login("demo@localhost", PASSWORD)
    imap.select("INBOX")
    imap.logout()
    with smtplib.LMTP("127.0.0.1", server.ports["lmtp"], timeout=30) as lmtp:
        assert lmtp.sendmail("a@example.org", ["demo@localhost"], MESSAGE) == {}
    pop = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=30)
    pop.user("demo@localhost")
    pop.pass_(PASSWORD)
    pop.retr(1)
    pop.quit()


def _facts(line: str) -> dict[str, str]:
    message = line.split(": ", 1)[1]
    return dict(pair.split("=", 1) for pair in message.split())


def test_one_key_value_line_per_session_and_delivery(tmp_path: Path) -> None:
    with server_process(tmp_path, USERS) as server:
        _traffic(server)
        log = _wait_log(server, "event=session proto=pop3")
    lines = [_facts(line) for line in log.splitlines() if ": event=" in line]
    imap = next(f for f in lines if f["event"] == "session" and f["proto"] == "imap")
    assert imap["user"] == "demo@localhost" and imap["ip"] == "127.0.0.1"
    assert imap["end"] == "logout" and int(imap["commands"]) >= 3
    assert int(imap["in"]) > 0 and int(imap["out"]) > 0 and float(imap["duration"]) >= 0
    delivery = next(f for f in lines if f["event"] == "delivery")
    assert delivery["proto"] == "lmtp" and delivery["result"] == "delivered"
    assert delivery["from"] == "a@example.org" and delivery["to"] == "demo@localhost"
    assert int(delivery["size"]) == len(MESSAGE) and int(delivery["ms"]) >= 0
    lmtp = next(f for f in lines if f["event"] == "session" and f["proto"] == "lmtp")
    assert lmtp["end"] == "quit" and lmtp["transactions"] == "1"
    pop3 = next(f for f in lines if f["event"] == "session" and f["proto"] == "pop3")
    assert pop3["user"] == "demo@localhost" and pop3["end"] == "quit"
    assert int(pop3["out"]) > len(MESSAGE) and pop3["retr"] == "1"
    assert PASSWORD not in log and "hello" not in log


def test_json_lines_carry_the_same_facts(tmp_path: Path) -> None:
    with server_process(tmp_path, USERS, '\n[server]\nlog_format = "json"\n') as server:
        _traffic(server)
        log = _wait_log(server, '"proto": "pop3"')
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    imap = next(e for e in events if e.get("event") == "session" and e["proto"] == "imap")
    assert imap["user"] == "demo@localhost" and imap["end"] == "logout"
    assert isinstance(imap["commands"], int) and imap["in"] > 0 and imap["tls"] is False
    delivery = next(e for e in events if e.get("event") == "delivery")
    assert delivery["result"] == "delivered" and delivery["size"] == len(MESSAGE)
    assert PASSWORD not in log
