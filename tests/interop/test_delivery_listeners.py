"""SMTP and LMTP with Python's smtplib against a real `pobox serve`, and `pobox deliver`."""

from __future__ import annotations

import smtplib

import pytest
from tests.helpers.servers import ServerProcess, server_process

MESSAGE = b"From: a@example.org\r\nTo: demo@localhost\r\nSubject: hi\r\n\r\nhello\r\n"
BIG = MESSAGE + (b"x" * 70 + b"\r\n") * 150


def _inbox_count(server: ServerProcess, address: str = "demo@localhost") -> int:
    out = server.cli("mailbox", "list", address).stdout.decode()
    for line in out.splitlines():
        if line.startswith("INBOX"):
            return int(line.split()[1])
    raise AssertionError(out)


@pytest.mark.interop
def test_smtp_and_lmtp_deliveries_show_in_mailbox_list(pobox_server: ServerProcess) -> None:
    with smtplib.SMTP("127.0.0.1", pobox_server.ports["smtp"], timeout=30) as smtp:
        code, caps = smtp.ehlo("client.test")
        assert code == 250 and b"SIZE 52428800" in caps
        assert smtp.sendmail("a@example.org", ["demo@localhost"], MESSAGE) == {}
    with smtplib.LMTP("127.0.0.1", pobox_server.ports["lmtp"], timeout=30) as lmtp:
        assert lmtp.sendmail("a@example.org", ["demo@localhost"], MESSAGE) == {}
    assert _inbox_count(pobox_server) == 2


@pytest.mark.interop
def test_unknown_recipient_is_refused_at_rcpt(pobox_server: ServerProcess) -> None:
    with smtplib.SMTP("127.0.0.1", pobox_server.ports["smtp"], timeout=30) as smtp:
        smtp.ehlo()
        smtp.mail("a@example.org")
        code, text = smtp.rcpt("nobody@localhost")
        assert code == 550 and b"5.1.1" in text


@pytest.mark.interop
def test_lmtp_answers_once_per_recipient(tmp_path) -> None:  # type: ignore[no-untyped-def]
    users = {"one@localhost": "pw", "two@localhost": "pw"}
    with (
        server_process(tmp_path, users) as server,
        smtplib.LMTP("127.0.0.1", server.ports["lmtp"], timeout=30) as lmtp,
    ):
        lmtp.ehlo("client.test")
        lmtp.mail("a@example.org")
        assert lmtp.rcpt("one@localhost")[0] == 250
        assert lmtp.rcpt("nobody@localhost")[0] == 550
        assert lmtp.rcpt("two@localhost")[0] == 250
        lmtp.putcmd("data")
        assert lmtp.getreply()[0] == 354
        lmtp.send(MESSAGE + b".\r\n")
        replies = [lmtp.getreply(), lmtp.getreply()]
        assert [code for code, _ in replies] == [250, 250]
        assert b"one@localhost" in replies[0][1] and b"two@localhost" in replies[1][1]
        assert _inbox_count(server, "one@localhost") == 1
        assert _inbox_count(server, "two@localhost") == 1


@pytest.mark.interop
def test_size_limit_is_advertised_and_enforced(tmp_path) -> None:  # type: ignore[no-untyped-def]
    extra = "\n[delivery]\nmax_message_size = 4096\n"
    with (
        server_process(tmp_path, {"demo@localhost": "demo"}, extra) as server,
        smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp,
    ):
        code, caps = smtp.ehlo()
        assert b"SIZE 4096" in caps
        # announced with SIZE=: refused at MAIL FROM (RFC 1870)
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            smtp.sendmail("a@example.org", ["demo@localhost"], BIG)
        assert refused.value.smtp_code == 552
        smtp.rset()
        # not announced: refused after DATA
        smtp.mail("a@example.org")
        smtp.rcpt("demo@localhost")
        code, _ = smtp.data(BIG)
        assert code == 552
        assert smtp.sendmail("a@example.org", ["demo@localhost"], MESSAGE) == {}
        assert _inbox_count(server) == 1


@pytest.mark.interop
def test_pobox_deliver_reads_stdin(pobox_server: ServerProcess) -> None:
    result = pobox_server.cli(
        "deliver",
        "demo@localhost",
        "--from",
        "x@example.org",
        stdin=b"Subject: local\n\nvia stdin\n",
    )
    assert result.returncode == 0
    unknown = pobox_server.cli("deliver", "nobody@localhost", stdin=MESSAGE, check=False)
    assert unknown.returncode == 67  # EX_NOUSER
    assert b"no such user" in unknown.stderr
    assert _inbox_count(pobox_server) == 1


@pytest.mark.interop
def test_sigterm_stops_the_server_cleanly(pobox_server: ServerProcess) -> None:
    with smtplib.LMTP("127.0.0.1", pobox_server.ports["lmtp"], timeout=30) as lmtp:
        assert lmtp.sendmail("a@example.org", ["demo@localhost"], MESSAGE) == {}
    assert pobox_server.stop() == 0
    assert "shutting down" in pobox_server.log.read_text()
    assert _inbox_count(pobox_server) == 1


@pytest.mark.interop
def test_two_workers_share_one_store(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with server_process(tmp_path, {"demo@localhost": "demo"}, workers=2) as server:
        for _ in range(20):  # SO_REUSEPORT spreads the connections over both workers
            with smtplib.LMTP("127.0.0.1", server.ports["lmtp"], timeout=30) as lmtp:
                assert lmtp.sendmail("a@example.org", ["demo@localhost"], MESSAGE) == {}
        assert _inbox_count(server) == 20
        workers = {
            line.split()[2]
            for line in server.log.read_text().splitlines()
            if "event=delivery" in line and "result=delivered" in line
        }
        assert workers <= {"w0", "w1"} and workers


@pytest.mark.interop
def test_data_transparency_and_long_lines(pobox_server: ServerProcess) -> None:
    """RFC 5321 §4.5.2: dot-stuffed lines arrive unstuffed; a lone '.' line inside the body,
    a body that is only '.' lines, and lines over 1000 octets survive byte for byte."""
    bodies = [
        b"Subject: dots\r\n\r\n.\r\n..\r\n.x\r\nend.\r\n.\r\n",
        b"Subject: long\r\n\r\n" + b"y" * 1500 + b"\r\nshort\r\n",
        b"Subject: empty body\r\n\r\n",
    ]
    with smtplib.LMTP("127.0.0.1", pobox_server.ports["lmtp"], timeout=30) as lmtp:
        for body in bodies:
            assert lmtp.sendmail("a@example.org", ["demo@localhost"], body) == {}
        # several transactions pipelined on one connection keep working
        lmtp.rset()
        assert lmtp.noop()[0] == 250
    import poplib

    pop = poplib.POP3("127.0.0.1", pobox_server.ports["pop3"], timeout=30)
    try:
        pop.user("demo@localhost")
        pop.pass_("demo")
        for number, body in enumerate(bodies, 1):
            lines = pop.retr(number)[1]
            stored = b"\r\n".join(lines) + b"\r\n"
            assert stored.endswith(body), (number, stored[-80:])
    finally:
        pop.quit()
