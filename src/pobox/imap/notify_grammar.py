"""NOTIFY (RFC 5465 §8), sans-IO: ``NOTIFY NONE`` and ``NOTIFY SET [STATUS] event-groups``.

An event group is a mailbox filter and the events wanted for it. Filters: ``SELECTED``,
``SELECTED-DELAYED``, ``INBOXES``, ``PERSONAL``, ``SUBSCRIBED``, ``SUBTREE`` and ``MAILBOXES``
(the last two with one mailbox or a parenthesised list). Events are kept as the client spelled
them, with their canonical case when pobox knows them; an event name pobox does not know is kept
too (the handler answers ``NO [BADEVENT ...]``, RFC 5465 §5). What the grammar itself rules out
is BAD: MessageNew without MessageExpunge (or the reverse), FlagChange or AnnotationChange
without both, fetch attributes outside the selected filter, a selected filter given twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from pobox.imap.commands import Command, FetchAttribute
from pobox.imap.fetch_grammar import parse_fetch_att
from pobox.imap.lexer import ParseError, Reader

__all__ = ["EVENTS", "NOTIFY_COMMANDS", "EventGroup", "Notify"]

#: Every event RFC 5465 and RFC 5464 name, in their canonical spelling.
EVENTS = (
    "MessageNew",
    "MessageExpunge",
    "FlagChange",
    "AnnotationChange",
    "MailboxName",
    "SubscriptionChange",
    "MailboxMetadataChange",
    "ServerMetadataChange",
)
_CANONICAL = {e.upper(): e for e in EVENTS}
SELECTED_FILTERS = frozenset({"SELECTED", "SELECTED-DELAYED"})
_PLAIN_FILTERS = frozenset({"INBOXES", "PERSONAL", "SUBSCRIBED"})
_NAMED_FILTERS = frozenset({"SUBTREE", "MAILBOXES"})


@dataclass(frozen=True, slots=True)
class EventGroup:
    filter: str  # upper case: SELECTED, SELECTED-DELAYED, INBOXES, PERSONAL, ...
    mailboxes: tuple[bytes, ...]  # SUBTREE and MAILBOXES: the names as sent
    events: tuple[str, ...]  # () for NONE
    fetch: tuple[FetchAttribute, ...] | None = None  # MessageNew's fetch attributes


@dataclass(frozen=True, slots=True)
class Notify(Command):
    """``NOTIFY NONE`` (``groups`` None) or ``NOTIFY SET [STATUS] ...``."""

    NAME: ClassVar[str] = "NOTIFY"
    groups: tuple[EventGroup, ...] | None
    status: bool = False


def _mailboxes(r: Reader) -> tuple[bytes, ...]:
    if r.peek() == 0x28:
        return tuple(r.paren_list(lambda: r.astring("a mailbox name")))
    return (r.astring("a mailbox name"),)


def _group(r: Reader) -> EventGroup:
    r.expect(b"(")
    name = r.keyword("a mailbox filter")
    mailboxes: tuple[bytes, ...] = ()
    if name in _NAMED_FILTERS:
        r.sp()
        mailboxes = _mailboxes(r)
    elif name not in SELECTED_FILTERS and name not in _PLAIN_FILTERS:
        raise ParseError(f"unknown NOTIFY mailbox filter {name}")
    r.sp()
    events: list[str] = []
    fetch: tuple[FetchAttribute, ...] | None = None
    if r.peek() == 0x28:
        r.expect(b"(")
        while True:
            word = r.atom("an event").decode("ascii", "replace")
            event = _CANONICAL.get(word.upper(), word)
            if event in events:
                raise ParseError(f"event {event} is given twice")
            events.append(event)
            if event == "MessageNew" and r.peek() == 0x20 and r.line[r.pos + 1 : r.pos + 2] == b"(":
                if name not in SELECTED_FILTERS:
                    raise ParseError("fetch attributes are only for the selected mailbox")
                r.sp()
                fetch = tuple(r.paren_list(lambda: parse_fetch_att(r)))
            if r.peek() == 0x29:
                r.pos += 1
                break
            r.sp()
    elif r.keyword("NONE or a list of events") != "NONE":
        raise ParseError("expected NONE or a list of events")
    r.expect(b")")
    if name in SELECTED_FILTERS:
        _check(events)
    return EventGroup(name, mailboxes, tuple(events), fetch)


def _check(events: list[str]) -> None:
    """RFC 5465 §5: for the selected mailbox, MessageNew and MessageExpunge come together
    and FlagChange and AnnotationChange need both: the client numbers its messages by them.
    Other mailboxes get STATUS, not message numbers, so any event may stand alone there
    (as Dovecot accepts, and imaptest's notify script expects)."""
    new, gone = "MessageNew" in events, "MessageExpunge" in events
    if new != gone:
        raise ParseError("MessageNew and MessageExpunge must be given together")
    for event in ("FlagChange", "AnnotationChange"):
        if event in events and not new:
            raise ParseError(f"{event} needs MessageNew and MessageExpunge")


def _notify(r: Reader, tag: str, uid: bool) -> Command:
    r.sp()
    word = r.keyword("SET or NONE")
    if word == "NONE":
        r.end()
        return Notify(tag, None)
    if word != "SET":
        raise ParseError("NOTIFY takes SET or NONE")
    r.sp()
    status = r.try_expect(b"STATUS ")
    groups = [_group(r)]
    while r.try_sp():
        groups.append(_group(r))
    r.end()
    if sum(1 for g in groups if g.filter in SELECTED_FILTERS) > 1:
        raise ParseError("the selected mailbox filter is given twice")
    return Notify(tag, tuple(groups), status)


NOTIFY_COMMANDS: dict[str, Callable[[Reader, str, bool], Command]] = {"NOTIFY": _notify}
