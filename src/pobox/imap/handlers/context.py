"""CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 §4): searches the server keeps up to date.

``SEARCH RETURN (UPDATE)`` and ``SORT RETURN (UPDATE)`` leave a *context* behind, named by the
command's tag: the query (already translated to :mod:`pobox.service.search`), the sort keys
for a SORT, and the result the client was last told, by UID. Whenever the session may send
untagged responses (:meth:`ImapSession.announce_updates`) and the shared mailbox index has moved
since the context was last evaluated, the query runs again over the session's view and the
difference is sent as ``* ESEARCH (TAG "t") [UID] ADDTO (...)`` and ``REMOVEFROM (...)``.
Messages that go are removed from every context just before their EXPUNGE (or VANISHED) is
sent, while their message numbers are still valid (:func:`before_expunge`).

For a SEARCH the position is 0 and the set is the messages (RFC 5267 §4.3.1); for a SORT each
added message gets its 1-based position in the new order, each removed one its position in the
old order (removals are sent from the last position back, so every position is valid when it
is read). A session keeps at most :data:`MAX_CONTEXTS`; beyond that the search is answered, but
not kept: ``* NO [NOUPDATE "tag"]`` (RFC 5267 §4.2). Contexts end with CANCELUPDATE and when
the mailbox is closed (they live in the session's :class:`~pobox.imap.session.Selected`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pobox.imap import responses as r
from pobox.imap.context_grammar import CancelUpdate
from pobox.imap.sequences import format_uid_set
from pobox.imap.session import SELECTED, CommandError, CommandSpec, ImapSession, Selected
from pobox.service import search as q
from pobox.service import sort as sorting

#: Searches one session keeps up to date at once (RFC 5267 §4.2 lets a server limit them).
MAX_CONTEXTS = 10


@dataclass(slots=True)
class SearchContext:
    tag: str
    uid: bool
    query: q.Query
    keys: tuple[sorting.SortKey, ...] | None  # None: a SEARCH (unordered: position 0)
    result: list[int]  # UIDs: ascending for a SEARCH, in sort order for a SORT
    version: int  # the index version the result was computed at


def contexts(selected: Selected) -> dict[str, SearchContext]:
    found: dict[str, SearchContext] = selected.contexts
    return found


def register(
    session: ImapSession,
    selected: Selected,
    *,
    tag: str,
    uid: bool,
    query: q.Query,
    keys: tuple[sorting.SortKey, ...] | None,
    result: Sequence[int],
) -> None:
    """Keep a SEARCH/SORT RETURN (UPDATE) up to date (after its first answer was sent)."""
    kept = contexts(selected)
    kept.pop(tag, None)  # a tag used again replaces its old context
    if len(kept) >= MAX_CONTEXTS:
        code = r.ResponseCode("NOUPDATE", r.quoted(tag.encode("ascii", "replace")))
        text = f"only {MAX_CONTEXTS} searches are kept up to date"
        session.send(r.Untagged("NO", text, code))
        return
    kept[tag] = SearchContext(tag, uid, query, keys, list(result), selected.view.index.version)


def _numbers(selected: Selected, ctx: SearchContext, uids: list[int]) -> list[int]:
    if ctx.uid:
        return uids
    view = selected.view
    return [n for n in map(view.msn_of, uids) if n is not None]


def _send(
    session: ImapSession, ctx: SearchContext, name: str, pairs: list[tuple[int, str]]
) -> None:
    for position, numbers in pairs:
        value = b"(%d %s)" % (position, numbers.encode("ascii"))
        session.send(r.ESearchResponse(ctx.tag, ctx.uid, ((name, value),)))


def before_expunge(session: ImapSession, gone: list[tuple[int, int]]) -> None:
    """Messages (number as announced, UID) are about to be announced as expunged: each
    context that holds some tells the client REMOVEFROM first. The numbers are those before
    the expunges (the view announces them from the highest down)."""
    selected = session.selected
    if selected is None or not contexts(selected) or not gone:
        return
    msn_of = {uid: msn for msn, uid in gone}
    for ctx in contexts(selected).values():
        hit = [u for u in ctx.result if u in msn_of]
        if not hit:
            continue
        if ctx.keys is None:
            shown = hit if ctx.uid else [msn_of[u] for u in hit]
            _send(session, ctx, "REMOVEFROM", [(0, format_uid_set(sorted(shown)))])
        else:
            _send(session, ctx, "REMOVEFROM", _sorted_removals(ctx, set(hit), msn_of))
        doomed = set(hit)
        ctx.result = [u for u in ctx.result if u not in doomed]


def _sorted_removals(
    ctx: SearchContext, doomed: set[int], number: dict[int, int]
) -> list[tuple[int, str]]:
    """REMOVEFROM pairs for a SORT context: the last position first."""
    pairs: list[tuple[int, str]] = []
    for position in range(len(ctx.result), 0, -1):
        uid = ctx.result[position - 1]
        if uid in doomed:
            pairs.append((position, str(uid if ctx.uid else number[uid])))
    return pairs


async def refresh(session: ImapSession) -> None:
    """Send what changed in each context's result since it was last evaluated."""
    selected = session.selected
    if selected is None or not contexts(selected):
        return
    view = selected.view
    version = view.index.version
    store = session.service.store
    messages: Any = None
    for ctx in list(contexts(selected).values()):
        if ctx.version == version:
            continue
        ctx.version = version
        if messages is None:
            messages = view.search_messages()
        matched = await q.search(
            store,
            selected.mailbox_id,
            ctx.query,
            messages,
            recent_uids=selected.recent.frozen(),
        )
        if ctx.keys is None:
            _search_diff(session, selected, ctx, [int(u) for u in matched])
        else:
            ordered = await sorting.sort(
                store,
                selected.mailbox_id,
                ctx.keys,
                messages,
                view.index.sort_cache,
                only=set(matched),
            )
            _sort_diff(session, selected, ctx, [int(u) for u in ordered])


def _search_diff(
    session: ImapSession, selected: Selected, ctx: SearchContext, new: list[int]
) -> None:
    old = set(ctx.result)
    now = set(new)
    removed = [u for u in ctx.result if u not in now]
    added = [u for u in new if u not in old]
    if removed:
        shown = _numbers(selected, ctx, removed)
        if shown:
            _send(session, ctx, "REMOVEFROM", [(0, format_uid_set(sorted(shown)))])
    if added:
        shown = _numbers(selected, ctx, added)
        if shown:
            _send(session, ctx, "ADDTO", [(0, format_uid_set(sorted(shown)))])
    ctx.result = sorted(now)


def _sort_diff(
    session: ImapSession, selected: Selected, ctx: SearchContext, new: list[int]
) -> None:
    now = set(new)
    gone = {u for u in ctx.result if u not in now}
    view = selected.view
    if gone:
        numbers = {u: view.msn_of(u) or 0 for u in gone}
        _send(session, ctx, "REMOVEFROM", _sorted_removals(ctx, gone, numbers))
    old = set(ctx.result)
    pairs: list[tuple[int, str]] = []
    for position, uid in enumerate(new, 1):
        if uid not in old:
            shown = uid if ctx.uid else view.msn_of(uid)
            if shown is not None:
                pairs.append((position, str(shown)))
    _send(session, ctx, "ADDTO", pairs)
    ctx.result = list(new)


async def cancel_update(session: ImapSession, cmd: CancelUpdate) -> None:
    """CANCELUPDATE (RFC 5267 §4.3): stop updating the searches of these tags."""
    selected = session.require_selected()
    kept = contexts(selected)
    unknown = [t for t in cmd.tags if t not in kept]
    if unknown:
        raise CommandError(f"no search is kept up to date under tag {unknown[0]}")
    for tag in cmd.tags:
        kept.pop(tag, None)
    await session.announce_updates()
    session.tagged(cmd.tag, "OK", "CANCELUPDATE completed")


SPECS: dict[type[Any], CommandSpec] = {
    CancelUpdate: CommandSpec(cancel_update, SELECTED),
}

__all__ = ["MAX_CONTEXTS", "SPECS", "SearchContext", "before_expunge", "refresh", "register"]
