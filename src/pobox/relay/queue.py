"""The outbound queue's front door: what submission (and bounces) hand remote recipients to.

``OutboundQueue(store)`` is all a front end needs: ``await queue.enqueue(sender, recipients,
message)`` stores the message and one pending state per recipient in one store transaction and
returns the queue id once that is on disk ("accepted means on disk"). A runner
(:mod:`pobox.relay.runner`) on the same store object in this process is woken at once, whichever
``OutboundQueue`` it was given; runners of other processes and nodes find the message at their
next poll (every two seconds).
"""

from __future__ import annotations

import asyncio
import secrets
import time
import weakref
from collections.abc import Callable, Sequence

from pobox.errors import InvalidInput
from pobox.store.api import Store

#: the runners' wake-up events by store object
_wakers: weakref.WeakKeyDictionary[Store, list[asyncio.Event]] = weakref.WeakKeyDictionary()


def new_queue_id() -> str:
    """A queue id: 16 hex digits, random (unique across nodes without coordination)."""
    return secrets.token_hex(8).upper()


def reverse_path(sender: str) -> str:
    """The envelope sender as the queue keeps it: "" for the null reverse-path ``<>``."""
    sender = sender.strip()
    if sender.startswith("<") and sender.endswith(">"):
        sender = sender[1:-1]
    return sender


class OutboundQueue:
    """Enqueue messages for remote recipients.

    Construct it from the open :class:`~pobox.store.api.Store` of the process::

        queue = OutboundQueue(store)
        queue_id = await queue.enqueue("alice@example.org", ["bob@example.net"], message)

    *clock* (seconds since the epoch) is for tests. The configuration is not needed here: how
    and when a message is sent is the runner's business (``[relay]``, docs/relay.md).
    """

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    def add_waker(self, event: asyncio.Event) -> None:
        """*event* is set whenever a message is enqueued on this store in this process (the
        runner waits on it)."""
        _wakers.setdefault(self.store, []).append(event)

    async def enqueue(self, sender: str, recipients: Sequence[str], message: bytes) -> str:
        """Queue *message* from *sender* ("" or "<>" for a bounce) to *recipients*; returns the
        queue id when the message and every recipient's state are committed."""
        rcpts = [reverse_path(r) for r in recipients]
        if not rcpts or not all(rcpts):
            raise InvalidInput("a queued message needs recipients")
        queue_id = new_queue_id()
        await self.store.queue_add(queue_id, reverse_path(sender), rcpts, message, self.clock())
        for event in _wakers.get(self.store, ()):
            event.set()
        return queue_id
