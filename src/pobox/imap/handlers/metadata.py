"""GETMETADATA and SETMETADATA (RFC 5464 §4), and LIST's METADATA return option (RFC 9590).

The rules live in :mod:`pobox.service.metadata`; this module maps IMAP words to it and back. A
bad entry name is ``BAD`` (§3.2); the limits answer ``NO [METADATA MAXSIZE n]``, ``NO [METADATA
TOOMANY]`` and ``NO [METADATA NOPRIVATE]`` (§4.3); a GETMETADATA (or LIST) whose MAXSIZE left
values out ends with ``OK [METADATA LONGENTRIES n]``, n the largest left out (§4.2.1). A mailbox
the user may not see is ``NO [NONEXISTENT]``; one they see without the rights §3.3 asks for
``NO [NOPERM]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pobox.imap import responses as r
from pobox.imap.metadata_grammar import GetMetadata, ListMetadata, SetMetadata
from pobox.imap.session import AUTH, CommandError, CommandSpec, ImapSession
from pobox.service.mailboxes import BadSpecialUse
from pobox.service.metadata import BadEntry, NoPrivate, ValueTooLarge
from pobox.store.api import Account, Mailbox, MailboxId, TooManyAnnotations


@dataclass(frozen=True, slots=True)
class MetadataResponse:
    """``* METADATA "INBOX" (/private/comment "My own comment")`` (§4.4.1); a value of None is
    NIL (what LIST-METADATA answers for an entry the mailbox does not have)."""

    name: str
    entries: Sequence[tuple[str, bytes | None]]

    def render(self, *, utf8: bool = False) -> bytes:
        mailbox = b'""' if self.name == "" else r.mailbox_name(self.name, utf8=utf8)
        parts = []
        for entry, value in self.entries:
            parts.append(r.astring(entry.encode("ascii")) + b" " + _value(value, utf8))
        return b"* METADATA " + mailbox + b" (" + b" ".join(parts) + b")" + r.CRLF


def _value(value: bytes | None, utf8: bool) -> bytes:
    if value is None:
        return b"NIL"
    # a value with NUL goes out as literal8 (RFC 5464 §5: value = nstring / literal8)
    return r.string(value, utf8=utf8, binary=True)


def longentries(size: int | None) -> r.ResponseCode | None:
    return None if size is None else r.ResponseCode("METADATA", b"LONGENTRIES %d" % size)


def _name(session: ImapSession, raw: bytes) -> str:
    return "" if raw == b"" else session.mailbox_name(raw)


async def getmetadata(session: ImapSession, cmd: GetMetadata) -> None:
    account = session.require_account()
    name = _name(session, cmd.mailbox)
    try:
        found = await session.service.metadata.get(
            account,
            name,
            cmd.entries,
            depth=cmd.options.depth,
            maxsize=cmd.options.maxsize,
        )
    except BadEntry as exc:
        raise CommandError(str(exc), status="BAD") from None
    if found.entries:
        session.send(MetadataResponse(name, found.entries))
    await session.announce_updates()
    session.tagged(cmd.tag, "OK", "GETMETADATA completed", longentries(found.longest))


async def setmetadata(session: ImapSession, cmd: SetMetadata) -> None:
    account = session.require_account()
    name = _name(session, cmd.mailbox)
    try:
        await session.service.metadata.set(account, name, cmd.values)
    except BadEntry as exc:
        raise CommandError(str(exc), status="BAD") from None
    except ValueTooLarge as exc:
        raise CommandError(str(exc), f"METADATA MAXSIZE {exc.limit}") from None
    except TooManyAnnotations as exc:
        raise CommandError(str(exc), "METADATA TOOMANY") from None
    except NoPrivate as exc:
        raise CommandError(str(exc), "METADATA NOPRIVATE") from None
    except BadSpecialUse as exc:
        raise CommandError(str(exc), "USEATTR") from None
    await session.announce_updates()
    session.tagged(cmd.tag, "OK", "SETMETADATA completed")


async def for_list(
    session: ImapSession,
    account: Account,
    request: ListMetadata,
    mailboxes: Sequence[tuple[Mailbox, str]],
) -> tuple[dict[MailboxId, Sequence[tuple[str, bytes | None]]], r.ResponseCode | None]:
    """LIST RETURN (METADATA ...): for each listed mailbox (with the account's rights on it)
    whose entries the account may read, what its METADATA response holds; and the response
    code of the tagged OK (LONGENTRIES when MAXSIZE left values out)."""
    try:
        found = await session.service.metadata.for_list(
            account,
            mailboxes,
            request.entries,
            depth=request.options.depth,
            maxsize=request.options.maxsize,
        )
    except BadEntry as exc:
        raise CommandError(str(exc), status="BAD") from None
    longest = max((f.longest for f in found.values() if f.longest is not None), default=None)
    return {mid: f.entries for mid, f in found.items()}, longentries(longest)


SPECS: dict[type[Any], CommandSpec] = {
    GetMetadata: CommandSpec(getmetadata, AUTH),
    SetMetadata: CommandSpec(setmetadata, AUTH),
}
