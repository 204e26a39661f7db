"""The per-process mailbox index: one shared, compact copy of each open mailbox's metadata.

Every session of a process that has a mailbox open (IMAP selected state, and whatever else asks)
numbers its messages over one :class:`MailboxIndex` (see :mod:`pobox.service.view`). The index is
a cache of the store: per message it keeps UID, MODSEQ, flags (a bit set: system flags at fixed
bits, keywords interned per mailbox above them), size, internal date and zone, save date and
content id, in ``array`` columns (about 50 octets a message, no Python object per message).

It is kept current once per process, never once per session:

* the store calls :meth:`MailIndex._on_change` for every change (writes of this process right
  after their commit; other processes' through the store's watcher: SQLite's journal poll,
  PostgreSQL's LISTEN/NOTIFY). That only marks the index stale and wakes its views;
* the first session that then looks (:meth:`MailboxIndex.sync`) runs one ``changes_since`` for
  everybody; sessions that look while it runs wait for the same call;
* writes made through :class:`MailIndex` (STORE, EXPUNGE, APPEND) apply their own results at
  once, and when their MODSEQs follow the index's directly, no ``changes_since`` is needed at all.

An index nobody holds lingers for :data:`LINGER` seconds (a client re-selecting finds it warm),
then it is dropped; it can always be rebuilt from the store.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import weakref
from array import array
from collections.abc import Callable, Iterable, MutableSequence, Sequence
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Protocol

from pobox.errors import NotFound
from pobox.store.api import (
    SYSTEM_FLAGS,
    BlobId,
    ChangeBatch,
    Expunged,
    FlagOp,
    Mailbox,
    MailboxId,
    MessageColumns,
    MessageMeta,
    ModSeq,
    NewMessage,
    QuotaLimits,
    Store,
    Uid,
)
from pobox.store.rows import to_epoch

if TYPE_CHECKING:
    from pobox.store.api import AccountId

log = logging.getLogger("pobox.index")

#: Seconds an index nobody holds is kept before it is dropped.
LINGER = 30.0
#: Flag changes remembered for views that have not looked yet; older ones need a scan.
FLAG_LOG = 4096

SYSTEM_BITS: dict[str, int] = {name: 1 << i for i, name in enumerate(SYSTEM_FLAGS)}
_SYSTEM_BY_LOWER = {name.lower(): name for name in SYSTEM_FLAGS}
SYSTEM_BITS_BY_LOWER = {name.lower(): bit for name, bit in SYSTEM_BITS.items()}
FIRST_KEYWORD_BIT = len(SYSTEM_FLAGS)
SEEN_BIT = SYSTEM_BITS["\\Seen"]
DELETED_BIT = SYSTEM_BITS["\\Deleted"]

_ZONES: dict[int, timezone] = {}


def _zone(minutes: int) -> timezone:
    zone = _ZONES.get(minutes)
    if zone is None:
        zone = _ZONES[minutes] = timezone(timedelta(minutes=minutes))
    return zone


def _datetime(epoch: float, minutes: int = 0) -> datetime:
    return datetime.fromtimestamp(epoch, _zone(minutes))


def _column(typecode: str, values: Sequence[int]) -> array[int]:
    """*values* as an array of *typecode*, adopted without a copy when it is one already."""
    if isinstance(values, array) and values.typecode == typecode:
        return values
    return array(typecode, values)


def _fcolumn(values: Sequence[float]) -> array[float]:
    if isinstance(values, array) and values.typecode == "d":
        return values
    return array("d", values)


class IndexedMessage:
    """A message as SEARCH reads it, straight from the index's columns: a few ints and the
    shared flag set; the dates become datetimes only when a term asks for them."""

    __slots__ = ("_date", "_saved", "_zone", "blob", "flags", "modseq", "size", "uid")

    def __init__(
        self,
        uid: int,
        modseq: int,
        flags: frozenset[str],
        size: int,
        blob: int,
        date: float,
        zone: int,
        saved: float = 0.0,
    ) -> None:
        self.uid = Uid(uid)
        self.modseq = ModSeq(modseq)
        self.flags = flags
        self.size = size
        self.blob = BlobId(blob)
        self._date = date
        self._zone = zone
        self._saved = saved

    @property
    def internal_date(self) -> datetime:
        return _datetime(self._date, self._zone)

    @property
    def save_date(self) -> datetime:
        return _datetime(self._saved)


class IndexView(Protocol):
    """What the index tells the views numbered over it (pobox.service.view.MailboxView)."""

    def _before_remove(self, index: MailboxIndex, positions: Sequence[int]) -> None: ...
    def _before_insert(self, index: MailboxIndex) -> None: ...
    def _wake(self) -> None: ...


class MailboxIndex:
    """One mailbox's messages in UID order, as parallel compact columns."""

    def __init__(self, owner: MailIndex, mailbox: Mailbox) -> None:
        self.owner = owner
        self.mailbox = mailbox
        self.uids = array("I")
        self.modseqs = array("Q")
        #: flag bits per message; a plain list once keywords need more than 64 bits
        self.flags: MutableSequence[int] = array("Q")
        self.sizes = array("Q")
        self.dates = array("d")
        self.zones = array("h")
        self.saved = array("d")
        self.blobs = array("Q")
        self.uidls: dict[int, str] = {}  # the few messages with a stored POP3 UIDL
        self.hidden: set[int] = set()  # hidden from POP3 by retention
        self.keywords: list[str] = []  # keyword of bit FIRST_KEYWORD_BIT + i
        self._keyword_bit: dict[str, int] = {}
        self._flagsets: dict[int, frozenset[str]] = {}
        #: SORT keys read from the store, by key and UID (pobox.service.sort): a message's
        #: content never changes, so they stay right while it is there
        self.sort_cache: dict[str, dict[int, Any]] = {}
        #: every change up to this MODSEQ is applied
        self.modseq: ModSeq = ModSeq(0)
        #: bumped whenever anything is applied (views compare it: no store call when equal)
        self.version = 0
        #: (version, UID, flag bits before) of flag changes, for views catching up; trimmed to
        #: FLAG_LOG entries
        self.flag_log: list[tuple[int, int, int]] = []
        self.log_floor = 0  # changes of this version or older may be missing from flag_log
        self.stale = True
        self.gone = False
        self.loaded = False
        self._notes = 0  # change notifications not yet accounted for
        self._sync: asyncio.Future[None] | None = None
        self.views: weakref.WeakSet[IndexView] = weakref.WeakSet()
        self.refs = 0
        self._evict: asyncio.TimerHandle | None = None
        self._used_version = -1
        self._used_keywords: tuple[str, ...] = ()
        #: messages below this UID had their \Recent claimed (a lower bound of the store's
        #: recent floor, learnt from this process's claims: see :meth:`MailIndex.claim_recent`)
        self.recent_floor = 0

    def __len__(self) -> int:
        return len(self.uids)

    @property
    def id(self) -> MailboxId:
        return self.mailbox.id

    # ---- flags --------------------------------------------------------------------------------
    def bits_of(self, flags: Iterable[str]) -> int:
        bits = 0
        for flag in flags:
            system = _SYSTEM_BY_LOWER.get(flag.lower())
            if system is not None:
                bits |= SYSTEM_BITS[system]
                continue
            bit = self._keyword_bit.get(flag)
            if bit is None:
                bit = self._keyword_bit[flag] = FIRST_KEYWORD_BIT + len(self.keywords)
                self.keywords.append(flag)
                if bit >= 64 and isinstance(self.flags, array):
                    self.flags = list(self.flags)
            bits |= 1 << bit
        return bits

    def flag_mask(self, flag: str) -> int:
        """The bits of *flag* in ``flags``: a system flag's, or those of every keyword that
        equals it case-insensitively (SEARCH KEYWORD); 0 when no message could have it."""
        system = SYSTEM_BITS_BY_LOWER.get(flag.lower())
        if system is not None:
            return system
        lowered = flag.lower()
        mask = 0
        for keyword, bit in self._keyword_bit.items():
            if keyword.lower() == lowered:
                mask |= 1 << bit
        return mask

    def flagset(self, bits: int) -> frozenset[str]:
        found = self._flagsets.get(bits)
        if found is None:
            names = [name for name, bit in SYSTEM_BITS.items() if bits & bit]
            rest = bits >> FIRST_KEYWORD_BIT
            i = 0
            while rest:
                if rest & 1:
                    names.append(self.keywords[i])
                rest >>= 1
                i += 1
            found = frozenset(names)
            if len(self._flagsets) > 4096:
                self._flagsets.clear()
            self._flagsets[bits] = found
        return found

    def keywords_in_use(self) -> tuple[str, ...]:
        """Keywords set on some message now, sorted (for SELECT's FLAGS)."""
        if not self.keywords:
            return ()  # no message ever had one: no pass over the flags
        if self._used_version != self.version:
            every = 0
            for bits in set(self.flags):
                every |= bits
            every >>= FIRST_KEYWORD_BIT
            used = [k for i, k in enumerate(self.keywords) if every >> i & 1]
            self._used_keywords = tuple(sorted(used))
            self._used_version = self.version
        return self._used_keywords

    # ---- lookups ------------------------------------------------------------------------------
    def position(self, uid: int) -> int | None:
        i = bisect.bisect_left(self.uids, uid)
        if i < len(self.uids) and self.uids[i] == uid:
            return i
        return None

    def meta_at(self, pos: int) -> MessageMeta:
        uid = self.uids[pos]
        return MessageMeta(
            self.mailbox.id,
            Uid(uid),
            ModSeq(self.modseqs[pos]),
            self.flagset(self.flags[pos]),
            _datetime(self.dates[pos], self.zones[pos]),
            _datetime(self.saved[pos]),
            self.sizes[pos],
            BlobId(self.blobs[pos]),
            self.uidls.get(uid) if self.uidls else None,
            uid in self.hidden if self.hidden else False,
        )

    def record_at(self, pos: int) -> IndexedMessage:
        return IndexedMessage(
            self.uids[pos],
            self.modseqs[pos],
            self.flagset(self.flags[pos]),
            self.sizes[pos],
            self.blobs[pos],
            self.dates[pos],
            self.zones[pos],
            self.saved[pos],
        )

    def meta(self, uid: int) -> MessageMeta | None:
        pos = self.position(uid)
        return None if pos is None else self.meta_at(pos)

    # ---- applying changes ---------------------------------------------------------------------
    def _load_columns(self, cols: MessageColumns) -> None:
        self.mailbox = cols.mailbox
        flags: MutableSequence[int] = cols.flags  # type: ignore[assignment]
        if any(cols.keywords):
            flags = list(cols.flags)
            interned: dict[str, int] = {}
            for i, text in enumerate(cols.keywords):
                if text:
                    bits = interned.get(text)
                    if bits is None:
                        bits = interned[text] = self.bits_of(text.split(" "))
                    flags[i] |= bits
        self.uids = _column("I", cols.uids)
        self.modseqs = _column("Q", cols.modseqs)
        wide = FIRST_KEYWORD_BIT + len(self.keywords) > 64
        self.flags = flags if wide else _column("Q", flags)
        self.sizes = _column("Q", cols.sizes)
        self.dates = _fcolumn(cols.internal_dates)
        self.zones = _column("h", cols.zones)
        self.saved = _fcolumn(cols.save_dates)
        self.blobs = _column("Q", cols.blobs)
        self.uidls = dict(cols.uidls)
        self.hidden = set(cols.hidden)
        self.modseq = ModSeq(max(self.modseq, cols.mailbox.highest_modseq))
        self.loaded = True
        self.version += 1

    def _upsert(self, meta: MessageMeta, *, log_flags: bool = True) -> None:
        uid = meta.uid
        n = len(self.uids)
        if n and uid <= self.uids[-1]:
            pos = bisect.bisect_left(self.uids, uid)
            if pos < n and self.uids[pos] == uid:
                if meta.modseq <= self.modseqs[pos]:
                    return  # this state, or a later one, is here already
                if log_flags:
                    self.flag_log.append((self.version + 1, uid, self.flags[pos]))
                self.modseqs[pos] = meta.modseq
                self.flags[pos] = self.bits_of(meta.flags)
                self._extras(meta)
                return
            # a message below the highest UID: cannot happen when changes come in order, but
            # keep the columns sorted all the same (views take their own numbering first)
            for view in list(self.views):
                view._before_insert(self)
            self._insert(pos, meta)
            return
        self._insert(n, meta)

    def _insert(self, pos: int, meta: MessageMeta) -> None:
        if meta.uid >= self.mailbox.uidnext:
            self.mailbox = replace(self.mailbox, uidnext=Uid(meta.uid + 1))
        epoch, zone = to_epoch(meta.internal_date)
        self.uids.insert(pos, meta.uid)
        self.modseqs.insert(pos, meta.modseq)
        bits = self.bits_of(meta.flags)  # first: it may widen the column (a new list)
        self.flags.insert(pos, bits)
        self.sizes.insert(pos, meta.size)
        self.dates.insert(pos, epoch)
        self.zones.insert(pos, zone)
        self.saved.insert(pos, meta.save_date.timestamp())
        self.blobs.insert(pos, meta.blob)
        self._extras(meta)

    def _extras(self, meta: MessageMeta) -> None:
        if meta.pop3_uidl is not None:
            self.uidls[meta.uid] = meta.pop3_uidl
        if meta.pop3_hidden:
            self.hidden.add(meta.uid)
        elif self.hidden:
            self.hidden.discard(meta.uid)

    def _remove(self, uids: Iterable[int]) -> None:
        doomed_uids = set(uids)
        positions = sorted(p for p in map(self.position, doomed_uids) if p is not None)
        if not positions:
            return
        for view in list(self.views):
            view._before_remove(self, positions)
        columns: tuple[Any, ...] = (
            self.uids,
            self.modseqs,
            self.flags,
            self.sizes,
            self.dates,
            self.zones,
            self.saved,
            self.blobs,
        )
        if len(positions) > 64:
            doomed = set(positions)
            keep = [i for i in range(len(self.uids)) if i not in doomed]
            for column in columns:
                values = [column[i] for i in keep]
                column[:] = array(column.typecode, values) if isinstance(column, array) else values
        else:
            for pos in reversed(positions):
                for column in columns:
                    del column[pos]
        if self.uidls or self.hidden:
            for uid in doomed_uids:
                self.uidls.pop(uid, None)
                self.hidden.discard(uid)

    def _trim_log(self) -> None:
        if len(self.flag_log) > FLAG_LOG:
            cut = len(self.flag_log) - FLAG_LOG // 2
            self.log_floor = max(self.log_floor, self.flag_log[cut - 1][0])
            del self.flag_log[:cut]

    def _apply(self, batch: ChangeBatch) -> None:
        self.mailbox = batch.mailbox
        if batch.expunged:
            self._remove([e.uid for e in batch.expunged])
        for meta in batch.changed:
            self._upsert(meta)
        self.modseq = ModSeq(max(self.modseq, batch.mailbox.highest_modseq))
        self._trim_log()
        self.version += 1

    def _own(self, first: int, last: int, apply: Callable[[], None], *, ordered: bool) -> None:
        """Apply the result of a write of this process whose MODSEQs are first..last.

        When they follow the index's MODSEQ directly, nothing happened in between: the index is
        current without asking the store, and the write's own notification is accounted for.
        Otherwise the result is applied only if *ordered* is False (per-message MODSEQs keep
        that safe) and the next :meth:`sync` asks the store.
        """
        if last > self.mailbox.highest_modseq:
            self.mailbox = replace(self.mailbox, highest_modseq=ModSeq(last))
        if first == self.modseq + 1 and self.loaded:
            apply()
            self.modseq = ModSeq(last)
            if self._notes > 0:
                self._notes -= 1
            if self._notes == 0 and self._sync is None:
                self.stale = False
        elif not ordered and self.loaded:
            apply()
        else:
            self.stale = True
        self._trim_log()
        self.version += 1
        self._wake_views()

    # ---- notifications and catching up --------------------------------------------------------
    def _note(self) -> None:
        self._notes += 1
        self.stale = True
        self._wake_views()

    def _wake_views(self) -> None:
        for view in list(self.views):
            view._wake()

    async def sync(self) -> None:
        """Bring the index up to date with the store if a change was notified; raises
        :class:`NotFound` when the mailbox was deleted."""
        # a catch-up under way (stale is cleared as it starts) is waited for too: the first
        # load of a mailbox must not look empty to a second session that asks meanwhile
        while (self.stale or self._sync is not None) and not self.gone:
            if self._sync is None:
                self._sync = asyncio.ensure_future(self._catch_up())
            await asyncio.shield(self._sync)
        if self.gone:
            raise NotFound("mailbox does not exist")

    async def _catch_up(self) -> None:
        self.stale = False
        self._notes = 0
        store = self.owner.store
        try:
            if not self.loaded:
                # the mailbox and its messages in one snapshot, as columns
                self._load_columns(await store.message_columns(self.mailbox.id))
                return
            self.owner.catch_ups += 1
            self._apply(await store.changes_since(self.mailbox.id, self.modseq))
        except NotFound:
            self.gone = True
            self.stale = False
            self.owner._forget(self)
            self._wake_views()
        except BaseException:
            self.stale = True
            raise
        finally:
            self._sync = None


class MailIndex:
    """The indexes of one process, shared by its sessions (one per MailService)."""

    def __init__(self, store: Store, linger: float = LINGER) -> None:
        self.store = store
        self.linger = linger
        self._indexes: dict[MailboxId, MailboxIndex] = {}
        self._listening = False
        self.catch_ups = 0  # changes_since calls made (tests, metrics)

    def __contains__(self, mailbox_id: MailboxId) -> bool:
        return mailbox_id in self._indexes

    def _on_change(self, mailbox_id: MailboxId) -> None:
        index = self._indexes.get(mailbox_id)
        if index is not None:
            index._note()

    def _listen(self) -> None:
        if not self._listening:
            self.store.add_listener(self._on_change)
            self._listening = True

    def _forget(self, index: MailboxIndex) -> None:
        if self._indexes.get(index.id) is index:
            del self._indexes[index.id]
        if index._evict is not None:
            index._evict.cancel()
            index._evict = None
        if not self._indexes and self._listening:
            self.store.remove_listener(self._on_change)
            self._listening = False

    def close(self) -> None:
        for index in list(self._indexes.values()):
            self._forget(index)

    def find(self, account_id: AccountId, name: str) -> MailboxIndex | None:
        """An index already held for the account's mailbox of that name (no store call)."""
        for index in self._indexes.values():
            mailbox = index.mailbox
            if mailbox.account_id == account_id and mailbox.name == name and not index.gone:
                return index
        return None

    async def acquire(self, mailbox: Mailbox) -> MailboxIndex:
        """The mailbox's index, current; hold it until :meth:`release`.

        *mailbox* as just read from the store: when its HIGHESTMODSEQ is ahead of the index,
        another process committed something whose notification has not arrived yet, and the
        index catches up before it is handed out."""
        index = self._indexes.get(mailbox.id)
        if index is not None and index.mailbox.uidvalidity != mailbox.uidvalidity:
            # another mailbox under the same id (a store that handed out a deleted mailbox's
            # id again): what the index holds is the deleted mailbox's; its views learn that
            index.gone = True
            index.stale = False
            self._forget(index)
            index._wake_views()
            index = None
        if index is None or index.gone:
            index = MailboxIndex(self, mailbox)
            self._indexes[mailbox.id] = index
            self._listen()
        elif index.loaded and mailbox.highest_modseq > index.modseq:
            index._note()
        index.refs += 1
        if index._evict is not None:
            index._evict.cancel()
            index._evict = None
        try:
            await index.sync()
        except BaseException:
            self.release(index)
            raise
        return index

    def release(self, index: MailboxIndex) -> None:
        index.refs -= 1
        if index.refs > 0 or index.gone:
            if index.gone and index.refs <= 0:
                self._forget(index)
            return
        if self.linger <= 0:
            self._forget(index)
            return
        with contextlib.suppress(RuntimeError):
            loop = asyncio.get_running_loop()
            index._evict = loop.call_later(self.linger, self._forget, index)
            return
        self._forget(index)

    async def claim_recent(self, index: MailboxIndex, below: int) -> int:
        """Claim \\Recent for the messages of *index* with UIDs below *below* for one session
        (RFC 3501 §2.3.2: a message is recent in exactly one session, the first to see it).

        Returns the first UID that is \\Recent for the caller: messages from there up to
        *below* are its own, older ones another session had first. The store decides (one
        atomic write, whatever process or node asks); messages this process knows to be claimed
        already cost no store call."""
        if below <= index.recent_floor:
            return below
        try:
            floor = await self.store.claim_recent(index.id, Uid(below))
        except NotFound:
            return below  # deleted meanwhile: nothing is recent (the next sync says it is gone)
        index.recent_floor = max(index.recent_floor, floor, below)
        return floor

    async def poll(self, index: MailboxIndex) -> None:
        """An explicit poll (IMAP NOOP, CHECK): one point read of the mailbox row, so that what
        another process committed before the poll is seen now, not when its notification
        arrives (SQLite's journal poll runs every 200 ms). Marks the index stale when the store
        is ahead of it or the mailbox is gone; the caller's refresh then catches up."""
        mailbox = await self.store.get_mailbox_by_id(index.id)
        if mailbox is not None and mailbox.uidvalidity != index.mailbox.uidvalidity:
            mailbox = None  # another mailbox under a reused id: this one is gone
            index.gone = True
            self._forget(index)
        if mailbox is None or (index.loaded and mailbox.highest_modseq > index.modseq):
            index._note()  # a deleted mailbox: the sync raises NotFound

    async def recent_floor(self, index: MailboxIndex) -> int:
        """The first UID of *index* that no session has claimed as \\Recent, claiming nothing
        (a read-only session: RFC 3501 §6.3.2, EXAMINE must not take \\Recent away).
        When this process knows every indexed message to be claimed, no store call."""
        if not index.uids or index.recent_floor > index.uids[-1]:
            return index.recent_floor
        try:
            floor = await self.store.claim_recent(index.id, Uid(1))  # never moves the floor
        except NotFound:
            return index.mailbox.uidnext  # deleted meanwhile: nothing is recent
        index.recent_floor = max(index.recent_floor, floor)
        return floor

    # ---- writes that keep the index current ---------------------------------------------------
    async def set_flags(
        self,
        mailbox_id: MailboxId,
        uids: Iterable[Uid],
        op: FlagOp,
        flags: frozenset[str],
        unchanged_since: ModSeq | None = None,
    ) -> list[MessageMeta]:
        """*unchanged_since*: messages with a greater MODSEQ are left alone (RFC 7162)."""
        changed = await self.store.set_flags(mailbox_id, uids, op, flags, unchanged_since)
        index = self._indexes.get(mailbox_id)
        if index is not None and changed:
            modseq = max(m.modseq for m in changed)
            first = min(m.modseq for m in changed)

            def apply() -> None:
                for meta in changed:
                    index._upsert(meta)

            index._own(first, modseq, apply, ordered=False)
        return changed

    async def expunge(
        self, mailbox_id: MailboxId, uids: Iterable[Uid], *, keep_recoverable: bool = False
    ) -> list[Expunged]:
        gone = await self.store.expunge(mailbox_id, uids, keep_recoverable=keep_recoverable)
        index = self._indexes.get(mailbox_id)
        if index is not None and gone:
            modseqs = [e.modseq for e in gone]
            index._own(
                min(modseqs),
                max(modseqs),
                lambda: index._remove([e.uid for e in gone]),
                ordered=False,
            )
        return gone

    async def append(
        self, mailbox_id: MailboxId, message: NewMessage, *, quota: QuotaLimits | None = None
    ) -> MessageMeta:
        meta = await self.store.append(mailbox_id, message, quota=quota)
        index = self._indexes.get(mailbox_id)
        if index is not None:
            index._own(meta.modseq, meta.modseq, lambda: index._upsert(meta), ordered=True)
        return meta

    async def append_claiming(
        self, mailbox_id: MailboxId, message: NewMessage, *, quota: QuotaLimits | None = None
    ) -> tuple[MessageMeta, Uid]:
        """:meth:`append` and :meth:`claim_recent` up to the new message in one store
        transaction (an IMAP session appending into its selected mailbox). Returns the message
        and the first UID that is \\Recent for the caller."""
        meta, floor = await self.store.append_claiming(mailbox_id, message, quota=quota)
        index = self._indexes.get(mailbox_id)
        if index is not None:
            index.recent_floor = max(index.recent_floor, meta.uid + 1)
            index._own(meta.modseq, meta.modseq, lambda: index._upsert(meta), ordered=True)
        return meta, floor

    async def append_many(
        self,
        mailbox_id: MailboxId,
        messages: Sequence[NewMessage],
        *,
        quota: QuotaLimits | None = None,
    ) -> list[MessageMeta]:
        """All of *messages* or none (MULTIAPPEND), in one store transaction."""
        metas = await self.store.append_many(mailbox_id, messages, quota=quota)
        index = self._indexes.get(mailbox_id)
        if index is not None and metas:

            def upsert() -> None:
                for meta in metas:
                    index._upsert(meta)

            index._own(metas[0].modseq, metas[-1].modseq, upsert, ordered=True)
        return metas

    async def replace(
        self,
        mailbox_id: MailboxId,
        message: NewMessage,
        src: MailboxId,
        uid: Uid,
        *,
        quota: QuotaLimits | None = None,
    ) -> tuple[MessageMeta, Expunged]:
        """IMAP REPLACE (RFC 8508): *message* into *mailbox_id* and *uid* out of *src*, in one
        store transaction (the expunge's MODSEQ first, then the append's)."""
        meta, gone = await self.store.replace(mailbox_id, message, src, uid, quota=quota)
        old = self._indexes.get(src)
        if old is not None:
            old._own(gone.modseq, gone.modseq, lambda: old._remove([gone.uid]), ordered=False)
        new = self._indexes.get(mailbox_id)
        if new is not None:
            new._own(meta.modseq, meta.modseq, lambda: new._upsert(meta), ordered=True)
        return meta, gone

    async def copy(
        self,
        src: MailboxId,
        uids: Iterable[Uid],
        dst: MailboxId,
        *,
        move: bool = False,
        quota: QuotaLimits | None = None,
    ) -> list[tuple[Uid, Uid]]:
        # the results carry no MODSEQs: the indexes learn of it from the notification
        return await self.store.copy(src, uids, dst, move=move, quota=quota)
