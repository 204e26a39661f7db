"""IMAP URLs (RFC 5092) that name a message or a part of one, as CATENATE uses them (RFC 4469).

Sans-IO: text in, a :class:`MessageUrl` out, or :class:`UrlError`. Two forms are understood:

* relative to the server and user of the session: ``/INBOX;UIDVALIDITY=385759045/;UID=20``,
  optionally followed by ``/;SECTION=1.MIME`` and ``/;PARTIAL=0.1024``;
* absolute: ``imap://joe@example.org/INBOX;UIDVALIDITY=...`` (the server part is kept for the
  caller to check; ``;AUTH=`` in it is ignored).

The mailbox name is percent-decoded; the octets are UTF-8 (RFC 5092 §3.2) or, when they do not
decode as such, modified UTF-7 of RFC 3501. Keywords are case-insensitive. URLAUTH
(``;EXPIRE=``, ``;URLAUTH=``, RFC 4467) is not supported: such URLs are errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from pobox.imap import mutf7

__all__ = ["MessageUrl", "UrlError", "parse_message_url"]


class UrlError(ValueError):
    """The URL is not one this server can resolve (answered with ``NO [BADURL url]``)."""


@dataclass(frozen=True, slots=True)
class MessageUrl:
    mailbox: str
    uid: int
    uidvalidity: int | None = None
    #: the section text after ``;SECTION=``, percent-decoded ("" for the whole message)
    section: str = ""
    #: (offset, length or None) of ``;PARTIAL=``
    partial: tuple[int, int | None] | None = None
    #: user of an absolute URL (``imap://user@host/...``), None for a relative one
    user: str | None = None
    host: str | None = None


_ABSOLUTE = re.compile(
    r"imap://(?:(?P<user>[^@/;]*)(?:;[^@/]*)?@)?(?P<host>[^/]+)(?P<rest>/.*)", re.I
)
_NUMBER = re.compile(r"[1-9][0-9]{0,9}")
_PARTIAL = re.compile(r"(0|[1-9][0-9]{0,9})(?:\.([1-9][0-9]{0,9}))?")


def _decode_mailbox(raw: str) -> str:
    if not raw:
        raise UrlError("the URL names no mailbox")
    data = unquote_to_bytes(raw)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UrlError("the mailbox name is not UTF-8") from None
    if "&" in text and text.isascii():
        try:
            return mutf7.decode(data)
        except ValueError:
            return text
    return text


def _number(text: str, what: str) -> int:
    if not _NUMBER.fullmatch(text) or int(text) > 0xFFFFFFFF:
        raise UrlError(f"{what} is not a valid number")
    return int(text)


def parse_message_url(url: str) -> MessageUrl:
    """The message (or part) *url* names; raises :class:`UrlError`."""
    user: str | None = None
    host: str | None = None
    rest = url
    absolute = _ABSOLUTE.fullmatch(url)
    if absolute is not None:
        user = unquote_to_bytes(absolute.group("user") or "").decode("utf-8", "replace") or None
        host = absolute.group("host")
        rest = absolute.group("rest")
    elif url[:7].lower() == "imap://":
        raise UrlError("not an IMAP URL this server understands")
    if not rest.startswith("/"):
        raise UrlError("a URL of a message starts with '/' or 'imap://'")
    if "?" in rest or "#" in rest:
        raise UrlError("a URL of a message has no search or fragment")
    pieces = rest[1:].split("/;")
    head, params = pieces[0], pieces[1:]
    mailbox_part, _, validity = head.partition(";")
    uidvalidity: int | None = None
    if validity:
        key, _, value = validity.partition("=")
        if key.upper() != "UIDVALIDITY":
            raise UrlError(f"unknown URL parameter ;{key}")
        uidvalidity = _number(value, "UIDVALIDITY")
    mailbox = _decode_mailbox(mailbox_part)
    uid: int | None = None
    section = ""
    partial: tuple[int, int | None] | None = None
    order = ("UID", "SECTION", "PARTIAL")
    last = -1
    for param in params:
        key, eq, value = param.partition("=")
        key = key.upper()
        if not eq or key not in order:
            raise UrlError(f"unknown or unsupported URL parameter ;{key}")
        at = order.index(key)
        if at <= last:
            raise UrlError(f";{key} is out of place")
        last = at
        if key == "UID":
            uid = _number(value, "UID")
        elif key == "SECTION":
            section = unquote_to_bytes(value).decode("utf-8", "replace")
            if not section:
                raise UrlError("empty ;SECTION=")
        else:
            m = _PARTIAL.fullmatch(value)
            if m is None:
                raise UrlError(";PARTIAL= is not offset[.length]")
            partial = (int(m.group(1)), int(m.group(2)) if m.group(2) else None)
    if uid is None:
        raise UrlError("the URL names no message (;UID=)")
    return MessageUrl(mailbox, uid, uidvalidity, section, partial, user, host)
