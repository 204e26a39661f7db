"""RETR/TOP content handling in bulk: the chunked byte operations against per-line references.

DotStuffer and TopScanner work on whole chunks (``bytes.replace``, ``find``, ``count``) and carry
the line-start state across chunk borders. Here they are checked against the simplest possible
per-line implementations, for any content and any chunking: lines starting with ".", bare LF,
bare CR, and chunk borders in the middle of a CRLF or right before a dot.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pobox.pop3 import protocol as p

# bytes rich in the characters that matter here
pieces = st.sampled_from(
    [b".", b"..", b"\r", b"\n", b"\r\n", b"\r\n.", b"\n.", b"\r\n\r\n", b" ", b"a", b"\xff"]
)
content = st.one_of(st.binary(max_size=300), st.lists(pieces, max_size=80).map(b"".join))


@st.composite
def chunkings(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=16)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def reference_stuff(content: bytes) -> bytes:
    """RFC 1939 §3, one line at a time: a line (up to and including its LF) that starts with
    "." gets one more; a CRLF ends the content if it does not end with one; then ".CRLF"."""
    out = []
    for line in _lf_lines(content):
        out.append(b"." + line if line.startswith(b".") else line)
    if content and not content.endswith(b"\r\n"):
        out.append(b"\r\n")
    out.append(b".\r\n")
    return b"".join(out)


def _lf_lines(content: bytes) -> list[bytes]:
    """Lines as a client reading up to each LF sees them (a bare CR does not end a line)."""
    lines = []
    start = 0
    while start < len(content):
        end = content.find(b"\n", start)
        end = len(content) if end < 0 else end + 1
        lines.append(content[start:end])
        start = end
    return lines


def reference_top(content: bytes, body_lines: int) -> bytes:
    """TOP n k one line at a time: header lines up to the blank one, then k body lines."""
    out = []
    lines = iter(_lf_lines(content))
    for line in lines:
        out.append(line)
        if line in (b"\n", b"\r\n"):
            out.extend(itertools.islice(lines, body_lines))
            break
    return b"".join(out)


def stuff(chunks: list[bytes]) -> bytes:
    stuffer = p.DotStuffer()
    return b"".join(stuffer.feed(chunk) for chunk in chunks) + stuffer.finish()


def top(chunks: list[bytes], body_lines: int) -> bytes:
    """What the session sends for TOP: the content cut where the scanner says, stuffed."""
    scanner = p.TopScanner(body_lines)
    stuffer = p.DotStuffer()
    out = []
    offset = 0
    for chunk in chunks:
        end = scanner.feed(chunk)
        if end is not None:
            chunk = chunk[: end - offset]
        offset += len(chunk)
        out.append(stuffer.feed(chunk))
        if end is not None:
            break
    return b"".join(out) + stuffer.finish()


@settings(max_examples=500)
@given(st.data(), content)
@example(None, b".\r\n")
@example(None, b"a\r\n.\r\n.")
@example(None, b"a\r.b\n.c")
@example(None, b"\n\n.\n")
def test_dot_stuffing_equals_the_per_line_reference(
    data: st.DataObject | None, original: bytes
) -> None:
    chunks = [original] if data is None else data.draw(chunkings(original))
    assert stuff(chunks) == reference_stuff(original)


@pytest.mark.parametrize(
    "chunks",
    [
        [b"a\r", b"\n.b\r\n"],  # the border in the middle of a CRLF, a dot right after
        [b"a\r\n", b".b\r\n"],  # the border right before a dot at a line start
        [b"a\r\n.", b".\r\n"],  # a border after a stuffed dot
        [b".", b".", b".\r\n"],  # one-octet chunks at the very start
        [b"x\r", b".y\r\n"],  # a bare CR is no line end: no stuffing
        [b"x\n", b".y\n"],  # a bare LF is one (clients read up to LF)
        [b"", b"\r\n", b"", b"."],
    ],
)
def test_dot_stuffing_across_chunk_borders(chunks: list[bytes]) -> None:
    whole = b"".join(chunks)
    assert stuff(chunks) == reference_stuff(whole) == stuff([whole])
    assert p.unstuff(stuff(chunks)) == (whole if whole.endswith(b"\r\n") else whole + b"\r\n")


@settings(max_examples=500)
@given(st.data(), content, st.integers(0, 8) | st.sampled_from([99999999, 10**17]))
@example(None, b"\r\n.\r\nbody\r\n", 0)
@example(None, b"H: v\r\n\r\n.a\r\n.b\r\n", 1)
@example(None, b"H: v\n\n.a\n", 5)
@example(None, b"H: v\r\nno blank line", 0)
@example(None, b"H: v\n\n\r\nbody\r\n", 0)  # LF LF right before a CRLF blank line
def test_top_equals_the_per_line_reference(
    data: st.DataObject | None, message: bytes, body_lines: int
) -> None:
    chunks = [message] if data is None else data.draw(chunkings(message))
    assert top(chunks, body_lines) == reference_stuff(reference_top(message, body_lines))


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64, 4096])
@pytest.mark.parametrize("body_lines", [0, 1, 2, 3, 1000])
def test_top_with_every_chunk_size(size: int, body_lines: int) -> None:
    message = (
        b"Received: from x\r\n\tby y\r\nSubject: s\r\n\r\n"
        b".first\r\nsecond\r\n\r\n.\r\nlast without CRLF"
    )
    chunks = [message[i : i + size] for i in range(0, len(message), size)]
    assert top(chunks, body_lines) == reference_stuff(reference_top(message, body_lines))
