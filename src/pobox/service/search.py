"""Protocol-neutral SEARCH: a small query algebra and its evaluation against a mailbox view.

IMAP SEARCH (RFC 3501 / RFC 9051 §6.4.4) is translated into these nodes by the IMAP layer; SORT,
THREAD and the webmail build them directly. :func:`search` evaluates a query over a session's view
(its list of :class:`MessageMeta`, ascending UID) and returns the matching UIDs in view order.

Evaluation order: terms the view itself answers (flags, sizes, UIDs, internal dates, MODSEQ) are
evaluated first, in memory; only the messages still possible reach the dearer terms, in order of
cost: the header fields the store keeps decoded, other header fields (the stored MIME
structure), and last BODY/TEXT. String terms of three characters or more ask the full-text index
(pobox.service.fulltext, docs/decisions/full-text-search.md) when more than INDEX_MIN messages
are left, and scan only the messages whose content it has not indexed yet; shorter strings, and
small sets of messages, are scanned. Index and scan see the same text (pobox.mail.text), so the
answer does not depend on which one gave it.

Semantics, and where they follow Dovecot:

* String matching is a substring test, case-insensitive by Unicode case folding (``é`` matches
  ``É``) after NFC normalisation, on decoded text: RFC 2047 header words, and for bodies the
  transfer encoding (base64, quoted-printable) and the part's charset are undone first.
* ``Header(name, "")`` matches every message that has the field at all (RFC 3501: "If the string
  to search is zero-length, this matches all messages that have a header line with the specified
  field-name regardless of the contents").
* BODY searches the text/* leaves at any depth, through multiparts and encapsulated
  message/rfc822 parts (whose header block is part of the outer message's body and is searched
  too), and the file names of attachments. HTML is searched as the text a reader sees (tags,
  scripts and styles left out, character references decoded). Parts of other types (images,
  applications) are not decoded. A string never matches across two parts. TEXT is BODY plus the
  message's own header block (decoded).
* Internal-date terms (BEFORE/ON/SINCE) compare the calendar day of the internal date in the
  server's local time zone (the ``zone`` argument, default the process's local zone), as Dovecot
  does; days are real local days, so a DST change does not shift them.
* Sent-date terms (SENTBEFORE/SENTON/SENTSINCE) compare the day written in the Date: header, in
  the header's own zone (Dovecot adds the header's offset to the time before comparing). A message
  without a usable Date: header counts as sent on 1970-01-01, as in Dovecot (its date is 0).
* Flags: system flags and keywords are matched case-insensitively. ``\\Recent`` is a session
  property: pass ``recent_uids``.
* LARGER n matches size > n, SMALLER n size < n (RFC822.SIZE, the stored size).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from operator import attrgetter
from typing import Literal, Protocol, TypeAlias, overload

from pobox.errors import NotFound
from pobox.mail.dates import parse_date
from pobox.mail.structure import ParsedMessage
from pobox.mail.text import fold, segments
from pobox.service import fulltext
from pobox.store.api import (
    SYSTEM_FLAGS,
    BlobId,
    Content,
    MailboxId,
    ModSeq,
    SearchFields,
    Store,
    TextMatches,
    Uid,
)

__all__ = [
    "All",
    "And",
    "Bcc",
    "Body",
    "Cc",
    "ContentIs",
    "DateOp",
    "FlagIs",
    "From",
    "Header",
    "InternalAge",
    "InternalDate",
    "ModSeqAtLeast",
    "New",
    "Not",
    "Old",
    "Or",
    "Query",
    "Ranges",
    "RecentIs",
    "SaveDate",
    "SentDate",
    "SeqIn",
    "Size",
    "Subject",
    "Text",
    "To",
    "UidIn",
    "fold",
    "resolve_sequences",
    "search",
]

DateOp = Literal["before", "on", "since"]


class Message(Protocol):
    """What search reads of a message: a :class:`MessageMeta`, or the lighter record a view
    makes from the shared index (``MailboxView.search_messages``)."""

    @property
    def uid(self) -> Uid: ...
    @property
    def modseq(self) -> ModSeq: ...
    @property
    def flags(self) -> frozenset[str]: ...
    @property
    def size(self) -> int: ...
    @property
    def blob(self) -> BlobId: ...
    @property
    def internal_date(self) -> datetime: ...
    @property
    def save_date(self) -> datetime: ...


class IndexColumns(Protocol):
    """A mailbox index's columns (pobox.service.index.MailboxIndex): position *p* is one
    message, in UID order."""

    @property
    def uids(self) -> Sequence[int]: ...
    @property
    def modseqs(self) -> Sequence[int]: ...
    @property
    def flags(self) -> Sequence[int]: ...
    @property
    def sizes(self) -> Sequence[int]: ...
    @property
    def dates(self) -> Sequence[float]: ...
    @property
    def saved(self) -> Sequence[float]: ...
    @property
    def blobs(self) -> Sequence[int]: ...

    def flag_mask(self, flag: str) -> int:
        """The bits of a flag in ``flags`` (keywords case-insensitively); 0 if none has it."""
        ...


class ColumnRecords(Sequence[Message]):
    """The first *count* messages of an index as SEARCH's sequence of messages: records are
    made only for the messages a term needs; terms the columns answer never make one."""

    def __init__(self, columns: IndexColumns, count: int, record: Callable[[int], Message]) -> None:
        self.columns = columns
        self.length = count
        self.record = record

    def __len__(self) -> int:
        return self.length

    @overload
    def __getitem__(self, i: int) -> Message: ...
    @overload
    def __getitem__(self, i: slice) -> list[Message]: ...
    def __getitem__(self, i: int | slice) -> Message | list[Message]:
        if isinstance(i, slice):
            return [self.record(p) for p in range(self.length)[i]]
        if not -self.length <= i < self.length:
            raise IndexError(i)
        return self.record(i % self.length)


#: Concrete, inclusive ranges of numbers (``*`` already resolved by the caller).
Ranges = tuple[tuple[int, int], ...]


# ---- the algebra ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class All:
    """Every message."""


@dataclass(frozen=True, slots=True)
class And:
    """Every term matches (an empty And is All)."""

    terms: tuple[Query, ...]


@dataclass(frozen=True, slots=True)
class Or:
    left: Query
    right: Query


@dataclass(frozen=True, slots=True)
class Not:
    term: Query


@dataclass(frozen=True, slots=True)
class FlagIs:
    """A system flag (``\\Seen`` …) or keyword is set (``present``) or not set."""

    flag: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class RecentIs:
    """``\\Recent`` for this session (the caller's ``recent_uids``)."""

    present: bool = True


@dataclass(frozen=True, slots=True)
class UidIn:
    ranges: Ranges


@dataclass(frozen=True, slots=True)
class SeqIn:
    """Message sequence numbers of the view passed to :func:`search` (1 = its first message)."""

    ranges: Ranges


@dataclass(frozen=True, slots=True)
class Size:
    """``size > larger`` and ``size < smaller`` (either may be None)."""

    larger: int | None = None
    smaller: int | None = None


@dataclass(frozen=True, slots=True)
class InternalDate:
    op: DateOp
    day: date


@dataclass(frozen=True, slots=True)
class SaveDate:
    """The day the message was saved to its mailbox (RFC 8514 SAVEDBEFORE/SAVEDON/SAVEDSINCE),
    in the same time zone as :class:`InternalDate`."""

    op: DateOp
    day: date


@dataclass(frozen=True, slots=True)
class InternalAge:
    """Internal date against a moment (RFC 5032 WITHIN): *older* is strictly before *cutoff*
    (seconds since the epoch), else at or after it."""

    older: bool
    cutoff: float


@dataclass(frozen=True, slots=True)
class SentDate:
    op: DateOp
    day: date


@dataclass(frozen=True, slots=True)
class Header:
    """Substring of the decoded value of a header field; ``value=""`` tests presence."""

    name: str
    value: str


@dataclass(frozen=True, slots=True)
class Body:
    value: str


@dataclass(frozen=True, slots=True)
class Text:
    value: str


@dataclass(frozen=True, slots=True)
class ContentIs:
    """Messages whose stored content is *blob* (copies share theirs)."""

    blob: int


@dataclass(frozen=True, slots=True)
class ModSeqAtLeast:
    modseq: int


Query: TypeAlias = (
    All
    | And
    | Or
    | Not
    | FlagIs
    | RecentIs
    | UidIn
    | SeqIn
    | Size
    | InternalDate
    | InternalAge
    | SaveDate
    | SentDate
    | Header
    | Body
    | Text
    | ModSeqAtLeast
    | ContentIs
)


def From(value: str) -> Header:
    return Header("From", value)


def To(value: str) -> Header:
    return Header("To", value)


def Cc(value: str) -> Header:
    return Header("Cc", value)


def Bcc(value: str) -> Header:
    return Header("Bcc", value)


def Subject(value: str) -> Header:
    return Header("Subject", value)


def New() -> Query:
    """RFC 3501 NEW: ``RECENT UNSEEN``."""
    return And((RecentIs(True), FlagIs("\\Seen", False)))


def Old() -> Query:
    """RFC 3501 OLD: ``NOT RECENT``."""
    return RecentIs(False)


# ---- helpers ----------------------------------------------------------------------------------


def _merge(ranges: Iterable[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """Sorted, merged ranges as parallel start/end lists (for bisect)."""
    ordered = sorted((min(a, b), max(a, b)) for a, b in ranges)
    starts: list[int] = []
    ends: list[int] = []
    for lo, hi in ordered:
        if ends and lo <= ends[-1] + 1:
            ends[-1] = max(ends[-1], hi)
        else:
            starts.append(lo)
            ends.append(hi)
    return starts, ends


def resolve_sequences(query: Query, messages: Sequence[Message]) -> Query:
    """Replace every :class:`SeqIn` by the :class:`UidIn` it means in *messages* (a view)."""
    if isinstance(query, SeqIn):
        count = len(messages)
        uid_ranges: list[tuple[int, int]] = []
        starts, ends = _merge(query.ranges)
        for lo, hi in zip(starts, ends, strict=True):
            lo, hi = max(lo, 1), min(hi, count)
            if lo <= hi:
                uid_ranges.append((messages[lo - 1].uid, messages[hi - 1].uid))
        return UidIn(tuple(uid_ranges))
    if isinstance(query, And):
        return And(tuple(resolve_sequences(t, messages) for t in query.terms))
    if isinstance(query, Or):
        return Or(resolve_sequences(query.left, messages), resolve_sequences(query.right, messages))
    if isinstance(query, Not):
        return Not(resolve_sequences(query.term, messages))
    return query


# ---- cost model -------------------------------------------------------------------------------

_MEMORY, _FIELDS, _STRUCTURE, _CONTENT = 0, 1, 2, 3

#: Header fields the store indexes (SearchFields attribute by lower-case field name).
_INDEXED = {
    "subject": "subject",
    "from": "from_",
    "to": "to",
    "cc": "cc",
    "bcc": "bcc",
    "message-id": "message_id",
}


def _cost(query: Query) -> int:
    if isinstance(query, And):
        return max((_cost(t) for t in query.terms), default=_MEMORY)
    if isinstance(query, Or):
        return max(_cost(query.left), _cost(query.right))
    if isinstance(query, Not):
        return _cost(query.term)
    if isinstance(query, Header):
        if query.value and query.name.lower() in _INDEXED:
            return _FIELDS
        return _STRUCTURE
    if isinstance(query, SentDate):
        return _FIELDS
    if isinstance(query, Body | Text):
        return _CONTENT
    return _MEMORY


# ---- in-memory terms --------------------------------------------------------------------------

Predicate = Callable[[Message], bool]
_SYSTEM_BY_LOWER = {f.lower(): f for f in SYSTEM_FLAGS}


def _day_start(day: date, zone: tzinfo | None) -> float:
    if zone is None:
        return datetime.combine(day, time.min).timestamp()  # naive: the process's local zone
    return datetime.combine(day, time.min, tzinfo=zone).timestamp()


def _day_test(op: DateOp, day: date) -> Callable[[date], bool]:
    if op == "before":
        return lambda d: d < day
    if op == "on":
        return lambda d: d == day
    return lambda d: d >= day


def _flag_predicate(flag: str, present: bool) -> Predicate:
    system = _SYSTEM_BY_LOWER.get(flag.lower())
    if system is not None:
        if present:
            return lambda m: system in m.flags
        return lambda m: system not in m.flags
    lowered = flag.lower()

    def has(m: Message) -> bool:
        return flag in m.flags or any(f.lower() == lowered for f in m.flags)

    if present:
        return has
    return lambda m: not has(m)


def _compile(query: Query, ctx: _Context) -> Predicate:
    """A predicate for a query answered from the view alone (cost _MEMORY)."""
    if isinstance(query, All):
        return lambda m: True
    if isinstance(query, And):
        preds = [_compile(t, ctx) for t in query.terms]
        if not preds:
            return lambda m: True
        if len(preds) == 1:
            return preds[0]
        if len(preds) == 2:
            first, second = preds
            return lambda m: first(m) and second(m)
        return lambda m: all(p(m) for p in preds)
    if isinstance(query, Or):
        left, right = _compile(query.left, ctx), _compile(query.right, ctx)
        return lambda m: left(m) or right(m)
    if isinstance(query, Not):
        inner = _compile(query.term, ctx)
        return lambda m: not inner(m)
    if isinstance(query, FlagIs):
        if query.flag.lower() == "\\recent":
            return _compile(RecentIs(query.present), ctx)
        return _flag_predicate(query.flag, query.present)
    if isinstance(query, RecentIs):
        recent, present = ctx.recent_uids, query.present
        return lambda m: (m.uid in recent) == present
    if isinstance(query, UidIn | SeqIn):
        if isinstance(query, SeqIn):
            resolved = resolve_sequences(query, ctx.messages)
            assert isinstance(resolved, UidIn)
            query = resolved
        starts, ends = _merge(query.ranges)

        def within(m: Message) -> bool:
            i = bisect.bisect_right(starts, m.uid) - 1
            return i >= 0 and m.uid <= ends[i]

        return within
    if isinstance(query, Size):
        larger, smaller = query.larger, query.smaller
        if larger is not None and smaller is not None:
            return lambda m: larger < m.size < smaller
        if larger is not None:
            return lambda m: m.size > larger
        if smaller is not None:
            return lambda m: m.size < smaller
        return lambda m: True
    if isinstance(query, InternalDate | SaveDate):
        start = _day_start(query.day, ctx.zone)
        end = _day_start(query.day + timedelta(days=1), ctx.zone)
        if isinstance(query, SaveDate):

            def stamp(m: Message) -> float:
                return m.save_date.timestamp()

        else:

            def stamp(m: Message) -> float:
                return m.internal_date.timestamp()

        if query.op == "before":
            return lambda m: stamp(m) < start
        if query.op == "on":
            return lambda m: start <= stamp(m) < end
        return lambda m: stamp(m) >= start
    if isinstance(query, InternalAge):
        cutoff = query.cutoff
        if query.older:
            return lambda m: m.internal_date.timestamp() < cutoff
        return lambda m: m.internal_date.timestamp() >= cutoff
    if isinstance(query, ContentIs):
        blob = query.blob
        return lambda m: m.blob == blob
    if isinstance(query, ModSeqAtLeast):
        floor = query.modseq
        return lambda m: m.modseq >= floor
    raise TypeError(f"not an in-memory search term: {query!r}")  # pragma: no cover


# ---- evaluation -------------------------------------------------------------------------------

#: Fetch a whole mailbox's indexed fields rather than a UID list above this many messages.
FIELDS_ALL_THRESHOLD = 5000
#: Messages whose structure (and content) is fetched together.
BATCH = 64
_EPOCH_DAY = date(1970, 1, 1)
_NO_FIELDS = SearchFields()


class _Context:
    def __init__(
        self,
        store: Store,
        mailbox: MailboxId,
        messages: Sequence[Message],
        recent_uids: Container[int],
        zone: tzinfo | None,
    ) -> None:
        self.store = store
        self.mailbox = mailbox
        self.messages = messages
        self.recent_uids = recent_uids
        self.zone = zone
        self._fields: dict[Uid, SearchFields] = {}
        self._all_fields = False
        #: the full-text index's answers in this search, by (columns, string)
        self.text_answers: dict[tuple[tuple[str, ...], str], TextMatches] = {}

    async def text_answer(self, columns: Sequence[str], needle: str) -> TextMatches:
        key = (tuple(columns), needle)
        found = self.text_answers.get(key)
        if found is None:
            found = self.text_answers[key] = await self.store.search_text(
                self.mailbox, columns, needle
            )
        return found

    async def fields(self, metas: Sequence[Message]) -> dict[Uid, SearchFields]:
        if not self._all_fields:
            missing = [m.uid for m in metas if m.uid not in self._fields]
            if len(missing) > FIELDS_ALL_THRESHOLD:
                self._fields = await self.store.search_fields(self.mailbox)
                self._all_fields = True
            elif missing:
                self._fields.update(await self.store.search_fields(self.mailbox, missing))
        return self._fields

    async def structures(
        self, metas: Sequence[Message]
    ) -> list[tuple[Message, ParsedMessage | None]]:
        # one store call for the batch; contents expunged meanwhile match no content term
        raw = await self.store.get_structures([m.blob for m in metas])
        parsed = await asyncio.to_thread(
            lambda: [
                None if (r := raw.get(m.blob)) is None else ParsedMessage.cached(r) for m in metas
            ]
        )
        return list(zip(metas, parsed, strict=True))

    async def contents(
        self, metas: Sequence[Message]
    ) -> list[tuple[Message, ParsedMessage | None, Content | None]]:
        with_structure = await self.structures(metas)
        opened = await self.store.open_contents(
            [m.blob for m, p in with_structure if p is not None]
        )
        out: list[tuple[Message, ParsedMessage | None, Content | None]] = []
        handed: set[BlobId] = set()
        try:
            for meta, parsed in with_structure:
                content: Content | None = None
                if parsed is not None:
                    if meta.blob in handed:  # copies share a content: each needs its own
                        with contextlib.suppress(NotFound):
                            content = await self.store.open_content(meta.blob)
                    else:
                        content = opened.get(meta.blob)
                        handed.add(meta.blob)
                out.append((meta, parsed, content))
        except BaseException:
            _close_all(c for _, _, c in out)
            _close_all(c for b, c in opened.items() if b not in handed)
            raise
        _close_all(c for b, c in opened.items() if b not in handed)
        return out


def _close_all(contents: Iterable[Content | None]) -> None:
    for content in contents:
        if content is not None:
            content.close()


def _keep(metas: Sequence[Message], uids: set[Uid]) -> list[Message]:
    return [m for m in metas if m.uid in uids]


async def _filter(query: Query, metas: list[Message], ctx: _Context) -> list[Message]:
    """The messages of *metas* that match *query*, in their order."""
    if not metas:
        return metas
    if _cost(query) == _MEMORY:
        pred = _compile(query, ctx)
        return [m for m in metas if pred(m)]
    if isinstance(query, And):
        cheap = [t for t in query.terms if _cost(t) == _MEMORY]
        dear = sorted((t for t in query.terms if _cost(t) != _MEMORY), key=_cost)
        if cheap:
            metas = await _filter(And(tuple(cheap)), metas, ctx)
        for term in dear:
            metas = await _filter(term, metas, ctx)
            if not metas:
                break
        return metas
    if isinstance(query, Or):
        first, second = sorted((query.left, query.right), key=_cost)
        matched = {m.uid for m in await _filter(first, metas, ctx)}
        rest = [m for m in metas if m.uid not in matched]
        matched.update(m.uid for m in await _filter(second, rest, ctx))
        return _keep(metas, matched)
    if isinstance(query, Not):
        excluded = {m.uid for m in await _filter(query.term, metas, ctx)}
        return [m for m in metas if m.uid not in excluded]
    if isinstance(query, Header):
        return await _filter_header(query, metas, ctx)
    if isinstance(query, SentDate):
        return await _filter_sent(query, metas, ctx)
    if isinstance(query, Body | Text):
        return await _filter_content(fold(query.value), isinstance(query, Text), metas, ctx)
    raise TypeError(f"unknown search term {query!r}")  # pragma: no cover


#: Header fields whose search the full-text index answers (SearchText attribute by name).
_TEXT_FIELDS = {"subject": "subject", "from": "from_", "to": "to", "cc": "cc", "bcc": "bcc"}
#: Below this many messages to look at, a scan is cheaper than asking the index.
INDEX_MIN = 64


async def _ask_index(
    ctx: _Context, metas: list[Message], columns: Sequence[str], needle: str
) -> tuple[set[Uid], list[Message]] | None:
    """The messages of *metas* the full-text index says match, and those it cannot say
    anything about (content not indexed yet: scan them); None when a scan should do all."""
    if len(metas) < INDEX_MIN or not fulltext.usable(needle):
        return None
    found = await ctx.text_answer(columns, needle)
    unindexed = set(found.unindexed)
    return set(found.uids), [m for m in metas if m.uid in unindexed]


async def _filter_header(query: Header, metas: list[Message], ctx: _Context) -> list[Message]:
    needle = fold(query.value)
    name = query.name.lower()
    column = _TEXT_FIELDS.get(name)
    if needle and column is not None:
        answer = await _ask_index(ctx, metas, [column], needle)
        if answer is not None:
            matched, rest = answer
            matched.update(m.uid for m in await _scan_header(query, needle, rest, ctx))
            return _keep(metas, matched)
    elif needle and name not in _INDEXED:
        # the index holds the whole header block: it narrows the messages to look at
        answer = await _ask_index(ctx, metas, ["header"], needle)
        if answer is not None:
            candidates, rest = answer
            candidates.update(m.uid for m in rest)
            metas = _keep(metas, candidates)
    return await _scan_header(query, needle, metas, ctx)


async def _scan_header(
    query: Header, needle: str, metas: list[Message], ctx: _Context
) -> list[Message]:
    attribute = _INDEXED.get(query.name.lower())
    if needle and attribute is not None:
        fields = await ctx.fields(metas)
        value_of = attrgetter(attribute)
        return [m for m in metas if needle in fold(value_of(fields.get(m.uid, _NO_FIELDS)))]
    matched: list[Message] = []
    for start in range(0, len(metas), BATCH):
        for meta, parsed in await ctx.structures(metas[start : start + BATCH]):
            if parsed is None:
                continue
            values = parsed.header_values(query.name)
            if values and (not needle or any(needle in fold(v) for v in values)):
                matched.append(meta)
    return matched


async def _filter_sent(query: SentDate, metas: list[Message], ctx: _Context) -> list[Message]:
    test = _day_test(query.op, query.day)
    fields = await ctx.fields(metas)
    matched: set[Uid] = set()
    unsure: list[Message] = []
    margin = timedelta(hours=24)  # a Date: header's zone is less than a day away from UTC
    for meta in metas:
        sent = fields.get(meta.uid, _NO_FIELDS).sent_date
        if sent is None:
            if test(_EPOCH_DAY):
                matched.add(meta.uid)
            continue
        earliest, latest = (sent - margin).date(), (sent + margin).date()
        days = [earliest + timedelta(days=i) for i in range((latest - earliest).days + 1)]
        results = {test(d) for d in days}
        if results == {True}:
            matched.add(meta.uid)
        elif results == {True, False}:
            unsure.append(meta)
    for start in range(0, len(unsure), BATCH):
        for meta, parsed in await ctx.structures(unsure[start : start + BATCH]):
            if parsed is None:
                continue
            when = parse_date(parsed.envelope.date)
            if test(when.date() if when is not None else _EPOCH_DAY):
                matched.add(meta.uid)
    return _keep(metas, matched)


async def _filter_content(
    needle: str, with_header: bool, metas: list[Message], ctx: _Context
) -> list[Message]:
    answer = await _ask_index(ctx, metas, ["header", "body"] if with_header else ["body"], needle)
    if answer is None:
        matched: set[Uid] = set()
        scan = metas
    else:
        matched, scan = answer
    matched.update(await _scan_content(needle, with_header, scan, ctx))
    return _keep(metas, matched)


async def _scan_content(
    needle: str, with_header: bool, metas: list[Message], ctx: _Context
) -> set[Uid]:
    matched: set[Uid] = set()
    batches = [metas[i : i + BATCH] for i in range(0, len(metas), BATCH)]
    # fetch the next batch's structures and open its files while this one is scanned
    pending = asyncio.ensure_future(ctx.contents(batches[0])) if batches else None
    try:
        for index in range(len(batches)):
            assert pending is not None
            batch = await pending
            pending = None
            if index + 1 < len(batches):
                pending = asyncio.ensure_future(ctx.contents(batches[index + 1]))
            try:
                found = await asyncio.to_thread(_scan_batch, batch, needle, with_header)
            finally:
                _close_all(c for _, _, c in batch)
            matched.update(found)
    finally:
        if pending is not None:
            pending.cancel()
            try:
                leftover = await pending
            except BaseException:
                pass
            else:
                _close_all(c for _, _, c in leftover)
    return matched


# ---- content scanning (blocking; runs in a worker thread) -------------------------------------


def _scan_batch(
    batch: Sequence[tuple[Message, ParsedMessage | None, Content | None]],
    needle: str,
    with_header: bool,
) -> list[Uid]:
    found: list[Uid] = []
    for meta, parsed, content in batch:
        if parsed is None or content is None:
            continue
        if _message_contains(parsed, content, needle, with_header):
            found.append(meta.uid)
    return found


def _message_contains(
    parsed: ParsedMessage, content: Content, needle: str, with_header: bool
) -> bool:
    """*needle* (folded) in one of the message's searchable segments (pobox.mail.text)."""
    if not needle:
        return True
    return any(needle in s for s in segments(parsed, content.read, with_header=with_header))


# ---- terms the index's columns answer ----------------------------------------------------------


def _positions(
    query: Query, pos: Sequence[int], cols: IndexColumns, ctx: _Context
) -> Sequence[int]:
    """The positions of *pos* (ascending) whose message matches *query* (cost _MEMORY),
    read from the columns: one comprehension per term, no record per message."""
    if isinstance(query, All):
        return pos
    if isinstance(query, And):
        # number and UID ranges first: on the whole mailbox they are slices, not scans
        for term in sorted(query.terms, key=lambda t: not isinstance(t, SeqIn | UidIn)):
            pos = _positions(term, pos, cols, ctx)
            if not pos:
                break
        return pos
    if isinstance(query, Or):
        first = set(_positions(query.left, pos, cols, ctx))
        second = set(_positions(query.right, [p for p in pos if p not in first], cols, ctx))
        return [p for p in pos if p in first or p in second]
    if isinstance(query, Not):
        excluded = set(_positions(query.term, pos, cols, ctx))
        return [p for p in pos if p not in excluded]
    if isinstance(query, FlagIs) and query.flag.lower() != "\\recent":
        flags, mask = cols.flags, cols.flag_mask(query.flag)
        if query.present:
            return [p for p in pos if flags[p] & mask]
        return [p for p in pos if not flags[p] & mask]
    if isinstance(query, FlagIs | RecentIs):
        uids, recent, present = cols.uids, ctx.recent_uids, query.present
        return [p for p in pos if (uids[p] in recent) == present]
    if isinstance(query, SeqIn | UidIn) and isinstance(pos, range) and pos.step == 1:
        return _slices(query, pos, cols)
    if isinstance(query, SeqIn):
        starts, ends = _merge(query.ranges)  # message n is position n - 1
        return [p for p in pos if (i := bisect.bisect_right(starts, p + 1) - 1) >= 0
                and p + 1 <= ends[i]]  # fmt: skip
    if isinstance(query, UidIn):
        uids = cols.uids
        starts, ends = _merge(query.ranges)
        return [p for p in pos if (i := bisect.bisect_right(starts, uids[p]) - 1) >= 0
                and uids[p] <= ends[i]]  # fmt: skip
    if isinstance(query, Size):
        sizes, larger, smaller = cols.sizes, query.larger, query.smaller
        if larger is not None:
            pos = [p for p in pos if sizes[p] > larger]
        if smaller is not None:
            pos = [p for p in pos if sizes[p] < smaller]
        return pos
    if isinstance(query, InternalDate | SaveDate):
        stamps = cols.saved if isinstance(query, SaveDate) else cols.dates
        start = _day_start(query.day, ctx.zone)
        end = _day_start(query.day + timedelta(days=1), ctx.zone)
        if query.op == "before":
            return [p for p in pos if stamps[p] < start]
        if query.op == "on":
            return [p for p in pos if start <= stamps[p] < end]
        return [p for p in pos if stamps[p] >= start]
    if isinstance(query, InternalAge):
        dates, cutoff = cols.dates, query.cutoff
        if query.older:
            return [p for p in pos if dates[p] < cutoff]
        return [p for p in pos if dates[p] >= cutoff]
    if isinstance(query, ContentIs):
        blobs, blob = cols.blobs, query.blob
        return [p for p in pos if blobs[p] == blob]
    if isinstance(query, ModSeqAtLeast):
        modseqs, floor = cols.modseqs, query.modseq
        return [p for p in pos if modseqs[p] >= floor]
    raise TypeError(f"not an in-memory search term: {query!r}")  # pragma: no cover


def _slices(query: SeqIn | UidIn, pos: range, cols: IndexColumns) -> list[int]:
    """Number or UID ranges over a run of positions: slices of it, found by bisection."""
    starts, ends = _merge(query.ranges)
    out: list[int] = []
    if isinstance(query, SeqIn):  # message n is position n - 1
        for lo, hi in zip(starts, ends, strict=True):
            out.extend(pos[max(lo - 1 - pos.start, 0) : max(hi - pos.start, 0)])
        return out
    uids = cols.uids
    for lo, hi in zip(starts, ends, strict=True):
        first = bisect.bisect_left(uids, lo, pos.start, pos.stop)
        last = bisect.bisect_right(uids, hi, first, pos.stop)
        out.extend(range(first, last))
    return out


def _index_question(term: Query) -> tuple[tuple[str, ...], str] | None:
    """The columns and string a term asks the full-text index, when every message it matches
    is among the index's hits or its unindexed messages (a top-level string term)."""
    if isinstance(term, Body | Text):
        return (("header", "body") if isinstance(term, Text) else ("body",)), fold(term.value)
    if isinstance(term, Header) and term.value:
        column = _TEXT_FIELDS.get(term.name.lower())
        if column is not None:
            return (column,), fold(term.value)
        if term.name.lower() not in _INDEXED:
            return ("header",), fold(term.value)
    return None


async def _search_columns(query: Query, records: ColumnRecords, ctx: _Context) -> list[Uid]:
    cols, everything = records.columns, range(len(records))
    uids = cols.uids
    if _cost(query) == _MEMORY:
        return [Uid(uids[p]) for p in _positions(query, everything, cols, ctx)]
    cheap: list[Query] = []
    dear: list[Query] = [query]
    if isinstance(query, And):
        cheap = [t for t in query.terms if _cost(t) == _MEMORY]
        dear = [t for t in query.terms if _cost(t) != _MEMORY]
    # the dear terms get records, but only of the messages the cheap ones left, and of those
    # only the ones the full-text index leaves possible for a string term
    left = _positions(And(tuple(cheap)), everything, cols, ctx) if cheap else everything
    if len(left) >= INDEX_MIN:
        for term in dear:
            asked = _index_question(term)
            if asked is not None and fulltext.usable(asked[1]):
                found = await ctx.text_answer(*asked)
                possible = set(found.uids).union(found.unindexed)
                left = [p for p in left if uids[p] in possible]
    metas = [records.record(p) for p in left]
    matched = await _filter(And(tuple(dear)), metas, ctx)
    return [m.uid for m in matched]


# ---- entry point ------------------------------------------------------------------------------


async def search(
    store: Store,
    mailbox: MailboxId,
    query: Query,
    messages: Sequence[Message],
    *,
    recent_uids: Container[int] = frozenset(),
    zone: tzinfo | None = None,
) -> list[Uid]:
    """The UIDs of the messages in *messages* (a view, ascending UID) that match *query*.

    ``SeqIn`` numbers count in *messages*. ``zone`` is the server's time zone for internal-date
    terms (default: the process's local zone). Messages expunged from the store meanwhile match
    no header or content term.
    """
    ctx = _Context(store, mailbox, messages, recent_uids, zone)
    if isinstance(messages, ColumnRecords):
        return await _search_columns(query, messages, ctx)
    matched = await _filter(query, list(messages), ctx)
    return [m.uid for m in matched]
