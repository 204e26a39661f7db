"""From a mail client to the smarthost: smtplib submits over STARTTLS with AUTH to a real
`pobox serve`; the queue runner relays the message, DKIM-signed with the key `pobox dkim
generate` made, and the signature verifies against the record it printed."""

from __future__ import annotations

import smtplib
import ssl
import time
import warnings
from pathlib import Path

import dkim as dkimpy
import pytest
from tests.helpers.servers import free_port, pobox, server_process
from tests.relay.fakes import fake_hop

from pobox.net.tls import generate_certificate

pytestmark = pytest.mark.interop  # a real pobox process

ACCOUNT = "alice@example.org"
PASSWORD = "alice's password"


def test_submitted_mail_is_relayed_signed(tmp_path: Path) -> None:
    cert, key = generate_certificate(tmp_path / "certs")
    data = tmp_path / "data"
    pobox("init", data=data)
    made = pobox("dkim", "generate", "example.org", "--selector", "e2e", data=data)
    value = next(
        line.removeprefix("  value: ")
        for line in made.stdout.decode().splitlines()
        if line.startswith("  value: ")
    )

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return value.encode() if name.rstrip(b".") == b"e2e._domainkey.example.org" else None

    with fake_hop() as (hop, port):
        extra = (
            f'\n[tls]\ncert = "{cert}"\nkey = "{key}"\n'
            f"[imaps]\nport = {free_port()}\n[pop3s]\nport = {free_port()}\n"
            f'[relay]\nhost = "127.0.0.1"\nport = {port}\ntls = "none"\n'
        )
        with server_process(tmp_path, {ACCOUNT: PASSWORD}, extra) as server:
            context = ssl.create_default_context(cafile=str(cert))
            with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=30) as smtp:
                smtp.starttls(context=context)
                smtp.login(ACCOUNT, PASSWORD)
                message = (
                    f"From: Alice <{ACCOUNT}>\r\nTo: <bob@remote.example>\r\n"
                    "Subject: end to end\r\n\r\nHello Bob.\r\n"
                ).encode()
                assert smtp.sendmail(ACCOUNT, ["bob@remote.example"], message) == {}
            deadline = time.monotonic() + 30
            while not hop.received:
                assert time.monotonic() < deadline, server.log.read_text()
                time.sleep(0.1)
    [relayed] = hop.received
    assert relayed.sender == ACCOUNT and relayed.recipients == ["bob@remote.example"]
    assert relayed.content.startswith(b"DKIM-Signature: ")
    assert b"Hello Bob." in relayed.content
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BytesWarning)  # dkimpy's debug text under python -bb
        assert dkimpy.verify(relayed.content, dnsfunc=dns)
