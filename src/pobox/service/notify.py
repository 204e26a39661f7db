"""Change notifications for whoever watches more than one mailbox (IMAP NOTIFY, RFC 5465).

The store already tells each process of every change, once: its own writes right after their
commit, other processes' through its one watcher (SQLite's journal poll, PostgreSQL's
LISTEN/NOTIFY). :class:`ChangeHub` is one listener on that per process and store, shared by
every watcher in the process; nothing here polls. A watcher registers two callbacks: one for a
changed mailbox (an id and whether it is new to the hub: the watcher decides whether it cares,
and looks at the mailbox only when it next may send something), one for a changed subscription
list of an account (subscriptions change without a mailbox change, so
:class:`~pobox.service.mailboxes.Mailboxes` calls :func:`subscriptions_changed`; other
processes' subscription changes are not seen). METADATA changes (RFC 5464) reach watchers the
same way, from :mod:`pobox.service.metadata`, and also only within the process.

The hub knows the owner of every mailbox its watchers listed (:meth:`ChangeHub.learn`). A change
of a mailbox it does not know (a new one, or one of an account nobody watches) is looked up once
per process (one ``get_mailbox_by_id``) and then handed, as new, to the watchers of its owner
only: a delivery to another account costs a watcher nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Callable, Iterable

from pobox.store.api import AccountId, MailboxId, Store

MailboxCallback = Callable[[MailboxId, bool], None]
#: (account that changed them, mailbox or None for the server's, entry names)
MetadataCallback = Callable[[AccountId, MailboxId | None, tuple[str, ...]], None]
AccountCallback = Callable[[AccountId], None]


class ChangeHub:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._mailbox: dict[int, MailboxCallback] = {}
        self._account: dict[int, tuple[AccountId, AccountCallback]] = {}
        self._listening = False
        self._next = 0
        self._owner: dict[int, AccountId] = {}  # mailbox id -> owning account
        self._tasks: set[asyncio.Task[None]] = set()
        self._metadata: dict[int, MetadataCallback] = {}

    def watch(
        self, account_id: AccountId, on_mailbox: MailboxCallback, on_subscriptions: AccountCallback
    ) -> int:
        """Start delivering changes; returns the handle :meth:`unwatch` takes."""
        self._next += 1
        handle = self._next
        self._mailbox[handle] = on_mailbox
        self._account[handle] = (account_id, on_subscriptions)
        if not self._listening:
            self.store.add_listener(self._dispatch)
            self._listening = True
        return handle

    def unwatch(self, handle: int) -> None:
        self._mailbox.pop(handle, None)
        self._account.pop(handle, None)
        self._metadata.pop(handle, None)
        if not self._mailbox and self._listening:
            self.store.remove_listener(self._dispatch)
            self._listening = False

    def watch_metadata(self, handle: int, callback: MetadataCallback) -> None:
        """Also tell the watcher *handle* of METADATA changes (RFC 5464) made in this process."""
        self._metadata[handle] = callback

    def metadata_changed(
        self, account_id: AccountId, mailbox_id: MailboxId | None, entries: tuple[str, ...]
    ) -> None:
        for callback in list(self._metadata.values()):
            callback(account_id, mailbox_id, entries)

    def learn(self, mailboxes: Iterable[tuple[MailboxId, AccountId]]) -> None:
        """Mailboxes (id, owner) a watcher listed."""
        self._owner.update(mailboxes)

    def _dispatch(self, mailbox_id: MailboxId) -> None:
        if mailbox_id <= 0:  # logins_changed(): no mailbox
            return
        if mailbox_id in self._owner:
            for callback in list(self._mailbox.values()):
                callback(mailbox_id, False)
            return
        with contextlib.suppress(RuntimeError):  # no loop: nobody to tell
            task = asyncio.get_running_loop().create_task(self._resolve(mailbox_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _resolve(self, mailbox_id: MailboxId) -> None:
        mailbox = await self.store.get_mailbox_by_id(mailbox_id)
        if mailbox is None:
            return  # deleted before anyone here knew it
        self._owner[mailbox_id] = mailbox.account_id
        for handle, (owner, _) in list(self._account.items()):
            callback = self._mailbox.get(handle)
            if owner == mailbox.account_id and callback is not None:
                callback(mailbox_id, True)

    def subscriptions_changed(self, account_id: AccountId) -> None:
        for owner, callback in list(self._account.values()):
            if owner == account_id:
                callback(account_id)

    @property
    def watchers(self) -> int:
        return len(self._mailbox)


_HUBS: weakref.WeakKeyDictionary[Store, ChangeHub] = weakref.WeakKeyDictionary()


def hub(store: Store) -> ChangeHub:
    """The process's hub for *store* (made on first use)."""
    found = _HUBS.get(store)
    if found is None:
        found = _HUBS[store] = ChangeHub(store)
    return found


def subscriptions_changed(store: Store, account_id: AccountId) -> None:
    """Tell this process's watchers that *account_id*'s subscriptions changed."""
    found = _HUBS.get(store)
    if found is not None:
        found.subscriptions_changed(account_id)


def metadata_changed(
    store: Store, account_id: AccountId, mailbox_id: MailboxId | None, entries: tuple[str, ...]
) -> None:
    """Tell this process's watchers that *account_id* set or removed these METADATA entries of
    a mailbox (None: of the server)."""
    found = _HUBS.get(store)
    if found is not None:
        found.metadata_changed(account_id, mailbox_id, entries)
