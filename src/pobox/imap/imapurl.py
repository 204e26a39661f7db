"""IMAP URLs (RFC 5092) that name a message or a part of one, as CATENATE uses them (RFC 4469).

Sans-IO: text in, a :class:`MessageUrl` out, or :class:`UrlError`. Two forms are understood:

* relative to the server and user of the session: ``/INBOX;UIDVALIDITY=385759045/;UID=20``,
  optionally followed by ``/;SECTION=1.MIME`` and ``/;PARTIAL=0.1024``;
* absolute: ``imap://joe@example.org/INBOX;UIDVALIDITY=...`` (the server part is kept for the
  caller to check; ``;AUTH=`` in it is ignored).

The mailbox name is percent-decoded; the octets are UTF-8 (RFC 5092 §3.2) or, when they do not
decode as such, modified UTF-7 of RFC 3501. Keywords are case-insensitive.

URLAUTH-authorized URLs (RFC 4467 §3, RFC 5092 §11: ``[;EXPIRE=date-time];URLAUTH=access``,
then ``:mechanism:token`` in a full one) are read by :func:`parse_auth_url` into an
:class:`AuthUrl`; :func:`parse_message_url` refuses them. Such a URL is absolute and names its
user (the owner of the key that signs it). The rump (the URL without ``:mechanism:token``) is
kept exactly as written: the token is computed over it.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from pobox.imap import mutf7

__all__ = [
    "AuthUrl",
    "MessageUrl",
    "UrlError",
    "has_urlauth",
    "parse_auth_url",
    "parse_message_url",
]


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


#: the user may hold a raw "@" (``joe@example.org@host``): the host is what follows the last one
_ABSOLUTE = re.compile(
    r"imap://(?:(?P<user>[^/;]*)(?:;[^@/]*)?@)?(?P<host>[^/@]+)(?P<rest>/.*)", re.I
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
    if has_urlauth(url):
        raise UrlError("a URLAUTH-authorized URL where a plain one was expected")
    return _message_url(url)


def _message_url(url: str) -> MessageUrl:
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


# --------------------------------------------------------------------------- URLAUTH


@dataclass(frozen=True, slots=True)
class AuthUrl:
    """A URLAUTH-authorized URL, or the rump GENURLAUTH is given (RFC 4467 §3)."""

    message: MessageUrl  # always absolute, with its user
    #: the account the URL's userid names (:func:`url_userid`)
    owner: str
    #: the URL up to and including the access identifier, exactly as written
    rump: str
    #: "submit", "user", "authuser" or "anonymous"
    access: str
    #: the userid after "submit+" or "user+" (percent-decoded, :func:`url_userid`), else None
    access_user: str | None
    expire: _dt.datetime | None
    #: upper-cased; None for a rump
    mechanism: str | None = None
    #: the authorization token (hex digits, lower-cased); None for a rump
    token: str | None = None


_URLAUTH = re.compile(r";urlauth=", re.I)
_EXPIRE = re.compile(r"(?P<head>.*);expire=(?P<when>[^;/]*)", re.I | re.S)
#: enc-user of RFC 5092, and a raw "@" (clients write ``user+joe@example.org`` as it is)
_ENC_USER = re.compile(r"(?:[A-Za-z0-9\-._~!$'()*+,&=@]|%[0-9A-Fa-f]{2})+")
_MECHANISM = re.compile(r"[A-Za-z0-9.\-]+")
_TOKEN = re.compile(r"[0-9A-Fa-f]{32,}")
_DATE_TIME = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(?:\.\d+)?(?:[Zz]|[+-]\d\d:\d\d)")


def url_userid(user: str, host: str | None) -> str:
    """The account a URL's userid names: an address as it is, a bare name at the URL's host
    (``joe`` of ``imap://joe@example.com/`` is joe@example.com, as pobox's logins are
    addresses)."""
    if "@" in user or not host:
        return user
    name = host if host.endswith("]") else host.rpartition(":")[0] or host
    return f"{user}@{name}"


def has_urlauth(url: str) -> bool:
    """*url* carries ``;URLAUTH=`` (RFC 4467)."""
    return _URLAUTH.search(url) is not None


def _expire(text: str) -> _dt.datetime:
    """An RFC 3339 date-time (``2026-12-31T23:59:59Z``), with its offset."""
    if not _DATE_TIME.fullmatch(text):
        raise UrlError(";EXPIRE= is not an RFC 3339 date-time")
    normal = text.upper().replace("Z", "+00:00")
    try:
        return _dt.datetime.fromisoformat(normal)
    except ValueError:
        raise UrlError(";EXPIRE= is not a valid date-time") from None


def _access(text: str) -> tuple[str, str | None]:
    lower = text.lower()
    if lower in ("authuser", "anonymous"):
        return lower, None
    for prefix in ("submit+", "user+"):
        if lower.startswith(prefix):
            user = text[len(prefix) :]
            if not _ENC_USER.fullmatch(user):
                raise UrlError(f"the access identifier {prefix} names no valid userid")
            return prefix[:-1], unquote_to_bytes(user).decode("utf-8", "replace")
    raise UrlError("unknown access identifier (submit+user, user+user, authuser, anonymous)")


def parse_auth_url(url: str, *, rump: bool) -> AuthUrl:
    """The URLAUTH-authorized URL *url* (with *rump*: the URL GENURLAUTH is to authorize,
    ending with the access identifier); raises :class:`UrlError`."""
    found = list(_URLAUTH.finditer(url))
    if not found:
        raise UrlError("missing access identifier (;URLAUTH=) in the URL")
    if len(found) > 1:
        raise UrlError("the URL has ;URLAUTH= twice")
    at = found[0]
    head, tail = url[: at.start()], url[at.end() :]
    expire: _dt.datetime | None = None
    dated = _EXPIRE.fullmatch(head)
    if dated is not None:
        head = dated.group("head")
        expire = _expire(dated.group("when"))
    pieces = tail.split(":")
    if rump:
        if len(pieces) != 1:
            raise UrlError("the URL already carries a URLAUTH mechanism and token")
        mechanism = token = None
    else:
        if len(pieces) != 3:
            raise UrlError("the URLAUTH is not access:mechanism:token")
        if not _MECHANISM.fullmatch(pieces[1]):
            raise UrlError("the URLAUTH mechanism is not valid")
        if not _TOKEN.fullmatch(pieces[2]):
            raise UrlError("the URLAUTH token is not 32 or more hexadecimal digits")
        mechanism, token = pieces[1].upper(), pieces[2].lower()
    access, access_user = _access(pieces[0])
    if not url[:7].lower() == "imap://":
        raise UrlError("a URLAUTH-authorized URL is absolute (imap://user@host/...)")
    message = _message_url(head)
    if not message.user:
        raise UrlError("missing owner username in the URL")
    owner = url_userid(message.user, message.host)
    if access_user is not None:
        access_user = url_userid(access_user, message.host)
    the_rump = url[: at.end() + len(pieces[0])]
    return AuthUrl(message, owner, the_rump, access, access_user, expire, mechanism, token)
