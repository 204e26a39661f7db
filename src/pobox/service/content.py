"""Receiving message content: spool it durably, parse it once, describe it for the store."""

from __future__ import annotations

import contextlib
import errno
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import BinaryIO, cast

from pobox.errors import Temporary
from pobox.mail.binary import encode_binary_parts
from pobox.mail.parse import parse_message
from pobox.mail.structure import ParsedMessage
from pobox.mail.threading import pack_references, thread_references
from pobox.store.api import NewMessage, SearchFields, Spool

CHUNK = 256 * 1024


def normalize_crlf(data: bytes) -> bytes:
    """Bare LF line ends become CRLF, in bulk; *data* itself (no copy) when it has none."""
    lf = data.count(b"\n")
    if lf == 0 or lf == data.count(b"\r\n"):
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


class CrlfWriter:
    """Writes to a spool, turning bare LF line ends into CRLF (stored form is RFC 5322's)."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self._last_cr = False

    def write(self, data: bytes) -> None:
        if not data:
            return
        if b"\n" in data and data.count(b"\n") != data.count(b"\r\n"):
            fixed = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            if data.startswith(b"\n") and self._last_cr:
                fixed = fixed[1:]  # the CR was written with the previous chunk
            data = fixed
        self.spool.write(data)
        self._last_cr = data.endswith(b"\r")


def fields_of(parsed: ParsedMessage) -> SearchFields:
    return SearchFields(
        subject=parsed.subject,
        from_=parsed.from_addr,
        to=parsed.to_addrs,
        cc=parsed.cc,
        bcc=parsed.bcc,
        message_id=parsed.message_id or "",
        sent_date=parsed.sent_date,
        references=pack_references(
            thread_references(
                " ".join(parsed.header_values("References")),
                " ".join(parsed.header_values("In-Reply-To")),
            )
        ),
    )


class IncomingMessage:
    """A message arriving in pieces (IMAP APPEND).

    :meth:`write` puts a piece in the spool file (the page cache: IMAP APPEND calls it on the
    event loop), :meth:`seal` makes the content durable (fsync: call it in a thread) or
    :meth:`complete` only whole (the store's append then seals it), and :meth:`describe` parses
    it once; :meth:`finish` is seal and describe, for callers in a thread.

    With *binary* (a literal8, RFC 3516) the octets are kept as sent until :meth:`finish`,
    which base64-encodes the parts declared ``binary`` before the message is stored
    (:func:`pobox.mail.binary.encode_binary_parts`); at most the APPEND limit is held."""

    def __init__(self, spool: Spool, *, binary: bool = False) -> None:
        self.spool = spool
        self._writer = CrlfWriter(spool)
        self._raw: bytearray | None = bytearray() if binary else None

    def write(self, data: bytes) -> None:
        if self._raw is not None:
            self._raw += data
            return
        try:
            self._writer.write(data)
        except OSError as exc:
            self.discard()
            raise _temporary(exc) from exc

    def finish(
        self,
        *,
        flags: frozenset[str] = frozenset(),
        internal_date: datetime | None = None,
        pop3_uidl: str | None = None,
    ) -> NewMessage:
        """fsync the content, parse it once, and describe it for the store."""
        self.seal()
        return self.describe(flags=flags, internal_date=internal_date, pop3_uidl=pop3_uidl)

    def seal(self) -> None:
        """Blocking: the content complete and on disk (fsync)."""
        self.complete()
        with self._discarded_on_failure():
            self.spool.seal()

    def complete(self) -> None:
        """The content whole in its spool, not yet durable: the store's append seals it just
        before its commit (IMAP APPEND; no thread hop for the fsync beforehand)."""
        with self._discarded_on_failure():
            if self._raw is not None:
                raw, self._raw = bytes(self._raw), None
                self._writer.write(encode_binary_parts(raw) or raw)

    def describe(
        self,
        *,
        flags: frozenset[str] = frozenset(),
        internal_date: datetime | None = None,
        pop3_uidl: str | None = None,
    ) -> NewMessage:
        """Parse the content once and describe it for the store (reads the file)."""
        return describe(
            self.spool,
            self.parse(),
            flags=flags,
            internal_date=internal_date,
            pop3_uidl=pop3_uidl,
        )

    def parse(self) -> ParsedMessage:
        """The content, complete, parsed (reads the file); see also :func:`describe`."""
        with self._discarded_on_failure(), self.spool.open() as fp:
            return parse_message(fp)

    def discard(self) -> None:
        self.spool.discard()

    @contextlib.contextmanager
    def _discarded_on_failure(self) -> Iterator[None]:
        """Whatever fails discards the spool; disk trouble becomes :class:`Temporary`."""
        try:
            yield
        except OSError as exc:
            self.discard()
            raise _temporary(exc) from exc
        except BaseException:
            self.discard()
            raise


def _temporary(exc: OSError) -> Exception:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS):
        return Temporary(f"cannot store the message now: {exc.strerror}")
    return exc


def spool_message(
    spool: Spool,
    chunks: Iterable[bytes],
    *,
    flags: frozenset[str] = frozenset(),
    internal_date: datetime | None = None,
    pop3_uidl: str | None = None,
) -> NewMessage:
    """Blocking: write *chunks* to *spool*, fsync it, parse it once. Run in a worker thread.

    Disk trouble becomes :class:`Temporary` and the spool is discarded.
    """
    incoming = IncomingMessage(spool)
    try:
        for chunk in chunks:
            incoming.write(chunk)
    except BaseException:
        incoming.discard()
        raise
    return incoming.finish(flags=flags, internal_date=internal_date, pop3_uidl=pop3_uidl)


# a message that is already in memory (SMTP/LMTP DATA) -----------------------------------------
class _Pieces:
    """The concatenation of byte strings as a stream for the parser (which calls ``read``),
    without copying them into one; a line may go on from one piece to the next."""

    def __init__(self, pieces: Sequence[bytes]) -> None:
        self._streams = [io.BytesIO(piece) for piece in pieces if piece]  # shares, no copy
        self._index = 0

    def read(self, size: int = -1) -> bytes:
        out = b""
        while self._index < len(self._streams):
            out += self._streams[self._index].read(size if size < 0 else size - len(out))
            if 0 <= size <= len(out):
                return out
            self._index += 1  # this piece is used up; go on in the next
        return out

    def readline(self, size: int = -1) -> bytes:
        out = b""
        while self._index < len(self._streams):
            line = self._streams[self._index].readline(size if size < 0 else size - len(out))
            out += line
            if line.endswith(b"\n") or 0 <= size <= len(out):
                return out
            self._index += 1  # this piece is used up; the line goes on in the next
        return out


def parse_pieces(pieces: Sequence[bytes]) -> ParsedMessage:
    """Parse a message held in memory as consecutive pieces (trace headers, then the DATA)."""
    return parse_message(cast(BinaryIO, _Pieces(pieces)))


def write_spool(
    new_spool: Callable[[], Spool], pieces: Sequence[bytes], *, seal: bool = True
) -> Spool:
    """Blocking: a new spool with *pieces* written in large chunks, sealed (fsync'd) unless
    *seal* is False (the store's append then seals it before its commit).

    Disk trouble becomes :class:`Temporary` and the spool is discarded. Run in a worker thread;
    the fsync releases the GIL, so the message can be parsed meanwhile (:func:`parse_pieces`).
    """
    spool: Spool | None = None
    try:
        spool = new_spool()
        for piece in pieces:
            for chunk in chunked(piece):
                spool.write(chunk)
        if seal:
            spool.seal()
    except OSError as exc:
        if spool is not None:
            spool.discard()
        raise _temporary(exc) from exc
    except BaseException:
        if spool is not None:
            spool.discard()
        raise
    return spool


def describe(
    spool: Spool,
    parsed: ParsedMessage,
    *,
    flags: frozenset[str] = frozenset(),
    internal_date: datetime | None = None,
    pop3_uidl: str | None = None,
) -> NewMessage:
    return NewMessage(
        spool=spool,
        structure=parsed.to_bytes(),
        fields=fields_of(parsed),
        flags=flags,
        internal_date=internal_date,
        pop3_uidl=pop3_uidl,
    )


def chunked(data: bytes, size: int = CHUNK) -> Iterable[bytes]:
    if len(data) <= size:
        yield data  # no copy
        return
    view = memoryview(data)
    for start in range(0, len(data), size):
        yield bytes(view[start : start + size])
