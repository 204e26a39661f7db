"""COMPRESS=DEFLATE (RFC 4978) with Python's imaplib, taught to compress as RFC 4978 §3 says:
after the tagged OK, both directions are raw DEFLATE, each side flushing after what it sends.
One `pobox serve` subprocess for the module.
"""

from __future__ import annotations

import imaplib
import socket
import zlib
from collections.abc import Iterator

import pytest
from tests.helpers.servers import ServerProcess, server_process

pytestmark = pytest.mark.interop

PASSWORD = "secret"
ACCOUNT = "squeeze@localhost"
BODY = b"".join(b"line %05d of a rather repetitive message body\r\n" % n for n in range(4000))
MESSAGE = b"From: a@example.org\r\nSubject: big\r\n\r\n" + BODY

imaplib.Commands.setdefault("COMPRESS", ("AUTH", "SELECTED"))


class DeflatingIMAP4(imaplib.IMAP4):
    """imaplib with COMPRESS=DEFLATE; counts the octets that cross the wire."""

    def _create_socket(self, timeout: float | None) -> socket.socket:
        self.wire_in = 0
        self._inflate: zlib._Decompress | None = None
        self._deflate: zlib._Compress | None = None
        self._plain = b""
        return super()._create_socket(timeout)

    def compress(self) -> tuple[str, list[bytes | None]]:
        typ, data = self._simple_command("COMPRESS", "DEFLATE")
        if typ == "OK":
            self._inflate = zlib.decompressobj(-15)
            self._deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        return typ, data

    def send(self, data: bytes) -> None:
        if self._deflate is not None:
            data = self._deflate.compress(data) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def _more(self) -> None:
        assert self._inflate is not None
        chunk = self.sock.recv(65536)
        if not chunk:
            raise self.abort("socket error: EOF")
        self.wire_in += len(chunk)
        self._plain += self._inflate.decompress(chunk)

    def read(self, size: int) -> bytes:
        if self._inflate is None:
            return super().read(size)
        while len(self._plain) < size:
            self._more()
        out, self._plain = self._plain[:size], self._plain[size:]
        return out

    def readline(self) -> bytes:
        if self._inflate is None:
            return super().readline()
        while b"\n" not in self._plain:
            self._more()
        end = self._plain.index(b"\n") + 1
        out, self._plain = self._plain[:end], self._plain[end:]
        return out


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with server_process(tmp_path_factory.mktemp("imap-compress")) as srv:
        srv.cli("user", "add", ACCOUNT, "--password-stdin", stdin=PASSWORD.encode() + b"\n")
        srv.cli("deliver", ACCOUNT, stdin=MESSAGE)
        yield srv


def connect(server: ServerProcess) -> DeflatingIMAP4:
    client = DeflatingIMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    client.login(ACCOUNT, PASSWORD)
    return client


def test_a_compressed_session_reads_mail_for_fewer_octets(server: ServerProcess) -> None:
    client = connect(server)
    try:
        typ, data = client.capability()
        assert b"COMPRESS=DEFLATE" in data[0].split()  # type: ignore[union-attr]
        typ, data = client.compress()
        assert (typ, data) == ("OK", [b"DEFLATE active"])
        typ, data = client.select("INBOX")
        assert typ == "OK" and data == [b"1"]
        before = client.wire_in
        typ, data = client.fetch("1", "(BODY.PEEK[TEXT])")
        assert typ == "OK"
        first = data[0]
        assert isinstance(first, tuple) and first[1] == BODY
        assert client.wire_in - before < len(BODY) // 5  # it is compressed on the wire
        # a second COMPRESS is refused with the code RFC 4978 §3 names
        typ, data = client._simple_command("COMPRESS", "DEFLATE")
        assert (typ, data) == ("NO", [b"[COMPRESSIONACTIVE] DEFLATE is active already"])
        assert client.noop()[0] == "OK"  # still compressed, still serving
    finally:
        client.logout()


def test_compress_asks_for_deflate_after_login(server: ServerProcess) -> None:
    client = DeflatingIMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    try:
        assert "COMPRESS=DEFLATE" not in client.capabilities  # offered after login
        with pytest.raises(imaplib.IMAP4.error, match="COMPRESS"):
            client._simple_command("COMPRESS", "DEFLATE")  # imaplib: not in this state
        client.login(ACCOUNT, PASSWORD)
        with pytest.raises(imaplib.IMAP4.error, match="unknown compression mechanism"):
            client._simple_command("COMPRESS", "LZMA")
        assert client.noop()[0] == "OK"  # uncompressed, as before
    finally:
        client.logout()


def raw_session(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.ports["imap"]), timeout=30)
    reader = sock.makefile("rb")
    reader.readline()
    sock.sendall(f"a LOGIN {ACCOUNT} {PASSWORD}\r\nb COMPRESS DEFLATE\r\n".encode())
    lines = [reader.readline()]
    while not lines[-1].startswith(b"b "):
        lines.append(reader.readline())
    assert lines[-1] == b"b OK DEFLATE active\r\n", lines
    reader.close()
    return sock


def test_a_corrupt_stream_ends_the_session_and_the_server_goes_on(server: ServerProcess) -> None:
    sock = raw_session(server)
    try:
        sock.sendall(b"\xff" * 64)  # not DEFLATE
        assert sock.recv(4096) == b""  # closed
    finally:
        sock.close()
    client = connect(server)
    try:
        assert client.noop()[0] == "OK"
    finally:
        client.logout()


def test_a_line_that_inflates_to_megabytes_gets_bad_not_memory(server: ServerProcess) -> None:
    """A few kilobytes that decompress to 50 MB without a line break: the line-length limit
    answers, as it would for the same bytes sent plain."""
    sock = raw_session(server)
    inflate = zlib.decompressobj(-15)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    try:
        bomb = deflate.compress(b"c NOOP " + b"x" * 50_000_000) + deflate.flush(zlib.Z_SYNC_FLUSH)
        assert len(bomb) < 100_000
        sock.sendall(bomb + deflate.compress(b"\r\nd NOOP\r\n") + deflate.flush(zlib.Z_SYNC_FLUSH))
        answer = b""
        while b"d OK" not in answer and b"BYE" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += inflate.decompress(chunk)
        assert b"BAD" in answer or b"BYE" in answer, answer[:300]
    finally:
        sock.close()
