"""What APPEND and REPLACE send after the mailbox name, read a line at a time (sans-IO).

The messages of an APPEND are never buffered: the protocol asks :func:`scan` what a line holds
each time it ends, and streams the literals. A line yields *items*, in order:

* :class:`AppendMessageInfo` — a message given as one literal (RFC 9051, RFC 6855 ``UTF8 (...)``);
  the literal ends the line;
* :class:`CatenateStart`, then :class:`CatenateUrl` and :class:`CatenateText` parts and
  :class:`CatenateEnd` — a message put together by CATENATE (RFC 4469 §5): ``CATENATE (URL
  "/INBOX;UIDVALIDITY=1/;UID=20" TEXT {42} ...)``; a TEXT literal ends the line, and the next
  line continues the list;
* :class:`AppendEndOfCommand`.

MULTIAPPEND (RFC 3502) is any number of messages of either kind; REPLACE (RFC 8508) takes one.
Where a line ends (after a literal) is kept in an :class:`AppendPosition` for the next line.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from pobox.imap.lexer import LiteralMarker, ParseError, PendingLiteral, Reader

__all__ = [
    "AppendContext",
    "AppendEndOfCommand",
    "AppendItem",
    "AppendMessageInfo",
    "AppendPosition",
    "CatenateEnd",
    "CatenateStart",
    "CatenateText",
    "CatenateUrl",
    "scan",
]


@dataclass(frozen=True, slots=True)
class AppendMessageInfo:
    """One message of an APPEND, known when its literal is announced."""

    tag: str
    mailbox: bytes
    flags: tuple[str, ...]
    internal_date: _dt.datetime | None
    marker: LiteralMarker
    utf8: bool  # inside ``UTF8 (~{n}...)`` (RFC 6855): a ")" follows the literal
    #: REPLACE (RFC 8508): the message to replace, digits or "*" (None: an APPEND)
    replace: str | None = None
    uid: bool = False  # UID REPLACE


@dataclass(frozen=True, slots=True)
class AppendContext:
    """The command the messages belong to."""

    tag: str
    mailbox: bytes
    replace: str | None = None  # REPLACE's message (digits or "*"); None for APPEND
    uid: bool = False


@dataclass(frozen=True, slots=True)
class CatenateStart:
    context: AppendContext
    flags: tuple[str, ...]
    internal_date: _dt.datetime | None


@dataclass(frozen=True, slots=True)
class CatenateUrl:
    url: bytes


@dataclass(frozen=True, slots=True)
class CatenateText:
    marker: LiteralMarker


@dataclass(frozen=True, slots=True)
class CatenateEnd:
    pass


@dataclass(frozen=True, slots=True)
class AppendEndOfCommand:
    pass


AppendItem = (
    AppendMessageInfo
    | CatenateStart
    | CatenateUrl
    | CatenateText
    | CatenateEnd
    | AppendEndOfCommand
)


@dataclass(frozen=True, slots=True)
class AppendPosition:
    """Where the command stands after the literal that ended a line."""

    context: AppendContext
    messages: int = 0  # messages begun so far
    in_catenate: bool = False  # after a TEXT literal: the CATENATE list goes on
    utf8: bool = False  # after ``UTF8 (~{n}``: a ")" comes first


def scan(r: Reader, at: AppendPosition) -> tuple[list[AppendItem], AppendPosition]:
    """The items from the reader's position to a pending literal or the end of the command.
    Raises :class:`ParseError` (or :class:`PendingLiteral` for a literal that is not a message
    or TEXT part, such as a URL sent as a literal: the caller decides)."""
    context = at.context
    items: list[AppendItem] = []
    messages = at.messages
    in_catenate = at.in_catenate
    first_part = False
    if at.utf8:
        r.expect(b")")
    while True:
        if in_catenate:
            if first_part and r.peek() == 0x29:
                raise r.fail("CATENATE needs at least one part")
            if r.try_expect(b")"):
                items.append(CatenateEnd())
                in_catenate = False
                continue
            if not first_part:
                r.sp()
            first_part = False
            if r.try_expect(b"URL "):
                items.append(CatenateUrl(r.astring("a URL")))
                continue
            if r.try_expect(b"TEXT "):
                try:
                    r.literal()
                except PendingLiteral as pending:
                    items.append(CatenateText(pending.marker))
                    return items, AppendPosition(context, messages, in_catenate=True)
                raise ParseError("a TEXT literal of CATENATE must end the line")
            raise r.fail("expected URL, TEXT or ')' in CATENATE")
        if r.at_end():
            if not messages:
                raise ParseError("expected a message")
            items.append(AppendEndOfCommand())
            return items, AppendPosition(context, messages)
        if messages and context.replace is not None:
            raise r.fail("REPLACE takes one message")
        r.sp()
        flags: tuple[str, ...] = ()
        date: _dt.datetime | None = None
        if r.peek() == 0x28:
            flags = r.flag_list()
            r.sp()
        if r.peek() == 0x22:
            date = r.date_time()
            r.sp()
        messages += 1
        if r.try_expect(b"CATENATE ("):
            items.append(CatenateStart(context, flags, date))
            in_catenate = first_part = True
            continue
        utf8 = r.try_expect(b"UTF8 (")
        try:
            r.literal()
        except PendingLiteral as pending:
            if utf8 and not pending.marker.binary:
                raise ParseError("UTF8 APPEND data must be a literal8") from None
            info = AppendMessageInfo(
                context.tag,
                context.mailbox,
                flags,
                date,
                pending.marker,
                utf8,
                context.replace,
                context.uid,
            )
            items.append(info)
            return items, AppendPosition(context, messages, utf8=utf8)
        raise ParseError("an APPEND message literal must end the line")


def continuation(line: bytes, at: AppendPosition) -> tuple[list[AppendItem], AppendPosition]:
    """The line after a message or TEXT literal. imapclient's multiappend() puts two spaces
    before each further message; Dovecot takes that, and so does pobox."""
    head = b")" if at.utf8 and line.startswith(b")") else b""
    rest = line[len(head) :]
    if not at.in_catenate and rest.startswith(b"  "):
        line = head + b" " + rest.lstrip(b" ")
    r = Reader([line], [])
    try:
        return scan(r, at)
    except PendingLiteral:
        raise ParseError("a URL after a TEXT literal must be a quoted string") from None
