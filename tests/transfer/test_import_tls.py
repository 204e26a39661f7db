"""`pobox import` over TLS: IMAPS, IMAP with STARTTLS, POP3S and POP3 with STLS, from a pobox
serving a self-signed certificate; without --insecure-tls the certificate is refused."""

from __future__ import annotations

import re
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers.servers import LISTENERS, ServerProcess, free_port, pobox

from pobox.net.tls import generate_certificate

pytestmark = pytest.mark.interop

ADDRESS = "source@example.org"
PASSWORD = "source-password"


@pytest.fixture
def source(tmp_path: Path) -> Iterator[ServerProcess]:
    cert, key = generate_certificate(tmp_path / "certs")
    data = tmp_path / "source"
    ports = {name: free_port() for name in (*LISTENERS, "imaps", "pop3s")}
    lines = [f'data_dir = "{data}"', ""]
    for name, port in ports.items():
        lines += [f"[{name}]", f"port = {port}", ""]
    lines += ["[tls]", f'cert = "{cert}"', f'key = "{key}"', ""]
    config = tmp_path / "source.toml"
    config.write_text("\n".join(lines))
    server = ServerProcess(data, config, ports, tmp_path / "source.log")
    server.cli("user", "add", ADDRESS, "--password-stdin", stdin=PASSWORD.encode() + b"\n")
    server.start()
    try:
        with smtplib.LMTP("127.0.0.1", ports["lmtp"], timeout=30) as lmtp:
            for n in range(5):
                body = f"From: a@example.net\r\nSubject: tls {n}\r\n\r\nbody {n}\r\n".encode()
                assert lmtp.sendmail("a@example.net", [ADDRESS], body) == {}
        yield server
    finally:
        server.stop()


def test_import_over_tls(tmp_path: Path, source: ServerProcess) -> None:
    data = tmp_path / "target"
    secret = PASSWORD.encode() + b"\n"
    cases = [
        ("imaps", source.ports["imaps"], "imaps@example.org"),
        ("imap", source.ports["imap"], "starttls@example.org"),  # STARTTLS is offered
        ("pop3s", source.ports["pop3s"], "pop3s@example.org"),
        ("pop3", source.ports["pop3"], "stls@example.org"),  # STLS is offered
    ]
    for scheme, port, target in cases:
        pobox("user", "add", target, "--password-stdin", data=data, stdin=b"pw\n")
        url = f"{scheme}://{ADDRESS.replace('@', '%40')}@127.0.0.1:{port}"
        refused = pobox("import", url, "--to", target, data=data, stdin=secret, check=False)
        assert refused.returncode == 1 and b"does not verify" in refused.stderr, refused.stderr
        out = pobox("import", url, "--to", target, "--insecure-tls", data=data, stdin=secret)
        assert re.search(rb"imported 5 message\(s\)", out.stdout), (scheme, out.stdout)
    wrong = pobox(
        "import",
        f"imaps://{ADDRESS.replace('@', '%40')}@127.0.0.1:{source.ports['imaps']}",
        "--to",
        "imaps@example.org",
        "--insecure-tls",
        data=data,
        stdin=b"wrong\n",
        check=False,
    )
    assert wrong.returncode == 1 and b"refused the login of source@example.org" in wrong.stderr
