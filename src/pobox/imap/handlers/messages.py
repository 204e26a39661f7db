"""FETCH, STORE, COPY and MOVE, with their UID forms (RFC 9051 §6.4, RFC 4315, RFC 6851).

Message-number forms of FETCH and STORE may not announce expunges (RFC 9051 §7.5.1), so they
refresh with ``expunge=False``; their UID forms, COPY and MOVE may. The command table says
``expunge_after=False`` for FETCH and STORE so that a NO never announces expunges either.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import logging
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

from pobox.errors import NotFound
from pobox.imap import commands as c
from pobox.imap import fetch as f
from pobox.imap import responses as r
from pobox.imap.context_grammar import apply_partial
from pobox.imap.fetch import format_flags
from pobox.imap.handlers import condstore
from pobox.imap.recent import RecentUids
from pobox.imap.session import SELECTED, CommandError, CommandSpec, ImapSession, Selected
from pobox.mail.structure import ParsedMessage
from pobox.service.acl import Access, flag_right
from pobox.service.view import MailboxView
from pobox.store.api import (
    SEEN,
    SYSTEM_FLAGS,
    BlobId,
    Content,
    FlagOp,
    MessageMeta,
    ModSeq,
    Rendered,
    Store,
    Uid,
)

log = logging.getLogger("pobox.imap")

_STORE_OPS = {
    c.StoreMode.REPLACE: FlagOp.REPLACE,
    c.StoreMode.ADD: FlagOp.ADD,
    c.StoreMode.REMOVE: FlagOp.REMOVE,
}
_SYSTEM = frozenset(SYSTEM_FLAGS)


def _name(cmd: c.Fetch | c.Store | c.Copy | c.Move) -> str:
    return f"UID {cmd.NAME}" if cmd.uid else cmd.NAME


# --------------------------------------------------------------------------- FETCH

#: What FETCH answers (MODSEQ turns CONDSTORE on).
_SIMPLE_ITEMS = frozenset(
    {
        "UID",
        "FLAGS",
        "INTERNALDATE",
        "RFC822.SIZE",
        "ENVELOPE",
        "BODY",
        "BODYSTRUCTURE",
        "RFC822",
        "RFC822.PEEK",
        "RFC822.HEADER",
        "RFC822.TEXT",
        "RFC822.TEXT.PEEK",
        "MODSEQ",
        "SAVEDATE",
        "EMAILID",
        "THREADID",
        "PREVIEW",
    }
)
#: Octets of a streamed literal read and written at a time.
STREAM_CHUNK = 256 * 1024
#: Responses buffered before waiting for the client to take them.
DRAIN_EVERY = 256
#: Messages whose structures are read in one store call.
STRUCTURE_BATCH = 512
#: Messages whose content is opened in one store call (each holds a file open).
CONTENT_BATCH = 64


def fetch_items(cmd: c.Fetch) -> list[f.FetchItem]:
    """The command's attributes as pobox.imap.fetch items; UID FETCH always answers UID."""
    items: list[f.FetchItem] = []
    for att in cmd.attributes:
        match att:
            case c.FetchSimple(name=name):
                if name not in _SIMPLE_ITEMS:
                    raise CommandError(f"FETCH {name} is not supported", status="BAD")
                items.append(f.FetchItem.simple(name))
            case c.FetchBody():
                section = f.Section(att.part, att.text or "", att.fields, att.partial)
                items.append(f.FetchItem.body(section, peek=att.peek, section_text=att.section))
            case c.FetchBinary():
                section = f.Section(att.part, "", (), att.partial)
                items.append(f.FetchItem.binary(section, peek=att.peek, section_text=att.section))
            case c.FetchBinarySize():
                items.append(f.FetchItem.binary_size(f.Section(att.part), section_text=att.section))
    if cmd.uid and not any(i.name == "UID" and i.section is None for i in items):
        items.insert(0, f.FetchItem.simple("UID"))
    return items


async def _mark_seen(
    session: ImapSession, selected: Selected, uids: list[int]
) -> dict[Uid, MessageMeta]:
    """RFC 9051 §6.4.5: fetching BODY[...] (not .PEEK), BINARY[...], RFC822 or RFC822.TEXT
    sets \\Seen; one transaction for the whole set. Returns the messages it changed."""
    view = selected.view
    unseen = [Uid(m.uid) for m in view.metas(uids) if SEEN not in m.flags]
    if not unseen:
        return {}
    changed = await session.service.index.set_flags(
        selected.mailbox_id, unseen, FlagOp.ADD, frozenset({SEEN})
    )
    view.note_own(changed)
    return {m.uid: m for m in changed}


async def _write_pieces(
    session: ImapSession, msn: int, pieces: list[f.Piece], content: Content | None
) -> None:
    session.send_raw(b"* %d FETCH (" % msn)
    for piece in pieces:
        if isinstance(piece, bytes):
            session.send_raw(piece)
            continue
        assert content is not None  # render_fetch only asks to stream what it was given
        session.send_raw(piece.prefix())
        offset, end = piece.offset, piece.offset + piece.length
        while offset < end:
            chunk = await asyncio.to_thread(content.read, offset, min(STREAM_CHUNK, end - offset))
            if not chunk:
                # the response is half written: nothing to do but drop the connection
                raise RuntimeError(f"stored message {msn} is shorter than its structure says")
            session.send_raw(chunk if piece.binary else f.no_nul(chunk))
            offset += len(chunk)
            await session.drain()
    session.send_raw(b")\r\n")


#: Backfill writes of renderings still running (kept referenced until they finish).
_BACKFILLS: set[asyncio.Task[None]] = set()


#: Renderings kept in this process, per store, newest last. A content never changes and its id
#: is never given to another content (both backends take ids from a sequence that does not go
#: back), so an entry can only be unused, never wrong; as Dovecot's cache file is mapped in
#: every process, repeated FETCHes of the same messages (several devices, sessions, syncs) do
#: not read the store again.
RENDERED_KEEP = 8192
_KEPT: weakref.WeakKeyDictionary[Any, OrderedDict[BlobId, Rendered]] = weakref.WeakKeyDictionary()


def _kept_of(store: Store) -> OrderedDict[BlobId, Rendered]:
    kept = _KEPT.get(store)
    if kept is None:
        kept = _KEPT[store] = OrderedDict()
    return kept


def _remember(kept: OrderedDict[BlobId, Rendered], items: dict[BlobId, Rendered]) -> None:
    for blob, rendering in items.items():
        if rendering.envelope is not None and rendering.bodystructure is not None:
            kept[blob] = rendering
    while len(kept) > RENDERED_KEEP:
        kept.popitem(last=False)


async def _rendered(
    session: ImapSession, blobs: list[BlobId], structures: dict[BlobId, bytes]
) -> dict[BlobId, Rendered]:
    """ENVELOPE and BODYSTRUCTURE as the store keeps them rendered; those it does not have yet
    (messages delivered before renderings were kept, or by a path that does not render) are
    rendered now from the structure and kept, in the background, for the next FETCH."""
    store = session.service.store
    kept = _kept_of(store)
    rendered = {}
    wanted = []
    for blob in blobs:
        hit = kept.get(blob)
        if hit is None:
            wanted.append(blob)
        else:
            rendered[blob] = hit
    if not wanted:
        return rendered
    found = await store.get_rendered(wanted)
    _remember(kept, found)
    rendered.update(found)
    lacking = [b for b, r in rendered.items() if r.envelope is None or r.bodystructure is None]
    if not lacking:
        return rendered
    missing_structure = [b for b in lacking if b not in structures]
    if missing_structure:
        structures = {**structures, **await store.get_structures(missing_structure)}
    made: dict[BlobId, Rendered] = {}
    for blob in lacking:
        raw = structures.get(blob)
        if raw is None:
            del rendered[blob]  # gone meanwhile
            continue
        made[blob] = rendered[blob] = f.render_kept(ParsedMessage.cached(raw))
    _remember(kept, made)
    if made:
        task = asyncio.ensure_future(_keep(store, made))
        _BACKFILLS.add(task)
        task.add_done_callback(_BACKFILLS.discard)
    return rendered


async def _keep(store: Store, made: dict[BlobId, Rendered]) -> None:
    try:
        await store.set_rendered(made)
    except Exception as exc:  # only a cache: the next FETCH renders again
        log.info("could not keep %d renderings: %s", len(made), exc)


_INDEX_ITEMS = frozenset({"UID", "FLAGS", "RFC822.SIZE", "MODSEQ"})


def _index_only(items: list[f.FetchItem]) -> list[str] | None:
    """The item names when the index alone answers them all (the sync of a client's cache)."""
    names = [it.name for it in items]
    if all(it.section is None for it in items) and _INDEX_ITEMS.issuperset(names):
        return names
    return None


#: Messages rendered at a time by the column path (then written, and the client awaited).
RUN_CHUNK = 4096
_RUN_FORMATS = {
    "UID": b"UID %d",
    "FLAGS": b"FLAGS %s",
    "MODSEQ": b"MODSEQ (%d)",
    "RFC822.SIZE": b"RFC822.SIZE %d",
}


def _contiguous(numbers: Sequence[int], count: int, uids: list[int]) -> range | None:
    """The positions of *uids* when they are exactly the view's messages *a* to *b* (what
    ``1:*`` and most ranges a client syncs with come to); None otherwise."""
    start = bisect.bisect_left(numbers, uids[0], 0, count)
    end = start + len(uids)
    if end > count or numbers[start] != uids[0] or numbers[end - 1] != uids[-1]:
        return None
    return range(start, end)  # both sorted and unique, same ends, same length: the same


def _recent_spans(recent: RecentUids, uids: Sequence[int]) -> list[tuple[int, int]]:
    """The positions ``[a, b)`` in *uids* (sorted) of the runs of \\Recent messages."""
    spans = []
    for low, high in recent.ranges():
        if high <= uids[0] or low > uids[-1]:
            continue
        a, b = bisect.bisect_left(uids, low), bisect.bisect_left(uids, high)
        if a < b:
            spans.append((a, b))
    return spans


async def _fetch_run(
    session: ImapSession, view: MailboxView, run: range, names: list[str], recent: RecentUids
) -> int:
    """UID/FLAGS/MODSEQ/RFC822.SIZE of a run of the index's messages, column by column: one
    format per line, FLAGS texts rendered once per distinct flag set (and \\Recent or not:
    *recent* is a few runs of UIDs, so the messages that show it are slices of the column).
    Returns how many were written: all, unless the view stopped sharing the index's numbering
    while the client was awaited (an expunge elsewhere)."""
    index = view.index
    template = b"* %d FETCH (" + b" ".join(_RUN_FORMATS[n] for n in names) + b")\r\n"
    texts: dict[tuple[int, bool], bytes] = {}

    def text(value: int, is_recent: bool) -> bytes:
        found = texts.get((value, is_recent))
        if found is None:
            flagset = index.flagset(value)
            session.note_flags(flagset)  # (written before the FETCH lines below)
            found = texts[value, is_recent] = format_flags(flagset, is_recent)
        return found

    for first in range(run.start, run.stop, RUN_CHUNK):
        last = min(first + RUN_CHUNK, run.stop)
        columns: list[Iterable[object]] = [range(first + 1, last + 1)]
        for name in names:
            if name == "UID":
                columns.append(index.uids[first:last])
            elif name == "MODSEQ":
                columns.append(index.modseqs[first:last])
            elif name == "RFC822.SIZE":
                columns.append(index.sizes[first:last])
            else:
                bits = index.flags[first:last]
                plain = {value: text(value, False) for value in set(bits)}
                column = list(map(plain.__getitem__, bits))
                spans = _recent_spans(recent, index.uids[first:last]) if recent else []
                for a, b in spans:
                    column[a:b] = [text(value, True) for value in bits[a:b]]
                columns.append(column)
        session.send_raw(b"".join([template % row for row in zip(*columns, strict=True)]))
        await session.drain()
        if last < run.stop and not view.shares_index():
            return last - run.start
    return len(run)


async def _fetch_from_index(
    session: ImapSession, selected: Selected, uids: list[int], names: list[str]
) -> None:
    """FETCH of UID / FLAGS / RFC822.SIZE straight from the shared index's columns: no
    MessageMeta, no store call; FLAGS texts are rendered once per distinct flag set."""
    view = selected.view
    index = view.index
    recent = selected.recent if not session.rev2 else RecentUids()
    rendered: dict[tuple[int, bool], bytes] = {}
    out: list[bytes] = []
    # changes the view has not announced yet: the FLAGS shown here need not be announced again
    told: list[tuple[int, int]] | None = [] if view.changed() and "FLAGS" in names else None
    shared = view.shares_index()  # message n is the index's n-th: one bisect, no lookups
    numbers, count = view.uids, len(view)
    if shared and told is None and uids:
        run = _contiguous(numbers, count, uids)
        if run is not None:
            done = await _fetch_run(session, view, run, names, recent)
            if done == len(uids):
                return
            uids = uids[done:]  # the index changed under the view: go on message by message
            shared = view.shares_index()
            numbers, count = view.uids, len(view)
    iflags, isizes, imodseqs = index.flags, index.sizes, index.modseqs
    lo = 0
    for uid in uids:
        at = bisect.bisect_left(numbers, uid, lo, count)
        if at >= count or numbers[at] != uid:
            continue
        lo, msn = at, at + 1
        pos: int | None = at if shared else index.position(uid)
        parts: list[bytes] = []
        for name in names:
            if name == "UID":
                parts.append(b"UID %d" % uid)
            elif pos is None:  # expunged meanwhile: what the view still knows of it
                meta = view.meta(uid)
                assert meta is not None
                if name == "FLAGS":
                    session.note_flags(meta.flags)
                    parts.append(b"FLAGS " + format_flags(meta.flags, uid in recent))
                elif name == "MODSEQ":
                    parts.append(b"MODSEQ (%d)" % meta.modseq)
                else:
                    parts.append(b"RFC822.SIZE %d" % meta.size)
            elif name == "FLAGS":
                if told is not None:
                    told.append((uid, index.modseqs[pos]))
                key = (iflags[pos], uid in recent)
                text = rendered.get(key)
                if text is None:
                    flagset = index.flagset(key[0])
                    session.note_flags(flagset)  # (written before the FETCH lines below)
                    text = rendered[key] = b"FLAGS " + format_flags(flagset, key[1])
                parts.append(text)
            elif name == "MODSEQ":
                parts.append(b"MODSEQ (%d)" % imodseqs[pos])
            else:
                parts.append(b"RFC822.SIZE %d" % isizes[pos])
        out.append(b"* %d FETCH (%s)\r\n" % (msn, b" ".join(parts)))
        if len(out) >= DRAIN_EVERY * 4:
            session.send_raw(b"".join(out))
            out.clear()
            await session.drain()
            # the index may have changed meanwhile: look again
            shared = view.shares_index()
            numbers, count = view.uids, len(view)
            iflags, isizes, imodseqs = index.flags, index.sizes, index.modseqs
            lo = 0
    if out:
        session.send_raw(b"".join(out))
    if told:
        view.told_modseqs(told)


async def fetch(session: ImapSession, cmd: c.Fetch) -> None:
    """FETCH / UID FETCH (RFC 9051 §6.4.5, §6.4.9).

    Each message is rendered whole before any of it is written, so a failure (a BINARY of an
    undecodable part) ends the command with NO without a broken response.

    Messages another session expunged: while the view still numbers them, FETCH answers what
    it knows without the content (FLAGS, UID, INTERNALDATE, RFC822.SIZE, as Dovecot does). When
    the structure or content is needed but already gone, Dovecot 2.3 answers ``BODY[] NIL`` and
    ``OK [EXPUNGEISSUED]``; NIL is not valid for ENVELOPE or BODYSTRUCTURE, so pobox takes the
    other answer RFC 9051 §7.1 gives: it leaves such messages out and ends with
    ``NO [EXPUNGEISSUED]``.
    """
    selected = session.require_selected()
    modifiers = condstore.fetch_modifiers(session, cmd)
    items = fetch_items(cmd)
    uids = session.resolve(cmd.sequence_set, uid=cmd.uid)
    view = selected.view
    if any(it.name == "MODSEQ" for it in items):
        session.enable_condstore()  # RFC 7162 §3.1: FETCH MODSEQ turns CONDSTORE on
    if modifiers.changed_since is not None:
        # RFC 7162 §3.1.4: only messages changed since, and each with its MODSEQ
        if not any(it.name == "MODSEQ" for it in items):
            items.append(f.FetchItem.simple("MODSEQ"))
        if modifiers.vanished:
            within = cmd.sequence_set
            await condstore.vanished_earlier(session, selected, modifiers.changed_since, within)
        uids = condstore.changed_uids(selected, uids, modifiers.changed_since)
        if modifiers.vanished:
            # expunged meanwhile: reported as vanished, not fetched
            uids = [u for u in uids if not view.is_expunged(u)]
    if modifiers.partial is not None:
        # RFC 9394 §3.3: only the messages at these positions of the set (after CHANGEDSINCE)
        uids = apply_partial(uids, modifiers.partial)
    seen: dict[Uid, MessageMeta] = {}
    # RFC 4314 §4: without the s right, FETCH BODY[] does not set \\Seen
    if uids and f.sets_seen(items) and not selected.read_only and selected.may("s"):
        seen = await _mark_seen(session, selected, [u for u in uids if not view.is_expunged(u)])
        if seen and session.condstore:
            # RFC 7162 §3.1: a FETCH that sets \Seen reports the new MODSEQ (with the UID under
            # QRESYNC, as every FETCH a change causes)
            has_uid = any(it.name == "UID" and it.section is None for it in items)
            if session.qresync and not has_uid:
                items.insert(0, f.FetchItem.simple("UID"))
            if not any(it.name == "MODSEQ" for it in items):
                items.append(f.FetchItem.simple("MODSEQ"))
    structure, content_needed = f.needs_structure(items, cached=True), f.needs_content(items)
    # only the top-level header: from the structure, and a file only where it is not whole
    header_only = content_needed and f.header_only(items)
    kept = f.wants_rendered(items)
    fast = _index_only(items)
    if fast is not None and not seen:
        await _fetch_from_index(session, selected, uids, fast)
        await session.announce_updates(expunge=cmd.uid)
        session.tagged(cmd.tag, "OK", f"{_name(cmd)} completed")
        return
    store = session.service.store
    missing = False
    batch = CONTENT_BATCH if content_needed else STRUCTURE_BATCH
    shows_flags = any(it.name == "FLAGS" for it in items)
    told: list[tuple[int, int]] | None = [] if shows_flags and view.changed() else None
    count = 0
    for start in range(0, len(uids), batch):
        metas = [m for u in uids[start : start + batch] if (m := seen.get(Uid(u)) or view.meta(u))]
        blobs = [m.blob for m in metas]
        structures: dict[BlobId, bytes] = {}
        contents: dict[BlobId, Content] = {}
        rendered: dict[BlobId, Rendered] = {}
        try:
            # one store call per batch of messages, not one per message
            if structure and blobs:
                structures = await store.get_structures(blobs)
            if kept and blobs:
                rendered = await _rendered(session, blobs, structures)
            if header_only and blobs:
                cut = [
                    b
                    for b in blobs
                    if b in structures and f.top_header(ParsedMessage.cached(structures[b])) is None
                ]
                if cut:  # a header longer than the structure keeps
                    contents = await store.open_contents(cut)
            elif content_needed and blobs:
                contents = await store.open_contents(blobs)
            for meta in metas:
                msn = view.msn_of(meta.uid)
                if msn is None:
                    continue
                parsed: ParsedMessage | None = None
                content: Content | None = None
                if structure:
                    raw = structures.get(meta.blob)
                    if raw is None:
                        missing = True
                        continue
                    parsed = ParsedMessage.cached(raw)
                if content_needed:
                    content = contents.get(meta.blob)
                    if content is None and not (header_only and f.top_header(parsed)):
                        missing = True
                        continue
                kept_here = rendered.get(meta.blob)
                if kept and kept_here is None:
                    missing = True
                    continue
                session.note_flags(meta.flags)
                try:
                    pieces = f.render_fetch(
                        items,
                        meta,
                        parsed,
                        content,
                        recent=not session.rev2 and meta.uid in selected.recent,
                        include_flags=meta.uid in seen,
                        utf8=session.utf8,
                        rendered=kept_here,
                    )
                except f.FetchError as exc:
                    raise CommandError(exc.text, exc.code) from None
                await _write_pieces(session, msn, pieces, content)
                if told is not None:
                    told.append((meta.uid, meta.modseq))
                count += 1
                if count % DRAIN_EVERY == 0:
                    await session.drain()
        finally:
            for content in contents.values():
                content.close()
    if told:
        view.told_modseqs(told)
    await session.announce_updates(expunge=cmd.uid)
    if missing:
        raise CommandError("some of the requested messages no longer exist", "EXPUNGEISSUED")
    session.tagged(cmd.tag, "OK", f"{_name(cmd)} completed")


# --------------------------------------------------------------------------- STORE


def _store_flags(flags: tuple[str, ...]) -> frozenset[str]:
    """The flags a client may store: system flags but \\Recent, and keywords (RFC 9051 §2.3.2)."""
    for flag in flags:
        if flag.startswith("\\") and flag not in _SYSTEM:
            # Dovecot answers the same: \Recent is the server's, \* is not a flag
            raise CommandError(f"invalid system flag {flag}", status="BAD")
    return frozenset(flags)


def _apply(op: FlagOp, old: frozenset[str], flags: frozenset[str]) -> frozenset[str]:
    if op is FlagOp.REPLACE:
        return flags
    if op is FlagOp.ADD:
        return old | flags
    return old - flags


async def _within_rights(
    session: ImapSession, selected: Selected, op: FlagOp, flags: frozenset[str], uids: list[int]
) -> tuple[FlagOp, frozenset[str]]:
    """The STORE this user may make in another account's mailbox (RFC 4314 §4): \\Seen needs
    the s right, \\Deleted t, every other flag w. Flags without the right are left alone; the
    STORE fails (NOPERM) only when it would change nothing it has the right to. A FLAGS
    replacement becomes the removal of the changeable flags not named and the addition of
    the allowed ones named."""
    access = selected.access
    assert access is not None
    if all(access.has(right) for right in "swt"):
        return op, flags
    allowed = access.allowed_flags(flags)
    if op is not FlagOp.REPLACE:
        if flags and not allowed:
            access.require("".join(sorted({flag_right(f) for f in flags})))
        return op, allowed
    if not any(access.has(right) for right in "swt"):
        access.require("w")
    changeable = access.allowed_flags({*_SYSTEM, *selected.view.index.keywords_in_use()}) - allowed
    if changeable and uids:
        await session.service.index.set_flags(
            selected.mailbox_id, [Uid(u) for u in uids], FlagOp.REMOVE, changeable, None
        )
    return FlagOp.ADD, allowed


async def store(session: ImapSession, cmd: c.Store) -> None:
    """STORE / UID STORE (RFC 9051 §6.4.6).

    Unless ``.SILENT``, every message of the set gets a ``FETCH (FLAGS ...)`` with its flags
    after the change (RFC 9051's example lists unchanged ones too, and so does Dovecot); UID
    STORE puts the UID first. With ``.SILENT`` a message is still reported when its flags came
    out different from what this session expected, i.e. another session changed them (the
    RFC's "SHOULD send ... if a change from an external source is observed").

    CONDSTORE (RFC 7162 §3.1.3): every response carries MODSEQ, and a message the STORE changed
    is reported even with ``.SILENT`` (``FETCH (MODSEQ (n))``); with ``(UNCHANGEDSINCE n)`` the
    store leaves messages whose MODSEQ is above n alone (atomically) and the tagged OK names
    them in ``[MODIFIED set]``.
    """
    selected = session.require_selected()
    since = condstore.unchanged_since(session, cmd)
    flags = _store_flags(cmd.flags)
    uids = session.resolve(cmd.sequence_set, uid=cmd.uid)
    if selected.read_only:
        raise CommandError("mailbox is read-only", "READ-ONLY")
    op = _STORE_OPS[cmd.mode]
    if selected.access is not None:
        op, flags = await _within_rights(session, selected, op, flags, uids)
    view = selected.view
    # what the client was told: a message with changes it has not heard of is reported
    before = {m.uid: m for m in view.metas(uids)}
    known = {u for u in before if view.knows(u)}
    changed: dict[Uid, MessageMeta] = {}
    modified: set[int] = set()
    if since is not None:
        modified = set(condstore.changed_uids(selected, list(before), since))
    wanted = [Uid(u) for u in uids if u not in modified]
    if wanted:
        result = await session.service.index.set_flags(
            selected.mailbox_id,
            wanted,
            op,
            flags,
            None if since is None else ModSeq(since),
        )
        changed = {m.uid: m for m in result}
    if since is not None:
        # left alone by the store: changed meanwhile, by another process too
        rest = [u for u in wanted if u not in changed and u in before]
        if rest:
            await view.index.sync()
            modified.update(condstore.changed_uids(selected, rest, since))
    reported: list[int] = []
    for uid, meta in before.items():
        if uid in modified:
            continue
        expected = _apply(op, meta.flags, flags)
        now = changed.get(uid) or dataclasses.replace(meta, flags=expected)
        view.told(now)
        unsurprising = now.flags == expected and uid in known
        if since is not None and unsurprising and uid not in changed:
            continue  # a conditional STORE reports what it changed (as Dovecot does)
        silent = cmd.silent and unsurprising
        if silent and not (session.condstore and uid in changed):
            continue
        msn = view.msn_of(uid)
        if msn is None:
            continue
        if uid not in changed and (pos := view.index.position(uid)) is not None:
            now = dataclasses.replace(now, modseq=ModSeq(view.index.modseqs[pos]))
        session.send(r.FetchResponse(msn, session.flag_items(now, uid=cmd.uid, flags=not silent)))
        reported.append(uid)
    # the view will not announce again what the client has now been told
    view.note_own(changed.values())
    view.note_reported(reported)
    await session.announce_updates(expunge=cmd.uid)
    code: r.ResponseCode | None = None
    if modified:
        numbers = modified if cmd.uid else {n for u in modified if (n := view.msn_of(u))}
        code = condstore.modified_code(numbers)
    session.tagged(cmd.tag, "OK", f"{_name(cmd)} completed", code)


# --------------------------------------------------------------------------- COPY / MOVE


async def _target(session: ImapSession, raw: bytes) -> Access:
    """The target of COPY or MOVE; it needs the i right (RFC 4314 §4)."""
    account = session.require_account()
    name = session.mailbox_name(raw)
    try:
        return await session.service.acl.access(account, name, "i")
    except NotFound:
        raise CommandError(f"mailbox {name} does not exist", "TRYCREATE") from None


async def _drop_flags(session: ImapSession, target: Access, pairs: list[tuple[Uid, Uid]]) -> None:
    """RFC 4314 §4: a copy keeps only the flags the user may set in the target mailbox."""
    if target.own or all(target.has(right) for right in "swt") or not pairs:
        return
    index = session.service.index
    copied = [d for _, d in pairs]
    metas = await session.service.store.get_messages(target.mailbox.id, copied)
    doomed = frozenset(f for m in metas for f in m.flags) - target.allowed_flags(
        {f for m in metas for f in m.flags}
    )
    if doomed:
        await index.set_flags(target.mailbox.id, copied, FlagOp.REMOVE, doomed, None)


async def _check_present(session: ImapSession, selected: Selected, uids: list[Uid]) -> None:
    """RFC 9051 §6.4.7: a COPY that fails leaves the target untouched, so a set naming messages
    another session expunged fails before anything is copied (Dovecot answers the same)."""
    gone = any(selected.view.is_expunged(u) for u in uids)
    if not gone:
        present = await session.service.store.get_messages(selected.mailbox_id, uids)
        gone = len(present) < len(uids)
    if gone:
        raise CommandError("some of the requested messages no longer exist", "EXPUNGEISSUED")


async def copy(session: ImapSession, cmd: c.Copy) -> None:
    """COPY / UID COPY; the tagged OK carries COPYUID (RFC 4315)."""
    selected = session.require_selected()
    target = await _target(session, cmd.mailbox)
    uids = [Uid(u) for u in session.resolve(cmd.sequence_set, uid=cmd.uid)]
    code: r.ResponseCode | None = None
    text = f"{_name(cmd)} completed"
    if uids:
        await _check_present(session, selected, uids)
        owner = target.mailbox.account_id  # the quota of the target's account (RFC 9208 §3)
        limits = await session.service.quota.current_limits(owner)
        pairs = await session.service.index.copy(
            selected.mailbox_id, uids, target.mailbox.id, quota=limits
        )
        await _drop_flags(session, target, pairs)
        await session.service.quota.after_write(owner, limits)
        if pairs:
            code = r.ResponseCode.copyuid(
                target.mailbox.uidvalidity, [s for s, _ in pairs], [d for _, d in pairs]
            )
    else:
        text = "no messages found"
    await session.announce_updates()
    session.tagged(cmd.tag, "OK", text, code)


async def move(session: ImapSession, cmd: c.Move) -> None:
    """MOVE / UID MOVE (RFC 6851): ``* OK [COPYUID ...]`` first, then an EXPUNGE per message."""
    selected = session.require_selected()
    target = await _target(session, cmd.mailbox)
    uids = [Uid(u) for u in session.resolve(cmd.sequence_set, uid=cmd.uid)]
    if selected.read_only:
        # moving expunges from the source, which EXAMINE does not allow
        raise CommandError("mailbox is read-only", "READ-ONLY")
    selected.require("te")  # RFC 6851 §3.1 with RFC 4314: \\Deleted and EXPUNGE in the source
    if not uids:
        await session.announce_updates()
        session.tagged(cmd.tag, "OK", "no messages found")
        return
    await _check_present(session, selected, uids)
    owner = target.mailbox.account_id
    limits = await session.service.quota.current_limits(owner)
    pairs = await session.service.index.copy(
        selected.mailbox_id, uids, target.mailbox.id, move=True, quota=limits
    )
    await _drop_flags(session, target, pairs)
    await session.service.quota.after_write(owner, limits)
    if pairs:
        code = r.ResponseCode.copyuid(
            target.mailbox.uidvalidity, [s for s, _ in pairs], [d for _, d in pairs]
        )
        session.send(r.Untagged("OK", "moved UIDs", code))
    moved = [s for s, _ in pairs]
    session.send_expunged(selected.view.forget_pairs(moved))
    await session.announce_updates()
    session.tagged(cmd.tag, "OK", f"{_name(cmd)} completed")


SPECS: dict[type[Any], CommandSpec] = {
    c.Fetch: CommandSpec(fetch, SELECTED, expunge_after=False),
    c.Store: CommandSpec(store, SELECTED, expunge_after=False),
    c.Copy: CommandSpec(copy, SELECTED),
    c.Move: CommandSpec(move, SELECTED),
}
