"""CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB, NAMESPACE, STATUS.

RFC 9051 §6.3 and RFC 3501 §6.3, with LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819),
SPECIAL-USE and CREATE-SPECIAL-USE (RFC 6154), CHILDREN (RFC 3348), NAMESPACE (RFC 2342) and
STATUS=SIZE (RFC 8438). The rules about names and hierarchy live in
:mod:`pobox.service.mailboxes`; this module only maps IMAP words to it and back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pobox.imap import commands as c
from pobox.imap import responses as r
from pobox.imap.grammar import decode_mailbox
from pobox.imap.handlers.metadata import MetadataResponse
from pobox.imap.handlers.metadata import for_list as metadata_for_list
from pobox.imap.metadata_grammar import ListMetadata
from pobox.imap.objectid import mailbox_id
from pobox.imap.session import AUTH, CommandError, CommandSpec, ImapSession
from pobox.service.acl import ALL_RIGHTS, shown
from pobox.service.mailboxes import BadSpecialUse, HasChildren, ListEntry, Mailboxes
from pobox.service.mailboxes import canonical_pattern as _canonical_pattern
from pobox.store.api import DELIMITER, Account, Mailbox, MailboxId, MailboxStatus

SELECTION_OPTIONS = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
RETURN_OPTIONS = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "MYRIGHTS"})
#: STATUS items in both revisions; RECENT is rev1 only (RFC 9051 removed it).
STATUS_ITEMS = frozenset(
    {
        "MESSAGES",
        "UIDNEXT",
        "UIDVALIDITY",
        "UNSEEN",
        "DELETED",
        "DELETED-STORAGE",
        "SIZE",
        "APPENDLIMIT",
        "HIGHESTMODSEQ",
        "MAILBOXID",
    }
)


def _service(session: ImapSession) -> Mailboxes:
    return Mailboxes(session.service.store, session.service.acl, session.service.quota)


async def _finish(
    session: ImapSession, tag: str, name: str, code: r.ResponseCode | None = None
) -> None:
    await session.announce_updates()
    session.tagged(tag, "OK", f"{name} completed", code)


# --------------------------------------------------------------------------- CREATE/DELETE/RENAME


async def create(session: ImapSession, cmd: c.Create) -> None:
    account = session.require_account()
    name = session.mailbox_name(cmd.mailbox, code="CANNOT")
    for parameter in cmd.parameters:
        if parameter.name != "USE":
            raise CommandError(f"unknown CREATE parameter {parameter.name}", status="BAD")
    try:
        mailbox = await _service(session).create(account, name, cmd.special_use)
    except BadSpecialUse as exc:
        raise CommandError(str(exc), "USEATTR") from None
    await session.announce_updates()
    # RFC 8474 §4.1: the new mailbox's MAILBOXID in the tagged OK
    objectid = mailbox_id(mailbox.id, mailbox.uidvalidity)
    session.tagged(
        cmd.tag, "OK", "CREATE completed", r.ResponseCode.objectid("MAILBOXID", objectid)
    )


async def delete(session: ImapSession, cmd: c.Delete) -> None:
    account = session.require_account()
    name = session.mailbox_name(cmd.mailbox)
    try:
        mailbox = await _service(session).delete(account, name)
    except HasChildren as exc:
        raise CommandError(str(exc), "HASCHILDREN") from None
    if session.selected is not None and session.selected.mailbox_id == mailbox.id:
        await session.select(None)
        session.send(r.Untagged("OK", "mailbox deleted and closed", r.ResponseCode("CLOSED")))
    await _finish(session, cmd.tag, "DELETE")


async def rename(session: ImapSession, cmd: c.Rename) -> None:
    account = session.require_account()
    if cmd.parameters:
        raise CommandError("RENAME takes no parameters", status="BAD")
    old = session.mailbox_name(cmd.old)
    new = session.mailbox_name(cmd.new, code="CANNOT")
    await _service(session).rename(account, old, new)
    await _finish(session, cmd.tag, "RENAME")


async def subscribe(session: ImapSession, cmd: c.Subscribe) -> None:
    account = session.require_account()
    await _service(session).subscribe(account, session.mailbox_name(cmd.mailbox, code="CANNOT"))
    await _finish(session, cmd.tag, "SUBSCRIBE")


async def unsubscribe(session: ImapSession, cmd: c.Unsubscribe) -> None:
    account = session.require_account()
    await _service(session).unsubscribe(account, session.mailbox_name(cmd.mailbox))
    await _finish(session, cmd.tag, "UNSUBSCRIBE")


# --------------------------------------------------------------------------- LIST / LSUB


def _text(session: ImapSession, raw: bytes) -> str | None:
    """A reference or pattern; None when it is not valid modified UTF-7 (or UTF-8): it matches
    no mailbox, so LIST answers nothing for it (as Dovecot does), never BAD."""
    try:
        return decode_mailbox(raw, utf8=session.utf8)
    except ValueError:
        return None


def _status_items(session: ImapSession, items: tuple[str, ...]) -> tuple[str, ...]:
    if not items:
        raise CommandError("STATUS needs at least one item", status="BAD")
    allowed = STATUS_ITEMS if session.rev2 else STATUS_ITEMS | {"RECENT"}
    unknown = [item for item in items if item not in allowed]
    if unknown:
        raise CommandError(f"unknown STATUS item {unknown[0]}", status="BAD")
    if "HIGHESTMODSEQ" in items:
        session.enable_condstore()  # RFC 7162 §3.1: a CONDSTORE-enabling command
    return tuple(dict.fromkeys(items))


def _status_values(
    session: ImapSession, items: tuple[str, ...], mailbox: Mailbox, status: MailboxStatus
) -> tuple[tuple[str, int | str], ...]:
    values: dict[str, int | str] = {
        "MESSAGES": status.messages,
        "UIDNEXT": status.uidnext,
        "UIDVALIDITY": mailbox.uidvalidity,
        "UNSEEN": status.unseen,
        "DELETED": status.deleted,
        "DELETED-STORAGE": status.deleted_size,  # RFC 9208 §4.2: the octets EXPUNGE frees
        "SIZE": status.size,
        "RECENT": status.recent + _recent_here(session, mailbox),
        "APPENDLIMIT": session.config.imap.max_literal,
        "HIGHESTMODSEQ": status.highest_modseq,
        "MAILBOXID": mailbox_id(mailbox.id, mailbox.uidvalidity),
    }
    return tuple((item, values[item]) for item in items)


def _recent_here(session: ImapSession, mailbox: Mailbox) -> int:
    """\\Recent messages this session holds: claimed at SELECT, so no longer in the store's
    count (RFC 3501 §2.3.2: a message is recent in exactly one session)."""
    selected = session.selected
    if selected is None or selected.mailbox_id != mailbox.id or selected.read_only:
        return 0
    return session.recent_count()


def _attributes(entry: ListEntry, *, subscribed: bool, children: bool) -> tuple[str, ...]:
    """A name that is not a mailbox is ``\\NonExistent`` alone (RFC 5258 §3: it implies
    ``\\Noselect``), with ``\\HasChildren``/``\\HasNoChildren`` only when RETURN (CHILDREN)
    asked for them (as Dovecot answers); mailboxes always get one of the two."""
    attributes: list[str] = []
    exists = entry.mailbox is not None
    if not exists:
        attributes.append("\\NonExistent")
    if subscribed and entry.subscribed:
        attributes.append("\\Subscribed")
    if exists or children:
        attributes.append("\\HasChildren" if entry.has_children else "\\HasNoChildren")
    if entry.special_use is not None:
        attributes.append(entry.special_use)
    return tuple(attributes)


async def list_(session: ImapSession, cmd: c.List) -> None:
    account = session.require_account()
    selection = set(cmd.selection)
    unknown = selection - SELECTION_OPTIONS
    if unknown:
        raise CommandError(f"unknown LIST selection option {sorted(unknown)[0]}", status="BAD")
    if "RECURSIVEMATCH" in selection and "SUBSCRIBED" not in selection:
        raise CommandError("RECURSIVEMATCH needs the SUBSCRIBED selection option", status="BAD")
    returns = set(cmd.return_options)
    unknown = returns - RETURN_OPTIONS
    if unknown:
        raise CommandError(f"unknown LIST return option {sorted(unknown)[0]}", status="BAD")
    status_items = None
    if cmd.status_items is not None:
        status_items = _status_items(session, cmd.status_items)

    reference = _text(session, cmd.reference)
    decoded = [_text(session, p) for p in cmd.patterns]
    if "" in decoded:
        # RFC 9051 §6.3.9: an empty pattern asks for the delimiter and the root name
        session.send(r.ListItem(("\\Noselect",), DELIMITER, ""))
    patterns: list[str] = []
    if reference is not None:
        patterns = [_canonical_pattern(reference, p) for p in decoded if p]
    entries: list[ListEntry] = []
    if patterns:
        entries = await _service(session).matching(
            account,
            patterns,
            subscribed_only="SUBSCRIBED" in selection,
            special_use_only="SPECIAL-USE" in selection,
            recursive_match="RECURSIVEMATCH" in selection,
        )
    show_subscribed = "SUBSCRIBED" in selection or "SUBSCRIBED" in returns
    metadata, metadata_code = None, None
    if cmd.metadata is not None:  # RFC 9590: one read for every mailbox listed
        metadata, metadata_code = await _list_metadata(session, account, cmd.metadata, entries)
    for entry in entries:
        extra = b'("CHILDINFO" ("SUBSCRIBED"))' if entry.childinfo else b""
        attributes = _attributes(entry, subscribed=show_subscribed, children="CHILDREN" in returns)
        session.send(r.ListItem(attributes, DELIMITER, entry.name, extra=extra))
        if entry.mailbox is None:
            continue
        if metadata is not None and metadata.get(entry.mailbox.id):
            # nothing when MAXSIZE left every value out: a METADATA response lists one at least
            session.send(MetadataResponse(entry.name, metadata[entry.mailbox.id]))
        rights = ALL_RIGHTS
        if entry.mailbox.account_id != account.id:
            rights = await session.service.acl.rights_of(account, entry.mailbox)
        if status_items is not None and "r" in rights:
            # RFC 5819: one STATUS after the LIST of each selectable mailbox (that the user
            # may read: RFC 4314 §4)
            status = await session.service.store.mailbox_status(entry.mailbox.id)
            values = _status_values(session, status_items, entry.mailbox, status)
            session.send(r.StatusResponse(entry.name, values))
        if "MYRIGHTS" in returns:
            # RFC 8440 §3: the rights on each mailbox listed
            session.send(r.MyRightsResponse(entry.name, shown(rights)))
    await _finish(session, cmd.tag, "LIST", metadata_code)


async def _list_metadata(
    session: ImapSession, account: Account, request: ListMetadata, entries: list[ListEntry]
) -> tuple[dict[MailboxId, Sequence[tuple[str, bytes | None]]], r.ResponseCode | None]:
    listed: list[tuple[Mailbox, str]] = []
    for entry in entries:
        if entry.mailbox is None:
            continue
        rights = ALL_RIGHTS
        if entry.mailbox.account_id != account.id:
            rights = await session.service.acl.rights_of(account, entry.mailbox)
        listed.append((entry.mailbox, rights))
    return await metadata_for_list(session, account, request, listed)


async def lsub(session: ImapSession, cmd: c.Lsub) -> None:
    """RFC 3501 §6.3.9. RFC 9051 deprecates LSUB (Appendix E) but a server that also
    advertises IMAP4rev1 keeps it, so it works after ENABLE IMAP4rev2 too."""
    account = session.require_account()
    reference = _text(session, cmd.reference)
    pattern = _text(session, cmd.pattern)
    if pattern == "":
        session.send(r.ListItem(("\\Noselect",), DELIMITER, "", kind="LSUB"))
    elif pattern is not None and reference is not None:
        found = await _service(session).lsub(account, _canonical_pattern(reference, pattern))
        for name, selectable in found:
            attributes = () if selectable else ("\\Noselect",)
            session.send(r.ListItem(attributes, DELIMITER, name, kind="LSUB"))
    await _finish(session, cmd.tag, "LSUB")


# --------------------------------------------------------------------------- NAMESPACE / STATUS


async def namespace(session: ImapSession, cmd: c.Namespace) -> None:
    # other accounts' shared mailboxes are named by their owner: RFC 2342's "other users'
    # namespace" (docs/decisions/shared-folders.md)
    other = ((session.service.acl.prefix + DELIMITER, DELIMITER),)
    session.send(r.NamespaceResponse(((("", DELIMITER),)), other, None))
    await _finish(session, cmd.tag, "NAMESPACE")


async def status(session: ImapSession, cmd: c.Status) -> None:
    account = session.require_account()
    name = session.mailbox_name(cmd.mailbox)
    items = _status_items(session, cmd.items)
    mailbox, current = await _service(session).status(account, name)
    shown_name = mailbox.name if mailbox.account_id == account.id else name
    session.send(r.StatusResponse(shown_name, _status_values(session, items, mailbox, current)))
    await _finish(session, cmd.tag, "STATUS")


SPECS: dict[type[Any], CommandSpec] = {
    c.Create: CommandSpec(create, AUTH),
    c.Delete: CommandSpec(delete, AUTH),
    c.Rename: CommandSpec(rename, AUTH),
    c.Subscribe: CommandSpec(subscribe, AUTH),
    c.Unsubscribe: CommandSpec(unsubscribe, AUTH),
    c.List: CommandSpec(list_, AUTH),
    c.Lsub: CommandSpec(lsub, AUTH),
    c.Namespace: CommandSpec(namespace, AUTH),
    c.Status: CommandSpec(status, AUTH),
}
