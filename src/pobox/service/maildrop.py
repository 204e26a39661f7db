"""The POP3 maildrop: an exclusive, numbered snapshot of the account's INBOX.

The snapshot is taken at login and never grows (RFC 1939: new mail shows in the next session).
Deletions are only marks until :meth:`Maildrop.commit` (the UPDATE state); what a commit does to a
marked message is the account's retention policy. Every message a POP3 client deletes stays
recoverable for the configured window (``pobox pop3 undelete``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace

from pobox.errors import Expunged, InUse, NotFound
from pobox.service.policy import Policies, Retention
from pobox.store.api import (
    SEEN,
    Account,
    Content,
    FlagOp,
    Lock,
    Mailbox,
    MessageMeta,
    Store,
    Uid,
)
from pobox.store.rows import uidl_for

log = logging.getLogger("pobox.pop3")


def message_uidl(meta: MessageMeta, uidvalidity: int) -> str:
    """The stored UIDL override (kept across undelete/copy), else Dovecot's default form."""
    return meta.pop3_uidl or uidl_for(meta.uid, uidvalidity)


@dataclass(slots=True)
class DropMessage:
    meta: MessageMeta
    uidl: str
    deleted: bool = False


class Maildrop:
    def __init__(
        self,
        store: Store,
        policies: Policies,
        account: Account,
        mailbox: Mailbox,
        messages: list[MessageMeta],
        lock: Lock,
    ) -> None:
        self.store = store
        self.policies = policies
        self.account = account
        self.mailbox = mailbox
        self.retention: Retention = policies.retention(account)
        self.messages = [DropMessage(m, message_uidl(m, mailbox.uidvalidity)) for m in messages]
        self._lock: Lock | None = lock
        self._unseen: list[Uid] = []  # marked \\Seen, not yet handed to the store
        self._flusher: asyncio.Future[None] | None = None

    @classmethod
    async def open(cls, store: Store, policies: Policies, account: Account) -> Maildrop:
        lock = await store.try_lock(account.id, "pop3")
        if lock is None:
            raise InUse("the maildrop is in use by another POP3 session")
        try:
            mailbox = await store.get_mailbox(account.id, "INBOX")
            if mailbox is None:
                raise NotFound("the account has no INBOX")
            messages = [m for m in await store.list_messages(mailbox.id) if not m.pop3_hidden]
        except BaseException:
            await lock.release()
            raise
        return cls(store, policies, account, mailbox, messages, lock)

    # numbering (1-based, stable for the session) -------------------------------------------
    def get(self, number: int) -> DropMessage | None:
        """The message numbered *number* unless it is out of range or marked deleted."""
        if 1 <= number <= len(self.messages):
            message = self.messages[number - 1]
            if not message.deleted:
                return message
        return None

    def visible(self) -> list[tuple[int, DropMessage]]:
        return [(i, m) for i, m in enumerate(self.messages, 1) if not m.deleted]

    def stat(self) -> tuple[int, int]:
        live = [m.meta.size for _, m in self.visible()]
        return len(live), sum(live)

    def reset(self) -> None:
        for message in self.messages:
            message.deleted = False

    # content -------------------------------------------------------------------------------
    async def open_content(self, message: DropMessage) -> Content:
        """The stored bytes, or :class:`Expunged` if another session removed the message."""
        try:
            return await self.store.open_message(self.mailbox.id, message.meta.uid)
        except NotFound:
            raise Expunged("message was deleted by another session") from None

    async def mark_seen(self, message: DropMessage) -> None:
        """Set \\Seen now and wait until it is stored."""
        self.mark_seen_soon(message)
        await self.settle()

    def mark_seen_soon(self, message: DropMessage) -> None:
        """Set \\Seen in the background (RETR streams meanwhile); :meth:`settle` waits for it.

        The writes of a session are grouped: while one is being committed, the messages marked
        meanwhile wait and then go in one store call, so a client that RETRs message after
        message costs one commit per round, not one per message. The write goes on if the
        client drops the connection mid-message.
        """
        if SEEN in message.meta.flags:
            return
        # remember it, so a second RETR of the message does not write again
        message.meta = replace(message.meta, flags=message.meta.flags | {SEEN})
        self._unseen.append(message.meta.uid)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush_seen())

    async def _flush_seen(self) -> None:
        while self._unseen:
            uids, self._unseen = self._unseen, []
            try:
                await self.store.set_flags(self.mailbox.id, uids, FlagOp.ADD, frozenset({SEEN}))
            except Exception as exc:
                log.warning("pop3 could not set \\Seen for %s: %s", self.account.address, exc)

    async def settle(self) -> None:
        """Wait for background \\Seen writes; a failure is logged, not raised."""
        while self._flusher is not None and not self._flusher.done():
            # shielded: a cancelled session (server shutdown) still lets the write finish
            await asyncio.shield(self._flusher)

    # the UPDATE state ----------------------------------------------------------------------
    async def commit(self) -> int:
        """Apply the deletion marks according to the retention policy; returns how many."""
        await self.settle()
        marked = [m.meta.uid for m in self.messages if m.deleted]
        if not marked:
            return 0
        if self.retention.kind == "delete":
            gone = await self.store.expunge(self.mailbox.id, marked, keep_recoverable=True)
            count = len(gone)
        else:
            await self.store.set_flags(self.mailbox.id, marked, FlagOp.ADD, frozenset({SEEN}))
            hidden = await self.store.pop3_hide(self.mailbox.id, marked, self.policies.clock())
            count = len(hidden)
        log.info(
            "pop3 update account=%s deleted=%d policy=%s",
            self.account.address,
            count,
            self.retention,
        )
        return count

    async def close(self) -> None:
        await self.settle()
        if self._lock is not None:
            lock, self._lock = self._lock, None
            await lock.release()
