from __future__ import annotations

import io
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pobox.mail.parse import parse_bytes, parse_message
from pobox.mail.structure import MimePart, ParsedMessage
from pobox.service.content import parse_pieces

CORPUS = Path(__file__).resolve().parents[2] / "data" / "messages"
CORPUS_FILES = sorted(CORPUS.glob("*.eml"))


def _parts(msg: ParsedMessage) -> list[MimePart]:
    return msg.root.walk()


def _check_offsets(msg: ParsedMessage, size: int) -> None:
    assert msg.size == size
    for p in _parts(msg):
        assert 0 <= p.header_offset <= p.header_offset + p.header_size <= size
        assert p.header_offset + p.header_size <= p.body_offset
        assert 0 <= p.body_offset <= p.body_offset + p.body_size <= size
        assert p.body_lines >= 0


def test_corpus_is_big_enough() -> None:
    assert len(CORPUS_FILES) >= 25


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.name)
def test_corpus_parses_and_roundtrips(path: Path) -> None:
    raw = path.read_bytes()
    msg = parse_bytes(raw)
    _check_offsets(msg, len(raw))
    assert ParsedMessage.from_bytes(msg.to_bytes()) == msg
    # body line counts are LF counts of the body octets
    for p in _parts(msg):
        assert p.body_lines == raw[p.body_offset : p.body_offset + p.body_size].count(b"\n")


def test_simple_message_offsets() -> None:
    raw = b"Subject: hi\r\nFrom: a@b\r\n\r\nhello\r\nworld\r\n"
    msg = parse_bytes(raw)
    root = msg.root
    assert (root.header_offset, root.header_size) == (0, 26)
    assert raw[root.body_offset :] == b"hello\r\nworld\r\n"
    assert (root.body_size, root.body_lines) == (14, 2)
    assert msg.header == raw[:26]
    assert (root.content_type, root.content_subtype) == ("text", "plain")
    assert msg.subject == "hi"


def test_multipart_offsets_boundary_takes_crlf() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"pre\r\n--b\r\nContent-Type: text/plain\r\n\r\none\r\n"
        b"--b\r\n\r\ntwo\r\n\r\n--b--\r\nepi\r\n"
    )
    msg = parse_bytes(raw)
    one, two = msg.root.children
    assert raw[one.header_offset : one.body_offset] == b"Content-Type: text/plain\r\n\r\n"
    assert raw[one.body_offset : one.body_offset + one.body_size] == b"one"
    assert one.body_lines == 0
    assert raw[two.body_offset : two.body_offset + two.body_size] == b"two\r\n"
    assert two.body_lines == 1
    assert msg.root.body_offset + msg.root.body_size == len(raw)


def test_message_rfc822_is_parsed() -> None:
    raw = (
        b"MIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n"
        b"Subject: inner\r\nFrom: x@y\r\n\r\nbody\r\n"
    )
    msg = parse_bytes(raw)
    inner = msg.root.message
    assert inner is not None
    assert inner.envelope.subject == b"inner"
    assert inner.size == msg.root.body_size
    assert inner.root.header_offset == msg.root.body_offset
    assert raw[inner.root.body_offset :] == b"body\r\n"
    assert inner.subject == "inner"


def test_content_fields_ignored_without_mime_on_message_root() -> None:
    assert parse_bytes(b"Content-Description: d\r\n\r\n").root.content_description is None
    msg = parse_bytes(b"MIME-Version: 1.0\r\nContent-Description: d\r\n\r\n")
    assert msg.root.content_description == "d"


def test_lf_only_input_parses() -> None:
    raw = (
        b"From: a@b\nSubject: lf\nContent-Type: multipart/mixed; boundary=x\n\n"
        b"--x\nContent-Type: text/plain\n\none\ntwo\n--x\n\nthree\n--x--\n"
    )
    msg = parse_bytes(raw)
    _check_offsets(msg, len(raw))
    a, b = msg.root.children
    assert raw[a.body_offset : a.body_offset + a.body_size] == b"one\ntwo"
    assert (a.body_lines, b.body_lines) == (1, 0)
    assert msg.subject == "lf"


def test_no_blank_line_and_empty_input() -> None:
    msg = parse_bytes(b"Subject: x\r\n")
    assert msg.root.header_size == 12 and msg.root.body_size == 0
    empty = parse_bytes(b"")
    assert empty.size == 0 and empty.root.body_size == 0
    assert empty.envelope.subject is None


def test_search_helpers() -> None:
    raw = (
        b"From: =?utf-8?B?SsO2cmc=?= <j@x.de>\r\nTo: a@b, c@d\r\nTo: e@f\r\nCc: g@h\r\n"
        b"Subject: =?iso-8859-1?Q?caf=E9?=\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
        b"Message-ID: <id@x>\r\n\r\n"
    )
    msg = parse_bytes(raw)
    assert msg.subject == "café"
    assert msg.from_addr == "Jörg <j@x.de>"
    assert msg.to_addrs == "a@b, c@d, e@f"
    assert msg.cc == "g@h" and msg.bcc == ""
    assert msg.message_id == "<id@x>"
    assert msg.sent_date is not None and msg.sent_date.year == 1994
    assert msg.header_values("to") == ["a@b, c@d", "e@f"]


def test_part_helpers() -> None:
    raw = (CORPUS / "06-rfc2231-filename.eml").read_bytes()
    parts = parse_bytes(raw).root.children
    assert parts[1].param("name") == "a very long file name that goes on and on.bin"
    assert parts[1].filename == "€ price list.txt"
    assert parts[2].filename == "Füße.txt"
    assert parts[0].charset is None
    assert parts[0].mime_type == "text/plain"


def test_deep_nesting_is_bounded() -> None:
    depth = 300
    head = b"".join(
        b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1)
        for i in range(depth)
    )
    raw = b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n" + head + b"end\r\n"
    msg = parse_bytes(raw)
    _check_offsets(msg, len(raw))


def test_from_bytes_rejects_unknown_format() -> None:
    with pytest.raises(ValueError):
        ParsedMessage.from_bytes(b"[99, null]")


# ---- properties --------------------------------------------------------------------------

_pieces = st.sampled_from(
    [
        b"\r\n",
        b"\n",
        b"--b\r\n",
        b"--b--\r\n",
        b"--c\r\n",
        b"Content-Type: multipart/mixed; boundary=b\r\n",
        b'Content-Type: multipart/alternative; boundary="c"\r\n',
        b"Content-Type: message/rfc822\r\n",
        b"Content-Type: text/plain; name*0*=utf-8''%E2; name*1=x\r\n",
        b"Subject: =?utf-8?B?w6k=?=\r\n",
        b"From: a <b@c>, g: x@y;\r\n",
        b"To: <<@>>,(\r\n",
        b" folded\r\n",
        b"body line\r\n",
        b"\x00\xff\x80",
        b"X",
    ]
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(_pieces, st.binary(max_size=40)), max_size=40))
def test_parse_never_raises_and_offsets_are_inside(chunks: list[bytes]) -> None:
    raw = b"".join(chunks)
    msg = parse_bytes(raw)
    _check_offsets(msg, len(raw))
    assert ParsedMessage.from_bytes(msg.to_bytes()) == msg


class Trickle(io.RawIOBase):
    """A stream that hands out its bytes in the given small sizes, in turn: the parser must find
    boundaries, line ends and CRLFs that are cut between two reads."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self.data, self.at, self.sizes, self.turn = data, 0, sizes or [1], 0

    def read(self, size: int = -1) -> bytes:
        step = self.sizes[self.turn % len(self.sizes)]
        self.turn += 1
        if size >= 0:
            step = min(step, size)
        out = self.data[self.at : self.at + step]
        self.at += len(out)
        return out


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.one_of(_pieces, st.binary(max_size=40)), max_size=40),
    st.lists(st.integers(min_value=1, max_value=9), max_size=5),
)
def test_parse_does_not_depend_on_how_the_input_is_cut(
    chunks: list[bytes], sizes: list[int]
) -> None:
    raw = b"".join(chunks)
    whole = parse_bytes(raw)
    assert parse_message(Trickle(raw, sizes)) == whole  # type: ignore[arg-type]
    assert parse_pieces(chunks) == whole


def test_boundaries_after_a_line_longer_than_the_line_limit() -> None:
    """A line longer than the reader's limit is read in pieces; a "--b" inside it is not at a
    line start, the one after its line break is."""
    long = b"x" * 70_000 + b"--b\r\n"
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n"
        + long
        + b"--b\r\n\r\nsecond\r\n--b--\r\n"
    )
    msg = parse_message(Trickle(raw, [4096, 7]))  # type: ignore[arg-type]
    assert msg == parse_bytes(raw)
    first, second = msg.root.children
    assert first.body_size == len(long) - 2  # the boundary takes the line ending before it
    assert raw[second.body_offset : second.body_offset + second.body_size] == b"second"


@settings(max_examples=200)
@given(st.binary(max_size=2000))
def test_parse_arbitrary_bytes(raw: bytes) -> None:
    msg = parse_bytes(raw)
    _check_offsets(msg, len(raw))
    assert ParsedMessage.from_bytes(msg.to_bytes()) == msg


# ---- bounded memory ----------------------------------------------------------------------


class _Generated(io.RawIOBase):
    """A ~30 MB multipart message produced on the fly (never held in memory)."""

    def __init__(self, size: int) -> None:
        self._chunks = self._gen(size)
        self._buf = b""
        self.total = 0

    @staticmethod
    def _gen(size: int) -> Iterator[bytes]:
        yield (
            b"From: big@example.org\r\nSubject: big\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=BIG\r\n\r\n--BIG\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        )
        line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIzNDU2Nzg5YWJjZGVmZ2hpamtsbW5vcHFyc3R1\r\n"
        block = line * 1000
        sent = 0
        while sent < size:
            yield block
            sent += len(block)
        yield b"--BIG--\r\n"

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        self.total += n
        return n


def test_30mb_message_memory_is_bounded() -> None:
    size = 30 * 1024 * 1024
    raw = _Generated(size)
    stream = io.BufferedReader(raw, buffer_size=64 * 1024)
    tracemalloc.start()
    try:
        msg = parse_message(stream)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert msg.size == raw.total > size
    (part,) = msg.root.children
    assert part.body_size > size
    assert part.body_lines == part.body_size // 78
    assert peak < 2 * 1024 * 1024, peak


def test_duplicate_mime_fields_like_dovecot() -> None:
    raw = (
        b"MIME-Version: 1.0\r\nContent-Type: text/html\r\nContent-Type: image/png\r\n"
        b"Content-Transfer-Encoding: 7bit; junk\r\nContent-Transfer-Encoding: base64\r\n\r\nx\r\n"
    )
    root = parse_bytes(raw).root
    assert (root.content_type, root.content_subtype) == ("text", "html")
    assert root.content_transfer_encoding == "base64"


def test_nul_in_subject_becomes_replacement_character() -> None:
    msg = parse_bytes(b"Subject: nul\x00byte\r\n\r\n")
    assert msg.envelope.subject == b"nul\xef\xbf\xbdbyte"
