"""The URLAUTH commands and responses (RFC 4467 §7, §8, §9): RESETKEY, GENURLAUTH, URLFETCH.

Sans-IO like the rest of the grammar: a :class:`~pobox.imap.lexer.Reader` in, a typed command
out; responses render to bytes. URLs stay the bytes the client sent (``url-rump`` and
``url-full`` are astrings): a URLAUTH token is computed over the URL exactly as written
(RFC 4467 §6), so nothing here decodes or case-folds them; :mod:`pobox.imap.imapurl` reads
them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from pobox.imap.commands import Command
from pobox.imap.lexer import Reader
from pobox.imap.responses import CRLF, string


@dataclass(frozen=True, slots=True)
class ResetKey(Command):
    """``RESETKEY [mailbox *(SP mechanism)]``: no mailbox removes every key of the user."""

    NAME: ClassVar[str] = "RESETKEY"
    mailbox: bytes | None = None
    mechanisms: tuple[str, ...] = ()  # upper-cased


@dataclass(frozen=True, slots=True)
class GenUrlAuth(Command):
    """``GENURLAUTH 1*(SP url-rump SP mechanism)``."""

    NAME: ClassVar[str] = "GENURLAUTH"
    pairs: tuple[tuple[bytes, str], ...]  # (url-rump, mechanism upper-cased)


@dataclass(frozen=True, slots=True)
class UrlFetch(Command):
    """``URLFETCH 1*(SP url-full)``."""

    NAME: ClassVar[str] = "URLFETCH"
    urls: tuple[bytes, ...]


def _mechanism(r: Reader) -> str:
    name = r.atom("a URLAUTH mechanism")
    if not all(c in _MECHANISM_CHARS for c in name):
        raise r.fail("a URLAUTH mechanism")
    return name.decode("ascii").upper()


_MECHANISM_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.")


def _resetkey(r: Reader, tag: str, uid: bool) -> Command:
    if not r.try_sp():
        r.end()
        return ResetKey(tag)
    raw = r.astring("a mailbox name")
    mailbox = b"INBOX" if raw.upper() == b"INBOX" else raw
    mechanisms: list[str] = []
    while r.try_sp():
        mechanisms.append(_mechanism(r))
    r.end()
    return ResetKey(tag, mailbox, tuple(mechanisms))


def _genurlauth(r: Reader, tag: str, uid: bool) -> Command:
    pairs: list[tuple[bytes, str]] = []
    while True:
        r.sp()
        url = r.astring("a URL")
        r.sp()
        pairs.append((url, _mechanism(r)))
        if r.at_end():
            break
    r.end()
    return GenUrlAuth(tag, tuple(pairs))


def _urlfetch(r: Reader, tag: str, uid: bool) -> Command:
    urls: list[bytes] = []
    while True:
        r.sp()
        urls.append(r.astring("a URL"))
        if r.at_end():
            break
    r.end()
    return UrlFetch(tag, tuple(urls))


URLAUTH_COMMANDS: dict[str, Callable[[Reader, str, bool], Command]] = {
    "RESETKEY": _resetkey,
    "GENURLAUTH": _genurlauth,
    "URLFETCH": _urlfetch,
}


def _url(url: bytes) -> bytes:
    """A URL as a string (quoted, as RFC 4467's examples show it, or a literal)."""
    return string(url, utf8=True)


@dataclass(frozen=True, slots=True)
class GenUrlAuthResponse:
    """``* GENURLAUTH "imap://...;urlauth=submit+fred:internal:91354a..."`` (RFC 4467 §8)."""

    urls: tuple[bytes, ...]

    def render(self, *, utf8: bool = False) -> bytes:
        return b"* GENURLAUTH " + b" ".join(_url(u) for u in self.urls) + CRLF


def urlfetch_prefix(url: bytes, size: int | None) -> bytes:
    """The start of ``* URLFETCH url {size}`` CRLF, to be followed by *size* octets and CRLF;
    with *size* None the whole line ``* URLFETCH url NIL`` (the URL is not valid)."""
    if size is None:
        return b"* URLFETCH " + _url(url) + b" NIL" + CRLF
    return b"* URLFETCH " + _url(url) + b" {%d}" % size + CRLF
