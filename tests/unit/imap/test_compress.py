"""The sans-IO DEFLATE streams of COMPRESS=DEFLATE (pobox/imap/compress.py)."""

from __future__ import annotations

import zlib

import pytest

from pobox.imap.compress import CompressionError, DeflateStreams


def client_deflate(data: bytes) -> bytes:
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    return deflate.compress(data) + deflate.flush(zlib.Z_SYNC_FLUSH)


def test_input_cut_anywhere_comes_out_whole() -> None:
    streams = DeflateStreams(max_output=1 << 20)
    wire = client_deflate(b"a1 NOOP\r\n" * 100)
    plain = b"".join(streams.incoming(wire[i : i + 3]) for i in range(0, len(wire), 3))
    assert plain == b"a1 NOOP\r\n" * 100
    assert not streams.pending and not streams.ended


def test_output_per_call_is_bounded_and_the_rest_is_held() -> None:
    streams = DeflateStreams(max_output=1000)
    wire = client_deflate(b"x" * 10_000)
    first = streams.incoming(wire)
    assert len(first) == 1000 and streams.pending
    rest = b""
    while streams.pending:
        rest += streams.incoming(b"")
    assert first + rest == b"x" * 10_000


def test_every_write_is_flushed_for_the_client() -> None:
    streams = DeflateStreams(max_output=1 << 20)
    inflate = zlib.decompressobj(-15)
    for n in range(3):
        line = b"* %d EXISTS\r\n" % n
        assert inflate.decompress(streams.outgoing(line)) == line  # nothing waits in zlib


def test_a_corrupt_stream_is_an_error() -> None:
    with pytest.raises(CompressionError):
        DeflateStreams(max_output=100).incoming(b"\xff" * 16)
