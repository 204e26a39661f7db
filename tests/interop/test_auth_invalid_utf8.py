"""A login that is not valid UTF-8 is an ordinary failed login on a real server (issue 16)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from tests.helpers.servers import server_process

pytestmark = pytest.mark.interop


def _pop3(port: int, lines: list[bytes]) -> list[bytes]:
    with socket.create_connection(("127.0.0.1", port), 10) as sock:
        reader = sock.makefile("rb")
        replies = [reader.readline()]
        for line in lines:
            sock.sendall(line + b"\r\n")
            replies.append(reader.readline())
        return replies


def test_pop3_user_and_pass_that_are_not_utf8(tmp_path: Path) -> None:
    extra = "\n[auth]\npenalty_max = 0.0\n"
    with server_process(tmp_path, {"demo@localhost": "demo"}, extra) as server:
        port = server.ports["pop3"]
        for user, password in (
            (b"de\xffmo@localhost", b"demo"),
            (b"demo@localhost", b"de\xc3mo"),
            (b"\xff\xfe", b"\x80"),
        ):
            replies = _pop3(port, [b"USER " + user, b"PASS " + password])
            assert replies[0].startswith(b"+OK")
            assert replies[2].startswith(b"-ERR [AUTH]"), replies
        ok = _pop3(port, [b"USER demo@localhost", b"PASS demo", b"QUIT"])
        assert ok[2].startswith(b"+OK"), ok
        log = server.log.read_text(errors="replace")
        assert "Traceback" not in log and "internal server error" not in log
        assert "authentication failed" in log
