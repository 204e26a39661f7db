"""RFC 5465 §5.8: a client that does not read what NOTIFY sends gets NOTIFICATIONOVERFLOW, and
nothing more is sent until it asks again. The limit (1 MiB waiting to be written) is lowered to
nothing here, so that the first notification overflows."""

from __future__ import annotations

import asyncio

import pytest

from pobox.imap.handlers import notify
from pobox.server import Running
from pobox.store.api import Account

ADDRESS, PASSWORD = "overflow@example.org", "secret"


async def _command(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tag: bytes, text: bytes
) -> list[bytes]:
    writer.write(tag + b" " + text + b"\r\n")
    lines: list[bytes] = []
    while True:
        line = await asyncio.wait_for(reader.readline(), 10)
        assert line, "connection closed"
        lines.append(line)
        if line.startswith(tag + b" "):
            return lines


@pytest.fixture
async def account(running: Running) -> Account:
    return await running.service.accounts.add(ADDRESS, PASSWORD)


async def test_overflow_turns_notify_off(
    running: Running, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notify, "OVERFLOW_BYTES", -1)
    login = b'LOGIN "%s" "%s"' % (ADDRESS.encode(), PASSWORD.encode())
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port("imap"))
    other_reader, other = await asyncio.open_connection("127.0.0.1", running.port("imap"))
    try:
        for r, w in ((reader, writer), (other_reader, other)):
            assert (await r.readline()).startswith(b"* OK")
            assert (await _command(r, w, b"a1", login))[-1].startswith(b"a1 OK")
        lines = await _command(
            reader, writer, b"a2", b"NOTIFY SET (PERSONAL (MessageNew MessageExpunge))"
        )
        assert lines == [b"a2 OK NOTIFY completed\r\n"]
        append = b"APPEND INBOX {22+}\r\nSubject: one\r\n\r\nbody\r\n"
        assert (await _command(other_reader, other, b"b1", append))[-1].startswith(b"b1 OK")
        line = await asyncio.wait_for(reader.readline(), 10)
        assert line.startswith(b"* OK [NOTIFICATIONOVERFLOW] "), line
        assert (await _command(other_reader, other, b"b2", append))[-1].startswith(b"b2 OK")
        # NOTIFY is off: the NOOP's answer is all that comes
        assert await _command(reader, writer, b"a3", b"NOOP") == [b"a3 OK NOOP completed\r\n"]
    finally:
        writer.close()
        other.close()
