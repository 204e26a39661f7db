"""TLS against a real `pobox serve`: implicit TLS (IMAPS, POP3S), STARTTLS/STLS, reload on SIGHUP,
and the rule that a password never crosses a connection that is neither TLS nor local.

Clients: imaplib, poplib and smtplib (stdlib ssl), `openssl s_client` and curl (Debian packages
that `make test` installs; a missing one is a failure, not a skip). The test certificate is made
here with the `cryptography` package. The non-loopback checks give this machine one more local
address on a veth pair (`ip link`, as root); the interface is removed afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import imaplib
import os
import poplib
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers.servers import LISTENERS, ServerProcess, free_port, pobox, wait_port

from pobox.config import TlsConfig, load_config
from pobox.errors import ConfigError
from pobox.net.tls import TlsManager, certificate_paths, generate_certificate, is_loopback

ADDRESS = "demo@localhost"
PASSWORD = "demo"
TIMEOUT = 30


# -- helpers ------------------------------------------------------------------------------------
def program(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} is not installed (make test installs it from Debian)"
    return path


def client_context(cafile: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cafile))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def der(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


def write_config(
    path: Path,
    data: Path,
    ports: dict[str, int],
    *,
    cert: Path | None,
    listen: str = "127.0.0.1",
    extra: str = "",
) -> Path:
    lines = [f'data_dir = "{data}"', ""]
    for name, port in ports.items():
        lines += [f"[{name}]", f"port = {port}"]
        if name in ("imap", "pop3", "imaps", "pop3s"):
            lines.append(f'listen = "{listen}"')
        lines.append("")
    if cert is not None:
        lines += ["[tls]", f'cert = "{cert}"', f'key = "{cert.with_name("key.pem")}"', ""]
    path.write_text("\n".join(lines) + extra)
    return path


@contextlib.contextmanager
def tls_server(
    tmp: Path, *, cert: Path | None, listen: str = "127.0.0.1", extra: str = ""
) -> Iterator[ServerProcess]:
    data = tmp / "data"
    ports = {name: free_port() for name in (*LISTENERS, "imaps", "pop3s")}
    config = write_config(tmp / "pobox.toml", data, ports, cert=cert, listen=listen, extra=extra)
    server = ServerProcess(data, config, ports, tmp / "server.log")
    server.cli("user", "add", ADDRESS, "--password-stdin", stdin=PASSWORD.encode() + b"\n")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def wait_log(server: ServerProcess, text: str, count: int = 1, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.log.read_text(errors="replace").count(text) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not logged: {server.log.read_text()}")


class Lines:
    """A line-oriented client over a socket that can switch to TLS in the middle."""

    def __init__(self, host: str, port: int, source: str | None = None) -> None:
        self.sock: socket.socket = socket.create_connection(
            (host, port), TIMEOUT, source_address=(source, 0) if source else None
        )
        self.file = self.sock.makefile("rb")

    def line(self) -> bytes:
        got = self.file.readline()
        assert got, "connection closed"
        return got

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def until(self, prefix: bytes) -> list[bytes]:
        """Lines up to and including the first that starts with *prefix*."""
        lines = []
        while True:
            got = self.line()
            lines.append(got)
            if got.startswith(prefix):
                return lines

    def command(self, data: bytes, prefix: bytes) -> list[bytes]:
        self.send(data)
        return self.until(prefix)

    def multiline(self, data: bytes) -> list[bytes]:
        """A POP3 command with a multi-line answer: the lines between +OK and '.'."""
        self.send(data)
        first = self.line()
        assert first.startswith(b"+OK"), first
        return self.until(b".\r\n")[:-1]

    def start_tls(self, context: ssl.SSLContext, hostname: str = "localhost") -> None:
        self.file.close()
        self.sock = context.wrap_socket(self.sock, server_hostname=hostname)
        self.file = self.sock.makefile("rb")

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def __enter__(self) -> Lines:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def deliver_lmtp(server: ServerProcess, subject: str) -> None:
    with smtplib.LMTP("127.0.0.1", server.ports["lmtp"], timeout=TIMEOUT) as lmtp:
        message = f"From: a@example.org\r\nSubject: {subject}\r\n\r\nhello\r\n"
        assert lmtp.sendmail("a@example.org", [ADDRESS], message.encode()) == {}


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed certificate for localhost and 127.0.0.1; returns the cert.pem path."""
    cert, _key = generate_certificate(tmp_path_factory.mktemp("certs"))
    return cert


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, certs: Path) -> Iterator[ServerProcess]:
    with tls_server(tmp_path_factory.mktemp("tls"), cert=certs) as running:
        deliver_lmtp(running, "first")
        yield running


# -- implicit TLS and STARTTLS with the stdlib clients ------------------------------------------
@pytest.mark.interop
def test_imaps_imaplib(server: ServerProcess, certs: Path) -> None:
    with imaplib.IMAP4_SSL(
        "127.0.0.1", server.ports["imaps"], ssl_context=client_context(certs), timeout=TIMEOUT
    ) as imap:
        assert imap.sock.version() in ("TLSv1.2", "TLSv1.3")
        assert "STARTTLS" not in imap.capabilities
        assert "AUTH=PLAIN" in imap.capabilities
        imap.login(ADDRESS, PASSWORD)
        status, data = imap.select("INBOX")
        assert status == "OK" and int(data[0] or 0) >= 1
        imap.logout()


@pytest.mark.interop
def test_imap_starttls_imaplib(server: ServerProcess, certs: Path) -> None:
    with imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=TIMEOUT) as imap:
        assert "STARTTLS" in imap.capabilities
        status, _ = imap.starttls(ssl_context=client_context(certs))
        assert status == "OK"
        assert "STARTTLS" not in imap.capabilities  # imaplib asked again over TLS
        assert "AUTH=PLAIN" in imap.capabilities
        assert isinstance(imap.sock, ssl.SSLSocket)
        with pytest.raises(imaplib.IMAP4.error, match="already active"):
            imap._simple_command("STARTTLS")  # type: ignore[attr-defined]
        imap.login(ADDRESS, PASSWORD)
        assert imap.select("INBOX")[0] == "OK"
        imap.logout()


@pytest.mark.interop
def test_pop3s_poplib(server: ServerProcess, certs: Path) -> None:
    pop = poplib.POP3_SSL(
        "127.0.0.1", server.ports["pop3s"], context=client_context(certs), timeout=TIMEOUT
    )
    try:
        capa = pop.capa()
        assert "STLS" not in capa and "USER" in capa
        pop.user(ADDRESS)
        pop.pass_(PASSWORD)
        count, _size = pop.stat()
        assert count >= 1
    finally:
        pop.quit()


@pytest.mark.interop
def test_pop3_stls_poplib(server: ServerProcess, certs: Path) -> None:
    pop = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=TIMEOUT)
    try:
        assert "STLS" in pop.capa()
        assert pop.stls(context=client_context(certs)).startswith(b"+OK")
        assert "STLS" not in pop.capa()
        pop.user(ADDRESS)
        pop.pass_(PASSWORD)
        assert pop.stat()[0] >= 1
    finally:
        pop.quit()


@pytest.mark.interop
def test_smtp_starttls_smtplib(server: ServerProcess, certs: Path) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=TIMEOUT) as smtp:
        smtp.ehlo("client.example.org")
        assert smtp.has_extn("starttls")
        code, _ = smtp.starttls(context=client_context(certs))
        assert code == 220
        smtp.ehlo("client.example.org")
        assert not smtp.has_extn("starttls")
        assert smtp.sendmail("a@example.org", [ADDRESS], b"Subject: over tls\r\n\r\nhi\r\n") == {}
    with imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=TIMEOUT) as imap:
        imap.login(ADDRESS, PASSWORD)
        imap.select("INBOX", readonly=True)
        status, found = imap.search(None, "SUBJECT", '"over tls"')
        assert status == "OK" and found[0]
        imap.logout()


@pytest.mark.interop
def test_lmtp_stays_plaintext(server: ServerProcess) -> None:
    with smtplib.LMTP("127.0.0.1", server.ports["lmtp"], timeout=TIMEOUT) as lmtp:
        lmtp.ehlo_or_helo_if_needed()
        assert not lmtp.has_extn("starttls")


# -- other clients ------------------------------------------------------------------------------
def s_client(certs: Path, port: int, commands: str, *options: str) -> str:
    """`openssl s_client` with full verification; returns what it printed (both streams)."""
    result = subprocess.run(
        [
            program("openssl"),
            "s_client",
            "-connect",
            f"127.0.0.1:{port}",
            "-CAfile",
            str(certs),
            "-verify_return_error",
            "-verify_hostname",
            "localhost",
            "-crlf",
            "-ign_eof",
            *options,
        ],
        input=commands,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Verify return code: 0 (ok)" in output, output
    return output


@pytest.mark.interop
@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_openssl_s_client_imap(server: ServerProcess, certs: Path, mode: str) -> None:
    commands = f"a1 LOGIN {ADDRESS} {PASSWORD}\na2 SELECT INBOX\na3 LOGOUT\n"
    if mode == "starttls":
        out = s_client(certs, server.ports["imap"], commands, "-starttls", "imap")
    else:
        out = s_client(certs, server.ports["imaps"], commands)
    assert "a1 OK" in out and "a2 OK" in out and "a3 OK" in out, out


@pytest.mark.interop
@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_openssl_s_client_pop3(server: ServerProcess, certs: Path, mode: str) -> None:
    commands = f"USER {ADDRESS}\nPASS {PASSWORD}\nSTAT\nQUIT\n"
    if mode == "starttls":
        out = s_client(certs, server.ports["pop3"], commands, "-starttls", "pop3")
    else:
        out = s_client(certs, server.ports["pop3s"], commands)
    assert "+OK maildrop has" in out and "signing off" in out, out


@pytest.mark.interop
def test_openssl_s_client_smtp(server: ServerProcess, certs: Path) -> None:
    commands = (
        f"EHLO client.example.org\nMAIL FROM:<a@example.org>\nRCPT TO:<{ADDRESS}>\n"
        "DATA\nSubject: s_client\n\nhi\n.\nQUIT\n"
    )
    out = s_client(certs, server.ports["smtp"], commands, "-starttls", "smtp")
    assert "250 " in out and "221" in out, out
    assert out.count("250 OK") >= 1 or "250 2." in out, out


@pytest.mark.interop
@pytest.mark.parametrize("scheme", ["imaps", "pop3s", "imap-starttls", "pop3-starttls"])
def test_curl(server: ServerProcess, scheme: str) -> None:
    """curl fetches the first message: IMAP by UID, POP3 with RETR."""
    if scheme == "imaps":
        url, extra = f"imaps://127.0.0.1:{server.ports['imaps']}/INBOX/;UID=1", []
    elif scheme == "pop3s":
        url, extra = f"pop3s://127.0.0.1:{server.ports['pop3s']}/1", []
    elif scheme == "imap-starttls":
        url, extra = f"imap://127.0.0.1:{server.ports['imap']}/INBOX/;UID=1", ["--ssl-reqd"]
    else:
        url, extra = f"pop3://127.0.0.1:{server.ports['pop3']}/1", ["--ssl-reqd"]
    result = subprocess.run(
        [
            program("curl"),
            *("--silent", "--show-error", "--insecure", "--max-time", "30"),
            *extra,
            *("--user", f"{ADDRESS}:{PASSWORD}", url),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Subject: first" in result.stdout, result.stdout


# -- protocol versions --------------------------------------------------------------------------
def tls11_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():  # TLS 1.1 is deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1_1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    return context


def handshake(port: int, context: ssl.SSLContext) -> str:
    with (
        socket.create_connection(("127.0.0.1", port), TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return str(tls.version())


@contextlib.contextmanager
def permissive_server(certs: Path) -> Iterator[int]:
    """A TLS server that accepts TLS 1.1: proves the test client really can speak it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1_1
    context.load_cert_chain(certs, certs.with_name("key.pem"))
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn, contextlib.suppress(OSError), context.wrap_socket(conn, server_side=True):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        listener.close()
        thread.join(10)


@pytest.mark.interop
def test_tls11_is_refused(server: ServerProcess, certs: Path) -> None:
    with permissive_server(certs) as port:
        assert handshake(port, tls11_context()) == "TLSv1.1"
    for name in ("imaps", "pop3s"):
        with pytest.raises(ssl.SSLError):
            handshake(server.ports[name], tls11_context())
    twelve = tls11_context()
    twelve.maximum_version = ssl.TLSVersion.TLSv1_2
    assert handshake(server.ports["imaps"], twelve) == "TLSv1.2"
    # and through STARTTLS
    with Lines("127.0.0.1", server.ports["imap"]) as imap:
        imap.line()
        imap.command(b"a STARTTLS\r\n", b"a ")
        with pytest.raises(ssl.SSLError):
            imap.start_tls(tls11_context())
    with Lines("127.0.0.1", server.ports["smtp"]) as smtp:
        smtp.line()
        smtp.command(b"EHLO client.example.org\r\n", b"250 ")
        smtp.command(b"STARTTLS\r\n", b"220")
        with pytest.raises(ssl.SSLError):
            smtp.start_tls(tls11_context())
    with Lines("127.0.0.1", server.ports["pop3"]) as pop:
        pop.line()
        pop.command(b"STLS\r\n", b"+OK")
        with pytest.raises(ssl.SSLError):
            pop.start_tls(tls11_context())
    wait_log(server, "STARTTLS handshake failed")
    assert "Traceback" not in server.log.read_text()


@pytest.mark.interop
def test_openssl_tls11_refused(server: ServerProcess, certs: Path) -> None:
    result = subprocess.run(
        [
            *(program("openssl"), "s_client", "-connect", f"127.0.0.1:{server.ports['imaps']}"),
            *("-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"),
        ],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "no peer certificate available" in result.stdout, result.stdout
    assert "Cipher is (NONE)" in result.stdout, result.stdout


# -- the buffer-injection attack (CVE-2011-0411 class) ------------------------------------------
@pytest.mark.interop
def test_imap_starttls_injection(server: ServerProcess, certs: Path) -> None:
    with Lines("127.0.0.1", server.ports["imap"]) as imap:
        imap.line()
        imap.send(f"a STARTTLS\r\nb LOGIN {ADDRESS} {PASSWORD}\r\n".encode())
        assert imap.line().startswith(b"a OK")
        imap.start_tls(client_context(certs))
        # b was plaintext sent before the handshake: it must not run. Were it executed, this
        # session would be logged in and SELECT would succeed; the first answer would be b's.
        answer = imap.command(b"c SELECT INBOX\r\n", b"c ")
        assert not any(line.startswith(b"b ") for line in answer), answer
        assert answer[-1].startswith(b"c BAD"), answer
    wait_log(server, "sent data after STARTTLS; discarded")


@pytest.mark.interop
def test_pop3_stls_injection(server: ServerProcess, certs: Path) -> None:
    with Lines("127.0.0.1", server.ports["pop3"]) as pop:
        pop.line()
        pop.send(f"STLS\r\nUSER {ADDRESS}\r\n".encode())
        assert pop.line().startswith(b"+OK begin TLS")
        pop.start_tls(client_context(certs))
        # had USER been kept, PASS would log in
        pop.send(f"PASS {PASSWORD}\r\n".encode())
        assert pop.line().startswith(b"-ERR")


@pytest.mark.interop
def test_smtp_starttls_injection(server: ServerProcess, certs: Path) -> None:
    with Lines("127.0.0.1", server.ports["smtp"]) as smtp:
        smtp.line()
        smtp.command(b"EHLO client.example.org\r\n", b"250 ")
        smtp.send(b"STARTTLS\r\nEHLO evil.example.org\r\nMAIL FROM:<evil@example.org>\r\n")
        assert smtp.line().startswith(b"220")
        smtp.start_tls(client_context(certs))
        # were the pipelined EHLO and MAIL kept, RCPT would be accepted
        reply = smtp.command(f"RCPT TO:<{ADDRESS}>\r\n".encode(), b"")
        assert reply[-1].startswith(b"503"), reply


# -- reload on SIGHUP ---------------------------------------------------------------------------
def peer_certificate(port: int, starttls: bytes | None = None) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with Lines("127.0.0.1", port) as client:
        if starttls is not None:
            client.line()
            client.command(starttls, b"a OK")
        client.start_tls(context)
        assert isinstance(client.sock, ssl.SSLSocket)
        got = client.sock.getpeercert(binary_form=True)
        assert got is not None
        return got


@pytest.mark.interop
def test_sighup_reloads_the_certificate(tmp_path: Path) -> None:
    certdir = tmp_path / "certs"
    first, _ = generate_certificate(certdir)
    first_der = der(first)
    with tls_server(tmp_path, cert=first) as running:
        old = imaplib.IMAP4_SSL(
            "127.0.0.1", running.ports["imaps"], ssl_context=client_context(first), timeout=30
        )
        try:
            old.login(ADDRESS, PASSWORD)
            assert peer_certificate(running.ports["imaps"]) == first_der

            second, _ = generate_certificate(certdir)  # replaces both files
            second_der = der(second)
            assert second_der != first_der
            assert running.proc is not None
            os.kill(running.proc.pid, signal.SIGHUP)
            wait_log(running, "TLS certificate reloaded")

            assert peer_certificate(running.ports["imaps"]) == second_der
            assert peer_certificate(running.ports["pop3s"]) == second_der
            assert peer_certificate(running.ports["imap"], b"a STARTTLS\r\n") == second_der
            # the session opened before the reload goes on with its certificate
            assert old.sock.getpeercert(binary_form=True) == first_der
            assert old.noop()[0] == "OK"
            assert old.select("INBOX")[0] == "OK"

            # a broken file: the reload fails and the certificate in use stays
            second.write_text("not a certificate\n")
            os.kill(running.proc.pid, signal.SIGHUP)
            wait_log(running, "TLS reload failed")
            assert peer_certificate(running.ports["imaps"]) == second_der
            assert old.noop()[0] == "OK"
            assert running.proc.poll() is None
            old.logout()
        finally:
            with contextlib.suppress(OSError):
                old.shutdown()


# -- the development certificate ----------------------------------------------------------------
@pytest.mark.interop
def test_init_demo_makes_a_certificate_that_serve_uses(tmp_path: Path) -> None:
    data = tmp_path / "data"
    out = pobox("init", "--demo", data=data).stdout.decode()
    assert "self-signed development certificate" in out
    cert = data / "tls" / "cert.pem"
    assert cert.is_file() and (data / "tls" / "key.pem").stat().st_mode & 0o077 == 0
    again = pobox("init", "--demo", data=data).stdout.decode()
    assert "certificate" not in again  # kept, not replaced
    ports = {name: free_port() for name in (*LISTENERS, "imaps", "pop3s")}
    config = write_config(tmp_path / "pobox.toml", data, ports, cert=None)
    server = ServerProcess(data, config, ports, tmp_path / "server.log")
    server.start()
    try:
        wait_port(ports["imaps"])
        for hostname in ("localhost", "127.0.0.1"):  # both in the subjectAltName
            with imaplib.IMAP4_SSL(
                "127.0.0.1",
                ports["imaps"],
                ssl_context=client_context(cert),
                timeout=TIMEOUT,
            ) as imap:
                imap.login("demo@localhost", "demo")
                imap.logout()
            context = client_context(cert)
            with (
                socket.create_connection(("127.0.0.1", ports["pop3s"]), TIMEOUT) as raw,
                context.wrap_socket(raw, server_hostname=hostname) as tls,
            ):
                assert tls.recv(100).startswith(b"+OK")
        assert "IMAPS" in server.log.read_text()
    finally:
        server.stop()


@pytest.mark.interop
def test_without_certificate_no_tls_is_offered(tmp_path: Path) -> None:
    with tls_server(tmp_path, cert=None) as running:
        for name in ("imaps", "pop3s"):
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", running.ports[name]), 2).close()
        with imaplib.IMAP4("127.0.0.1", running.ports["imap"], timeout=TIMEOUT) as imap:
            assert "STARTTLS" not in imap.capabilities
            assert imap._simple_command("STARTTLS")[0] == "NO"  # type: ignore[attr-defined]
            imap.login(ADDRESS, PASSWORD)  # loopback: allowed without TLS
            imap.logout()
        pop = poplib.POP3("127.0.0.1", running.ports["pop3"], timeout=TIMEOUT)
        try:
            assert "STLS" not in pop.capa()
            with pytest.raises(poplib.error_proto):
                pop._shortcmd("STLS")  # type: ignore[attr-defined]
        finally:
            pop.quit()
        with smtplib.SMTP("127.0.0.1", running.ports["smtp"], timeout=TIMEOUT) as smtp:
            smtp.ehlo()
            assert not smtp.has_extn("starttls")
            assert smtp.docmd("STARTTLS")[0] == 454


# -- no password in clear text from another host ------------------------------------------------
NONLOCAL = "10.253.0.1"


@pytest.fixture
def nonlocal_address() -> Iterator[str]:
    """A local, non-loopback address of this machine on a veth pair (removed afterwards)."""
    ip = program("ip")
    name, peer = f"pbx{os.getpid() % 10000}", f"pbx{os.getpid() % 10000}p"

    def run(*args: str) -> None:
        result = subprocess.run([ip, *args], capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"ip {' '.join(args)}: {result.stderr}"

    run("link", "add", name, "type", "veth", "peer", "name", peer)
    try:
        run("addr", "add", f"{NONLOCAL}/32", "dev", name)
        run("link", "set", name, "up")
        run("link", "set", peer, "up")
        yield NONLOCAL
    finally:
        subprocess.run([ip, "link", "del", name], capture_output=True, check=False)


@pytest.mark.interop
def test_no_plaintext_login_from_another_host(
    tmp_path: Path, certs: Path, nonlocal_address: str
) -> None:
    plain = base64_plain(ADDRESS, PASSWORD)
    with tls_server(tmp_path, cert=certs, listen=nonlocal_address) as running:
        with Lines(nonlocal_address, running.ports["imap"], source=nonlocal_address) as imap:
            greeting = imap.line()
            assert b"LOGINDISABLED" in greeting and b"STARTTLS" in greeting, greeting
            assert b"AUTH=PLAIN" not in greeting
            caps = imap.command(b"a CAPABILITY\r\n", b"a ")
            assert b"LOGINDISABLED" in caps[0] and b"AUTH=" not in caps[0]
            refused = imap.command(f"b LOGIN {ADDRESS} {PASSWORD}\r\n".encode(), b"b ")
            assert refused[-1].startswith(b"b NO [PRIVACYREQUIRED]"), refused
            refused = imap.command(b"c AUTHENTICATE PLAIN " + plain + b"\r\n", b"c ")
            assert refused[-1].startswith(b"c NO [PRIVACYREQUIRED]"), refused
            imap.command(b"d STARTTLS\r\n", b"d OK")
            imap.start_tls(client_context(certs))
            caps = imap.command(b"e CAPABILITY\r\n", b"e ")
            assert b"LOGINDISABLED" not in caps[0] and b"STARTTLS" not in caps[0]
            assert b"AUTH=PLAIN" in caps[0]
            done = imap.command(f"f LOGIN {ADDRESS} {PASSWORD}\r\n".encode(), b"f ")
            assert done[-1].startswith(b"f OK"), done

        with imaplib.IMAP4_SSL(
            nonlocal_address,
            running.ports["imaps"],
            ssl_context=unverified(),
            timeout=TIMEOUT,
        ) as imaps:
            assert "LOGINDISABLED" not in imaps.capabilities
            imaps.login(ADDRESS, PASSWORD)
            imaps.logout()

        with Lines(nonlocal_address, running.ports["pop3"], source=nonlocal_address) as pop:
            pop.line()
            capa = pop.multiline(b"CAPA\r\n")
            assert b"STLS\r\n" in capa and b"USER\r\n" not in capa, capa
            assert not any(line.startswith(b"SASL") for line in capa), capa
            for command in (f"USER {ADDRESS}\r\n", f"PASS {PASSWORD}\r\n"):
                got = pop.command(command.encode(), b"")
                assert got[-1].startswith(b"-ERR [AUTH]"), got
            got = pop.command(b"AUTH PLAIN " + plain + b"\r\n", b"")
            assert got[-1].startswith(b"-ERR [AUTH]"), got
            pop.command(b"STLS\r\n", b"+OK")
            pop.start_tls(client_context(certs))
            capa = pop.multiline(b"CAPA\r\n")
            assert b"USER\r\n" in capa and b"STLS\r\n" not in capa, capa
            pop.command(f"USER {ADDRESS}\r\n".encode(), b"+OK")
            assert pop.command(f"PASS {PASSWORD}\r\n".encode(), b"").pop().startswith(b"+OK")
            pop.command(b"QUIT\r\n", b"+OK")

        pop3s = poplib.POP3_SSL(
            nonlocal_address, running.ports["pop3s"], context=unverified(), timeout=TIMEOUT
        )
        try:
            pop3s.user(ADDRESS)
            pop3s.pass_(PASSWORD)
        finally:
            pop3s.quit()


@pytest.mark.interop
def test_allow_plaintext_auth(tmp_path: Path, nonlocal_address: str) -> None:
    extra = "[tls]\nallow_plaintext_auth = true\n"
    with tls_server(tmp_path, cert=None, listen=nonlocal_address, extra=extra) as running:
        assert "without TLS" not in running.log.read_text()
        with imaplib.IMAP4(nonlocal_address, running.ports["imap"], timeout=TIMEOUT) as imap:
            assert "LOGINDISABLED" not in imap.capabilities
            imap.login(ADDRESS, PASSWORD)
            imap.logout()
        pop = poplib.POP3(nonlocal_address, running.ports["pop3"], timeout=TIMEOUT)
        try:
            pop.user(ADDRESS)
            pop.pass_(PASSWORD)
        finally:
            pop.quit()


@pytest.mark.interop
def test_nonlocal_without_tls_warns(tmp_path: Path, nonlocal_address: str) -> None:
    with tls_server(tmp_path, cert=None, listen=nonlocal_address) as running:
        assert "without TLS: clients that are not local cannot log in" in running.log.read_text()
        with imaplib.IMAP4(nonlocal_address, running.ports["imap"], timeout=TIMEOUT) as imap:
            assert "LOGINDISABLED" in imap.capabilities
            assert "STARTTLS" not in imap.capabilities
            with pytest.raises(imaplib.IMAP4.error) as refused:
                imap.login(ADDRESS, PASSWORD)
            assert b"[PRIVACYREQUIRED]" in refused.value.args[0]


def base64_plain(user: str, password: str) -> bytes:
    import base64

    return base64.b64encode(f"\0{user}\0{password}".encode())


def unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


# -- configuration and helpers, without a server ------------------------------------------------
def test_loopback_rule() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.8.9.10") and is_loopback("::1")
    assert is_loopback("::ffff:127.0.0.1")
    assert not is_loopback("10.253.0.1") and not is_loopback("::ffff:10.0.0.1")
    assert not is_loopback("-") and not is_loopback("fe80::1")


def test_tls_config_keys(tmp_path: Path, certs: Path) -> None:
    path = tmp_path / "pobox.toml"
    path.write_text(f'[tls]\ncert = "{certs}"\n')
    with pytest.raises(ConfigError, match=r"tls\.key"):
        certificate_paths(load_config(path))
    path.write_text('[tls]\ncert = "/nonexistent/cert.pem"\nkey = "/nonexistent/key.pem"\n')
    with pytest.raises(ConfigError, match="not found"):
        TlsManager.from_config(load_config(path))
    path.write_text("[imaps]\nport = 993\n[pop3s]\nenabled = false\n")
    assert load_config(path).imaps.port == 993 and not load_config(path).pop3s.enabled
    path.write_text("[tls]\nallow_plaintext_auth = 1\n")
    with pytest.raises(ConfigError, match="allow_plaintext_auth"):
        load_config(path)
    defaults = load_config(None, data_dir=str(tmp_path / "empty"))
    assert defaults.imaps.port == 1993 and defaults.pop3s.port == 1995
    assert certificate_paths(defaults) is None
    configured = dataclasses.replace(
        defaults, tls=TlsConfig(cert=str(certs), key=str(certs.with_name("key.pem")))
    )
    manager = TlsManager.from_config(configured)
    assert manager is not None and manager.cert == certs
    assert manager.context.minimum_version == ssl.TLSVersion.TLSv1_2


# -- the same server in this process (asyncio's own event loop rather than uvloop) --------------
@pytest.mark.interop
async def test_in_process_asyncio_loop(tmp_path: Path, certs: Path) -> None:
    from tests.conftest import make_config

    from pobox.server import start, stop
    from pobox.service.mail import MailService

    config = make_config(
        tmp_path / "data",
        imaps={"port": 0},
        pop3s={"port": 0},
        tls={"cert": str(certs), "key": str(certs.with_name("key.pem"))},
    )
    service = await MailService.open(config)
    running = await start(config, service)
    try:
        await service.accounts.add(ADDRESS, PASSWORD)
        context = client_context(certs)
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", running.port("imaps"), ssl=context, server_hostname="localhost"
        )
        assert b"AUTH=PLAIN" in await reader.readline()
        writer.write(f"a LOGIN {ADDRESS} {PASSWORD}\r\n".encode())
        assert (await reader.readline()).startswith(b"a OK")
        writer.close()
        await writer.wait_closed()

        reader, writer = await asyncio.open_connection("127.0.0.1", running.port("imap"))
        assert b"STARTTLS" in await reader.readline()
        writer.write(f"a STARTTLS\r\nb LOGIN {ADDRESS} {PASSWORD}\r\n".encode())
        assert (await reader.readline()).startswith(b"a OK")
        await writer.start_tls(context, server_hostname="localhost")
        writer.write(b"c SELECT INBOX\r\n")
        assert (await reader.readline()).startswith(b"c BAD")
        writer.write(b"d CAPABILITY\r\n")
        caps = await reader.readline()
        assert b"STARTTLS" not in caps and b"AUTH=PLAIN" in caps
        assert (await reader.readline()).startswith(b"d OK")
        writer.close()
        await writer.wait_closed()
    finally:
        await stop(running)
