"""Folder policies: mailboxes that tidy themselves (docs/policies.md).

Two rules per folder: ``expunge-after`` (a message goes once it has been in the folder that
long, by its save date) and ``archive-after`` (a message whose internal date is that old moves
into the account's Archive, or into Archive/YYYY with ``archive-by=year``). Each setting comes
from the most specific level that has it: the folder itself, then the account (a special-use
attribute, then ``*``), then the server's configuration (the folder's name, its special-use
attribute, then ``*``).

The sweeper works in batches of ``[policy] batch`` messages: every expunge and every move is one
store call, so one transaction, and a crash between two leaves each message either where it
was or where it went, never both and never neither. A sweep holds the store-wide lock
``try_lock(0, "folderpolicy")`` (an advisory lock on PostgreSQL, a file lock on SQLite), so
only one process on one node sweeps at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pobox.config import PolicyConfig, check_policy_setting, parse_duration, parse_policy_rule
from pobox.errors import AlreadyExists, InvalidInput, NotFound, Temporary
from pobox.service.mailboxes import normalise_name
from pobox.service.policy import Clock, utcnow
from pobox.store.api import (
    DELIMITER,
    Account,
    AccountId,
    FolderPolicy,
    Mailbox,
    MailboxId,
    Store,
    Uid,
)

log = logging.getLogger("pobox.policy")

EXPUNGE_AFTER = "expunge-after"
ARCHIVE_AFTER = "archive-after"
ARCHIVE_BY = "archive-by"
ARCHIVE = "Archive"
ARCHIVE_USE = "\\Archive"
EVERY_FOLDER = "*"
#: the store-wide lock a sweep holds (Store.try_lock with account id 0)
LOCK_NAME = "folderpolicy"

#: called with the number of messages a batch expunged or moved
ProgressFn = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class Setting:
    """One effective setting and where it comes from ("folder", "account \\Trash",
    "account *", "server Trash", "server \\Trash", "server *")."""

    value: str
    source: str


@dataclass(frozen=True, slots=True)
class Effective:
    """The policy that applies to one mailbox."""

    mailbox: Mailbox
    settings: Mapping[str, Setting]

    def duration(self, key: str) -> timedelta | None:
        setting = self.settings.get(key)
        if setting is None:
            return None
        try:
            seconds = parse_duration(setting.value)
        except ValueError:
            log.warning("mailbox %s: bad %s %r ignored", self.mailbox.name, key, setting.value)
            return None
        return None if seconds is None else timedelta(seconds=seconds)

    @property
    def expunge_after(self) -> timedelta | None:
        return self.duration(EXPUNGE_AFTER)

    @property
    def archive_after(self) -> timedelta | None:
        return self.duration(ARCHIVE_AFTER)

    @property
    def by_year(self) -> bool:
        setting = self.settings.get(ARCHIVE_BY)
        return setting is not None and setting.value == "year"


@dataclass(slots=True)
class Outcome:
    """What a sweep did (or, in a dry run, would do)."""

    expunged: dict[tuple[str, str], int] = field(default_factory=dict)  # (address, mailbox)
    archived: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (…, target)
    failed: dict[str, str] = field(default_factory=dict)  # address -> what went wrong

    @property
    def total_expunged(self) -> int:
        return sum(self.expunged.values())

    @property
    def total_archived(self) -> int:
        return sum(self.archived.values())


def server_rules(config: PolicyConfig) -> dict[str, dict[str, str]]:
    """The configuration's defaults: folder (name, special-use attribute or *) -> settings."""
    rules: dict[str, dict[str, str]] = {
        "\\Trash": {EXPUNGE_AFTER: config.trash_expunge_after.strip().lower()},
        "\\Junk": {EXPUNGE_AFTER: config.junk_expunge_after.strip().lower()},
    }
    for text in config.rules:
        folder, settings = parse_policy_rule(text)
        rules.setdefault(folder, {}).update(settings)
    return rules


def resolve(
    mailbox: Mailbox,
    account_rules: Mapping[str, Mapping[str, str]],
    server: Mapping[str, Mapping[str, str]],
) -> Effective:
    """The effective settings of *mailbox*: the most specific level wins, key by key."""
    levels: list[tuple[Mapping[str, str], str]] = [(account_rules.get(mailbox.name, {}), "folder")]
    if mailbox.special_use:
        levels.append(
            (account_rules.get(mailbox.special_use, {}), f"account {mailbox.special_use}")
        )
    levels.append((account_rules.get(EVERY_FOLDER, {}), "account *"))
    levels.append((server.get(mailbox.name, {}), f"server {mailbox.name}"))
    if mailbox.special_use:
        levels.append((server.get(mailbox.special_use, {}), f"server {mailbox.special_use}"))
    levels.append((server.get(EVERY_FOLDER, {}), "server *"))
    settings: dict[str, Setting] = {}
    for values, source in levels:
        for key, value in values.items():
            settings.setdefault(key, Setting(value, source))
    return Effective(mailbox, settings)


def by_folder(policies: Iterable[FolderPolicy]) -> dict[str, dict[str, str]]:
    rules: dict[str, dict[str, str]] = {}
    for policy in policies:
        rules.setdefault(policy.folder, {})[policy.key] = policy.value
    return rules


def archive_root(mailboxes: Sequence[Mailbox]) -> str:
    """The account's archive: its \\Archive mailbox, else the one named Archive."""
    for mailbox in sorted(mailboxes, key=lambda m: m.name):
        if mailbox.special_use == ARCHIVE_USE:
            return mailbox.name
    return ARCHIVE


def is_within(name: str, root: str) -> bool:
    return name == root or name.startswith(root + DELIMITER)


def selector(folder: str) -> str:
    """A stored folder selector: '*', a special-use attribute, or a name (INBOX spelt so)."""
    folder = folder.strip()
    if folder == EVERY_FOLDER or folder.startswith("\\"):
        return folder
    return normalise_name(folder)


class FolderPolicies:
    """Folder policies of one store: setting them and sweeping."""

    def __init__(self, store: Store, config: PolicyConfig, clock: Clock = utcnow) -> None:
        self.store = store
        self.config = config
        self.clock = clock

    # ---- settings ------------------------------------------------------------------------
    async def set_policy(
        self, account: Account, folder: str, settings: Mapping[str, str | None]
    ) -> None:
        """Store *settings* for *folder* of *account*; "off" and "none" are stored (they
        override a default), a value of None removes the setting."""
        folder = selector(folder)
        if not folder:
            raise InvalidInput("a folder name, a special-use attribute or * is needed")
        checked: dict[str, str | None] = {}
        for key, value in settings.items():
            try:
                checked[key] = None if value is None else check_policy_setting(key, value)
            except ValueError as exc:
                raise InvalidInput(str(exc)) from None
        for key, value in checked.items():
            await self.store.set_folder_policy(account.id, folder, key, value)

    async def delete_policy(self, account: Account, folder: str, keys: Sequence[str] = ()) -> int:
        """Remove the stored settings of *folder* (only *keys*, when given); returns how many
        were stored."""
        stored = [
            p
            for p in await self.store.list_folder_policies(account.id)
            if p.folder == selector(folder) and (not keys or p.key in keys)
        ]
        for policy in stored:
            await self.store.set_folder_policy(account.id, policy.folder, policy.key, None)
        return len(stored)

    async def stored(self, account: Account) -> list[FolderPolicy]:
        return await self.store.list_folder_policies(account.id)

    async def effective(self, account: Account) -> list[Effective]:
        """The effective policy of every mailbox of *account*, by name."""
        rules = by_folder(await self.store.list_folder_policies(account.id))
        server = server_rules(self.config)
        mailboxes = sorted(await self.store.list_mailboxes(account.id), key=lambda m: m.name)
        return [resolve(m, rules, server) for m in mailboxes]

    # ---- the sweep -----------------------------------------------------------------------
    async def sweep(
        self,
        accounts: Sequence[Account] | None = None,
        *,
        dry_run: bool = False,
        now: datetime | None = None,
        progress: ProgressFn | None = None,
    ) -> Outcome | None:
        """Apply the policies of *accounts* (None: of every account) and return what was done;
        None when another process is sweeping (it holds the lock). A dry run changes nothing
        and takes no lock: it returns what a sweep would do now."""
        lock = None
        if not dry_run:
            lock = await self.store.try_lock(AccountId(0), LOCK_NAME)
            if lock is None:
                return None
        try:
            now = now or self.clock()
            outcome = Outcome()
            everyone = accounts is None
            if accounts is None:
                accounts = await self.store.list_accounts()
            # every account's stored settings in one read when sweeping them all
            stored: dict[AccountId, list[FolderPolicy]] | None = None
            if everyone:
                stored = {}
                for policy in await self.store.list_folder_policies():
                    stored.setdefault(policy.account_id, []).append(policy)
            for account in accounts:
                try:
                    policies = (
                        stored.get(account.id, [])
                        if stored is not None
                        else await self.store.list_folder_policies(account.id)
                    )
                    await self._sweep_account(account, policies, now, outcome, dry_run, progress)
                except Temporary:
                    raise  # the store is unreachable: the whole sweep waits for the next turn
                except Exception as exc:  # one account's trouble does not stop the others
                    log.exception("folder policies of %s failed", account.address)
                    outcome.failed[account.address] = str(exc) or type(exc).__name__
            return outcome
        finally:
            if lock is not None:
                await lock.release()

    async def _sweep_account(
        self,
        account: Account,
        stored: Sequence[FolderPolicy],
        now: datetime,
        outcome: Outcome,
        dry_run: bool,
        progress: ProgressFn | None,
    ) -> None:
        rules = by_folder(stored)
        server = server_rules(self.config)
        if not rules and not server:
            return
        mailboxes = sorted(await self.store.list_mailboxes(account.id), key=lambda m: m.name)
        root = archive_root(mailboxes)
        for mailbox in mailboxes:
            policy = resolve(mailbox, rules, server)
            expunge_after, archive_after = policy.expunge_after, policy.archive_after
            if is_within(mailbox.name, root):
                archive_after = None  # the archive is the target, never a source
            if expunge_after is None and archive_after is None:
                continue
            try:
                going: set[Uid] = set()
                if expunge_after is not None:
                    going = await self._expunge(
                        account, mailbox, now - expunge_after, outcome, dry_run, progress
                    )
                if archive_after is not None:
                    await self._archive(
                        account,
                        mailbox,
                        root,
                        policy.by_year,
                        now - archive_after,
                        going,
                        outcome,
                        dry_run,
                        progress,
                    )
            except NotFound:
                continue  # the mailbox was deleted meanwhile

    async def _pause(self) -> None:
        if self.config.batch_pause > 0:
            await asyncio.sleep(self.config.batch_pause)

    async def _expunge(
        self,
        account: Account,
        mailbox: Mailbox,
        cutoff: datetime,
        outcome: Outcome,
        dry_run: bool,
        progress: ProgressFn | None,
    ) -> set[Uid]:
        key = (account.address, mailbox.name)
        if dry_run:
            due = await self.store.due_messages(mailbox.id, "save_date", cutoff, 2**62)
            if due:
                outcome.expunged[key] = outcome.expunged.get(key, 0) + len(due)
            return {uid for uid, _ in due}
        while True:
            due = await self.store.due_messages(mailbox.id, "save_date", cutoff, self.config.batch)
            if not due:
                return set()
            gone = await self.store.expunge(mailbox.id, [uid for uid, _ in due])
            if not gone:
                return set()  # nothing went (someone else took them): do not spin
            outcome.expunged[key] = outcome.expunged.get(key, 0) + len(gone)
            log.info(
                "policy expunged account=%s mailbox=%s count=%d",
                account.address,
                mailbox.name,
                len(gone),
            )
            if progress is not None:
                progress(len(gone))
            await self._pause()

    async def _archive(
        self,
        account: Account,
        mailbox: Mailbox,
        root: str,
        by_year: bool,
        cutoff: datetime,
        skip: set[Uid],
        outcome: Outcome,
        dry_run: bool,
        progress: ProgressFn | None,
    ) -> None:
        limit = 2**62 if dry_run else self.config.batch
        targets: dict[str, MailboxId] = {}
        while True:
            due = [
                (uid, date)
                for uid, date in await self.store.due_messages(
                    mailbox.id, "internal_date", cutoff, limit
                )
                if uid not in skip
            ]
            if not due:
                return
            groups: dict[str, list[Uid]] = {}
            for uid, date in due:
                target = f"{root}{DELIMITER}{date.year:04d}" if by_year else root
                groups.setdefault(target, []).append(uid)
            moved_any = False
            for target, uids in sorted(groups.items()):
                key = (account.address, mailbox.name, target)
                if dry_run:
                    outcome.archived[key] = outcome.archived.get(key, 0) + len(uids)
                    continue
                if target not in targets:
                    targets[target] = await self._archive_mailbox(account, target, root)
                pairs = await self.store.copy(mailbox.id, uids, targets[target], move=True)
                if not pairs:
                    continue
                moved_any = True
                outcome.archived[key] = outcome.archived.get(key, 0) + len(pairs)
                log.info(
                    "policy archived account=%s mailbox=%s target=%s count=%d",
                    account.address,
                    mailbox.name,
                    target,
                    len(pairs),
                )
                if progress is not None:
                    progress(len(pairs))
                await self._pause()
            if dry_run or not moved_any:
                return

    async def _archive_mailbox(self, account: Account, name: str, root: str) -> MailboxId:
        """The mailbox *name* (the archive or a year below it), created when missing: the
        archive with \\Archive, its parents and years without an attribute."""
        existing = await self.store.get_mailbox(account.id, name)
        if existing is not None:
            return existing.id
        path = name.split(DELIMITER)
        for depth in range(1, len(path) + 1):
            part = DELIMITER.join(path[:depth])
            if await self.store.get_mailbox(account.id, part) is not None:
                continue
            use = ARCHIVE_USE if part == root else None
            try:
                await self.store.create_mailbox(account.id, part, use)
            except AlreadyExists:  # a session made it meanwhile
                pass
            else:
                await self.store.set_subscribed(account.id, part, True)
        created = await self.store.get_mailbox(account.id, name)
        if created is None:
            raise NotFound(f"mailbox {name} vanished")
        return created.id
