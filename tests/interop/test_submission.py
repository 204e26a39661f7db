"""Mail submission (RFC 6409, RFC 8314) with real clients against a real `pobox serve`.

swaks (AUTH over STARTTLS and over implicit TLS), Python's smtplib and msmtp send as an
account; a wrong password is 535 and counts towards the same blocks as IMAP; a forged envelope
sender or From is 553 5.7.1; relaying without AUTH is refused, also from 127.0.0.2; AUTH is not
offered before TLS. Debian's swaks and msmtp are in TEST_DEBS: a missing one fails, never skips.
"""

from __future__ import annotations

import asyncio
import imaplib
import os
import signal
import smtplib
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers.servers import ServerProcess, free_port, imap_login, server_process

from pobox.net.tls import generate_certificate
from pobox.store.api import QueuedMessage
from pobox.store.factory import create_store

ACCOUNT = "demo@localhost"
PASSWORD = "demo"
OTHER = "other@localhost"
TIMEOUT = 30

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path, _key = generate_certificate(tmp_path_factory.mktemp("certs"))
    return path


def _config(cert: Path, extra: str = "") -> str:
    """TLS with *cert*, free ports for IMAPS and POP3S, and a smarthost that refuses
    connections (a closed port): what is queued stays queued, to be retried."""
    return (
        f'\n[tls]\ncert = "{cert}"\nkey = "{cert.with_name("key.pem")}"\n'
        f"[imaps]\nport = {free_port()}\n[pop3s]\nport = {free_port()}\n"
        f'[relay]\nhost = "127.0.0.1"\nport = {free_port()}\ntls = "none"\n' + extra
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, cert: Path) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("submission")
    users = {ACCOUNT: PASSWORD, OTHER: "secret"}
    with server_process(tmp, users, _config(cert)) as running:
        running.cli("alias", "add", "sales@localhost", ACCOUNT)
        yield running


def _context(cert: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cert))
    return context


def _message(sender: str, to: str, subject: str, extra: str = "") -> bytes:
    return (
        f"From: Demo <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n{extra}\r\nbody\r\n"
    ).encode()


def _fetch(server: ServerProcess, user: str, password: str, subject: str) -> bytes:
    """The message with *subject* in *user*'s INBOX (IMAP)."""
    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=TIMEOUT)
    try:
        imap.login(user, password)
        imap.select("INBOX")
        status, found = imap.search(None, "SUBJECT", f'"{subject}"')
        assert status == "OK" and found[0], (subject, found)
        numbers = found[0].split()
        assert len(numbers) == 1, f"{subject!r} delivered {len(numbers)} times"
        status, data = imap.fetch(numbers[0], "(BODY.PEEK[])")
        item = data[0]
        assert isinstance(item, tuple)
        return item[1]
    finally:
        imap.logout()


def test_smtplib_starttls_auth_delivers_locally(server: ServerProcess, cert: Path) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=TIMEOUT) as smtp:
        smtp.ehlo("client.test")
        assert smtp.has_extn("starttls")
        assert not smtp.has_extn("auth")  # not before TLS
        smtp.starttls(context=_context(cert))
        smtp.ehlo("client.test")
        assert smtp.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
        assert not smtp.has_extn("starttls")
        assert smtp.login(ACCOUNT, PASSWORD)[0] == 235
        refused = smtp.sendmail(ACCOUNT, [OTHER], _message(ACCOUNT, OTHER, "smtplib starttls"))
        assert refused == {}
    stored = _fetch(server, OTHER, "secret", "smtplib starttls")
    head = stored.split(b"\r\n\r\n", 1)[0]
    # Date and Message-ID were added (the message had neither), with the configured hostname
    assert b"\r\nDate: " in head
    assert b"\r\nMessage-ID: <" in head and b"@localhost>" in head


def test_smtplib_implicit_tls_with_login_mechanism(server: ServerProcess, cert: Path) -> None:
    port = server.ports["submissions"]
    with smtplib.SMTP_SSL("127.0.0.1", port, context=_context(cert), timeout=TIMEOUT) as smtp:
        smtp.ehlo("client.test")
        assert not smtp.has_extn("starttls")
        smtp.user, smtp.password = ACCOUNT, PASSWORD
        code, _ = smtp.auth("LOGIN", smtp.auth_login, initial_response_ok=False)
        assert code == 235
        message = _message(
            "sales@localhost", OTHER, "implicit alias", "Message-ID: <kept@client.test>\r\n"
        )
        assert smtp.sendmail("sales@localhost", [OTHER], message) == {}
    stored = _fetch(server, OTHER, "secret", "implicit alias")
    assert stored.count(b"Message-ID:") == 1 and b"<kept@client.test>" in stored


def _swaks(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["swaks", "--timeout", "30", "--helo", "client.test", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("mode", ["--tls", "--tls-on-connect"])
def test_swaks_auth_over_tls(server: ServerProcess, mode: str) -> None:
    port = server.ports["submission" if mode == "--tls" else "submissions"]
    subject = f"swaks {mode}"
    result = _swaks(
        "--server",
        f"127.0.0.1:{port}",
        mode,
        "--auth",
        "PLAIN",
        "--auth-user",
        ACCOUNT,
        "--auth-password",
        PASSWORD,
        "--from",
        ACCOUNT,
        "--to",
        OTHER,
        "--header",
        f"Subject: {subject}",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "235 2.7.0" in result.stdout
    _fetch(server, OTHER, "secret", subject)


def test_msmtp_starttls(server: ServerProcess, cert: Path, tmp_path: Path) -> None:
    rc = tmp_path / "msmtprc"
    rc.write_text(
        "account pobox\n"
        "host 127.0.0.1\n"
        f"port {server.ports['submission']}\n"
        "tls on\n"
        "tls_starttls on\n"
        f"tls_trust_file {cert}\n"
        "auth on\n"
        f"user {ACCOUNT}\n"
        f"password {PASSWORD}\n"
        f"from {ACCOUNT}\n"
        "account default : pobox\n"
    )
    rc.chmod(0o600)
    message = _message(ACCOUNT, OTHER, "msmtp starttls")
    result = subprocess.run(
        ["msmtp", "-C", str(rc), OTHER],
        input=message,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    _fetch(server, OTHER, "secret", "msmtp starttls")


def test_auth_is_refused_before_tls(server: ServerProcess) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=TIMEOUT) as smtp:
        smtp.ehlo("client.test")
        code, text = smtp.docmd("AUTH", "PLAIN AGRlbW9AbG9jYWxob3N0AGRlbW8=")
        assert (code, text[:6]) == (538, b"5.7.11")


@pytest.mark.parametrize("source", ["127.0.0.1", "127.0.0.2"])
def test_relay_without_auth_is_refused(server: ServerProcess, cert: Path, source: str) -> None:
    with smtplib.SMTP(
        "127.0.0.1", server.ports["submission"], timeout=TIMEOUT, source_address=(source, 0)
    ) as smtp:
        smtp.ehlo("client.test")
        code, text = smtp.mail("someone@example.org")
        assert (code, text[:5]) == (530, b"5.7.0")
        code, text = smtp.rcpt("victim@elsewhere.example")
        assert code == 530
        # also after STARTTLS, without AUTH
        smtp.starttls(context=_context(cert))
        smtp.ehlo("client.test")
        code, text = smtp.mail(ACCOUNT)
        assert (code, text[:5]) == (530, b"5.7.0")


def test_wrong_password_is_535_and_counts_like_imap(tmp_path: Path, cert: Path) -> None:
    """The same authentication routine as IMAP: 535 5.7.8 for a wrong password, then the
    address is blocked for IMAP as well (and submission answers 454 4.7.0)."""
    metrics_port = free_port()
    extra = _config(
        cert,
        "\n[auth]\nmax_failures = 3\npenalty_max = 0.0\n"
        f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n',
    )
    with server_process(tmp_path, {ACCOUNT: PASSWORD}, extra) as server:
        port = server.ports["submissions"]
        for _ in range(3):
            with smtplib.SMTP_SSL(
                "127.0.0.1", port, context=_context(cert), timeout=TIMEOUT
            ) as smtp:
                smtp.ehlo("client.test")
                smtp.user, smtp.password = ACCOUNT, "wrong"
                with pytest.raises(smtplib.SMTPAuthenticationError) as failed:
                    smtp.auth("PLAIN", smtp.auth_plain)  # one attempt (login() makes two)
                assert failed.value.smtp_code == 535
                assert failed.value.smtp_error.startswith(b"5.7.8")
        # the address is blocked now: IMAP says so, and so does submission
        assert "UNAVAILABLE" in imap_login(server.ports["imap"], ACCOUNT, PASSWORD)
        with smtplib.SMTP_SSL("127.0.0.1", port, context=_context(cert), timeout=TIMEOUT) as smtp:
            smtp.ehlo("client.test")
            code, text = smtp.docmd("AUTH", "PLAIN AGRlbW9AbG9jYWxob3N0AGRlbW8=")
            assert (code, text[:5]) == (454, b"4.7.0")
        # counted as submission logins in the metrics
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            exposition = response.read().decode()
        counts = {
            line.split("{")[1].split("}")[0]: float(line.rsplit(" ", 1)[1])
            for line in exposition.splitlines()
            if line.startswith("pobox_logins_total{") and 'protocol="submission"' in line
        }
        assert sum(v for k, v in counts.items() if 'result="failed"' in k) == 3, counts
        assert sum(v for k, v in counts.items() if 'result="blocked"' in k) == 1, counts
        log = server.log.read_text()
        assert "authentication failed" in log
        lines = [line for line in log.splitlines() if "event=session" in line]
        assert any("proto=submission" in line for line in lines)


def _login(server: ServerProcess, cert: Path) -> smtplib.SMTP:
    smtp = smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=TIMEOUT)
    smtp.ehlo("client.test")
    smtp.starttls(context=_context(cert))
    smtp.ehlo("client.test")
    smtp.login(ACCOUNT, PASSWORD)
    return smtp


def test_forged_envelope_sender_is_553(server: ServerProcess, cert: Path) -> None:
    with _login(server, cert) as smtp:
        for forged in ("boss@localhost", OTHER, "ceo@example.org", ""):
            code, text = smtp.mail(forged)
            assert (code, text[:5]) == (553, b"5.7.1"), (forged, code, text)
        assert smtp.mail("Demo@LOCALHOST")[0] == 250  # the same address, spelt differently
        smtp.rset()
        assert smtp.mail("sales@localhost")[0] == 250  # an alias


def test_forged_from_header_is_553(server: ServerProcess, cert: Path) -> None:
    with _login(server, cert) as smtp:
        for header in (f"From: <{OTHER}>", f"From: <{ACCOUNT}>, <ceo@example.org>"):
            message = f"{header}\r\nTo: <{OTHER}>\r\nSubject: forged\r\n\r\nhi\r\n".encode()
            with pytest.raises(smtplib.SMTPDataError) as refused:
                smtp.sendmail(ACCOUNT, [OTHER], message)
            assert refused.value.smtp_code == 553
            assert refused.value.smtp_error.startswith(b"5.7.1")
        message = f"To: <{OTHER}>\r\nSubject: no from\r\n\r\nhi\r\n".encode()
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail(ACCOUNT, [OTHER], message)
        assert refused.value.smtp_code == 550
    assert "forged" not in _subjects(server)


def _subjects(server: ServerProcess) -> str:
    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=TIMEOUT)
    try:
        imap.login(OTHER, "secret")
        imap.select("INBOX")
        _status, data = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        return repr(data)
    finally:
        imap.logout()


def test_unknown_local_recipient_is_550(server: ServerProcess, cert: Path) -> None:
    with _login(server, cert) as smtp:
        smtp.mail(ACCOUNT)
        code, text = smtp.rcpt("nobody@localhost")
        assert (code, text[:5]) == (550, b"5.1.1")


def test_remote_recipient_is_queued(server: ServerProcess, cert: Path) -> None:
    """A recipient in a domain pobox does not serve goes to the outbound queue: 250 with the
    queue id, and the queue has it (local recipients of the same message are delivered)."""
    with _login(server, cert) as smtp:
        message = _message(ACCOUNT, "friend@remote.example", "to the queue")
        smtp.mail(ACCOUNT)
        assert smtp.rcpt("friend@remote.example")[0] == 250
        assert smtp.rcpt(OTHER)[0] == 250
        code, text = smtp.data(message)
        assert code == 250 and b"queued as " in text, text
    queue_id = text.split(b"queued as ")[1].split()[0].decode()
    _fetch(server, OTHER, "secret", "to the queue")
    queued = asyncio.run(_queued(server.data, queue_id))
    assert queued is not None
    assert queued.sender == ACCOUNT
    assert [r.address for r in queued.recipients] == ["friend@remote.example"]
    assert all(r.state != "delivered" for r in queued.recipients)


async def _queued(data: Path, queue_id: str) -> QueuedMessage | None:
    store = create_store("sqlite", data)
    await store.open()
    try:
        return await store.queue_get(queue_id)
    finally:
        await store.close()


def _submission_certificate(server: ServerProcess, name: str) -> bytes:
    """The certificate a new connection to the *name* listener is shown (STARTTLS on
    submission, implicit TLS on submissions)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if name == "submissions":
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(
            "127.0.0.1", server.ports[name], context=context, timeout=TIMEOUT
        )
    else:
        smtp = smtplib.SMTP("127.0.0.1", server.ports[name], timeout=TIMEOUT)
        smtp.ehlo("client.test")
        smtp.starttls(context=context)
    with smtp:
        sock = smtp.sock
        assert isinstance(sock, ssl.SSLSocket)
        der = sock.getpeercert(binary_form=True)
        assert der is not None
        return der


def test_sighup_reloads_the_certificate(tmp_path: Path) -> None:
    """As for IMAPS and POP3S: a SIGHUP makes new handshakes use the new certificate."""
    certdir = tmp_path / "certs"
    first, _ = generate_certificate(certdir)
    with server_process(tmp_path, {ACCOUNT: PASSWORD}, _config(first)) as server:
        first_der = ssl.PEM_cert_to_DER_cert(first.read_text())
        for name in ("submission", "submissions"):
            assert _submission_certificate(server, name) == first_der
        second, _ = generate_certificate(certdir)  # replaces both files
        second_der = ssl.PEM_cert_to_DER_cert(second.read_text())
        assert second_der != first_der
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 20
        while "TLS certificate reloaded" not in server.log.read_text():
            assert time.monotonic() < deadline, server.log.read_text()
            time.sleep(0.05)
        for name in ("submission", "submissions"):
            assert _submission_certificate(server, name) == second_der
