"""The mail service: the one API that IMAP, POP3, delivery, the webmail and the CLI use."""

from __future__ import annotations

from dataclasses import dataclass

from pobox.config import Config
from pobox.net.drain import Drain
from pobox.service.accounts import Accounts, normalise_address
from pobox.service.acl import Acl
from pobox.service.auth import Authenticator
from pobox.service.dates import parse_day
from pobox.service.delivery import Delivery
from pobox.service.folder_policy import FolderPolicies
from pobox.service.index import MailIndex
from pobox.service.maildrop import Maildrop
from pobox.service.metadata import Metadata
from pobox.service.passwords import configure as configure_passwords
from pobox.service.policy import Clock, Policies, utcnow
from pobox.service.quota import Quotas
from pobox.service.urlauth import UrlAuth
from pobox.store.api import Account, Mailbox, MailboxStatus, Recoverable, Store
from pobox.store.factory import create_store


@dataclass(frozen=True, slots=True)
class MailboxSummary:
    mailbox: Mailbox
    status: MailboxStatus


class MailService:
    def __init__(self, config: Config, store: Store, clock: Clock = utcnow) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.accounts = Accounts(store)
        auth = config.auth
        configure_passwords(auth.argon2_time_cost, auth.argon2_memory_kib, auth.argon2_lanes)
        self.auth = Authenticator(store, config.auth)
        self.delivery = Delivery(store, self.accounts, config.hostname)
        #: quota limits, usage and warnings (pobox.service.quota, docs/quota.md)
        self.quota = Quotas(store, config.quota, config.hostname)
        self.delivery.quotas = self.quota
        self.policies = Policies(store, config.pop3, clock)
        #: rights on mailboxes and the shared namespace (pobox.service.acl)
        self.acl = Acl(store, config.acl)
        #: IMAP METADATA annotations (pobox.service.metadata, RFC 5464)
        self.metadata = Metadata(store, self.acl, config.metadata)
        #: folder policies and their sweeper (docs/policies.md)
        self.folder_policies = FolderPolicies(store, config.policy, clock)
        #: URLAUTH keys and authorized URLs (pobox.service.urlauth, RFC 4467)
        self.urlauth = UrlAuth(store, self.acl, config.imap.urlauth_submitters)
        #: the process's shared mailbox index (pobox.service.index)
        self.index = MailIndex(store)
        #: the open sessions, told when the server shuts down (pobox.net.drain)
        self.drain = Drain()

    def reconfigure(self, config: Config) -> None:
        """A reloaded configuration (SIGHUP): what the service's parts read from it."""
        self.config = config
        auth = config.auth
        configure_passwords(auth.argon2_time_cost, auth.argon2_memory_kib, auth.argon2_lanes)
        self.auth.reconfigure(config.auth)
        self.delivery.hostname = config.hostname
        self.policies.pop3 = config.pop3
        self.quota.reconfigure(config.quota, config.hostname)
        self.acl.config = config.acl
        self.metadata.config = config.metadata
        self.folder_policies.config = config.policy
        self.urlauth.submitters = config.imap.urlauth_submitters

    @classmethod
    async def open(cls, config: Config, clock: Clock = utcnow) -> MailService:
        store = create_store(config.store, config.data_path)
        await store.open()
        return cls(config, store, clock)

    async def close(self) -> None:
        self.index.close()
        self.auth.logins.close()
        await self.store.close()

    async def mailbox_summaries(self, address: str) -> list[MailboxSummary]:
        account = await self.accounts.require(address)
        mailboxes = sorted(
            await self.store.list_mailboxes(account.id), key=lambda m: (m.name != "INBOX", m.name)
        )
        return [MailboxSummary(m, await self.store.mailbox_status(m.id)) for m in mailboxes]

    async def open_maildrop(self, account: Account) -> Maildrop:
        return await Maildrop.open(self.store, self.policies, account)

    async def recoverable(self, address: str, since: str | None = None) -> list[Recoverable]:
        account = await self.accounts.require(normalise_address(address))
        return await self.store.list_recoverable(account.id, parse_day(since) if since else None)

    async def undelete(self, address: str, since: str | None = None) -> int:
        """Put back what POP3 clients deleted (since the given day); returns how many."""
        account = await self.accounts.require(address)
        items = await self.store.list_recoverable(account.id, parse_day(since) if since else None)
        restored = await self.store.recover(account.id, [item.id for item in items])
        return len(restored)
