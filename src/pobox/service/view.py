"""A session's numbered view of one mailbox: IMAP's selected state and the POP3 maildrop.

Message sequence numbers belong to a session, not to the store. A view keeps the messages it has
told its client about, in UID order, and learns what others changed from the store's change log
(everything above the MODSEQ it last saw). An IMAP session may not hear of expunges in the middle
of a command that uses sequence numbers; such expunges wait in the view until the session may
announce them.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from pobox.store.api import Mailbox, MessageMeta, ModSeq, Store, Uid


@dataclass(slots=True)
class ViewUpdate:
    """What a refresh found, in the order a session announces it."""

    expunged: list[int] = field(default_factory=list)  # sequence numbers, each valid when announced
    exists: int | None = None  # the new message count, when messages arrived
    flags: list[tuple[int, MessageMeta]] = field(default_factory=list)  # (msn, new state)

    def __bool__(self) -> bool:
        return bool(self.expunged or self.exists is not None or self.flags)


class MailboxView:
    def __init__(self, store: Store, mailbox: Mailbox, messages: list[MessageMeta]) -> None:
        self.store = store
        self.mailbox = mailbox
        self.messages = messages
        self.uids = [m.uid for m in messages]
        self.modseq: ModSeq = max(
            [mailbox.highest_modseq, *(m.modseq for m in messages)], default=ModSeq(0)
        )
        self.pending_expunge: set[Uid] = set()

    @classmethod
    async def open(cls, store: Store, mailbox: Mailbox) -> MailboxView:
        # read the mailbox first: anything committed after it shows in the next refresh
        current = await store.get_mailbox_by_id(mailbox.id) or mailbox
        messages = await store.list_messages(mailbox.id)
        view = cls(store, current, messages)
        view.modseq = current.highest_modseq
        return view

    def __len__(self) -> int:
        return len(self.messages)

    def msn_of(self, uid: Uid) -> int | None:
        index = bisect.bisect_left(self.uids, uid)
        if index < len(self.uids) and self.uids[index] == uid:
            return index + 1
        return None

    def at(self, msn: int) -> MessageMeta:
        if not 1 <= msn <= len(self.messages):
            raise IndexError(msn)
        return self.messages[msn - 1]

    def is_expunged(self, uid: Uid) -> bool:
        return uid in self.pending_expunge

    def _replace(self, meta: MessageMeta) -> int | None:
        msn = self.msn_of(meta.uid)
        if msn is not None:
            self.messages[msn - 1] = meta
        return msn

    def apply_flags(self, changed: list[MessageMeta]) -> None:
        """Take in flag changes this session made itself (it reports them on its own)."""
        for meta in changed:
            self._replace(meta)

    async def refresh(self, *, expunge: bool = True) -> ViewUpdate:
        """Learn what changed; with ``expunge=False`` expunges are kept pending."""
        batch = await self.store.changes_since(self.mailbox.id, self.modseq)
        update = ViewUpdate()
        self.mailbox = batch.mailbox
        for gone in batch.expunged:
            if self.msn_of(gone.uid) is not None:
                self.pending_expunge.add(gone.uid)
        last_uid = self.uids[-1] if self.uids else 0
        arrived = False
        for meta in batch.changed:
            if meta.uid > last_uid:
                self.messages.append(meta)
                self.uids.append(meta.uid)
                last_uid = meta.uid
                arrived = True
                continue
            old_msn = self.msn_of(meta.uid)
            if old_msn is None or meta.uid in self.pending_expunge:
                continue
            if self.messages[old_msn - 1].flags != meta.flags:
                update.flags.append((old_msn, meta))
            self.messages[old_msn - 1] = meta
        self.modseq = max(self.modseq, batch.mailbox.highest_modseq)
        if expunge and self.pending_expunge:
            update.expunged = self._remove_pending()
            # flag updates refer to numbers before the expunges; renumber them
            update.flags = [
                (msn, meta)
                for meta in (m for _, m in update.flags)
                if (msn := self.msn_of(meta.uid)) is not None
            ]
        if arrived:
            update.exists = len(self.messages)
        return update

    def _remove_pending(self) -> list[int]:
        announced: list[int] = []
        for uid in sorted(self.pending_expunge, reverse=True):
            msn = self.msn_of(uid)
            if msn is None:
                continue
            del self.messages[msn - 1]
            del self.uids[msn - 1]
            announced.append(msn)
        self.pending_expunge.clear()
        return announced

    def forget(self, uids: list[Uid]) -> list[int]:
        """Remove messages this session expunged itself; returns their numbers as announced."""
        self.pending_expunge.update(u for u in uids if self.msn_of(u) is not None)
        return self._remove_pending()
