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
    MailboxId,
    MessageMeta,
    Store,
    Uid,
)
from pobox.store.rows import uidl_for

log = logging.getLogger("pobox.pop3")

#: Messages opened ahead in one store call when a client RETRs/TOPs one (and the ones after it).
PREFETCH = 8
#: Only messages up to this size are opened ahead (a backend may hold small ones in memory).
PREFETCH_MAX_SIZE = 256 * 1024


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
        self._position = {m.uid: i for i, m in enumerate(messages)}
        self._lock: Lock | None = lock
        self._unseen: list[Uid] = []  # marked \\Seen, not yet handed to the store
        self._flusher: asyncio.Future[None] | None = None
        # contents opened ahead, by UID; valid while the mailbox has not changed since
        self._ahead: dict[Uid, Content] = {}
        self._changed = False
        store.add_listener(self._on_change)

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
        """The stored bytes, or :class:`Expunged` if another session removed the message.

        A client usually downloads message after message, so a small message is opened
        together with the next few (one batched store call for several RETR/TOP, not one each).
        Opened contents are used only while the mailbox has not changed since they were opened;
        after any change (the store reports every write, this session's \\Seen included) they
        are checked again, in one call, before one is used.
        """
        uid = message.meta.uid
        if self._changed and self._ahead:
            await self._recheck()
        content = self._ahead.pop(uid, None)
        if content is not None:
            return content
        if message.meta.size > PREFETCH_MAX_SIZE:
            return await self._open_one(uid)
        await self._open_ahead(message)
        content = self._ahead.pop(uid, None)
        return content if content is not None else await self._open_one(uid)

    async def _open_one(self, uid: Uid) -> Content:
        try:
            return await self.store.open_message(self.mailbox.id, uid)
        except NotFound:
            raise Expunged("message was deleted by another session") from None

    async def _open_ahead(self, first: DropMessage) -> None:
        """Open *first* and the next few small messages of the snapshot still in the mailbox."""
        start = self._position[first.meta.uid]
        wanted: dict[Uid, MessageMeta] = {}
        for message in self.messages[start:]:
            if len(wanted) >= PREFETCH:
                break
            meta = message.meta
            if meta.size <= PREFETCH_MAX_SIZE and meta.uid not in self._ahead:
                wanted[meta.uid] = meta
        self._changed = False  # a change from now on is seen by the next open_content
        present = await self.store.get_messages(self.mailbox.id, list(wanted))
        blobs = {meta.uid: meta.blob for meta in present if meta.uid in wanted}
        opened = await self.store.open_contents(set(blobs.values()))
        used: set[int] = set()
        for uid, blob in blobs.items():
            content = opened.get(blob)
            if content is not None and blob not in used:  # a shared blob: opened once
                used.add(blob)
                self._ahead[uid] = content
        for blob, content in opened.items():
            if blob not in used:
                content.close()

    async def _recheck(self) -> None:
        """Close the contents opened ahead whose messages left the mailbox meanwhile."""
        self._changed = False
        present = {m.uid for m in await self.store.get_messages(self.mailbox.id, list(self._ahead))}
        for uid in [uid for uid in self._ahead if uid not in present]:
            self._ahead.pop(uid).close()

    def _on_change(self, mailbox_id: MailboxId) -> None:
        if mailbox_id == self.mailbox.id:
            self._changed = True

    def _close_ahead(self) -> None:
        self.store.remove_listener(self._on_change)
        for content in self._ahead.values():
            content.close()
        self._ahead.clear()

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
        self._close_ahead()
        await self.settle()
        if self._lock is not None:
            lock, self._lock = self._lock, None
            await lock.release()
