"""The ACL commands (RFC 4314 §3, §7): SETACL, DELETEACL, GETACL, LISTRIGHTS, MYRIGHTS.

Sans-IO like the rest of the grammar: a :class:`~pobox.imap.lexer.Reader` in, a typed command
out. Identifiers and rights are astrings (§7) kept as text; what they mean is
:mod:`pobox.service.acl`'s business.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from pobox.imap.commands import Command
from pobox.imap.lexer import Reader


@dataclass(frozen=True, slots=True)
class SetAcl(Command):
    NAME: ClassVar[str] = "SETACL"
    mailbox: bytes
    identifier: str
    rights: str  # "+rights", "-rights" or "rights"


@dataclass(frozen=True, slots=True)
class DeleteAcl(Command):
    NAME: ClassVar[str] = "DELETEACL"
    mailbox: bytes
    identifier: str


@dataclass(frozen=True, slots=True)
class GetAcl(Command):
    NAME: ClassVar[str] = "GETACL"
    mailbox: bytes


@dataclass(frozen=True, slots=True)
class ListRights(Command):
    NAME: ClassVar[str] = "LISTRIGHTS"
    mailbox: bytes
    identifier: str


@dataclass(frozen=True, slots=True)
class MyRights(Command):
    NAME: ClassVar[str] = "MYRIGHTS"
    mailbox: bytes


def _mailbox(r: Reader) -> bytes:
    raw = r.astring("a mailbox name")
    return b"INBOX" if raw.upper() == b"INBOX" else raw


def _text(r: Reader, what: str) -> str:
    return r.astring(what).decode("utf-8", "replace")


def _setacl(r: Reader, tag: str, uid: bool) -> Command:
    r.sp()
    mailbox = _mailbox(r)
    r.sp()
    identifier = _text(r, "an identifier")
    r.sp()
    rights = _text(r, "rights")
    r.end()
    return SetAcl(tag, mailbox, identifier, rights)


def _mailbox_identifier(
    cls: type[DeleteAcl] | type[ListRights],
) -> Callable[[Reader, str, bool], Command]:
    def parse(r: Reader, tag: str, uid: bool) -> Command:
        r.sp()
        mailbox = _mailbox(r)
        r.sp()
        identifier = _text(r, "an identifier")
        r.end()
        return cls(tag, mailbox, identifier)

    return parse


def _mailbox_only(cls: type[GetAcl] | type[MyRights]) -> Callable[[Reader, str, bool], Command]:
    def parse(r: Reader, tag: str, uid: bool) -> Command:
        r.sp()
        mailbox = _mailbox(r)
        r.end()
        return cls(tag, mailbox)

    return parse


ACL_COMMANDS: dict[str, Callable[[Reader, str, bool], Command]] = {
    "SETACL": _setacl,
    "DELETEACL": _mailbox_identifier(DeleteAcl),
    "GETACL": _mailbox_only(GetAcl),
    "LISTRIGHTS": _mailbox_identifier(ListRights),
    "MYRIGHTS": _mailbox_only(MyRights),
}
