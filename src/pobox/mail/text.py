"""The searchable text of a message: what SEARCH BODY and TEXT look at (RFC 9051 §6.4.4).

One definition serves both the full-text index (built once per content, pobox.service.fulltext)
and the scan that answers for content not indexed yet (pobox.service.search), so that the two can
never disagree. The text of a message is a sequence of *segments*; a search string matches when
it is a substring of one segment (after both are folded, see ``fold``), never across two:

* the message's own header block, decoded (each field as ``Name: value``, RFC 2047 words decoded,
  unfolded) — TEXT only;
* every text/plain (any text/* but html) leaf at any depth, decoded from its transfer encoding
  (base64, quoted-printable) and its charset;
* every text/html leaf, decoded the same way and reduced to its text: tags, comments, scripts and
  styles dropped, character references decoded, block elements ending a line;
* the header block of every encapsulated message/rfc822, decoded as above;
* the file name of every attachment (Content-Disposition ``filename`` or Content-Type ``name``,
  RFC 2231 and RFC 2047 decoded).

Sans-IO: the raw bytes of a part are read through a ``read(offset, length)`` callable.
"""

from __future__ import annotations

import binascii
import codecs
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from html.parser import HTMLParser

from pobox.mail.headers import decode_rfc2047, split_fields
from pobox.mail.structure import MimePart, ParsedMessage, bstr

Reader = Callable[[int, int], bytes]

#: Octets read at a time.
CHUNK = 64 * 1024

#: Joins segments in the index. A search string that contains it (or NUL, which is stored as
#: it) is answered by a scan instead; since no other string can match across it, a substring of
#: the joined text that does not contain it is a substring of one segment.
SEPARATOR = "\uffff"


def fold(text: str) -> str:
    """The form both sides of a string comparison are brought to: case-folded, NFC."""
    folded = text.casefold()
    if folded.isascii():
        return folded
    return unicodedata.normalize("NFC", folded)


def header_text(block: bytes) -> str:
    """A header block as searchable text: ``Name: decoded value`` per field, one per line."""
    return "\n".join(f"{bstr(n)}: {decode_rfc2047(v)}" for n, v in split_fields(block))


def body_segments(parsed: ParsedMessage, read: Reader) -> Iterator[str]:
    """The body's segments in message order, not folded (see the module's docstring)."""
    for part in parsed.root.walk():
        if part.message is not None:
            yield header_text(part.message.header)
            continue
        if part.is_multipart:
            continue
        name = part.filename
        if name:
            yield name
        if part.content_type.lower() != "text":
            continue
        if part.content_subtype.lower() == "html":
            yield html_text(part_text(read, part))
        else:
            yield "".join(part_text(read, part))


def segments(parsed: ParsedMessage, read: Reader, *, with_header: bool) -> Iterator[str]:
    """The folded segments SEARCH BODY (``with_header=False``) or TEXT looks at."""
    if with_header:
        yield fold(header_text(parsed.header))
    for segment in body_segments(parsed, read):
        yield fold(segment)


# ---- decoding a part -------------------------------------------------------------------------


def raw_chunks(read: Reader, part: MimePart) -> Iterator[bytes]:
    pos, end = part.body_offset, part.body_offset + part.body_size
    while pos < end:
        data = read(pos, min(CHUNK, end - pos))
        if not data:
            return
        pos += len(data)
        yield data


_NOT_BASE64 = bytes(
    b for b in range(256) if not (chr(b).isascii() and (chr(b).isalnum() or chr(b) in "+/="))
)


def _base64(chunks: Iterable[bytes]) -> Iterator[bytes]:
    carry = b""
    for chunk in chunks:
        data = carry + chunk.translate(None, _NOT_BASE64)
        usable = len(data) - len(data) % 4
        carry = data[usable:]
        if usable:
            yield _b64decode(data[:usable])
    if carry.rstrip(b"="):
        yield _b64decode(carry.rstrip(b"=") + b"=" * (-len(carry.rstrip(b"=")) % 4))


def _b64decode(data: bytes) -> bytes:
    try:
        return binascii.a2b_base64(data)
    except binascii.Error:
        return b""


def _quoted_printable(chunks: Iterable[bytes]) -> Iterator[bytes]:
    carry = b""
    for chunk in chunks:
        data = carry + chunk
        cut = data.rfind(b"\n") + 1
        if cut == 0:  # one long line: keep back a possibly split "=XX"
            equals = data.rfind(b"=", max(len(data) - 2, 0))
            cut = equals if equals >= 0 else len(data)
        carry = data[cut:]
        if cut:
            yield binascii.a2b_qp(data[:cut])
    if carry:
        yield binascii.a2b_qp(carry)


def _decoder(charset: str | None) -> codecs.IncrementalDecoder:
    name = (charset or "utf-8").strip().strip('"').lower() or "utf-8"
    if name in ("us-ascii", "ascii", "us_ascii", "ansi_x3.4-1968"):
        name = "utf-8"  # a superset; 8-bit octets in "ASCII" text are most often UTF-8
    try:
        info = codecs.lookup(name)
    except LookupError:
        info = codecs.lookup("utf-8")
    if not getattr(info, "_is_text_encoding", True):  # bytes-to-bytes codecs (hex, base64, …)
        info = codecs.lookup("utf-8")
    return info.incrementaldecoder(errors="replace")


def part_bytes(read: Reader, part: MimePart) -> Iterator[bytes]:
    """A leaf's content in pieces, its transfer encoding (base64, quoted-printable) undone."""
    encoding = (part.content_transfer_encoding or "").strip().lower()
    chunks: Iterable[bytes] = raw_chunks(read, part)
    if encoding == "base64":
        return _base64(chunks)
    if encoding == "quoted-printable":
        return _quoted_printable(chunks)
    return iter(chunks)


def part_text(read: Reader, part: MimePart) -> Iterator[str]:
    """A leaf's content as text, in pieces: transfer encoding and charset undone."""
    decoder = _decoder(part.charset)
    for chunk in part_bytes(read, part):
        text = decoder.decode(chunk)
        if isinstance(text, str) and text:
            yield text
    text = decoder.decode(b"", final=True)
    if isinstance(text, str) and text:
        yield text


# ---- HTML to text ----------------------------------------------------------------------------

#: Elements whose content is not text a reader sees.
_HIDDEN = frozenset({"script", "style", "title", "template"})
#: Elements that start a new line where they begin or end.
_BLOCK = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "fieldset",
        "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
        "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "td", "th", "tr", "ul",
    }
)  # fmt: skip


class _HtmlText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self._hidden = 0  # whatever was left open before it, the body is seen
        elif tag in _HIDDEN:
            self._hidden += 1
        elif tag in _BLOCK:
            self.out.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK:
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self._hidden = max(self._hidden - 1, 0)
        elif tag in _BLOCK:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.out.append(data)


def html_text(pieces: Iterable[str]) -> str:
    """The text a reader of this HTML sees (see the module's docstring)."""
    parser = _HtmlText()
    for piece in pieces:
        parser.feed(piece)
    parser.close()
    return "".join(parser.out)
