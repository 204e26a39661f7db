"""A session's numbered view of one mailbox: IMAP's selected state (and what else numbers mail).

Message sequence numbers belong to a session, not to the store. A view numbers the messages it
has told its client about, in UID order, over the process's shared
:class:`~pobox.service.index.MailboxIndex`: while the two agree (the usual case) the view holds
nothing per message but a count, and message *n* is the index's *n*-th. When the index drops
messages the view still numbers (another session expunged them, and this session may not say so
yet: RFC 9051 §7.5.1 forbids EXPUNGE during FETCH, STORE and SEARCH by number), the view keeps its
own UID array and what it knew of those messages until it may announce them; then it goes back to
sharing the index's.

Finding out what changed costs no store call when nothing did: :meth:`MailboxView.refresh`
compares the index's version with the one the view last saw.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from pobox.service.index import SEEN_BIT, MailboxIndex, MailIndex
from pobox.service.search import ColumnRecords, Message
from pobox.store.api import SEEN, Mailbox, MessageMeta, ModSeq, Store, Uid


@dataclass(slots=True)
class ViewUpdate:
    """What a refresh found, in the order a session announces it."""

    expunged: list[int] = field(default_factory=list)  # sequence numbers, each valid when announced
    vanished: list[int] = field(default_factory=list)  # the same messages' UIDs (QRESYNC)
    exists: int | None = None  # the new message count, when messages arrived
    flags: list[tuple[int, MessageMeta]] = field(default_factory=list)  # (msn, new state)

    def __bool__(self) -> bool:
        return bool(self.expunged or self.exists is not None or self.flags)


class MailboxView:
    def __init__(self, index: MailboxIndex) -> None:
        self.index = index
        self._private: array[int] | None = None  # own numbering; None: the index's first _count
        self._count = len(index)
        self.modseq: ModSeq = index.modseq
        self.version = index.version
        self.pending_expunge: set[Uid] = set()
        self._ghosts: dict[int, MessageMeta] = {}  # numbered here, gone from the index
        self._own: dict[int, int] = {}  # UID -> MODSEQ of flag changes this session reported
        self._closed = False
        #: called (synchronously) when the index heard of a change; sessions wake from IDLE
        self.on_change: Callable[[], None] | None = None
        index.views.add(self)

    @classmethod
    async def open(cls, source: MailIndex | Store, mailbox: Mailbox) -> MailboxView:
        """A view of *mailbox* over *source*'s shared index (a bare store gets its own)."""
        owner = source if isinstance(source, MailIndex) else MailIndex(source, linger=0)
        return cls(await owner.acquire(mailbox))

    def close(self) -> None:
        """Let go of the shared index (it lingers a while for the next session)."""
        if not self._closed:
            self._closed = True
            self.index.views.discard(self)
            self.index.owner.release(self.index)

    @property
    def mailbox(self) -> Mailbox:
        return self.index.mailbox

    # ---- numbering ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._private) if self._private is not None else self._count

    def shares_index(self) -> bool:
        """True when message n is the index's n-th message."""
        return self._private is None

    def _numbers(self) -> Sequence[int]:
        return self._private if self._private is not None else self.index.uids

    @property
    def uids(self) -> Sequence[int]:
        """The numbered UIDs (a copy only when the index is ahead of the view)."""
        if self._private is not None:
            return self._private
        if self._count == len(self.index.uids):
            return self.index.uids
        return self.index.uids[: self._count]

    def uid_at(self, msn: int) -> Uid:
        if not 1 <= msn <= len(self):
            raise IndexError(msn)
        return Uid(self._numbers()[msn - 1])

    def last_uid(self) -> int:
        n = len(self)
        return self._numbers()[n - 1] if n else 0

    def msn_of(self, uid: int) -> int | None:
        numbers, n = self._numbers(), len(self)
        i = bisect.bisect_left(numbers, uid, 0, n)
        if i < n and numbers[i] == uid:
            return i + 1
        return None

    def slice(self, first: int, last: int) -> list[int]:
        """UIDs of message numbers first..last (clipped)."""
        first, last = max(first, 1), min(last, len(self))
        return list(self._numbers()[first - 1 : last]) if first <= last else []

    def uid_range(self, low: int, high: int) -> list[int]:
        """Numbered UIDs in low..high."""
        numbers, n = self._numbers(), len(self)
        start = bisect.bisect_left(numbers, low, 0, n)
        end = bisect.bisect_right(numbers, high, 0, n)
        return list(numbers[start:end])

    def count_between(self, low: int, high: int) -> int:
        """How many numbered UIDs are in low..high-1 (two bisections, no copy)."""
        numbers, n = self._numbers(), len(self)
        return bisect.bisect_left(numbers, high, 0, n) - bisect.bisect_left(numbers, low, 0, n)

    def is_expunged(self, uid: int) -> bool:
        return uid in self.pending_expunge

    # ---- message data -------------------------------------------------------------------------
    def meta(self, uid: int) -> MessageMeta | None:
        """What is known of a numbered message (also one expunged meanwhile)."""
        ghost = self._ghosts.get(uid)
        if ghost is not None:
            return ghost
        return self.index.meta(uid)

    def metas(self, uids: Iterable[int]) -> list[MessageMeta]:
        out: list[MessageMeta] = []
        for uid in uids:
            meta = self.meta(uid)
            if meta is not None:
                out.append(meta)
        return out

    @property
    def messages(self) -> list[MessageMeta]:
        """Every numbered message, in order (built on demand: prefer :meth:`metas`)."""
        return self.metas(self._numbers()[: len(self)])

    def search_messages(self) -> Sequence[Message]:
        """Every numbered message as SEARCH reads it: while the view shares the index's
        numbering, the index's columns themselves (records only where a term needs one);
        otherwise light records, no MessageMeta."""
        index = self.index
        if self._private is None:
            return ColumnRecords(index, self._count, index.record_at)
        out: list[Message] = []
        for uid in self._private:
            ghost = self._ghosts.get(uid)
            if ghost is not None:
                out.append(ghost)
            elif (pos := index.position(uid)) is not None:
                out.append(index.record_at(pos))
        return out

    def at(self, msn: int) -> MessageMeta:
        meta = self.meta(self.uid_at(msn))
        if meta is None:
            raise IndexError(msn)
        return meta

    def first_unseen(self) -> int | None:
        """The number of the first message without \\Seen."""
        index = self.index
        if self._private is None:
            flags = index.flags
            for i in range(self._count):
                if not flags[i] & SEEN_BIT:
                    return i + 1
            return None
        for msn, uid in enumerate(self._private, 1):
            meta = self.meta(uid)
            if meta is not None and SEEN not in meta.flags:
                return msn
        return None

    # ---- what the index tells us --------------------------------------------------------------
    def _go_private(self) -> array[int]:
        if self._private is None:
            self._private = self.index.uids[: self._count]
        return self._private

    def _before_remove(self, index: MailboxIndex, positions: Sequence[int]) -> None:
        sharing = self._private is None
        count = self._count
        numbers = self._go_private()
        told = self._told_flags()
        for pos in positions:
            if sharing:
                if pos >= count:
                    break
                uid = index.uids[pos]
            else:
                uid = index.uids[pos]
                i = bisect.bisect_left(numbers, uid)
                if i >= len(numbers) or numbers[i] != uid:
                    continue
            meta = index.meta_at(pos)
            bits = told.get(uid)
            if bits is not None and self._own.get(uid) != meta.modseq:
                # the client never heard of the last changes: keep what it was told
                meta = replace(meta, flags=index.flagset(bits))
            self._ghosts[uid] = meta
            self.pending_expunge.add(Uid(uid))

    def _told_flags(self) -> dict[int, int]:
        """Flag bits of messages changed since this view last looked, as they were then."""
        log = self.index.flag_log
        start = bisect.bisect_right(log, (self.version, 1 << 62))
        told: dict[int, int] = {}
        for _, uid, bits in log[start:]:
            told.setdefault(uid, bits)
        return told

    def _before_insert(self, index: MailboxIndex) -> None:
        self._go_private()

    def _wake(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def changed(self) -> bool:
        """Whether a refresh could find anything (no store call)."""
        return (
            self.index.version != self.version
            or self.index.stale
            or bool(self.pending_expunge)
            or len(self) != len(self.index)
        )

    # ---- this session's own changes -------------------------------------------------------
    def note_own(self, changed: Iterable[MessageMeta]) -> None:
        """Flag changes this session reports itself: not to be announced again."""
        for meta in changed:
            self._own[meta.uid] = meta.modseq

    def apply_flags(self, changed: Iterable[MessageMeta]) -> None:
        self.note_own(changed)

    def note_reported(self, uids: Iterable[int]) -> None:
        """The client was just told these messages' current flags."""
        index = self.index
        for uid in uids:
            pos = index.position(uid)
            if pos is not None:
                self._own[uid] = index.modseqs[pos]

    def told_modseqs(self, told: Iterable[tuple[int, int]]) -> None:
        """The client was just shown these (UID, MODSEQ) states' flags (a FETCH of FLAGS): the
        changes up to them are not to be announced again."""
        for uid, modseq in told:
            self._own[uid] = modseq

    def told(self, meta: MessageMeta) -> None:
        """The client was told this state of a message the index no longer has."""
        if meta.uid in self._ghosts:
            self._ghosts[meta.uid] = meta

    def knows(self, uid: int) -> bool:
        """Whether the client has heard of the message's current flags (no pending change)."""
        index = self.index
        pos = index.position(uid)
        if pos is None:
            return True
        modseq = index.modseqs[pos]
        return modseq <= self.modseq or self._own.get(uid) == modseq

    def forget(self, uids: Iterable[Uid]) -> list[int]:
        """Remove messages this session expunged itself; returns their numbers as announced."""
        return [msn for msn, _ in self.forget_pairs(uids)]

    def forget_pairs(self, uids: Iterable[Uid]) -> list[tuple[int, int]]:
        """:meth:`forget`, with each number's UID: (number as announced, UID)."""
        self._go_private()
        self.pending_expunge.update(u for u in uids if self.msn_of(u) is not None)
        announced = self._remove_pending_pairs()
        self._try_share()
        return announced

    # ---- refresh --------------------------------------------------------------------------
    async def refresh(self, *, expunge: bool = True) -> ViewUpdate:
        """Learn what changed; with ``expunge=False`` expunges are kept pending."""
        index = self.index
        if index.stale:
            await index.sync()
        elif index.gone:
            await index.sync()  # raises NotFound
        update = ViewUpdate()
        arrived = False
        if index.version != self.version:
            update.flags = self._flag_changes()
            arrived = self._take_arrivals()
            self.modseq = index.modseq
            self.version = index.version
            self._own.clear()
        elif len(self) < len(index) and self._private is None:
            arrived = self._take_arrivals()
        if expunge and self.pending_expunge:
            pairs = self._remove_pending_pairs()
            update.expunged = [msn for msn, _ in pairs]
            update.vanished = [uid for _, uid in pairs]
            # flag updates refer to numbers before the expunges; renumber them
            update.flags = [
                (msn, meta)
                for meta in (m for _, m in update.flags)
                if (msn := self.msn_of(meta.uid)) is not None
            ]
        if self._private is not None and not self.pending_expunge:
            self._try_share()
        if arrived:
            update.exists = len(self)
        return update

    def _flag_changes(self) -> list[tuple[int, MessageMeta]]:
        index = self.index
        log = index.flag_log
        if self.version >= index.log_floor:
            start = bisect.bisect_right(log, (self.version, 1 << 62))
            candidates: Iterable[int] = dict.fromkeys(uid for _, uid, _ in log[start:])
        else:
            since = self.modseq
            candidates = [
                uid
                for uid in self.uids
                if (pos := index.position(uid)) is not None and index.modseqs[pos] > since
            ]
        found: list[tuple[int, MessageMeta]] = []
        for uid in candidates:
            if uid in self.pending_expunge:
                continue
            msn = self.msn_of(uid)
            if msn is None:
                continue
            pos = index.position(uid)
            if pos is None:
                continue
            if self._own.get(uid) == index.modseqs[pos]:
                continue
            found.append((msn, index.meta_at(pos)))
        found.sort(key=lambda item: item[0])
        return found

    def _take_arrivals(self) -> bool:
        index = self.index
        if self._private is None:
            if len(index.uids) > self._count:
                self._count = len(index.uids)
                return True
            return False
        start = bisect.bisect_right(index.uids, self.last_uid())
        if start < len(index.uids):
            self._private.extend(index.uids[start:])
            return True
        return False

    def _remove_pending_pairs(self) -> list[tuple[int, int]]:
        announced: list[tuple[int, int]] = []
        numbers = self._go_private()
        for uid in sorted(self.pending_expunge, reverse=True):
            msn = self.msn_of(uid)
            self._ghosts.pop(uid, None)
            if msn is None:
                continue
            del numbers[msn - 1]
            announced.append((msn, uid))
        self.pending_expunge.clear()
        return announced

    def _try_share(self) -> None:
        private = self._private
        if private is None or self.pending_expunge:
            return
        n = len(private)
        uids = self.index.uids
        if n <= len(uids) and (n == 0 or (uids[n - 1] == private[-1] and uids[:n] == private)):
            self._private = None
            self._count = n
            self._ghosts.clear()
