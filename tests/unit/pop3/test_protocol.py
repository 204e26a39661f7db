"""The sans-IO POP3 layer: command parsing, line reading, replies, dot-stuffing, TOP."""

from __future__ import annotations

import pytest

from pobox.pop3 import protocol as p


@pytest.mark.parametrize(
    ("line", "command"),
    [
        (b"USER alice@example.org", p.User("alice@example.org")),
        (b"user  alice ", p.User("alice")),
        (b"PASS two words ", p.Pass("two words ")),
        (b"PASS  lead", p.Pass(" lead")),
        (b"pass p\xc3\xa4ss", p.Pass("päss")),
        (b"STAT", p.Stat()),
        (b"LIST", p.List()),
        (b"list 7", p.List(7)),
        (b"UIDL", p.Uidl()),
        (b"UIDL 3", p.Uidl(3)),
        (b"RETR 1", p.Retr(1)),
        (b"TOP 1 0", p.Top(1, 0)),
        (b"TOP 2 99999999", p.Top(2, 99999999)),
        (b"DELE 10", p.Dele(10)),
        (b"NOOP", p.Noop()),
        (b"RSET", p.Rset()),
        (b"QUIT", p.Quit()),
        (b"CAPA", p.Capa()),
        (b"STLS", p.Stls()),
        (b"UTF8", p.Utf8()),
        (b"LAST", p.Last()),
        (b"APOP mrose c4c9334bac560ecc979e58001b3e22fb", p.Apop()),
        (b"AUTH", p.Auth(None)),
        (b"AUTH plain", p.Auth("PLAIN")),
        (b"AUTH PLAIN AGFiAGM=", p.Auth("PLAIN", b"AGFiAGM=")),
        (b"AUTH PLAIN =", p.Auth("PLAIN", b"=")),
    ],
)
def test_parse(line: bytes, command: p.Command) -> None:
    assert p.parse_command(line) == command


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"", "empty command line"),
        (b"XYZZY", "unknown command"),
        (b"\xff\xfe", "unknown command"),
        (b"RETR", "RETR takes one message number"),
        (b"RETR 1 2", "RETR takes one message number"),
        (b"RETR x", "invalid message number"),
        (b"RETR -1", "invalid message number"),
        (b"RETR +1", "invalid message number"),
        (b"RETR 1234567890123456789", "invalid message number"),
        (b"LIST 1 2", "LIST takes at most one message number"),
        (b"TOP 1", "TOP takes a message number and a line count"),
        (b"TOP x 1", "invalid message number"),
        (b"TOP 1 x", "invalid line count"),
        (b"STAT 1", "STAT takes no arguments"),
        (b"USER", "USER needs a user name"),
        (b"USER  ", "USER needs a user name"),
        (b"PASS", "PASS needs a password"),
        (b"AUTH PLAIN a b", "AUTH takes a mechanism and an optional initial response"),
    ],
)
def test_parse_errors(line: bytes, reason: str) -> None:
    result = p.parse_command(line)
    assert isinstance(result, p.BadCommand)
    assert result.reason == reason


def test_line_buffer_splits_and_keeps_partial_lines() -> None:
    buf = p.LineBuffer()
    buf.feed(b"STAT\r\nLIST 1\r\nRE")
    assert buf.next_line() == b"STAT"
    assert buf.next_line() == b"LIST 1"
    assert buf.next_line() is None
    buf.feed(b"TR 1\nQUIT\r\n")
    assert buf.next_line() == b"RETR 1"  # a bare LF ends a line too
    assert buf.next_line() == b"QUIT"
    assert buf.next_line() is None
    assert not buf.pending


def test_line_buffer_limit_counts_crlf() -> None:
    buf = p.LineBuffer()
    buf.feed(b"A" * 253 + b"\r\n")
    assert buf.next_line() == b"A" * 253
    buf.feed(b"A" * 254 + b"\r\n")
    assert buf.next_line() == p.LineTooLong()


def test_line_buffer_discards_a_long_line_without_buffering_it() -> None:
    buf = p.LineBuffer()
    buf.feed(b"X" * 300)
    assert buf.next_line() == p.LineTooLong()
    for _ in range(10):
        buf.feed(b"Y" * 1000)
        assert buf.next_line() is None
        assert not buf.pending  # memory stays bounded
    buf.feed(b"tail\r\nNOOP\r\n")
    assert buf.next_line() == b"NOOP"


def test_line_buffer_reports_endless_lines_again() -> None:
    buf = p.LineBuffer()
    buf.feed(b"X" * 300)
    assert buf.next_line() == p.LineTooLong()
    results = []
    for _ in range(100):
        buf.feed(b"Y" * 1000)
        results.append(buf.next_line())
    assert results.count(p.LineTooLong()) == 1


def test_replies() -> None:
    assert p.ok() == b"+OK\r\n"
    assert p.ok("2 320") == b"+OK 2 320\r\n"
    assert p.err("locked", p.IN_USE) == b"-ERR [IN-USE] locked\r\n"
    assert p.err("bad\r\ninjected") == b"-ERR bad  injected\r\n"
    assert p.continuation(b"") == b"+ \r\n"
    assert p.multiline(b"+OK\r\n", [b"TOP", b".dot"]) == b"+OK\r\nTOP\r\n..dot\r\n.\r\n"
    assert p.listing(b"+OK\r\n", [(1, 120), (2, "abc")]) == b"+OK\r\n1 120\r\n2 abc\r\n.\r\n"


def test_capabilities() -> None:
    lines = p.capabilities("NEVER USER", stls=False, implementation="pobox")
    assert b"EXPIRE NEVER USER" in lines
    assert b"SASL PLAIN LOGIN" in lines
    assert b"STLS" not in lines
    assert b"STLS" in p.capabilities("NEVER", stls=True, implementation="pobox")


def stuff(chunks: list[bytes]) -> bytes:
    stuffer = p.DotStuffer()
    return b"".join(stuffer.feed(c) for c in chunks) + stuffer.finish()


@pytest.mark.parametrize(
    ("chunks", "wire"),
    [
        ([b""], b".\r\n"),
        ([b"a\r\n"], b"a\r\n.\r\n"),
        ([b"a"], b"a\r\n.\r\n"),
        ([b".\r\n"], b"..\r\n.\r\n"),
        ([b"a\r\n.b\r\n"], b"a\r\n..b\r\n.\r\n"),
        ([b"a\r\n", b".b\r\n"], b"a\r\n..b\r\n.\r\n"),  # a dot at the start of a chunk
        ([b"a\r", b"\n.b"], b"a\r\n..b\r\n.\r\n"),  # CR and LF in different chunks
        ([b"a\r\n.", b"b\r\n"], b"a\r\n..b\r\n.\r\n"),
        ([b"a.", b"b\r\n"], b"a.b\r\n.\r\n"),  # a dot in the middle of a line
        ([b"x\r"], b"x\r\r\n.\r\n"),
    ],
)
def test_dot_stuffing(chunks: list[bytes], wire: bytes) -> None:
    assert stuff(chunks) == wire
    assert p.unstuff(wire) == b"".join(chunks) + (
        b"" if not b"".join(chunks) or b"".join(chunks).endswith(b"\r\n") else b"\r\n"
    )


def top_end(content: bytes, lines: int, chunk: int) -> int | None:
    scanner = p.TopScanner(lines)
    end = None
    for i in range(0, len(content), chunk):
        end = scanner.feed(content[i : i + chunk])
    return end


MESSAGE = b"From: a\r\nSubject: b\r\n\r\nline 1\r\nline 2\r\nline 3\r\n"


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 1000])
def test_top_scanner(chunk: int) -> None:
    head = len(b"From: a\r\nSubject: b\r\n\r\n")
    assert top_end(MESSAGE, 0, chunk) == head
    assert top_end(MESSAGE, 1, chunk) == head + len(b"line 1\r\n")
    assert top_end(MESSAGE, 2, chunk) == head + len(b"line 1\r\nline 2\r\n")
    assert top_end(MESSAGE, 3, chunk) == len(MESSAGE)
    assert top_end(MESSAGE, 4, chunk) is None  # fewer lines than asked: send everything
    assert top_end(b"Subject: no body\r\n", 0, chunk) is None  # all header
    assert top_end(b"\r\nbody\r\n", 0, chunk) == 2  # an empty header
    assert top_end(b"A: b\n\nbody\n", 1, chunk) == len(b"A: b\n\nbody\n")  # bare LF too
