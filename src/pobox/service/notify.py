"""Change notifications for whoever watches more than one mailbox (IMAP NOTIFY, RFC 5465).

The store already tells each process of every change, once: its own writes right after their
commit, other processes' through its one watcher (SQLite's journal poll, PostgreSQL's
LISTEN/NOTIFY). :class:`ChangeHub` is one listener on that per process and store, shared by
every watcher in the process; nothing here polls. A watcher registers two callbacks: one for a
changed mailbox (an id: the watcher decides whether it cares, and looks at the mailbox only when
it next may send something), one for a changed subscription list of an account (subscriptions
change without a mailbox change, so :class:`~pobox.service.mailboxes.Mailboxes` calls
:func:`subscriptions_changed`; other processes' subscription changes are not seen).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

from pobox.store.api import AccountId, MailboxId, Store

MailboxCallback = Callable[[MailboxId], None]
AccountCallback = Callable[[AccountId], None]


class ChangeHub:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._mailbox: dict[int, MailboxCallback] = {}
        self._account: dict[int, tuple[AccountId, AccountCallback]] = {}
        self._listening = False
        self._next = 0

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
        if not self._mailbox and self._listening:
            self.store.remove_listener(self._dispatch)
            self._listening = False

    def _dispatch(self, mailbox_id: MailboxId) -> None:
        if mailbox_id <= 0:  # logins_changed(): no mailbox
            return
        for callback in list(self._mailbox.values()):
            callback(mailbox_id)

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
