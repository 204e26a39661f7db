"""Lines no transcript can write (bytes that are not UTF-8): each gets one answer, BAD with a
reason in printable ASCII, and the session goes on until the error limit."""

from __future__ import annotations

import asyncio

import pytest

from pobox.config import Config
from pobox.server import Running
from pobox.store.api import Account

ADDRESS, PASSWORD = "raw@example.org", "secret"

LINES = [
    b"\xff\xfe\xfd",  # no tag at all
    b"a\xff NOOP",  # a tag that goes on with a byte no tag has
    b"\xc3\xa9 NOOP",  # UTF-8, but not a tag
    b"a1 NO\xffOP",  # a good tag, a command name that is not one
    b"a2 \xc3\xa9\xff",
    b"a3 SELECT \xff\xfe",  # a name that is not modified UTF-7
    b"a4 FETCH \xff (FLAGS)",
    b"\x00\x01\x1b[31m",  # control characters
    b"\t \t",
]


async def _open(running: Running) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port("imap"))
    assert (await reader.readline()).startswith(b"* OK")
    writer.write(b'z1 LOGIN "%s" "%s"\r\n' % (ADDRESS.encode(), PASSWORD.encode()))
    while not (line := await reader.readline()).startswith(b"z1 "):
        assert line
    assert line.startswith(b"z1 OK"), line
    return reader, writer


@pytest.fixture
async def account(running: Running) -> Account:
    return await running.service.accounts.add(ADDRESS, PASSWORD)


async def test_every_line_gets_one_printable_answer(running: Running, account: Account) -> None:
    reader, writer = await _open(running)
    try:
        for line in LINES:
            writer.write(line + b"\r\n")
            answer = await asyncio.wait_for(reader.readline(), 10)
            assert answer.endswith(b"\r\n"), (line, answer)
            assert b" BAD " in answer or b" NO " in answer, (line, answer)
            text = answer[:-2]
            assert all(0x20 <= c < 0x7F for c in text), (line, answer)
            # nothing more for this line: the next command's answer comes next
            writer.write(b"n1 NOOP\r\n")
            assert await asyncio.wait_for(reader.readline(), 10) == b"n1 OK NOOP completed\r\n"
    finally:
        writer.close()


async def test_the_error_limit_ends_the_session(
    running: Running, config: Config, account: Account
) -> None:
    limit = config.imap.max_bad_commands
    reader, writer = await _open(running)
    try:
        writer.write(b"\xff\r\n" * limit)
        answers = [await asyncio.wait_for(reader.readline(), 10) for _ in range(limit + 1)]
        assert all(a.startswith(b"* BAD ") for a in answers[:limit]), answers
        assert answers[limit].startswith(b"* BYE "), answers
        assert await asyncio.wait_for(reader.read(), 10) == b""
    finally:
        writer.close()
