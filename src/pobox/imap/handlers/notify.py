"""NOTIFY (RFC 5465): what changes in which mailboxes the client hears of, without asking.

After ``NOTIFY SET`` the session hears of changes through the process's
:class:`~pobox.service.notify.ChangeHub` (one store listener for the whole process; nothing is
polled) and, for the selected mailbox, through its view as before. It sends them as soon as it
may: while it waits for the next command (IDLE or not) and at the end of every command.

* The selected mailbox (filter ``SELECTED``; ``SELECTED-DELAYED`` keeps expunges until a command
  that may announce them): EXISTS, EXPUNGE and FETCH FLAGS as IMAP has them, but without waiting
  for a command; MessageNew's fetch attributes are sent for each new message, as a UID FETCH
  would (tagged response left out).
* Other mailboxes: ``* STATUS``: MESSAGES, UIDNEXT, UIDVALIDITY and UNSEEN after new messages,
  MESSAGES, UIDNEXT and UNSEEN after expunges, UNSEEN after a change of flags (only with
  FlagChange); HIGHESTMODSEQ too once CONDSTORE is on (the items Dovecot sends).
  ``NOTIFY SET STATUS`` first sends the STATUS of every mailbox it covers (RFC 5465 §3.1).
* MailboxName: ``* LIST`` for a mailbox made, renamed (``("OLDNAME" (old))``) or deleted
  (``\\NonExistent``); SubscriptionChange: ``* LIST`` with or without ``\\Subscribed``.

* MailboxMetadataChange and ServerMetadataChange: ``* METADATA mailbox entry ...`` (RFC 5464
  §4.4.2, names without values) when an entry of a covered mailbox, or of the server, is set or
  removed in this process (another account's /private entries are not told).

Mailboxes of others (``Shared/owner/...``) count when the account may see them (the l right)
and read their status (r), as for LIST and STATUS. AnnotationChange (per-message annotations,
RFC 5257, which pobox does not have) is refused with ``NO [BADEVENT (...)]`` naming the events
pobox sends.
When the client stops reading, so that more than :data:`OVERFLOW_BYTES` wait to be written,
the session sends ``* OK [NOTIFICATIONOVERFLOW]`` and notifies nothing more until the next
NOTIFY SET (RFC 5465 §5.8).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from pobox.errors import PoboxError
from pobox.imap import commands as c
from pobox.imap import responses as r
from pobox.imap.notify_grammar import SELECTED_FILTERS, EventGroup, Notify
from pobox.imap.sequences import SequenceSet
from pobox.imap.session import AUTH, CommandError, CommandSpec, ImapSession
from pobox.service import notify as hub
from pobox.service.mailboxes import Mailboxes
from pobox.store.api import DELIMITER, AccountId, Mailbox, MailboxId

log = logging.getLogger("pobox.imap")

#: The events pobox sends (BADEVENT names them).
SUPPORTED = (
    "MessageNew",
    "MessageExpunge",
    "FlagChange",
    "MailboxName",
    "SubscriptionChange",
    "MailboxMetadataChange",
    "ServerMetadataChange",
)
#: Octets waiting for a client that stops reading before notifications stop (overflow).
OVERFLOW_BYTES = 1 << 20
#: The STATUS items sent for new messages, for expunges, for flag changes (HIGHESTMODSEQ only
#: once CONDSTORE is on)
_NEW = ("MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ")
_GONE = ("MESSAGES", "UIDNEXT", "UNSEEN", "HIGHESTMODSEQ")
_FLAGS = ("UNSEEN", "HIGHESTMODSEQ")


def _initial(events: frozenset[str]) -> tuple[str, ...]:
    """The items of NOTIFY SET STATUS's first STATUS of a mailbox: what its events will change
    (MessageExpunge: MESSAGES; MessageNew: also UIDNEXT, UIDVALIDITY, UNSEEN; FlagChange:
    UIDVALIDITY and HIGHESTMODSEQ), as Dovecot sends them."""
    wanted: set[str] = set()
    if "MessageExpunge" in events:
        wanted.add("MESSAGES")
    if "MessageNew" in events:
        wanted.update(("MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ"))
    if "FlagChange" in events:
        wanted.update(("UIDVALIDITY", "HIGHESTMODSEQ"))
    return tuple(k for k in _NEW if k in wanted)


def _watches(events: frozenset[str]) -> bool:
    """A group whose mailboxes get STATUS: one of the message events (RFC 5465 §5; outside the
    selected mailbox each may stand alone)."""
    return any(e in events for e in ("MessageNew", "MessageExpunge", "FlagChange"))


@dataclasses.dataclass(slots=True)
class _Group:
    filter: str
    names: tuple[str, ...]
    events: frozenset[str]
    fetch: tuple[c.FetchAttribute, ...] | None


class NotifyState:
    """One session's NOTIFY SET."""

    def __init__(self, session: ImapSession, selected: _Group | None, others: list[_Group]):
        self.session = session
        self.selected = selected
        self.others = others
        self.names: dict[str, MailboxId] = {}  # every mailbox the account sees, by its name
        self.ids: set[MailboxId] = set()  # the same mailboxes' ids
        self.subscriptions: set[str] = set()
        self.watched: dict[MailboxId, tuple[str, dict[str, int]]] = {}
        self.pending: set[MailboxId] = set()
        self.subscriptions_changed = False
        self.metadata: list[tuple[MailboxId | None, tuple[str, ...]]] = []
        self.busy = False
        self.handle = 0
        self.cares_for_new = any(g.events for g in others)

    # ---- which group a mailbox falls in -----------------------------------------------------
    def group_for(self, name: str) -> _Group | None:
        """The first group (other than the selected filter) that covers *name*."""
        shared = self.session.service.acl.is_shared_name(name)
        for group in self.others:
            match group.filter:
                case "INBOXES":
                    hit = name == "INBOX"
                case "PERSONAL":
                    hit = not shared
                case "SUBSCRIBED":
                    hit = name in self.subscriptions
                case "SUBTREE":
                    hit = any(name == n or name.startswith(n + DELIMITER) for n in group.names)
                case _:  # MAILBOXES
                    hit = name in group.names
            if hit:
                return group
        return None

    # ---- callbacks from the hub (synchronous: only note and wake) ---------------------------
    def on_mailbox(self, mailbox_id: MailboxId, new: bool) -> None:
        """*new*: a mailbox of this account the process had not seen (made elsewhere)."""
        if (
            mailbox_id in self.watched
            or (new and self.cares_for_new and mailbox_id not in self.ids)
            or (mailbox_id in self.ids and self._wants_names())  # renamed or deleted
        ):
            self.pending.add(mailbox_id)
            self.session.wake.set()

    def on_subscriptions(self, account_id: AccountId) -> None:
        if any("SubscriptionChange" in g.events for g in self.others):
            self.subscriptions_changed = True
            self.session.wake.set()

    def on_metadata(
        self, changer: AccountId, mailbox_id: MailboxId | None, entries: tuple[str, ...]
    ) -> None:
        """METADATA set or removed (RFC 5464); another account's /private entries are its own."""
        account = self.session.account
        if account is None:
            return
        if changer != account.id:
            entries = tuple(e for e in entries if not e.lower().startswith("/private/"))
        if entries:
            self.metadata.append((mailbox_id, entries))
            self.session.wake.set()

    def _wants_names(self) -> bool:
        return any("MailboxName" in g.events for g in self.others)

    # ---- reading the account -----------------------------------------------------------------
    def _service(self) -> Mailboxes:
        service = self.session.service
        return Mailboxes(service.store, service.acl, service.quota)

    async def _listing(self) -> dict[str, Mailbox]:
        account = self.session.require_account()
        self.subscriptions = set(await self.session.service.store.list_subscriptions(account.id))
        visible = await self._service().visible(account)
        hub.hub(self.session.service.store).learn((m.id, m.account_id) for m in visible.values())
        return visible

    async def _values(self, name: str) -> dict[str, int] | None:
        try:
            mailbox, status = await self._service().status(self.session.require_account(), name)
        except PoboxError:
            return None  # gone, or no r right
        values = {
            "MESSAGES": status.messages,
            "UIDNEXT": status.uidnext,
            "UIDVALIDITY": mailbox.uidvalidity,
            "UNSEEN": status.unseen,
            "HIGHESTMODSEQ": status.highest_modseq,
        }
        return values

    def _items(
        self, shown: tuple[str, ...], group: _Group, values: dict[str, int], *, first: bool = False
    ) -> tuple[tuple[str, int], ...]:
        """The STATUS items of *shown*: HIGHESTMODSEQ once CONDSTORE is on, and in the first
        STATUS of a group that asked for FlagChange (as Dovecot sends them)."""
        modseq = self.session.condstore or (first and "FlagChange" in group.events)
        return tuple(
            (k, values[k]) for k in shown if k in values and (k != "HIGHESTMODSEQ" or modseq)
        )

    def _selected_id(self) -> MailboxId | None:
        selected = self.session.selected
        return None if selected is None else selected.mailbox_id

    async def start(self, send_status: bool) -> None:
        visible = await self._listing()
        self.names = {name: m.id for name, m in visible.items()}
        self.ids = set(self.names.values())
        for name in sorted(visible):
            group = self.group_for(name)
            if group is None or not _watches(group.events):
                continue
            values = await self._values(name)
            if values is None:
                continue
            mailbox = visible[name]
            self.watched[mailbox.id] = (name, values)
            if send_status and mailbox.id != self._selected_id():
                items = self._items(_initial(group.events), group, values, first=True)
                self.session.send(r.StatusResponse(name, items))

    # ---- sending -----------------------------------------------------------------------------
    async def deliver(self) -> None:
        """Send what changed in other mailboxes and in the mailbox list."""
        if self.busy or not (self.pending or self.subscriptions_changed or self.metadata):
            return
        session = self.session
        if session.writer.transport.get_write_buffer_size() > OVERFLOW_BYTES:
            overflow(session)
            return
        self.busy = True
        try:
            pending, self.pending = self.pending, set()
            self.subscriptions_changed = False
            before_subs = set(self.subscriptions)
            old = {mid: name for name, mid in self.names.items()}
            visible = await self._listing()
            new = {m.id: name for name, m in visible.items()}
            self._mailbox_names(old, new)
            self._subscriptions(before_subs)
            self.names = {name: m.id for name, m in visible.items()}
            self.ids = set(self.names.values())
            await self._statuses(pending, new)
            self._metadata(new)
        finally:
            self.busy = False

    def _mailbox_names(self, old: dict[MailboxId, str], new: dict[MailboxId, str]) -> None:
        send = self.session.send
        for mid in sorted(old.keys() - new.keys(), key=old.__getitem__):
            group = self.group_for(old[mid])
            if group is not None and "MailboxName" in group.events:
                send(r.ListItem(("\\NonExistent",), DELIMITER, old[mid]))
        for mid in sorted(new.keys(), key=new.__getitem__):
            name = new[mid]
            group = self.group_for(name)
            if group is None or "MailboxName" not in group.events:
                continue
            if mid not in old:
                send(r.ListItem((), DELIMITER, name))
            elif old[mid] != name:
                extra = b'("OLDNAME" (' + r.mailbox_name(old[mid], utf8=self.session.utf8) + b"))"
                send(r.ListItem((), DELIMITER, name, extra=extra))

    def _metadata(self, names: dict[MailboxId, str]) -> None:
        """``* METADATA mailbox entry ...`` (RFC 5464 §4.4.2: names, no values)."""
        changes, self.metadata = self.metadata, []
        selected = self._selected_id()
        for mailbox_id, entries in changes:
            if mailbox_id is None:
                groups = [*self.others, *((self.selected,) if self.selected else ())]
                if any("ServerMetadataChange" in g.events for g in groups):
                    self.session.send(_MetadataNames("", entries))
                continue
            name = names.get(mailbox_id)
            if name is None:
                continue
            group = self.selected if mailbox_id == selected else self.group_for(name)
            if group is not None and "MailboxMetadataChange" in group.events:
                self.session.send(_MetadataNames(name, entries))

    def _subscriptions(self, before: set[str]) -> None:
        for name in sorted(self.subscriptions ^ before):
            group = self.group_for(name)
            if group is None or "SubscriptionChange" not in group.events:
                continue
            attributes = ("\\Subscribed",) if name in self.subscriptions else ()
            self.session.send(r.ListItem(attributes, DELIMITER, name))

    async def _statuses(self, pending: set[MailboxId], names: dict[MailboxId, str]) -> None:
        """STATUS for the watched mailboxes that changed in a way their group asked about."""
        selected = self._selected_id()
        # what is watched follows the mailbox list: new and renamed mailboxes, gone ones
        for mid in list(self.watched):
            if mid not in names:
                del self.watched[mid]
        for mid, name in sorted(names.items(), key=lambda item: item[1]):
            group = self.group_for(name)
            watching = group is not None and _watches(group.events)
            if not watching:
                self.watched.pop(mid, None)
                continue
            assert group is not None
            known = self.watched.get(mid)
            if known is not None and mid not in pending and known[0] == name:
                continue
            values = await self._values(name)
            if values is None:
                self.watched.pop(mid, None)
                continue
            self.watched[mid] = (name, values)
            if known is None or mid == selected:
                continue
            before = known[1]
            shown: tuple[str, ...]
            arrived = values["UIDNEXT"] - before["UIDNEXT"]
            if "MessageNew" in group.events and arrived:  # (as Dovecot reports it)
                shown = _NEW
            elif (
                "MessageExpunge" in group.events
                and values["MESSAGES"] < before["MESSAGES"] + arrived  # fewer than arrivals explain
            ):
                shown = _GONE
            elif "FlagChange" in group.events and (
                values["UNSEEN"] != before["UNSEEN"]
                or values.get("HIGHESTMODSEQ") != before.get("HIGHESTMODSEQ")
            ):
                shown = _FLAGS
            else:
                continue
            items = self._items(shown, group, values)
            self.session.send(r.StatusResponse(name, items))

    async def new_messages(self, last_uid: int) -> None:
        """MessageNew's fetch attributes for the selected mailbox's messages above *last_uid*."""
        group = self.selected
        selected = self.session.selected
        if group is None or group.fetch is None or selected is None or self.busy:
            return
        if selected.view.last_uid() <= last_uid:
            return
        from pobox.imap.handlers.messages import fetch

        cmd = c.Fetch(
            "*",
            uid=True,
            sequence_set=SequenceSet.parse(f"{last_uid + 1}:*"),
            attributes=group.fetch,
        )
        session: Any = self.session
        self.busy = True
        session.tagged = _untagged_only  # the FETCH is the client's event, not a command
        try:
            await fetch(self.session, cmd)
        except (CommandError, PoboxError) as exc:  # a message went meanwhile: no event for it
            log.info("NOTIFY MessageNew fetch failed: %s", exc)
        finally:
            del session.tagged
            self.busy = False

    def stop(self) -> None:
        if self.handle:
            hub.hub(self.session.service.store).unwatch(self.handle)
            self.handle = 0


@dataclasses.dataclass(frozen=True, slots=True)
class _MetadataNames:
    """The unsolicited ``* METADATA mailbox entry *(SP entry)`` of RFC 5464 §4.4.2."""

    mailbox: str
    entries: tuple[str, ...]

    def render(self, *, utf8: bool = False) -> bytes:
        names = b" ".join(r.astring(e.encode("utf-8")) for e in self.entries)
        return b"* METADATA " + r.mailbox_name(self.mailbox, utf8=utf8) + b" " + names + b"\r\n"


def _untagged_only(*args: Any, **kwargs: Any) -> None:
    return None


def overflow(session: ImapSession) -> None:
    """RFC 5465 §5.8: too much to tell; the client must look for itself (NOTIFY is off)."""
    state = session.notify
    if isinstance(state, NotifyState):
        state.stop()
    session.notify = None
    code = r.ResponseCode.plain("NOTIFICATIONOVERFLOW")
    session.send(r.Untagged("OK", "too many notifications: NOTIFY is off", code))


def _current(session: ImapSession) -> NotifyState | None:
    """The session's NOTIFY, if any (ended once the session has no account: UNAUTHENTICATE)."""
    state = session.notify
    if not isinstance(state, NotifyState):
        return None
    if session.account is None:
        close(session)
        return None
    return state


async def on_wake(session: ImapSession) -> None:
    """Something changed while the session waits for a command (not in IDLE)."""
    state = _current(session)
    if state is None:
        session.wake.clear()
        return
    group = state.selected
    if session.selected is not None and group is not None and group.events:
        await session.announce_updates(expunge=group.filter == "SELECTED")
    else:
        session.wake.clear()
        await _deliver(state)


async def after_announce(session: ImapSession, last_uid: int) -> None:
    """Called by :meth:`ImapSession.announce_updates` once the selected mailbox is told."""
    state = _current(session)
    if state is not None:
        await state.new_messages(last_uid)
        await _deliver(state)


async def _deliver(state: NotifyState) -> None:
    try:
        await state.deliver()
    except PoboxError as exc:  # the store failed: the next change tries again
        log.warning("NOTIFY delivery failed: %s", exc)


def _decode(session: ImapSession, group: EventGroup) -> _Group:
    names = tuple(session.mailbox_name(raw) for raw in group.mailboxes)
    return _Group(group.filter, names, frozenset(group.events), group.fetch)


async def notify(session: ImapSession, cmd: Notify) -> None:
    account = session.require_account()
    old = session.notify
    if cmd.groups is None:  # NOTIFY NONE
        if isinstance(old, NotifyState):
            old.stop()
        session.notify = None
        await session.announce_updates()
        session.tagged(cmd.tag, "OK", "NOTIFY completed")
        return
    unsupported = [e for g in cmd.groups for e in g.events if e not in SUPPORTED]
    if unsupported:
        code = r.ResponseCode("BADEVENT", b"(" + " ".join(SUPPORTED).encode("ascii") + b")")
        session.tagged(cmd.tag, "NO", f"{unsupported[0]} is not supported", code)
        return
    groups = [_decode(session, g) for g in cmd.groups]
    selected = next((g for g in groups if g.filter in SELECTED_FILTERS), None)
    others = [g for g in groups if g.filter not in SELECTED_FILTERS]
    if isinstance(old, NotifyState):
        old.stop()
    session.notify = None
    state = NotifyState(session, selected, others)
    try:
        await state.start(cmd.status)
    except PoboxError as exc:
        raise CommandError(str(exc)) from None
    changes = hub.hub(session.service.store)
    state.handle = changes.watch(account.id, state.on_mailbox, state.on_subscriptions)
    changes.watch_metadata(state.handle, state.on_metadata)
    session.notify = state
    await session.announce_updates()
    session.tagged(cmd.tag, "OK", "NOTIFY completed")


def close(session: ImapSession) -> None:
    """The session ends: stop watching."""
    state = session.notify
    if isinstance(state, NotifyState):
        state.stop()
    session.notify = None


SPECS: dict[type[Any], CommandSpec] = {Notify: CommandSpec(notify, AUTH)}
