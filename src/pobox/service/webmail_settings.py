"""The webmail's folder settings: folder policies (docs/policies.md) and sharing a folder with
other accounts (docs/sharing.md), for the account that is logged in.

Folders are named by their ids, as everywhere in the webmail, and each id is checked against the
account: folder policies are set on the account's own folders only; a folder's sharing is
changed only with the ``a`` right on it (every own folder, or another account's folder that
was shared with the right to administer it). Everything goes through the service's policy and
ACL APIs, which check the values (durations, rights letters, identifiers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pobox.errors import InvalidInput, NotAllowed, NotFound
from pobox.service.acl import ALL_RIGHTS, Access
from pobox.service.folder_policy import ARCHIVE_AFTER, EXPUNGE_AFTER, Setting
from pobox.service.mail import MailService
from pobox.store.api import Account, Mailbox, MailboxId

#: the policy keys the webmail sets, in the order it shows them
POLICY_KEYS = (EXPUNGE_AFTER, ARCHIVE_AFTER)


@dataclass(frozen=True, slots=True)
class FolderPolicyView:
    """One own folder's policy: what applies, and what is stored for the folder itself."""

    mailbox: Mailbox
    effective: Mapping[str, Setting]
    own: Mapping[str, str]

    @property
    def id(self) -> MailboxId:
        return self.mailbox.id

    @property
    def name(self) -> str:
        return self.mailbox.name


@dataclass(frozen=True, slots=True)
class ShareView:
    """One folder the account may administer and who else may use it (the owner left out)."""

    mailbox: Mailbox
    name: str
    entries: tuple[tuple[str, str], ...]

    @property
    def id(self) -> MailboxId:
        return self.mailbox.id


class FolderSettings:
    def __init__(self, service: MailService) -> None:
        self.service = service

    async def _own(self, account: Account, mailbox_id: int) -> Mailbox:
        """The account's own mailbox of that id; NotFound for any other id (a folder shared
        with the account included: its policies are its owner's)."""
        mailbox = await self.service.store.get_mailbox_by_id(MailboxId(mailbox_id))
        if mailbox is None or mailbox.account_id != account.id:
            raise NotFound("no such folder")
        return mailbox

    # ---- folder policies -----------------------------------------------------------------
    async def policies(self, account: Account) -> list[FolderPolicyView]:
        """Every own folder with its effective expunge-after and archive-after, INBOX first."""
        policies = self.service.folder_policies
        stored = await policies.stored(account)
        views = []
        for effective in await policies.effective(account):
            mailbox = effective.mailbox
            own = {p.key: p.value for p in stored if p.folder == mailbox.name}
            views.append(
                FolderPolicyView(
                    mailbox,
                    {k: v for k, v in effective.settings.items() if k in POLICY_KEYS},
                    {k: v for k, v in own.items() if k in POLICY_KEYS},
                )
            )
        views.sort(key=lambda v: (v.name != "INBOX", v.name.lower()))
        return views

    async def set_policy(
        self, account: Account, mailbox_id: int, values: Mapping[str, str]
    ) -> Mailbox:
        """Store the folder's own expunge-after and archive-after: a duration ("30d", "2w",
        "12h") or "off"; an empty value removes the folder's own setting (the account's or the
        server's applies again). InvalidInput for anything else, nothing stored then."""
        mailbox = await self._own(account, mailbox_id)
        unknown = set(values) - set(POLICY_KEYS)
        if unknown:
            raise InvalidInput(f"not a folder policy setting: {', '.join(sorted(unknown))}")
        settings: dict[str, str | None] = {
            key: value.strip().lower() or None for key, value in values.items()
        }
        await self.service.folder_policies.set_policy(account, mailbox.name, settings)
        return mailbox

    # ---- sharing -------------------------------------------------------------------------
    async def _administered(self, account: Account, mailbox_id: int) -> Access:
        mailbox = await self.service.store.get_mailbox_by_id(MailboxId(mailbox_id))
        if mailbox is None:
            raise NotFound("no such folder")
        acl = self.service.acl
        name = mailbox.name
        if mailbox.account_id != account.id:
            owner = await self.service.store.get_account_by_id(mailbox.account_id)
            if owner is None:
                raise NotFound("no such folder")
            name = acl.shared_name(owner.address.lower(), mailbox.name)
        try:
            return await acl.access_to(account, mailbox, name, "a")
        except NotFound:
            raise NotFound("no such folder") from None

    async def shares(self, account: Account) -> list[ShareView]:
        """The folders whose sharing the account may change (its own, then others' it may
        administer), each with its access control list but the owner's entry."""
        acl = self.service.acl
        mailboxes = await self.service.store.list_mailboxes(account.id)
        mailboxes.sort(key=lambda m: (m.name != "INBOX", m.name.lower()))
        listed = [(m, m.name) for m in mailboxes]
        shared = await acl.shared_with(account)
        listed += [
            (mailbox, name)
            for name, (mailbox, rights) in sorted(shared.items(), key=lambda i: i[0].lower())
            if "a" in rights
        ]
        views = []
        for mailbox, name in listed:
            entries = tuple(sorted(await acl.acl_of(mailbox)))
            views.append(ShareView(mailbox, name, entries))
        return views

    async def share(
        self, account: Account, mailbox_id: int, identifier: str, rights: str
    ) -> tuple[Access, str]:
        """Give *identifier* (an account's address, or ``anyone`` where the server allows it)
        exactly *rights* (RFC 4314 letters) on the folder; no rights takes the entry away.
        Returns the folder and the rights stored."""
        access = await self._administered(account, mailbox_id)
        if not identifier.strip():
            raise InvalidInput("the address to share with is missing")
        if any(letter not in ALL_RIGHTS for letter in rights):
            raise InvalidInput("not a right this server supports")
        who = await self.service.acl.identifier(identifier)
        if who.lstrip("-") == account.address.lower() and access.own:
            raise NotAllowed("you always have every right on your own folders")
        return await self.service.acl.set_acl(account, access.name, who, rights)

    async def unshare(self, account: Account, mailbox_id: int, identifier: str) -> Access:
        """Take *identifier*'s entry off the folder's list."""
        access = await self._administered(account, mailbox_id)
        return await self.service.acl.delete_acl(account, access.name, identifier)
