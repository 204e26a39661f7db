"""Parse a message once, in one sequential pass, into a :class:`ParsedMessage`.

Memory stays bounded: header blocks are kept up to :data:`MAX_HEADER_BYTES` each (beyond that
only their size is counted), bodies are never held, only offsets, sizes and line counts. Lines
are read with a length limit, so a 50 MB message without a single line break is fine too, and
bodies are passed over in bulk, from one line that starts with ``--`` to the next.

The MIME rules follow what Dovecot does with the same bytes (the differential test in
tests/interop/ checks this):

* a boundary line is any line that *starts* with ``--boundary`` (of the part's multipart or of
  any enclosing one, innermost first); ``--boundary--`` closes;
* the line break before a boundary line belongs to the boundary, not to the part before it —
  if the part's body is empty it is taken from the part's header block, except when the
  boundary interrupts a header block that had no empty line: then the header keeps it;
* the header block ends at the first empty line, at a boundary line or at the end of input;
* a multipart without a boundary parameter has no children; ``message/rfc822`` bodies are
  parsed as messages whatever their Content-Transfer-Encoding; ``message/global`` is a leaf;
* on a top-level or encapsulated message, the Content-* fields are only honoured when the
  header has a Content-Type or a MIME-Version field;
* line counts count LF octets.

Never raises on malformed input.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass

from pobox.mail.envelope import build_envelope
from pobox.mail.headers import (
    HeaderField,
    first_value,
    parse_content_type,
    parse_disposition,
    parse_language,
    split_fields,
    unfold,
)
from pobox.mail.structure import MimePart, ParsedMessage, bstr

__all__ = ["MAX_DEPTH", "MAX_HEADER_BYTES", "MAX_PARTS", "parse_bytes", "parse_message"]

MAX_HEADER_BYTES = 256 * 1024
"""Octets of one header block kept for parsing; the rest is only counted."""
MAX_DEPTH = 100
"""Deeper multiparts / encapsulated messages are treated as opaque leaves."""
MAX_PARTS = 10_000
"""After this many parts, further multiparts / encapsulated messages are opaque leaves."""
_LINE_LIMIT = 64 * 1024
_CHUNK = 64 * 1024


class _Reader:
    """Sequential line reader that tracks offsets, LF counts and line starts.

    It reads the stream in chunks of :data:`_CHUNK` octets into a buffer of its own, so that
    :meth:`skip_lines` can pass over a body in bulk (``bytes.find`` and ``bytes.count``) instead
    of a line at a time; the buffer never holds more than a chunk and one unfinished line."""

    __slots__ = ("_at", "_buf", "_ended", "_stream", "at_line_start", "last_eol", "lf", "pos")

    def __init__(self, stream: typing.BinaryIO) -> None:
        self._stream = stream
        self._buf = b""
        self._at = 0  # offset in _buf of the next unread octet
        self._ended = False  # the stream has nothing more
        self.pos = 0  # offset of the next unread octet
        self.lf = 0  # LF octets consumed so far
        self.at_line_start = True  # the next chunk begins a line
        self.last_eol = 0  # length of the line ending of the last complete line read

    def _fill(self) -> bool:
        """Append the next chunk of the stream to the buffer; False at the end of input."""
        if self._ended:
            return False
        chunk = self._stream.read(_CHUNK)
        if not chunk:
            self._ended = True
            return False
        self._buf = self._buf[self._at :] + chunk
        self._at = 0
        return True

    def read(self) -> tuple[int, bytes, bool] | None:
        """Next chunk: (offset, data, starts_a_line); a chunk never spans a LF, and is at most
        :data:`_LINE_LIMIT` octets long."""
        while True:
            buf, at = self._buf, self._at
            newline = buf.find(b"\n", at, at + _LINE_LIMIT)
            if newline >= 0:
                end = newline + 1
                break
            if len(buf) - at >= _LINE_LIMIT:
                end = at + _LINE_LIMIT
                break
            if not self._fill():
                end = len(self._buf)
                if end == self._at:
                    return None
                break
        buf, at = self._buf, self._at
        data = buf[at:end]
        self._at = end
        off = self.pos
        start = self.at_line_start
        self.pos += len(data)
        if data.endswith(b"\n"):
            self.lf += 1
            self.at_line_start = True
            self.last_eol = 2 if data.endswith(b"\r\n") else 1
        else:
            self.at_line_start = False
        return off, data, start

    def skip_lines(self, stop_at_dashes: bool) -> None:
        """Consume whole lines in bulk: up to the next line that starts with ``--`` (the only
        lines that can be boundaries), or, without *stop_at_dashes*, up to the last line break
        of the input. What is left is read with :meth:`read`."""
        while True:
            buf, at = self._buf, self._at
            if stop_at_dashes:
                if self.at_line_start and buf.startswith(b"--", at):
                    return
                hit = buf.find(b"\n--", at)
                if hit >= 0:
                    self._consume(hit + 1)
                    return
            last = buf.rfind(b"\n", at)
            if last >= 0:
                self._consume(last + 1)
            if not self._fill():
                return

    def _consume(self, end: int) -> None:
        """Consume the buffer up to *end*, just after a LF."""
        buf, at = self._buf, self._at
        self.lf += buf.count(b"\n", at, end)
        self.pos += end - at
        self._at = end
        self.at_line_start = True
        self.last_eol = 2 if end - 2 >= at and buf[end - 2] == 13 else 1


@dataclass(slots=True)
class _Term:
    """What ended a part: a boundary line (index into the boundary stack) or EOF (index -1)."""

    offset: int  # offset of the boundary line / end of input
    index: int
    closing: bool
    line: bytes
    steal: int  # line-ending octets before the boundary line that belong to it
    lf_before: int  # LF count before the boundary line


def _match(line: bytes, bounds: list[bytes]) -> tuple[int, bool] | None:
    if not line.startswith(b"--") or not bounds:
        return None
    for idx in range(len(bounds) - 1, -1, -1):
        b = bounds[idx]
        if line.startswith(b, 2):
            return idx, line.startswith(b"--", 2 + len(b))
    return None


class _Parser:
    def __init__(self, stream: typing.BinaryIO) -> None:
        self.r = _Reader(stream)
        self.parts = 0

    # -- helpers -------------------------------------------------------------------------

    def _boundary_term(self, off: int, line: bytes, m: tuple[int, bool]) -> _Term:
        # the previous chunk ended a line (we are at a line start), its ending is last_eol
        # unless this is the very first line of the input
        steal = self.r.last_eol if off > 0 else 0
        lf_before = self.r.lf - (1 if line.endswith(b"\n") else 0)
        return _Term(off, m[0], m[1], line, steal, lf_before)

    def _eof(self) -> _Term:
        return _Term(self.r.pos, -1, False, b"", 0, self.r.lf)

    def _skip_until_boundary(self, bounds: list[bytes]) -> _Term:
        """Consume octets until a boundary line (returned) or EOF."""
        while True:
            self.r.skip_lines(stop_at_dashes=bool(bounds))
            got = self.r.read()
            if got is None:
                return self._eof()
            off, line, start = got
            if start:
                m = _match(line, bounds)
                if m is not None:
                    return self._boundary_term(off, line, m)

    # -- a part --------------------------------------------------------------------------

    def part(
        self,
        bounds: list[bytes],
        default: tuple[str, str],
        message_root: bool,
        depth: int,
    ) -> tuple[MimePart, bytes, _Term]:
        """Parse one part (header + body) starting at the reader's position."""
        self.parts += 1
        header_offset = self.r.pos
        header = bytearray()
        header_steal = 0
        term: _Term | None = None
        while True:
            got = self.r.read()
            if got is None:
                term = self._eof()
                break
            off, line, start = got
            if start and bounds:
                m = _match(line, bounds)
                if m is not None:
                    term = self._boundary_term(off, line, m)
                    if off > header_offset:
                        # A header block cut by a boundary: Dovecot leaves the last line ending
                        # out of the header (BODY[n.MIME]) but still counts it in the size of
                        # an enclosing message/rfc822 part.
                        header_steal = term.steal
                        term.steal = 0
                    break
            if len(header) < MAX_HEADER_BYTES:
                header += line[: MAX_HEADER_BYTES - len(header)]
            if start and line in (b"\r\n", b"\n"):
                break
        header_bytes = bytes(header)
        fields = split_fields(header_bytes)
        body_offset = self.r.pos if term is None else term.offset
        body_lf_start = self.r.lf if term is None else term.lf_before

        ctype, csub = default
        params: list[tuple[bytes, bytes]] = []
        mime = not message_root or any(
            n.lower() in (b"content-type", b"mime-version") for n, _ in fields
        )
        if mime:
            ct_value = first_value(fields, b"content-type")
            if ct_value is not None:
                parsed = parse_content_type(ct_value)
                if parsed is None:
                    ctype, csub = "", ""
                else:
                    ctype, csub = bstr(parsed[0]), bstr(parsed[1])
                    params = parsed[2]
        lt, ls = ctype.lower(), csub.lower()

        children: list[MimePart] = []
        message: ParsedMessage | None = None
        pending: _Pending | None = None
        opaque = depth >= MAX_DEPTH or self.parts >= MAX_PARTS
        if term is None:
            if lt == "multipart" and not opaque:
                boundary = next((v for k, v in params if k.lower() == b"boundary"), b"")
                if boundary:
                    term = self._multipart_body(
                        [*bounds, boundary], len(bounds), children, ls, depth
                    )
            elif lt == "message" and ls == "rfc822" and not opaque:
                inner, inner_header, term = self.part(bounds, ("text", "plain"), True, depth + 1)
                pending = _Pending(inner, inner_header)
            if term is None:
                term = self._skip_until_boundary(bounds)

        # where the part ends: the boundary takes the preceding line ending
        end = term.offset - term.steal
        lf_end = term.lf_before - (1 if term.steal else 0)
        header_size = body_offset - header_offset
        if header_steal:
            header_size -= header_steal
            body_offset -= header_steal
            body_size = 0
            body_lines = 0
        elif end < body_offset:
            header_size = max(0, end - header_offset)
            body_offset = header_offset + header_size
            body_size = 0
            body_lines = 0
        else:
            body_size = end - body_offset
            body_lines = max(0, lf_end - body_lf_start)

        if pending is not None:
            message = _finish_message(pending.root, pending.header, body_size)

        part = _make_part(
            fields if mime else [],
            header_offset,
            header_size,
            body_offset,
            body_size,
            body_lines,
            ctype,
            csub,
            params,
            children,
            message,
        )
        return part, header_bytes, term

    def _multipart_body(
        self,
        bounds: list[bytes],
        own: int,
        children: list[MimePart],
        subtype: str,
        depth: int,
    ) -> _Term:
        """Parse preamble, children and epilogue. Returns the term that ends the multipart."""
        default = ("message", "rfc822") if subtype == "digest" else ("text", "plain")
        term = self._skip_until_boundary(bounds)
        while True:
            if term.index != own:  # EOF or an enclosing boundary ends us
                return term
            if term.closing:
                epilogue = self.r.pos
                term = self._skip_until_boundary(bounds[:own])
                if term.offset == epilogue:
                    term.steal = 0  # the close delimiter line keeps its line ending
                return term
            child, _, term = self.part(bounds, default, False, depth + 1)
            children.append(child)


@dataclass(slots=True)
class _Pending:
    root: MimePart
    header: bytes


def _finish_message(root: MimePart, header: bytes, size: int) -> ParsedMessage:
    return ParsedMessage(
        root=root, size=size, header=header, envelope=build_envelope(split_fields(header))
    )


def _s(v: bytes | None) -> str | None:
    return None if v is None else bstr(unfold(v))


def _make_part(
    fields: list[HeaderField],
    header_offset: int,
    header_size: int,
    body_offset: int,
    body_size: int,
    body_lines: int,
    ctype: str,
    csub: str,
    params: list[tuple[bytes, bytes]],
    children: list[MimePart],
    message: ParsedMessage | None,
) -> MimePart:
    # Content-Transfer-Encoding: the last well-formed occurrence (a lone token), as Dovecot does
    cte_s: str | None = None
    for name, value in fields:
        if name.lower() == b"content-transfer-encoding":
            tok = unfold(value).strip(b" \t")
            if tok and not any(c in b' \t;()<>@,:\\"/[]?=' for c in tok):
                cte_s = bstr(tok)
    disp = first_value(fields, b"content-disposition")
    disp_parsed = parse_disposition(disp) if disp is not None else None
    lang = first_value(fields, b"content-language")
    langs = parse_language(lang) if lang is not None else []
    return MimePart(
        header_offset=header_offset,
        header_size=header_size,
        body_offset=body_offset,
        body_size=body_size,
        body_lines=body_lines,
        content_type=ctype,
        content_subtype=csub,
        params=tuple((bstr(k), bstr(v)) for k, v in params),
        content_id=_s(first_value(fields, b"content-id")),
        content_description=_s(first_value(fields, b"content-description")),
        content_transfer_encoding=cte_s,
        disposition=None if disp_parsed is None else bstr(disp_parsed[0]),
        disposition_params=()
        if disp_parsed is None
        else tuple((bstr(k), bstr(v)) for k, v in disp_parsed[1]),
        language=tuple(bstr(x) for x in langs) or None,
        location=_s(first_value(fields, b"content-location")),
        md5=_s(first_value(fields, b"content-md5")),
        children=tuple(children),
        message=message,
    )


def parse_message(stream: typing.BinaryIO) -> ParsedMessage:
    """Parse a whole message from ``stream`` (read once, sequentially, to the end)."""
    p = _Parser(stream)
    root, header, _ = p.part([], ("text", "plain"), True, 0)
    size = p.r.pos
    return _finish_message(root, header, size)


def parse_bytes(data: bytes) -> ParsedMessage:
    """Convenience wrapper for messages already in memory."""
    import io

    return parse_message(io.BytesIO(data))
