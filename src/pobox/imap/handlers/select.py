"""SELECT, EXAMINE, CLOSE, UNSELECT, EXPUNGE / UID EXPUNGE and IDLE (RFC 9051, RFC 2177)."""

from __future__ import annotations

import bisect
from typing import Any

from pobox.errors import NotFound
from pobox.imap import commands as c
from pobox.imap import responses as r
from pobox.imap.handlers import condstore
from pobox.imap.objectid import mailbox_id
from pobox.imap.session import AUTH, SELECTED, CommandError, CommandSpec, ImapSession, Selected
from pobox.service.acl import Access
from pobox.service.index import DELETED_BIT
from pobox.service.view import MailboxView
from pobox.store.api import SYSTEM_FLAGS, Uid


async def _open_view(session: ImapSession, name: str) -> tuple[MailboxView, Access | None]:
    """The session's view of the named mailbox, over the process's shared index, and the
    rights the account has on it (None: its own mailbox).

    The mailbox row is read from the store every time (one point read): another process (a
    second worker, a PostgreSQL node, ``pobox deliver``) may have committed changes whose
    notification has not arrived yet, and a client that selects after another client's command
    completed must see its effect. The index catches up only when the row's HIGHESTMODSEQ says
    it is behind. Another account's mailbox needs the ``r`` right (RFC 4314 §4)."""
    account = session.require_account()
    index = session.service.index
    try:
        access = await session.service.acl.access(account, name, "r")
    except NotFound:
        raise CommandError(f"mailbox {name} does not exist", "NONEXISTENT") from None
    mailbox = access.mailbox
    try:
        view = await MailboxView.open(index, mailbox)
    except NotFound:
        raise CommandError(f"mailbox {name} does not exist", "NONEXISTENT") from None
    if view.mailbox.name != mailbox.name or view.mailbox.account_id != mailbox.account_id:
        view.close()  # renamed meanwhile
        raise CommandError(f"mailbox {name} does not exist", "NONEXISTENT")
    return view, None if access.own else access


def _permanent_flags(flags: tuple[str, ...], access: Access | None) -> tuple[str, ...]:
    """PERMANENTFLAGS names only the flags this user may change (RFC 4314 §5.1.1)."""
    if access is None:
        return (*flags, "\\*")
    allowed = tuple(f for f in flags if access.allowed_flags((f,)))
    return (*allowed, "\\*") if access.has("w") else allowed


async def _select(session: ImapSession, cmd: c.Select | c.Examine, read_only: bool) -> None:
    session.require_account()
    name = session.mailbox_name(cmd.mailbox)
    params = condstore.select_parameters(session, cmd)
    had_selection = session.selected is not None
    await session.select(None)  # a failed SELECT leaves no mailbox selected
    if had_selection:
        # RFC 7162 §3.2.11 (and RFC 9051): the previous mailbox's updates end here
        session.send(r.Untagged("OK", "previous mailbox closed", r.ResponseCode.plain("CLOSED")))
    if params.condstore:
        session.enable_condstore()  # RFC 7162 §3.1: SELECT (CONDSTORE) turns it on
    view, access = await _open_view(session, name)
    mailbox = view.mailbox
    if access is not None and not access.read_write:
        read_only = True  # RFC 4314 §5.2: none of the rights that change the mailbox
    selected = Selected(view, read_only, access=access)
    try:
        if len(view):
            # \Recent: the messages no session has seen yet become this one's (RFC 3501
            # §2.3.2); the store decides, so two sessions never both have a message as recent.
            # A read-only session sees them as \Recent without taking them (§6.3.2: EXAMINE
            # MUST NOT cause messages to lose \Recent): it only reads where the floor is.
            index = session.service.index
            if read_only:
                floor = await index.recent_floor(view.index)
            else:
                floor = await index.claim_recent(view.index, view.last_uid() + 1)
            uids = view.uids
            start = bisect.bisect_left(uids, floor, 0, len(view))
            if start < len(view):  # one range however many messages (pobox.imap.recent)
                selected.recent.add_range(uids[start], view.last_uid() + 1)
    except BaseException:
        view.close()
        raise
    selected.keywords = list(view.index.keywords_in_use())
    flags = (*SYSTEM_FLAGS, *selected.keywords)
    session.send(r.Flags(flags))
    permanent = () if read_only else _permanent_flags(flags, access)
    session.send(r.Untagged("OK", "flags permitted", r.ResponseCode.permanentflags(permanent)))
    session.send(r.exists(len(view)))
    if not session.rev2:
        session.send(r.recent(selected.recent.count(view.count_between)))
        first_unseen = view.first_unseen()
        if first_unseen is not None:
            session.send(
                r.Untagged("OK", "first unseen", r.ResponseCode.number("UNSEEN", first_unseen))
            )
    session.send(r.Untagged("OK", "UIDs valid", r.ResponseCode.uidvalidity(mailbox.uidvalidity)))
    session.send(
        r.Untagged("OK", "predicted next UID", r.ResponseCode.uidnext(view.mailbox.uidnext))
    )
    objectid = mailbox_id(mailbox.id, mailbox.uidvalidity)
    session.send(r.Untagged("OK", "mailbox id", r.ResponseCode.objectid("MAILBOXID", objectid)))
    if session.condstore:
        # the view's MODSEQ: every change up to it is in what this SELECT reports
        code = r.ResponseCode.number("HIGHESTMODSEQ", view.modseq)
        session.send(r.Untagged("OK", "highest", code))
    if session.rev2:
        attributes = (mailbox.special_use,) if mailbox.special_use else ()
        session.send(r.ListItem(attributes, "/", name if access is not None else mailbox.name))
    await session.select(selected)
    if params.qresync is not None:
        await condstore.qresync_select(session, selected, params.qresync)
    code = r.ResponseCode.plain("READ-ONLY" if read_only else "READ-WRITE")
    session.tagged(cmd.tag, "OK", f"{cmd.NAME} completed", code)


async def select(session: ImapSession, cmd: c.Select) -> None:
    await _select(session, cmd, read_only=False)


async def examine(session: ImapSession, cmd: c.Examine) -> None:
    await _select(session, cmd, read_only=True)


async def _expunge_deleted(session: ImapSession, uids: set[Uid] | None, announce: bool) -> None:
    selected = session.require_selected()
    if selected.read_only:
        raise CommandError("mailbox is read-only", "READ-ONLY")
    selected.require("e")  # RFC 4314 §4
    # current flags, including what other sessions did meanwhile: the shared index has them,
    # and a poll brings in what other workers or nodes committed before this command
    index = selected.view.index
    await session.service.index.poll(index)
    await index.sync()
    if uids is None:
        doomed = [
            Uid(uid)
            for uid, bits in zip(index.uids, index.flags, strict=True)
            if bits & DELETED_BIT
        ]
    else:
        doomed = [
            u
            for u in sorted(uids)
            if (pos := index.position(u)) is not None and index.flags[pos] & DELETED_BIT
        ]
    if not doomed:
        return
    await session.service.index.expunge(selected.mailbox_id, doomed)
    gone = selected.view.forget_pairs(doomed)
    if announce:
        session.send_expunged(gone)  # EXPUNGE each, or one VANISHED under QRESYNC


async def expunge(session: ImapSession, cmd: c.Expunge) -> None:
    session.require_selected()
    uids: set[Uid] | None = None
    if cmd.uid_set is not None:
        uids = {Uid(u) for u in session.resolve(cmd.uid_set, uid=True)}
    await session.announce_updates()
    await _expunge_deleted(session, uids, announce=True)
    await session.announce_updates()
    # (under QRESYNC, the OK carries HIGHESTMODSEQ when VANISHED was sent: ImapSession.tagged)
    session.tagged(cmd.tag, "OK", "EXPUNGE completed")


async def close(session: ImapSession, cmd: c.Close) -> None:
    selected = session.require_selected()
    # RFC 4314 §4: without the e right CLOSE closes and expunges nothing
    if not selected.read_only and selected.may("e"):
        await _expunge_deleted(session, None, announce=False)
    await session.select(None)
    session.tagged(cmd.tag, "OK", "CLOSE completed")


async def unselect(session: ImapSession, cmd: c.Unselect) -> None:
    session.require_selected()
    await session.select(None)
    session.tagged(cmd.tag, "OK", "UNSELECT completed")


async def idle(session: ImapSession, cmd: c.Idle) -> None:
    """RFC 2177: '+' first, then updates as they happen, until DONE."""
    session.send_raw(session.protocol.enter_idle())
    session.idle_tag = cmd.tag
    await session.announce_updates()


SPECS: dict[type[Any], CommandSpec] = {
    c.Select: CommandSpec(select, AUTH),
    c.Examine: CommandSpec(examine, AUTH),
    c.Expunge: CommandSpec(expunge, SELECTED),
    c.Close: CommandSpec(close, SELECTED),
    c.Unselect: CommandSpec(unselect, SELECTED),
    c.Idle: CommandSpec(idle, AUTH),
}
