"""Live updates for open pages (Server-Sent Events).

One listener per process on the store's change notifications, the same ones that wake IMAP IDLE
(writes of this process at once, other processes' and nodes' through the store's watcher). It
fans each change out to the event streams of the mailbox's account, and of the accounts that
had the folder shared with them (the r right) when their stream opened; a stream sends the
mailbox id and the page fetches what it shows again. No stream polls the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from pobox.store.api import AccountId, MailboxId, Store

log = logging.getLogger("pobox.web")


class ChangeFeed:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._owners: dict[MailboxId, AccountId] = {}
        self._streams: dict[AccountId, set[asyncio.Queue[int]]] = {}
        self._pending: set[MailboxId] = set()
        self._listening = False
        self._tasks: set[asyncio.Task[None]] = set()
        #: other accounts' folders shared with an account with a stream: folder → readers
        self._readers: dict[MailboxId, set[AccountId]] = {}
        #: and the other way round: account → the shared folders it follows
        self._follows: dict[AccountId, set[MailboxId]] = {}

    def _on_change(self, mailbox_id: MailboxId) -> None:
        for reader in self._readers.get(mailbox_id, ()):
            self._tell(reader, mailbox_id)
        owner = self._owners.get(mailbox_id)
        if owner is not None:
            self._tell(owner, mailbox_id)
        elif mailbox_id not in self._pending:  # a folder created since: learn whose it is
            self._pending.add(mailbox_id)
            task = asyncio.get_running_loop().create_task(self._learn(mailbox_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _learn(self, mailbox_id: MailboxId) -> None:
        try:
            mailbox = await self.store.get_mailbox_by_id(mailbox_id)
        except Exception:  # the store is closing, or busy: the next change will tell
            return
        finally:
            self._pending.discard(mailbox_id)
        if mailbox is not None and mailbox.account_id in self._streams:
            self._owners[mailbox_id] = mailbox.account_id
            self._tell(mailbox.account_id, mailbox_id)

    def _tell(self, account_id: AccountId, mailbox_id: MailboxId) -> None:
        for queue in self._streams.get(account_id, ()):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(mailbox_id)

    async def subscribe(
        self, account_id: AccountId, shared: Iterable[MailboxId] = ()
    ) -> asyncio.Queue[int]:
        """A new stream of the account's changes, and of the changes to *shared* (other
        accounts' folders it may read)."""
        for mailbox in await self.store.list_mailboxes(account_id):
            self._owners[mailbox.id] = account_id
        follows = self._follows.setdefault(account_id, set())
        for mailbox_id in shared:
            follows.add(mailbox_id)
            self._readers.setdefault(mailbox_id, set()).add(account_id)
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=256)
        self._streams.setdefault(account_id, set()).add(queue)
        if not self._listening:
            self.store.add_listener(self._on_change)
            self._listening = True
        return queue

    def unsubscribe(self, account_id: AccountId, queue: asyncio.Queue[int]) -> None:
        streams = self._streams.get(account_id)
        if streams is not None:
            streams.discard(queue)
            if not streams:
                del self._streams[account_id]
                for mailbox_id in [m for m, a in self._owners.items() if a == account_id]:
                    del self._owners[mailbox_id]
                for mailbox_id in self._follows.pop(account_id, set()):
                    readers = self._readers.get(mailbox_id)
                    if readers is not None:
                        readers.discard(account_id)
                        if not readers:
                            del self._readers[mailbox_id]
        if not self._streams and self._listening:
            self.store.remove_listener(self._on_change)
            self._listening = False

    def wake(self, token: int) -> None:
        """Put *token* into every stream's queue (the streams look whether to end)."""
        for queues in self._streams.values():
            for queue in queues:
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(token)

    def close(self) -> None:
        if self._listening:
            self.store.remove_listener(self._on_change)
            self._listening = False
        for task in self._tasks:
            task.cancel()
