"""MULTIAPPEND (RFC 3502) with imapclient's multiappend(): several messages, one command."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from imapclient import IMAPClient
from tests.helpers.servers import ServerProcess, server_process

pytestmark = pytest.mark.interop

ACCOUNT = "many@localhost"
PASSWORD = "secret"


def message(n: int) -> bytes:
    return b"From: a@example.org\r\nSubject: part %d\r\n\r\nbody %d\r\n" % (n, n)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with server_process(tmp_path_factory.mktemp("imap-multiappend")) as srv:
        srv.cli("user", "add", ACCOUNT, "--password-stdin", stdin=PASSWORD.encode() + b"\n")
        yield srv


def test_imapclient_multiappend_stores_every_message_in_order(server: ServerProcess) -> None:
    with IMAPClient("127.0.0.1", port=server.ports["imap"], ssl=False, timeout=30) as client:
        client.login(ACCOUNT, PASSWORD)
        assert b"MULTIAPPEND" in client.capabilities()
        typ, (text,) = client.multiappend("INBOX", [message(n) for n in range(1, 6)])
        assert typ == "OK" and text.startswith(b"[APPENDUID ") and b" 1:5] " in text
        client.select_folder("INBOX")
        fetched = client.fetch(client.search(), ["BODY.PEEK[]"])
        assert [fetched[uid][b"BODY[]"] for uid in sorted(fetched)] == [
            message(n) for n in range(1, 6)
        ]
        typ, (text,) = client.multiappend("Nowhere", [message(6), message(7)])
        assert typ == "NO" and text.startswith(b"[TRYCREATE]")
        assert client.folder_status("INBOX", ["MESSAGES"])[b"MESSAGES"] == 5
