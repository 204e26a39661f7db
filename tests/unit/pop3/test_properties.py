"""Hypothesis properties of the POP3 protocol layer.

1. Any bytes parse to a command or a BadCommand, never an exception.
2. The line buffer yields the same lines however the input is split, and never holds more than
   the limit of an unfinished line.
3. Unstuffing what DotStuffer produces gives back the content (plus the CRLF it adds), for any
   content and any chunking; the output never contains a premature terminator.
4. TopScanner finds the same end for any chunking, and it agrees with a naive model.
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from pobox import sasl
from pobox.pop3 import protocol as p

# bytes rich in the characters that matter here
interesting = st.lists(
    st.sampled_from([b".", b"\r", b"\n", b"\r\n", b"\r\n.", b" ", b"a", b"TOP", b"\x00", b"\xff"]),
    max_size=60,
).map(b"".join)
content = st.one_of(st.binary(max_size=400), interesting)


@st.composite
def chunked(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@given(st.binary(max_size=300))
def test_parser_never_raises(line: bytes) -> None:
    result = p.parse_command(line)
    assert isinstance(result, p.BadCommand | p.Command)


@given(st.sampled_from(["USER", "PASS", "LIST", "TOP", "RETR", "AUTH", "UIDL"]), content)
def test_parser_never_raises_on_known_keywords(keyword: str, rest: bytes) -> None:
    result = p.parse_command(keyword.encode() + b" " + rest)
    assert isinstance(result, p.BadCommand | p.Command)


@given(st.binary(max_size=200))
def test_sasl_never_raises(data: bytes) -> None:
    for name in sasl.MECHANISMS:
        exchange = sasl.start(name, data)
        assert exchange is not None
        exchange.respond(data)
        exchange.respond(data)


@given(st.data(), content)
def test_line_buffer_is_independent_of_chunking(data: st.DataObject, stream: bytes) -> None:
    def run(chunks: list[bytes]) -> list[bytes | p.LineTooLong]:
        buf = p.LineBuffer()
        out: list[bytes | p.LineTooLong] = []
        for chunk in chunks:
            buf.feed(chunk)
            while (line := buf.next_line(limit=20)) is not None:
                out.append(line)
            assert len(buf._buf) < 20
        return out

    whole = run([stream])
    assert run(data.draw(chunked(stream))) == whole


@settings(max_examples=300)
@given(st.data(), content)
def test_dot_stuffing_round_trips(data: st.DataObject, original: bytes) -> None:
    chunks = data.draw(chunked(original))
    stuffer = p.DotStuffer()
    wire = b"".join(stuffer.feed(c) for c in chunks) + stuffer.finish()
    expected = original if not original or original.endswith(b"\r\n") else original + b"\r\n"
    assert p.unstuff(wire) == expected
    # the only line that is exactly "." is the terminator
    assert b"\n.\r\n" not in wire[:-3] and not wire[:-3].startswith(b".\r\n")
    # no line of the body starts with a single dot
    for line in wire[:-3].split(b"\n"):
        assert not line.startswith(b".") or line.startswith(b"..")


def naive_top(message: bytes, lines: int) -> int | None:
    parts = message.split(b"\n")
    offset = 0
    for index, line in enumerate(parts[:-1]):
        offset += len(line) + 1
        if line in (b"", b"\r"):
            body = parts[index + 1 : -1]
            if lines > len(body):
                return None
            return offset + sum(len(x) + 1 for x in body[:lines])
    return None


@given(st.data(), content, st.integers(0, 6))
def test_top_scanner_matches_model(data: st.DataObject, message: bytes, lines: int) -> None:
    scanner = p.TopScanner(lines)
    end = None
    for chunk in data.draw(chunked(message)):
        end = scanner.feed(chunk)
    assert end == naive_top(message, lines)
