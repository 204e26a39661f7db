"""A message's preview: the short plain text a client shows under the subject (RFC 8970).

Made from the stored parse of the message, sans-IO (the raw bytes of a part come through a
``read(offset, length)`` callable, as in :mod:`pobox.mail.text`):

* the part is the first text/plain or text/html leaf of the message itself, in message order,
  that is not an attachment (``Content-Disposition: attachment``); parts of encapsulated
  messages (message/rfc822) are not looked at;
* its content is decoded (transfer encoding and charset) and, for HTML, reduced to the text a
  reader sees by the same code that feeds full-text search (:func:`pobox.mail.text.html_text`);
* lines that begin with ``>`` (quoted text of an earlier message) are left out, runs of
  whitespace become one space, other control characters are dropped, and the result is cut to
  :data:`PREVIEW_CHARS` characters (RFC 8970 allows at most 256) without trailing space.

A message without such a part has the empty preview. Only the beginning of a long part is read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from pobox.mail.structure import MimePart, ParsedMessage
from pobox.mail.text import Reader, html_text, part_text

__all__ = ["PREVIEW_CHARS", "preview_part", "preview_text"]

#: Characters of a preview: what Dovecot generates (RFC 8970 §3.1 caps it at 256), so that a
#: client sees the same text from either server.
PREVIEW_CHARS = 200

#: Decoded characters of a plain text part read at most (enough for any preview but one of
#: a part that is almost all quoted text), and of an HTML part (markup takes room).
PLAIN_READ = 16 * 1024
HTML_READ = 64 * 1024

_SPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


def preview_part(parsed: ParsedMessage) -> MimePart | None:
    """The part a preview is made from (see the module's docstring), or None."""
    return _first_text(parsed.root)


def _first_text(part: MimePart) -> MimePart | None:
    if part.message is not None:
        return None
    if part.is_multipart:
        for child in part.children:
            found = _first_text(child)
            if found is not None:
                return found
        return None
    if part.content_type.lower() != "text" or (part.disposition or "").lower() == "attachment":
        return None
    if part.content_subtype.lower() in ("plain", "html"):
        return part
    return None


def _bounded(pieces: Iterable[str], limit: int) -> Iterator[str]:
    taken = 0
    for piece in pieces:
        if taken + len(piece) >= limit:
            yield piece[: limit - taken]
            return
        taken += len(piece)
        yield piece


def preview_text(parsed: ParsedMessage, read: Reader) -> str:
    """The preview of a message (``""`` when it has no text to show)."""
    part = preview_part(parsed)
    if part is None:
        return ""
    if part.content_subtype.lower() == "html":
        text = html_text(_bounded(part_text(read, part), HTML_READ))
    else:
        text = "".join(_bounded(part_text(read, part), PLAIN_READ))
    return shorten(text)


def shorten(text: str) -> str:
    """Quoted lines out, whitespace collapsed, control characters dropped, cut to size."""
    kept = [line for line in text.splitlines() if not line.startswith(">")]
    flat = _SPACE.sub(" ", _CONTROL.sub("", " ".join(kept))).strip()
    return flat[:PREVIEW_CHARS].rstrip()
