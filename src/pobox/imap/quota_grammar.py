"""The QUOTA commands and responses (RFC 9208 §4, §7): GETQUOTA, GETQUOTAROOT, SETQUOTA.

Sans-IO like the rest of the grammar: a :class:`~pobox.imap.lexer.Reader` in, a typed command
out; responses render to bytes. Quota root names and resource names are kept as the client
wrote them; what they mean is :mod:`pobox.service.quota`'s business.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from pobox.imap.commands import Command
from pobox.imap.lexer import Reader
from pobox.imap.responses import CRLF, astring, mailbox_name, quoted


@dataclass(frozen=True, slots=True)
class GetQuota(Command):
    NAME: ClassVar[str] = "GETQUOTA"
    root: str


@dataclass(frozen=True, slots=True)
class GetQuotaRoot(Command):
    NAME: ClassVar[str] = "GETQUOTAROOT"
    mailbox: bytes


@dataclass(frozen=True, slots=True)
class SetQuota(Command):
    NAME: ClassVar[str] = "SETQUOTA"
    root: str
    limits: tuple[tuple[str, int], ...]  # (resource name upper-cased, limit)


def _root(r: Reader) -> str:
    return r.astring("a quota root").decode("utf-8", "replace")


def _getquota(r: Reader, tag: str, uid: bool) -> Command:
    r.sp()
    root = _root(r)
    r.end()
    return GetQuota(tag, root)


def _getquotaroot(r: Reader, tag: str, uid: bool) -> Command:
    r.sp()
    raw = r.astring("a mailbox name")
    r.end()
    return GetQuotaRoot(tag, b"INBOX" if raw.upper() == b"INBOX" else raw)


def _setquota(r: Reader, tag: str, uid: bool) -> Command:
    r.sp()
    root = _root(r)
    r.sp()

    def resource() -> tuple[str, int]:
        name = r.atom("a resource name").decode("ascii", "replace").upper()
        r.sp()
        return name, r.number()  # number64

    limits = r.paren_list(resource, allow_empty=True)
    r.end()
    return SetQuota(tag, root, tuple(limits))


QUOTA_COMMANDS: dict[str, Callable[[Reader, str, bool], Command]] = {
    "GETQUOTA": _getquota,
    "GETQUOTAROOT": _getquotaroot,
    "SETQUOTA": _setquota,
}


def _root_bytes(root: str) -> bytes:
    data = root.encode("utf-8")
    return quoted(data) if not data else astring(data, utf8=True)


@dataclass(frozen=True, slots=True)
class QuotaResponse:
    """``* QUOTA "" (STORAGE 10 512 MESSAGE 3 1000)`` (RFC 9208 §4.3.1): each resource with
    its usage and its limit."""

    root: str
    resources: tuple[tuple[str, int, int], ...]

    def render(self, *, utf8: bool = False) -> bytes:
        items = b" ".join(b"%s %d %d" % (n.encode("ascii"), u, lim) for n, u, lim in self.resources)
        return b"* QUOTA " + _root_bytes(self.root) + b" (" + items + b")" + CRLF


@dataclass(frozen=True, slots=True)
class QuotaRootResponse:
    """``* QUOTAROOT INBOX ""`` (RFC 9208 §4.3.2): the quota roots of a mailbox."""

    name: str
    roots: tuple[str, ...]

    def render(self, *, utf8: bool = False) -> bytes:
        parts = [b"* QUOTAROOT " + mailbox_name(self.name, utf8=utf8)]
        parts += [_root_bytes(root) for root in self.roots]
        return b" ".join(parts) + CRLF
