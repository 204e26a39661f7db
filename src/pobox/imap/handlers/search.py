"""SEARCH / UID SEARCH (RFC 9051 §6.4.4), ESEARCH (RFC 4731) and SEARCHRES (RFC 5182).

The IMAP search keys (pobox.imap.commands) are translated into the protocol-neutral query of
:mod:`pobox.service.search`, which evaluates them. What stays here is IMAP's part: message
numbers versus UIDs, ``$``, CHARSET, and the shape of the answer (``* SEARCH`` or ``* ESEARCH``).
"""

from __future__ import annotations

import codecs
import time
from typing import Any

from pobox.imap import commands as c
from pobox.imap import responses as r
from pobox.imap.context_grammar import apply_partial, format_partial
from pobox.imap.handlers import condstore, context
from pobox.imap.objectid import email_blob
from pobox.imap.sequences import SequenceSet, SequenceSetError, format_uid_set
from pobox.imap.session import SELECTED, CommandError, CommandSpec, ImapSession, Selected
from pobox.mail.threading import render as render_threads
from pobox.service import search as q
from pobox.service import sort as sorting
from pobox.service import thread as threading
from pobox.store.api import Uid

#: CHARSETs SEARCH understands (RFC 9051 §6.4.4 requires both); US-ASCII is a subset of UTF-8.
CHARSETS = ("UTF-8", "US-ASCII")
_FIELD_NAMES = {"BCC": "Bcc", "CC": "Cc", "FROM": "From", "SUBJECT": "Subject", "TO": "To"}
_DATE_OPS: dict[str, q.DateOp] = {"BEFORE": "before", "ON": "on", "SINCE": "since"}


def _codec(charset: str | None) -> str:
    """The Python codec of a SEARCH/SORT CHARSET: UTF-8 and US-ASCII (which RFC 9051 requires;
    US-ASCII read as UTF-8, since a stray 8-bit byte cannot match decoded text anyway) and every
    other text encoding Python knows (as Dovecot takes what iconv knows); BADCHARSET else."""
    if charset is None or charset in CHARSETS:
        return "utf-8"
    try:
        info = codecs.lookup(charset)
    except LookupError:
        info = None
    if info is None or not getattr(info, "_is_text_encoding", True):
        raise CommandError(f"unsupported charset {charset}", "BADCHARSET (UTF-8 US-ASCII)")
    return info.name


def _uid_ranges(uids: list[Uid]) -> q.Ranges:
    return tuple((u, u) for u in uids)


class _Translator:
    """pobox.imap.commands search keys → pobox.service.search queries, for one session."""

    def __init__(self, selected: Selected, codec: str = "utf-8") -> None:
        self.selected = selected
        self.codec = codec

    def text(self, value: bytes) -> str:
        return value.decode(self.codec, "replace")

    def saved(self) -> q.Query:
        """``$``: the UIDs the last SEARCH RETURN (SAVE) kept (none if there was none)."""
        return q.UidIn(_uid_ranges(self.selected.saved or []))

    def ranges(self, sequence_set: SequenceSet, largest: int) -> q.Ranges:
        try:
            return tuple(sequence_set.resolve(largest))
        except SequenceSetError as exc:
            raise CommandError(str(exc), status="BAD") from None

    def key(self, key: c.SearchKey) -> q.Query:
        view = self.selected.view
        match key:
            case c.SearchAll():
                return q.All()
            case c.SearchAnd(keys=keys):
                return q.And(tuple(self.key(k) for k in keys))
            case c.SearchOr(left=left, right=right):
                return q.Or(self.key(left), self.key(right))
            case c.SearchNot(key=inner):
                return q.Not(self.key(inner))
            case c.SearchFlag(flag=flag, present=present):
                if flag == "\\Recent":
                    return q.RecentIs(present)
                return q.FlagIs(flag, present)
            case c.SearchField(field=name, value=value):
                return q.Header(_FIELD_NAMES[name], self.text(value))
            case c.SearchHeader(name=name, value=value):
                return q.Header(name.decode("ascii", "replace"), self.text(value))
            case c.SearchBody(value=value):
                return q.Body(self.text(value))
            case c.SearchText(value=value):
                return q.Text(self.text(value))
            case c.SearchDate(relation=relation, day=day, sent=sent, saved=saved):
                op = _DATE_OPS[relation]
                if saved:
                    return q.SaveDate(op, day)
                return q.SentDate(op, day) if sent else q.InternalDate(op, day)
            case c.SearchSaveDateSupported():
                return q.All()  # every mailbox keeps save dates
            case c.SearchObjectId(kind="EMAILID", objectid=objectid):
                blob = email_blob(objectid)
                return q.Not(q.All()) if blob is None else q.ContentIs(blob)
            case c.SearchObjectId():
                return q.Not(q.All())  # no message has a THREADID
            case c.SearchSize(larger=larger, size=size):
                return q.Size(larger=size) if larger else q.Size(smaller=size)
            case c.SearchSequence(sequence_set=seqs):
                # a bare set is message numbers, even inside UID SEARCH (RFC 9051 §6.4.4)
                if seqs.saved:
                    return self.saved()
                return q.SeqIn(self.ranges(seqs, len(view)))
            case c.SearchUid(sequence_set=seqs):
                if seqs.saved:
                    return self.saved()
                return q.UidIn(self.ranges(seqs, view.last_uid()))
            case c.SearchAge(older=older, seconds=seconds):
                # RFC 5032: OLDER n is more than n seconds before now, YOUNGER n within them
                return q.InternalAge(older, time.time() - seconds)
            case c.SearchModSeq(modseq=modseq):
                # RFC 7162 §3.1.5: MODSEQ >= n; pobox keeps one MODSEQ per message, so the
                # entry name and type are ignored as the RFC asks
                if modseq > condstore.MAX_MODSEQ:
                    raise CommandError("MODSEQ is out of range", status="BAD")
                return q.ModSeqAtLeast(modseq)
        raise CommandError("unsupported search key", status="BAD")  # pragma: no cover


def _saved_part(
    uids: list[Uid], options: tuple[str, ...], partial: tuple[int, int] | None = None
) -> list[Uid]:
    """RFC 5182 §2.4: SAVE with MIN and/or MAX (but not ALL or COUNT) keeps just those; with
    PARTIAL (RFC 9394), the messages of the range (and MIN/MAX if asked for too)."""
    if not uids or "ALL" in options or "COUNT" in options:
        return uids
    if "MIN" in options or "MAX" in options or partial is not None:
        kept = {uids[0]} if "MIN" in options else set()
        if "MAX" in options:
            kept.add(uids[-1])
        if partial is not None:
            kept.update(apply_partial(uids, partial))
        return sorted(kept)
    return uids


#: RETURN options that ask for no result data of their own
_NO_DATA = frozenset({"SAVE", "CONTEXT", "UPDATE"})


def _wanted(options: tuple[str, ...]) -> set[str]:
    """The result items a RETURN list asks for: an empty list (or CONTEXT alone, a mere hint)
    means ALL (RFC 4731 §3.1); UPDATE and SAVE alone ask for none (as Dovecot answers)."""
    wanted = set(options) - {"SAVE", "CONTEXT"}
    if not wanted and "SAVE" not in options:
        wanted = {"ALL"}
    return wanted - _NO_DATA


def _esearch(
    tag: str,
    uid: bool,
    numbers: list[int],
    options: tuple[str, ...],
    modseq: int | None = None,
    *,
    ordered: bool = False,
    partial: tuple[int, int] | None = None,
) -> r.ESearchResponse:
    """``* ESEARCH (TAG "a") [UID] MIN .. MAX .. ALL .. PARTIAL (..) COUNT ..`` in Dovecot's
    order; MIN, MAX and ALL are left out when nothing matched (RFC 4731 §3.1), PARTIAL says NIL
    (RFC 9394 §3.1)."""
    wanted = _wanted(options) if options else {"ALL"}
    items: list[tuple[str, int | tuple[int, ...] | bytes]] = []
    if numbers and "MIN" in wanted:
        items.append(("MIN", numbers[0]))
    if numbers and "MAX" in wanted:
        items.append(("MAX", numbers[-1]))
    if numbers and "ALL" in wanted:
        items.append(("ALL", tuple(numbers)))
    if partial is not None:
        window = apply_partial(numbers, partial)
        text = (
            (r.ordered_set(tuple(window)) if ordered else format_uid_set(window))
            if window
            else "NIL"
        )
        items.append(("PARTIAL", f"({format_partial(partial)} {text})".encode("ascii")))
    if "COUNT" in wanted:
        items.append(("COUNT", len(numbers)))
    if modseq is not None:
        items.append(("MODSEQ", modseq))
    return r.ESearchResponse(tag, uid, tuple(items), ordered=ordered)


def _shown(
    uids: list[Uid], options: tuple[str, ...] | None, partial: tuple[int, int] | None
) -> list[Uid]:
    """The messages an ESEARCH shows data of (for its MODSEQ, RFC 7162 §3.1.5 and RFC 4731
    §3.2): all of them, unless only MIN, MAX and PARTIAL were asked for."""
    wanted = _wanted(options or ())
    if not wanted or not wanted <= {"MIN", "MAX", "PARTIAL"}:
        return uids
    shown: list[Uid] = [uids[0]] if "MIN" in wanted else []
    shown += [uids[-1]] if "MAX" in wanted else []
    if partial is not None:
        shown += apply_partial(uids, partial)
    return shown


async def search(session: ImapSession, cmd: c.Search) -> None:
    selected = session.require_selected()
    options = cmd.return_options
    save = options is not None and "SAVE" in options
    try:
        query = _Translator(selected, _codec(cmd.charset)).key(cmd.key)
    except CommandError:
        if save:
            selected.saved = []  # RFC 5182 §2.1: a failed SEARCH ... SAVE empties "$"
        raise
    view = selected.view
    modseq_asked = condstore.uses_modseq(cmd.key)
    if modseq_asked:
        session.enable_condstore()  # RFC 7162 §3.1: SEARCH MODSEQ turns CONDSTORE on
    uids = await q.search(
        session.service.store,
        selected.mailbox_id,
        query,
        view.search_messages(),
        recent_uids=selected.recent.frozen(),
    )
    if save:
        assert options is not None
        selected.saved = _saved_part(uids, options, cmd.partial)
    if cmd.uid:
        numbers: list[int] = list(uids)
    else:
        numbers = [n for n in map(view.msn_of, uids) if n is not None]
    modseq: int | None = None
    if modseq_asked and uids:
        # RFC 7162 §3.1.5: the highest MODSEQ of the messages returned (with MIN and/or MAX
        # alone, of those: RFC 4731 §3.2)
        modseq = condstore.highest_modseq(selected, _shown(uids, options, cmd.partial))
    if options is None and not session.rev2:
        session.send(r.SearchResponse(tuple(numbers), modseq))
    elif options is None or set(options) != {"SAVE"}:
        # RFC 9051 §6.4.4: an IMAP4rev2 client always gets ESEARCH; RFC 5182 §2.4: with
        # RETURN (SAVE) alone there is no ESEARCH at all
        session.send(
            _esearch(cmd.tag, cmd.uid, numbers, options or (), modseq, partial=cmd.partial)
        )
    if options is not None and "UPDATE" in options:
        context.register(
            session, selected, tag=cmd.tag, uid=cmd.uid, query=query, keys=None, result=uids
        )
    await session.announce_updates(expunge=cmd.uid)
    session.tagged(cmd.tag, "OK", f"{'UID ' if cmd.uid else ''}SEARCH completed")


async def sort(session: ImapSession, cmd: c.Sort) -> None:
    """SORT / UID SORT (RFC 5256), with RFC 5957's DISPLAYFROM/DISPLAYTO and ESORT's RETURN
    options (RFC 5267 §3: MIN and MAX are the first and last message in sort order, ALL lists
    every one in that order)."""
    selected = session.require_selected()
    query = _Translator(selected, _codec(cmd.charset)).key(cmd.key)
    view = selected.view
    modseq_asked = condstore.uses_modseq(cmd.key)
    if modseq_asked:
        session.enable_condstore()  # RFC 7162 §3.1: SORT with MODSEQ turns CONDSTORE on
    store = session.service.store
    messages = view.search_messages()
    matched = await q.search(
        store, selected.mailbox_id, query, messages, recent_uids=selected.recent.frozen()
    )
    keys = tuple(sorting.SortKey(name, reverse) for name, reverse in cmd.criteria)
    uids = await sorting.sort(
        store, selected.mailbox_id, keys, messages, view.index.sort_cache, only=set(matched)
    )
    numbers: list[int] = list(uids)
    if not cmd.uid:
        numbers = [n for n in map(view.msn_of, uids) if n is not None]
    options = cmd.return_options
    modseq: int | None = None
    if modseq_asked and uids:
        modseq = condstore.highest_modseq(selected, _shown(uids, options, cmd.partial))
    if options is None:
        session.send(r.SortResponse(tuple(numbers), modseq))
    else:  # the first and last in sort order are MIN and MAX, ALL keeps that order
        session.send(
            _esearch(cmd.tag, cmd.uid, numbers, options, modseq, ordered=True, partial=cmd.partial)
        )
        if "UPDATE" in options:
            context.register(
                session, selected, tag=cmd.tag, uid=cmd.uid, query=query, keys=keys, result=uids
            )
    await session.announce_updates(expunge=cmd.uid)
    session.tagged(cmd.tag, "OK", f"{'UID ' if cmd.uid else ''}SORT completed")


async def thread(session: ImapSession, cmd: c.Thread) -> None:
    """THREAD / UID THREAD (RFC 5256): REFERENCES and ORDEREDSUBJECT."""
    selected = session.require_selected()
    if cmd.algorithm not in threading.ALGORITHMS:
        raise CommandError(f"unsupported threading algorithm {cmd.algorithm}", status="BAD")
    query = _Translator(selected, _codec(cmd.charset)).key(cmd.key)
    if condstore.uses_modseq(cmd.key):
        session.enable_condstore()
    view = selected.view
    store = session.service.store
    messages = view.search_messages()
    matched = await q.search(
        store, selected.mailbox_id, query, messages, recent_uids=selected.recent.frozen()
    )
    roots = await threading.thread(
        store, selected.mailbox_id, cmd.algorithm, messages, view.index.sort_cache, set(matched)
    )
    numbers: dict[int, int] | None = None
    if not cmd.uid:
        numbers = {u: n for u in matched if (n := view.msn_of(u)) is not None}
    session.send(r.ThreadResponse(render_threads(roots, numbers)))
    await session.announce_updates(expunge=cmd.uid)
    session.tagged(cmd.tag, "OK", f"{'UID ' if cmd.uid else ''}THREAD completed")


SPECS: dict[type[Any], CommandSpec] = {
    c.Search: CommandSpec(search, SELECTED, expunge_after=False),
    c.Sort: CommandSpec(sort, SELECTED, expunge_after=False),
    c.Thread: CommandSpec(thread, SELECTED, expunge_after=False),
}
