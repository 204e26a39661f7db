"""SETACL, DELETEACL, GETACL, LISTRIGHTS and MYRIGHTS (RFC 4314 §3).

The rules live in :mod:`pobox.service.acl`; this module maps IMAP words to it and back. A
mailbox the user may not see answers ``NO [NONEXISTENT]`` as one that does not exist (§6); a
missing right ``NO [NOPERM]`` (RFC 5530); a rights string with a letter that is not a right, or
an identifier that is not one, ``BAD`` (§3, §3.1).
"""

from __future__ import annotations

from typing import Any

from pobox.imap import responses as r
from pobox.imap.acl_grammar import DeleteAcl, GetAcl, ListRights, MyRights, SetAcl
from pobox.imap.session import AUTH, CommandError, CommandSpec, ImapSession
from pobox.service.acl import BadIdentifier, BadRights, shown


def _bad(exc: BadRights | BadIdentifier) -> CommandError:
    return CommandError(str(exc), status="BAD")


async def setacl(session: ImapSession, cmd: SetAcl) -> None:
    account = session.require_account()
    name = session.mailbox_name(cmd.mailbox)
    try:
        await session.service.acl.set_acl(account, name, cmd.identifier, cmd.rights)
    except (BadRights, BadIdentifier) as exc:
        raise _bad(exc) from None
    await session.announce_updates()
    session.tagged(cmd.tag, "OK", "SETACL completed")


async def deleteacl(session: ImapSession, cmd: DeleteAcl) -> None:
    account = session.require_account()
    name = session.mailbox_name(cmd.mailbox)
    try:
        await session.service.acl.delete_acl(account, name, cmd.identifier)
    except BadIdentifier as exc:
        raise _bad(exc) from None
    await session.announce_updates()
    session.tagged(cmd.tag, "OK", "DELETEACL completed")


async def getacl(session: ImapSession, cmd: GetAcl) -> None:
    account = session.require_account()
    name = session.mailbox_name(cmd.mailbox)
    _access, entries = await session.service.acl.get_acl(account, name)
    session.send(r.AclResponse(name, tuple((who, shown(rights)) for who, rights in entries)))
    await session.announce_updates()
    session.tagged(cmd.tag, "OK", "GETACL completed")


async def listrights(session: ImapSession, cmd: ListRights) -> None:
    account = session.require_account()
    name = session.mailbox_name(cmd.mailbox)
    try:
        _access, required, optional = await session.service.acl.list_rights(
            account, name, cmd.identifier
        )
    except BadIdentifier as exc:
        raise _bad(exc) from None
    # §3.4: the identifier in the form the client gave it, so it can match the answer
    session.send(r.ListRightsResponse(name, cmd.identifier, required, optional))
    await session.announce_updates()
    session.tagged(cmd.tag, "OK", "LISTRIGHTS completed")


async def myrights(session: ImapSession, cmd: MyRights) -> None:
    account = session.require_account()
    name = session.mailbox_name(cmd.mailbox)
    access = await session.service.acl.my_rights(account, name)
    session.send(r.MyRightsResponse(name, shown(access.rights)))
    await session.announce_updates()
    session.tagged(cmd.tag, "OK", "MYRIGHTS completed")


SPECS: dict[type[Any], CommandSpec] = {
    SetAcl: CommandSpec(setacl, AUTH),
    DeleteAcl: CommandSpec(deleteacl, AUTH),
    GetAcl: CommandSpec(getacl, AUTH),
    ListRights: CommandSpec(listrights, AUTH),
    MyRights: CommandSpec(myrights, AUTH),
}
