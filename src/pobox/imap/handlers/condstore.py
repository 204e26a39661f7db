"""CONDSTORE and QRESYNC (RFC 7162): what they add to SELECT, FETCH, STORE and SEARCH.

The handlers of those commands call in here for the extension's parameters and answers, so the
rules of RFC 7162 live in one place. Everything is answered from the process's shared mailbox
index (UIDs and MODSEQs in arrays, :mod:`pobox.service.index`): FETCH (CHANGEDSINCE), STORE
(UNCHANGEDSINCE) and SELECT (QRESYNC) make no store call per message. The one store read these
extensions add is the expunge log (``Store.expunged_since``), and only for VANISHED (EARLIER):
SELECT with QRESYNC parameters and UID FETCH with the VANISHED modifier.

The store keeps every expunged UID with the MODSEQ of its expunge for as long as the mailbox
exists, so VANISHED (EARLIER) is exact however old the client's MODSEQ is (RFC 7162 allows more
UIDs than necessary, never fewer; pobox sends neither more nor fewer, except UIDs that were
expunged before the client ever saw them, which it cannot tell apart).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pobox.imap import commands as c
from pobox.imap import responses as r
from pobox.imap.context_grammar import partial_from_text
from pobox.imap.lexer import ParseError
from pobox.imap.sequences import SequenceSet, SequenceSetError, format_uid_set
from pobox.imap.session import CommandError, ImapSession, Selected
from pobox.store.api import ModSeq

#: mod-sequence-value: a positive 63-bit number (RFC 7162 §7); 0 is accepted where the grammar
#: allows mod-sequence-valzer (UNCHANGEDSINCE) and, leniently, as "since the beginning".
MAX_MODSEQ = (1 << 63) - 1


def modseq_value(value: c.ExtValue | None, what: str) -> int:
    """A MODSEQ a client sent (0 included), or BAD."""
    if not isinstance(value, bytes) or not value.isdigit() or len(value) > 19:
        raise CommandError(f"{what} needs a mod-sequence value", status="BAD")
    number = int(value)
    if number > MAX_MODSEQ:
        raise CommandError(f"{what} is out of range", status="BAD")
    return number


def _sequence_set(value: c.ExtValue, what: str) -> SequenceSet:
    if not isinstance(value, bytes):
        raise CommandError(f"{what} needs a sequence set", status="BAD")
    try:
        parsed = SequenceSet.parse(value)
    except SequenceSetError as exc:
        raise CommandError(f"{what}: {exc}", status="BAD") from None
    if parsed.saved:
        raise CommandError(f"{what} cannot be $", status="BAD")
    return parsed


# --------------------------------------------------------------------------- SELECT / EXAMINE


@dataclass(frozen=True, slots=True)
class Qresync:
    """``(QRESYNC (uidvalidity modseq [known-uids [(known-sequence-set known-uid-set)]]))``"""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None


@dataclass(frozen=True, slots=True)
class SelectParameters:
    condstore: bool = False
    qresync: Qresync | None = None


def select_parameters(session: ImapSession, cmd: c.Select | c.Examine) -> SelectParameters:
    """SELECT/EXAMINE parameters (RFC 4466): CONDSTORE and, once enabled, QRESYNC; anything
    else is BAD (before any state changes)."""
    condstore = False
    qresync: Qresync | None = None
    for p in cmd.parameters:
        if p.name == "CONDSTORE" and p.value is None:
            condstore = True
        elif p.name == "QRESYNC":
            if not session.qresync:
                # RFC 7162 §3.2.5: QRESYNC must be enabled first
                raise CommandError("QRESYNC is not enabled", status="BAD")
            qresync = _qresync(p.value)
        else:
            raise CommandError(f"unknown {cmd.NAME} parameter {p.name}", status="BAD")
    return SelectParameters(condstore or qresync is not None, qresync)


def _qresync(value: c.ExtValue | None) -> Qresync:
    if not isinstance(value, tuple) or not 2 <= len(value) <= 4:
        raise CommandError("QRESYNC needs (uidvalidity modseq [known-uids])", status="BAD")
    uv = value[0]
    if not isinstance(uv, bytes) or not uv.isdigit() or not 0 < int(uv) <= 0xFFFFFFFF:
        raise CommandError("QRESYNC needs a UIDVALIDITY", status="BAD")
    modseq = modseq_value(value[1], "QRESYNC")
    known = _sequence_set(value[2], "QRESYNC known UIDs") if len(value) > 2 else None
    if len(value) > 3:
        # the sequence match data: pobox keeps every expunge, so it is checked, not needed
        match = value[3]
        if not isinstance(match, tuple) or len(match) != 2:
            raise CommandError("QRESYNC sequence match data needs two sets", status="BAD")
        _sequence_set(match[0], "QRESYNC known sequence set")
        _sequence_set(match[1], "QRESYNC known UID set")
    return Qresync(int(uv), modseq, known)


def _in_ranges(uid: int, starts: Sequence[int], ranges: Sequence[tuple[int, int]]) -> bool:
    i = bisect.bisect_right(starts, uid) - 1
    return i >= 0 and uid <= ranges[i][1]


async def vanished_earlier(
    session: ImapSession, selected: Selected, since: int, within: SequenceSet | None
) -> None:
    """``* VANISHED (EARLIER) ...``: the UIDs expunged after MODSEQ *since* (within the UID set,
    if given), from the store's expunge log."""
    view = selected.view
    gone: Sequence[int] = await session.service.store.expunged_since(
        selected.mailbox_id, ModSeq(since)
    )
    if not gone:
        return
    if within is not None:
        top = max(view.mailbox.uidnext - 1, view.last_uid(), 1)
        gone = _within(gone, within.resolve(top))
    if gone:
        session.send(r.VanishedResponse(tuple(gone), earlier=True))


def changed_in_view(selected: Selected, since: int) -> list[int]:
    """The UIDs the view numbers whose MODSEQ is above *since*, ascending: one pass over the
    index's MODSEQ column (no lookup per message), plus what the view still numbers of messages
    expunged meanwhile."""
    view = selected.view
    index = view.index
    modseqs, uids = index.modseqs, index.uids
    if view.shares_index():
        count = len(view)
        return [uids[i] for i, m in enumerate(modseqs) if m > since and i < count]
    found = {uids[i] for i, m in enumerate(modseqs) if m > since}
    out = [u for u in found if view.msn_of(u) is not None]
    for uid in view.pending_expunge:
        meta = view.meta(uid)
        if meta is not None and meta.modseq > since and view.msn_of(uid) is not None:
            out.append(uid)
    return sorted(set(out))


def _within(found: Sequence[int], ranges: Sequence[tuple[int, int]]) -> list[int]:
    starts = [lo for lo, _ in ranges]
    return [u for u in found if _in_ranges(u, starts, ranges)]


async def qresync_select(session: ImapSession, selected: Selected, params: Qresync) -> None:
    """RFC 7162 §3.2.5: after SELECT's usual answers, the expunges (VANISHED (EARLIER)) and
    flag changes (FETCH UID FLAGS MODSEQ) since the client's MODSEQ, if its UIDVALIDITY is
    still the mailbox's (else nothing: the client starts over)."""
    view = selected.view
    if params.uidvalidity != view.mailbox.uidvalidity:
        return
    known = params.known_uids
    await vanished_earlier(session, selected, params.modseq, known)
    changed = changed_in_view(selected, params.modseq)
    if known is not None and changed:
        changed = _within(changed, known.resolve(max(view.last_uid(), 1)))
    told: list[tuple[int, int]] = []
    for uid in changed:
        msn, meta = view.msn_of(uid), view.meta(uid)
        if msn is None or meta is None:
            continue
        session.send(r.FetchResponse(msn, session.flag_items(meta, uid=True)))
        told.append((meta.uid, meta.modseq))
    if told:
        view.told_modseqs(told)


# --------------------------------------------------------------------------- FETCH


@dataclass(frozen=True, slots=True)
class FetchModifiers:
    changed_since: int | None = None
    vanished: bool = False
    partial: tuple[int, int] | None = None  # RFC 9394 §3.3: PARTIAL first:last


def fetch_modifiers(session: ImapSession, cmd: c.Fetch) -> FetchModifiers:
    """FETCH modifiers (RFC 7162 §3.1.4, §3.2.6): CHANGEDSINCE, and VANISHED with it in UID
    FETCH once QRESYNC is enabled; PARTIAL (RFC 9394 §3.3); anything else is BAD."""
    changed_since: int | None = None
    vanished = False
    partial: tuple[int, int] | None = None
    for p in cmd.modifiers:
        if p.name == "CHANGEDSINCE" and changed_since is None:
            changed_since = modseq_value(p.value, "CHANGEDSINCE")
        elif p.name == "VANISHED" and p.value is None and not vanished:
            vanished = True
        elif p.name == "PARTIAL" and partial is None and isinstance(p.value, bytes):
            try:
                partial = partial_from_text(p.value)
            except ParseError as exc:
                raise CommandError(str(exc), status="BAD") from None
        else:
            raise CommandError(f"unknown FETCH modifier {p.name}", status="BAD")
    if vanished:
        if not cmd.uid:
            raise CommandError("VANISHED is for UID FETCH only", status="BAD")
        if not session.qresync:
            raise CommandError("VANISHED needs QRESYNC enabled", status="BAD")
        if changed_since is None:
            raise CommandError("VANISHED needs CHANGEDSINCE", status="BAD")
    if changed_since is not None:
        session.enable_condstore()
    return FetchModifiers(changed_since, vanished, partial)


def changed_uids(selected: Selected, uids: Sequence[int], since: int) -> list[int]:
    """The UIDs of *uids* (ascending, numbered in the view) whose MODSEQ is above *since*."""
    found = changed_in_view(selected, since)
    if len(found) > len(uids):
        wanted = set(found)
        return [u for u in uids if u in wanted]
    out: list[int] = []
    for uid in found:
        i = bisect.bisect_left(uids, uid)
        if i < len(uids) and uids[i] == uid:
            out.append(uid)
    return out


# --------------------------------------------------------------------------- STORE


def unchanged_since(session: ImapSession, cmd: c.Store) -> int | None:
    """The UNCHANGEDSINCE modifier (RFC 7162 §3.1.3); anything else is BAD."""
    found: int | None = None
    for p in cmd.modifiers:
        if p.name != "UNCHANGEDSINCE" or found is not None:
            raise CommandError(f"unknown STORE modifier {p.name}", status="BAD")
        found = modseq_value(p.value, "UNCHANGEDSINCE")
    if found is not None:
        session.enable_condstore()
    return found


def modified_code(numbers: Iterable[int]) -> r.ResponseCode:
    """``[MODIFIED 7,9]``: the messages a conditional STORE left alone."""
    return r.ResponseCode("MODIFIED", format_uid_set(sorted(numbers)).encode("ascii"))


# --------------------------------------------------------------------------- SEARCH


def uses_modseq(key: c.SearchKey) -> bool:
    """Whether a search key has a MODSEQ criterion anywhere (RFC 7162 §3.1.5)."""
    match key:
        case c.SearchModSeq():
            return True
        case c.SearchNot(key=inner):
            return uses_modseq(inner)
        case c.SearchOr(left=left, right=right):
            return uses_modseq(left) or uses_modseq(right)
        case c.SearchAnd(keys=keys):
            return any(uses_modseq(k) for k in keys)
    return False


def highest_modseq(selected: Selected, uids: Iterable[int]) -> int | None:
    """The highest MODSEQ of these messages (None for none): SEARCH's ``(MODSEQ n)``."""
    view = selected.view
    index = view.index
    best: int | None = None
    for uid in uids:
        pos = index.position(uid)
        if pos is not None:
            value = index.modseqs[pos]
        else:
            meta = view.meta(uid)
            if meta is None:
                continue
            value = meta.modseq
        if best is None or value > best:
            best = value
    return best
