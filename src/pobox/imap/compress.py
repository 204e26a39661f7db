"""COMPRESS=DEFLATE (RFC 4978): a session's two byte streams through raw DEFLATE (RFC 1951).

Sans-IO: the session hands in what it read and gets the commands' bytes back, and hands in what
it is about to write and gets the compressed bytes. Every write ends with a sync flush, so the
client can decompress each response as soon as it arrives (RFC 4978 §4). Input is decompressed
at most :attr:`DeflateStreams.max_output` octets at a time and the rest held back, so a few
octets of a malicious stream cannot expand into gigabytes in one call.
"""

from __future__ import annotations

import zlib

#: zlib's compression level; 6 is zlib's own default and Dovecot's
LEVEL = 6
#: raw DEFLATE, no zlib header or checksum (RFC 4978 §3: window bits -8 to -15)
WINDOW_BITS = -15


class CompressionError(Exception):
    """The client's compressed stream is corrupt."""


class DeflateStreams:
    def __init__(self, max_output: int) -> None:
        self.max_output = max_output
        self._inflate = zlib.decompressobj(WINDOW_BITS)
        self._deflate = zlib.compressobj(LEVEL, zlib.DEFLATED, WINDOW_BITS)
        self._held = b""  # compressed input not yet decompressed (over max_output)

    @property
    def pending(self) -> bool:
        """Input is held back: call :meth:`incoming` before reading more from the client."""
        return bool(self._held)

    @property
    def ended(self) -> bool:
        """The client ended its compressed stream: nothing more can come."""
        return self._inflate.eof

    def incoming(self, data: bytes) -> bytes:
        """The plain octets in *data* (and in what was held back); may be empty when *data*
        ends in the middle of a block."""
        if self._held:
            data, self._held = self._held + data, b""
        if self._inflate.eof:
            return b""
        try:
            plain = self._inflate.decompress(data, self.max_output)
        except zlib.error as exc:
            raise CompressionError(str(exc)) from None
        self._held = self._inflate.unconsumed_tail
        return plain

    def outgoing(self, data: bytes) -> bytes:
        """*data* compressed and flushed, ready to write."""
        return self._deflate.compress(data) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
