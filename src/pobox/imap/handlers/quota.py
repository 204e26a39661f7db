"""GETQUOTA, GETQUOTAROOT and SETQUOTA (RFC 9208 §4.1; docs/quota.md).

Every account is one quota root. The logged-in account calls its own root ``""``; another
account's root is named by that account's address (a shared mailbox's GETQUOTAROOT names its
owner's, and a quota administrator names any account's). A root whose account has no limit
at all does not exist (``* QUOTAROOT INBOX`` lists none; GETQUOTA answers NO [NONEXISTENT]).
STORAGE counts in units of 1024 octets (usage rounded up), MESSAGE and MAILBOX in numbers.
"""

from __future__ import annotations

from typing import Any

from pobox.errors import InvalidInput, NoPermission, NotFound
from pobox.imap.quota_grammar import (
    GetQuota,
    GetQuotaRoot,
    QuotaResponse,
    QuotaRootResponse,
    SetQuota,
)
from pobox.imap.session import AUTH, CommandError, CommandSpec, ImapSession
from pobox.service.mailboxes import normalise_name
from pobox.service.quota import QuotaReport
from pobox.store.api import Account, QuotaLimits


def resources(report: QuotaReport) -> tuple[tuple[str, int, int], ...]:
    """The limited resources of a root as (name, usage, limit)."""
    limits, usage = report.limits, report.usage
    out: list[tuple[str, int, int]] = []
    if limits.storage is not None:
        out.append(("STORAGE", (usage.storage + 1023) // 1024, limits.storage // 1024))
    if limits.messages is not None:
        out.append(("MESSAGE", usage.messages, limits.messages))
    if limits.mailboxes is not None:
        out.append(("MAILBOX", usage.mailboxes, limits.mailboxes))
    return tuple(out)


def _limited(limits: QuotaLimits) -> bool:
    return any(v is not None for v in (limits.storage, limits.messages, limits.mailboxes))


def root_name(session_account: Account, owner: Account) -> str:
    return "" if owner.id == session_account.id else owner.address


async def _root_account(session: ImapSession, root: str) -> Account:
    """The account a quota root names, for GETQUOTA and SETQUOTA."""
    account = session.require_account()
    if root == "" or root.lower() == account.address.lower():
        return account
    quota = session.service.quota
    if not quota.is_admin(account):
        raise CommandError(f"no permission to see quota root {root}", "NOPERM")
    try:
        return await session.service.accounts.require(root)
    except (NotFound, InvalidInput):  # no such account, or not an address at all
        raise CommandError(f"no quota root {root}", "NONEXISTENT") from None


async def getquota(session: ImapSession, cmd: GetQuota) -> None:
    account = session.require_account()
    owner = await _root_account(session, cmd.root)
    report = await session.service.quota.report(owner)
    if not _limited(report.limits):
        raise CommandError(f'no quota root "{cmd.root}": no limits are set', "NONEXISTENT")
    session.send(QuotaResponse(root_name(account, owner), resources(report)))
    await session.announce_updates()
    session.tagged(cmd.tag, "OK", "GETQUOTA completed")


async def getquotaroot(session: ImapSession, cmd: GetQuotaRoot) -> None:
    account = session.require_account()
    name = session.mailbox_name(cmd.mailbox)
    # a mailbox the account may see (its own, or shared with it: RFC 4314 rights apply)
    access = await session.service.acl.access(account, normalise_name(name))
    owner_id = access.mailbox.account_id
    owner = account if owner_id == account.id else None
    if owner is None:
        owner = await session.service.store.get_account_by_id(owner_id)
        if owner is None:
            raise CommandError(f"mailbox {name} does not exist", "NONEXISTENT")
    report = await session.service.quota.report(owner)
    if not _limited(report.limits):
        session.send(QuotaRootResponse(name, ()))
    else:
        root = root_name(account, owner)
        session.send(QuotaRootResponse(name, (root,)))
        session.send(QuotaResponse(root, resources(report)))
    await session.announce_updates()
    session.tagged(cmd.tag, "OK", "GETQUOTAROOT completed")


async def setquota(session: ImapSession, cmd: SetQuota) -> None:
    account = session.require_account()
    quota = session.service.quota
    if not quota.is_admin(account):
        raise NoPermission("only a quota administrator may change quotas")
    owner = await _root_account(session, cmd.root)
    limits = dict(cmd.limits)
    if len(limits) < len(cmd.limits):
        raise CommandError("a resource is named twice", status="BAD")
    await quota.set_limits(account, owner, limits)
    report = await quota.report(owner)
    if _limited(report.limits):
        session.send(QuotaResponse(root_name(account, owner), resources(report)))
    await session.announce_updates()
    session.tagged(cmd.tag, "OK", "SETQUOTA completed")


SPECS: dict[type[Any], CommandSpec] = {
    GetQuota: CommandSpec(getquota, AUTH),
    GetQuotaRoot: CommandSpec(getquotaroot, AUTH),
    SetQuota: CommandSpec(setquota, AUTH),
}
