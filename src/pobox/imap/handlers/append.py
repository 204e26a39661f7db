"""APPEND (RFC 9051 §6.3.12, RFC 3502 MULTIAPPEND, RFC 4315 APPENDUID, RFC 6855 UTF8).

The protocol streams each message as AppendStart / AppendData* events and ends the command with
AppendEnd; the message bytes go straight to a store spool (the page cache, on the event loop),
never into memory whole; the store fsyncs the spool just before its commit. Nothing is visible
until every message is stored; the OK comes after the commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from pobox.errors import NotFound, PoboxError
from pobox.imap import responses as r
from pobox.imap.fetch import render_kept
from pobox.imap.handlers.catenate import CatenateError, copy_url
from pobox.imap.protocol import AppendAborted, AppendData, AppendEnd, AppendStart, CatenatePart
from pobox.imap.sequences import SequenceSet
from pobox.imap.session import AUTH, CommandError, ImapSession, error_code
from pobox.service.acl import Access
from pobox.service.content import IncomingMessage, describe
from pobox.store.api import Mailbox, MailboxId, NewMessage, Uid


@dataclass
class _Pending:
    incoming: IncomingMessage
    flags: frozenset[str]
    internal_date: Any
    written: int = 0  # octets so far (CATENATE: the parts add up, RFC 4469 §5 TOOBIG)


@dataclass
class AppendState:
    tag: str
    mailbox: Mailbox | None = None
    #: the rights on another account's mailbox (None: the account's own)
    access: Access | None = None
    messages: list[_Pending] = field(default_factory=list)
    current: _Pending | None = None
    error: tuple[str, str, str | None] | None = None  # (status, text, code)
    #: APPEND, REPLACE or UID REPLACE (RFC 8508)
    command: str = "APPEND"
    #: REPLACE: the message it replaces, in the selected mailbox
    replaces: tuple[MailboxId, Uid] | None = None

    async def abort(self) -> None:
        pending = [*self.messages, *([self.current] if self.current else [])]
        self.messages.clear()
        self.current = None
        for item in pending:
            await asyncio.to_thread(item.incoming.discard)


async def _start(session: ImapSession, event: AppendStart) -> None:
    state: AppendState = session.append
    if state is None or state.tag != event.tag:
        state = AppendState(event.tag, command=event.command)
        session.append = state
    if state.error is None:
        try:
            if session.state not in AUTH:
                raise CommandError(f"{state.command} is not allowed before login", status="BAD")
            if event.replace is not None:
                state.replaces = _replaced(session, event)
            account = session.require_account()
            name = session.mailbox_name(event.mailbox)
            acl = session.service.acl
            if acl.is_shared_name(name):
                # another account's mailbox: the i right (RFC 4314 §4), every message
                try:
                    state.access = await acl.access(account, name, "i")
                except NotFound:
                    raise CommandError(f"mailbox {name} does not exist", "TRYCREATE") from None
                state.mailbox = state.access.mailbox
            elif state.mailbox is None or state.mailbox.name != name:
                # always the store's row: an index this process holds may be of a mailbox that
                # another worker deleted (and maybe created again under the same name) before
                # its notification arrived here
                mailbox = await session.service.store.get_mailbox(account.id, name)
                if mailbox is None:
                    raise CommandError(f"mailbox {name} does not exist", "TRYCREATE")
                state.mailbox = mailbox
        except CommandError as exc:
            state.error = (exc.status, exc.text, exc.code)
        except PoboxError as exc:
            text, code = error_code(exc)
            state.error = ("NO", text, code)
    if state.error is not None:
        if event.sync:
            status, text, code = state.error
            session.append = None
            await state.abort()
            session.send_raw(session.protocol.reject_literal(text, code, status))
        return
    flags = frozenset(f for f in event.flags if f.lower() != "\\recent")
    if state.access is not None:  # only the flags this user may set there (RFC 4314 §4)
        flags = state.access.allowed_flags(flags)
    if state.current is not None:  # the previous message of this MULTIAPPEND is complete
        state.messages.append(state.current)
        state.current = None
    # creating the spool file and writing the literal into it stay on the event loop (page
    # cache writes, cheaper than a thread hop each); only the fsync goes to a thread (_end)
    spool = session.service.store.new_spool()
    # a literal8 may carry binary parts: stored base64-encoded (docs/decisions/binary-content.md)
    incoming = IncomingMessage(spool, binary=event.binary)
    state.current = _Pending(incoming, flags, event.internal_date)
    if event.sync:
        session.send_raw(session.protocol.accept_literal())


def _replaced(session: ImapSession, event: AppendStart) -> tuple[MailboxId, Uid]:
    """RFC 8508 §3: the message REPLACE names in the selected mailbox, which the client must
    be allowed to expunge (RFC 4314: t and e; §3.5 of RFC 8508)."""
    assert event.replace is not None
    selected = session.selected
    if selected is None:
        raise CommandError(f"{event.command} needs a selected mailbox", status="BAD")
    uids = session.resolve(SequenceSet.parse(event.replace), uid=event.uid)
    if not uids:
        if event.replace == "*":
            raise CommandError("the mailbox is empty: no message to replace", status="BAD")
        raise CommandError("no message with that UID to replace")
    if selected.read_only:
        raise CommandError("mailbox is read-only", "READ-ONLY")
    if not (selected.may("t") and selected.may("e")):
        raise CommandError("no right to expunge messages of the selected mailbox", "NOPERM")
    return selected.mailbox_id, Uid(uids[-1])


async def _part(session: ImapSession, event: CatenatePart) -> None:
    """A part of a CATENATE message (RFC 4469 §5): a URL is copied at once; a TEXT literal's
    octets follow as AppendData. A synchronizing TEXT literal is refused when the command has
    already failed (the client then sends no data)."""
    state: AppendState | None = session.append
    if state is None:
        return
    current = state.current
    if event.url is not None:
        if state.error is None and current is not None:
            limit = session.config.imap.max_literal
            try:
                current.written = await copy_url(
                    session, current.incoming, event.url, current.written, limit
                )
            except CatenateError as exc:
                state.error = ("NO", exc.text, exc.code)
            except OSError as exc:
                state.error = ("NO", f"cannot store the message: {exc.strerror}", "SERVERBUG")
        return
    if not event.sync:
        return
    if state.error is not None:
        status, text, code = state.error
        session.append = None
        await state.abort()
        session.send_raw(session.protocol.reject_literal(text, code, status))
        return
    session.send_raw(session.protocol.accept_literal())


async def _data(session: ImapSession, event: AppendData) -> None:
    state: AppendState | None = session.append
    if state is None or state.current is None or state.error is not None:
        return
    current = state.current
    current.written += len(event.data)
    limit = session.config.imap.max_literal
    if current.written > limit:
        state.error = ("NO", f"the message would be larger than {limit} octets", "TOOBIG")
        return
    try:
        state.current.incoming.write(event.data)
    except PoboxError as exc:
        text, code = error_code(exc)
        state.error = ("NO", text, code)
        state.current = None
    except OSError as exc:
        state.error = ("NO", f"cannot store the message: {exc.strerror}", "SERVERBUG")
        state.current = None


async def _end(session: ImapSession, event: AppendEnd) -> None:
    state: AppendState | None = session.append
    session.append = None
    if state is None:
        session.tagged(event.tag, "BAD", "APPEND without a message")
        return
    if state.replaces is not None and state.error is None and len(state.messages) > 1:
        state.error = ("BAD", "REPLACE takes one message", None)
    if state.current is not None:
        state.messages.append(state.current)
        state.current = None
    if state.error is not None:
        await state.abort()
        status, text, code = state.error
        session.tagged(event.tag, status, text, r.ResponseCode.plain(code) if code else None)
        return
    mailbox = state.mailbox
    assert mailbox is not None
    index = session.service.index
    quota = session.service.quota
    uids: list[Uid] = []
    try:
        # the quota of the mailbox's account (its owner's, for a shared one: RFC 9208 §3)
        limits = await quota.current_limits(mailbox.account_id)
        ready = []
        for item in state.messages:
            # whole, parsed here; the store fsyncs the file in its writer's turn before the
            # commit (one hand-over to a thread for the APPEND instead of two)
            item.incoming.complete()
            ready.append(_finish(item))
        state.messages.clear()
        if state.replaces is not None:  # REPLACE: both in one transaction (RFC 8508 §3.4)
            src, old = state.replaces
            meta, _ = await index.replace(mailbox.id, ready[0], src, old, quota=limits)
            metas = [meta]
        elif len(ready) == 1 and _claims_recent(session, mailbox.id):
            # into the selected mailbox: this session is the first to be told of the message,
            # so the append claims its \Recent in the same commit (no second one to claim it)
            meta, first = await index.append_claiming(mailbox.id, ready[0], quota=limits)
            assert session.selected is not None
            session.selected.claimed = (first, meta.uid + 1)
            metas = [meta]
        elif len(ready) == 1:
            metas = [await index.append(mailbox.id, ready[0], quota=limits)]
        else:  # MULTIAPPEND: one transaction, all or nothing (RFC 3502 §6.3.11)
            metas = await index.append_many(mailbox.id, ready, quota=limits)
        uids.extend(meta.uid for meta in metas)
    except PoboxError as exc:
        await state.abort()
        text, code = error_code(exc)
        if session.selected is not None:  # e.g. the expunge that failed a REPLACE
            await session.announce_updates()
        session.tagged(event.tag, "NO", text, r.ResponseCode.plain(code) if code else None)
        return
    await quota.after_write(mailbox.account_id, limits, (sum(m.size for m in metas), len(metas)))
    appenduid = r.ResponseCode.appenduid(mailbox.uidvalidity, uids)
    if state.replaces is not None:
        # RFC 8508 §3.3: APPENDUID in an untagged OK, then the EXPUNGE (VANISHED under
        # QRESYNC) of the old message and, into the selected mailbox, the new one's EXISTS
        session.send(r.Untagged("OK", "Replacement Message ready", appenduid))
        await session.announce_updates()
        session.tagged(event.tag, "OK", f"{state.command} completed")
        return
    if session.selected is not None:
        await session.announce_updates()
    session.tagged(event.tag, "OK", "APPEND completed", appenduid)


def _claims_recent(session: ImapSession, mailbox_id: MailboxId) -> bool:
    """Whether an APPEND into *mailbox_id* claims \\Recent: it is the session's selected
    mailbox, selected read-write (EXAMINE never claims: RFC 3501 §6.3.2)."""
    selected = session.selected
    return selected is not None and selected.mailbox_id == mailbox_id and not selected.read_only


def _finish(item: _Pending) -> NewMessage:
    """The complete message parsed once (on the event loop: a thread would hold the GIL as
    long and add two switches), with its ENVELOPE and BODYSTRUCTURE rendered once from that
    parse and kept with the message (as Dovecot's cache file keeps them)."""
    parsed = item.incoming.parse()
    message = describe(
        item.incoming.spool, parsed, flags=item.flags, internal_date=item.internal_date
    )
    return dataclasses.replace(message, rendered=render_kept(parsed))


async def _aborted(session: ImapSession, event: AppendAborted) -> None:
    state: AppendState | None = session.append
    session.append = None
    if state is not None:
        await state.abort()
    code = r.ResponseCode.plain(event.code) if event.code else None
    session.send(r.Tagged(event.tag, "BAD", event.text, code))


async def append_event(
    session: ImapSession,
    event: AppendStart | CatenatePart | AppendData | AppendEnd | AppendAborted,
) -> None:
    match event:
        case AppendStart():
            await _start(session, event)
        case CatenatePart():
            await _part(session, event)
        case AppendData():
            await _data(session, event)
        case AppendEnd():
            await _end(session, event)
        case AppendAborted():
            await _aborted(session, event)


async def abort(session: ImapSession) -> None:
    state: AppendState | None = session.append
    session.append = None
    if state is not None:
        with contextlib.suppress(Exception):
            await state.abort()


SPECS: dict[type[Any], Any] = {}
