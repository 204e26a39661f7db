"""IMAP command grammar: one framed command (lines + literals) → a typed command, sans-IO.

:func:`parse_command` is the entry point used by :mod:`pobox.imap.protocol`; it raises
:class:`CommandError` (carrying the tag when one could be read) and nothing else.
APPEND is special: the protocol calls :func:`classify_literal` when a literal is announced, to
learn whether that literal is an APPEND message (streamed, never buffered) or an ordinary
argument; :func:`parse_append_continuation` reads what follows each message (MULTIAPPEND).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pobox.imap import append_grammar, mutf7
from pobox.imap.acl_grammar import ACL_COMMANDS
from pobox.imap.append_grammar import (
    AppendContext,
    AppendEndOfCommand,
    AppendItem,
    AppendMessageInfo,
    AppendPosition,
)
from pobox.imap.commands import (
    Authenticate,
    Capability,
    Check,
    Close,
    Command,
    Compress,
    Copy,
    Create,
    Delete,
    Enable,
    Examine,
    Expunge,
    Id,
    Idle,
    List,
    Login,
    Logout,
    Lsub,
    Move,
    Namespace,
    Noop,
    Parameter,
    Rename,
    Select,
    StartTls,
    Status,
    Store,
    StoreMode,
    Subscribe,
    Unauthenticate,
    Unselect,
    Unsubscribe,
)
from pobox.imap.context_grammar import CONTEXT_COMMANDS
from pobox.imap.fetch_grammar import parse_fetch
from pobox.imap.lexer import (
    ParseError,
    PendingLiteral,
    Reader,
)
from pobox.imap.metadata_grammar import METADATA_COMMANDS, ListMetadata, parse_list_metadata
from pobox.imap.notify_grammar import NOTIFY_COMMANDS
from pobox.imap.quota_grammar import QUOTA_COMMANDS
from pobox.imap.search_grammar import parse_search, parse_sort, parse_thread
from pobox.imap.urlauth_grammar import URLAUTH_COMMANDS

__all__ = [
    "AppendEndOfCommand",
    "AppendMessageInfo",
    "AppendScan",
    "CommandError",
    "OrdinaryLiteral",
    "classify_literal",
    "command_tag",
    "complete_append",
    "decode_mailbox",
    "parse_append_continuation",
    "parse_command",
]


class CommandError(Exception):
    """A command that cannot be parsed; becomes ``tag BAD text`` (or ``* BAD`` without tag)."""

    def __init__(self, tag: str | None, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.tag = tag
        self.text = text
        self.code = code


# --------------------------------------------------------------------------- mailbox names


def _mailbox(r: Reader) -> bytes:
    raw = r.astring("a mailbox name")
    return b"INBOX" if raw.upper() == b"INBOX" else raw


def decode_mailbox(raw: bytes, *, utf8: bool) -> str:
    """Mailbox name bytes from a command → text.

    Only the name ``INBOX`` itself is case-insensitive (RFC 9051 §5.1); the grammar already
    normalised it, and ``inbox/child`` is left as the client wrote it. With ``utf8`` (UTF8=ACCEPT
    or IMAP4rev2 enabled) the bytes are UTF-8; otherwise modified UTF-7, but raw UTF-8 from
    clients that never encode is accepted too. Raises ``ValueError`` for undecodable names.
    """
    if utf8 or not raw.isascii():
        return raw.decode("utf-8")
    return mutf7.decode(raw)


# --------------------------------------------------------------------------- entry points


def command_tag(line: bytes) -> str | None:
    """The tag at the start of a command line, if it is a valid one."""
    r = Reader([line], [])
    try:
        tag = r.tag()
    except ParseError:
        return None
    return tag if r.peek() in (0x20, None) else None


def parse_command(lines: Sequence[bytes], literals: Sequence[bytes]) -> Command:
    r = Reader(lines, literals)
    tag: str | None = None
    try:
        tag = r.tag()
        if r.peek() not in (0x20, None):
            # the client's tag goes on with characters a tag cannot have (RFC 9051 §9): the
            # answer cannot carry it, so it is untagged (as Dovecot's)
            raise CommandError(None, r.fail("invalid tag").text)
        r.sp()
        name = r.word()
        uid = False
        if name == "UID":
            uid = True
            r.sp()
            name = r.word()
            if name == "REPLACE":
                raise ParseError("UID REPLACE needs a message literal")
            if name not in _UID_COMMANDS:
                raise ParseError(f"UID {name} is not a command")
        parser = _COMMANDS.get(name)
        if parser is None:
            if name in ("APPEND", "REPLACE"):
                raise ParseError(f"{name} needs a message literal")
            raise ParseError(f"unknown command {name}")
        return parser(r, tag, uid)
    except ParseError as exc:
        raise CommandError(tag, exc.text, exc.code) from None
    except PendingLiteral:  # pragma: no cover - the protocol never hands over such input
        raise CommandError(tag, "incomplete command") from None


# --------------------------------------------------------------------------- simple commands


def _no_args(cls: Callable[[str], Command]) -> Callable[[Reader, str, bool], Command]:
    def parse(r: Reader, tag: str, uid: bool) -> Command:
        r.end()
        return cls(tag)

    return parse


def _mailbox_only(cls: Callable[[str, bytes], Command]) -> Callable[[Reader, str, bool], Command]:
    def parse(r: Reader, tag: str, uid: bool) -> Command:
        r.sp()
        mailbox = _mailbox(r)
        r.end()
        return cls(tag, mailbox)

    return parse


def _authenticate(r: Reader, tag: str, uid: bool) -> Command:
    r.sp()
    mechanism = r.atom("a SASL mechanism").decode("ascii", "replace").upper()
    initial: bytes | None = None
    if r.try_sp():
        initial = r.atom("an initial response")
        if initial != b"=" and not _is_base64(initial):
            raise ParseError("initial response is not base64")
    r.end()
    return Authenticate(tag, mechanism, initial)


def _is_base64(data: bytes) -> bool:
    body = data.rstrip(b"=")
    return (
        len(data) % 4 == 0
        and len(data) - len(body) <= 2
        and all(
            c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/" for c in body
        )
    )


def _login(r: Reader, tag: str, uid: bool) -> Command:
    r.sp()
    userid = r.astring("a user name")
    r.sp()
    password = r.astring("a password")
    r.end()
    return Login(tag, userid, password)


def _compress(r: Reader, tag: str, uid: bool) -> Command:
    r.sp()
    mechanism = r.keyword("a compression mechanism")
    r.end()
    return Compress(tag, mechanism)


def _enable(r: Reader, tag: str, uid: bool) -> Command:
    caps = []
    while r.try_sp():
        caps.append(r.keyword("a capability"))
    if not caps:
        raise r.fail("expected a capability")
    r.end()
    return Enable(tag, tuple(caps))


def _select(cls: type[Select] | type[Examine]) -> Callable[[Reader, str, bool], Command]:
    def parse(r: Reader, tag: str, uid: bool) -> Command:
        r.sp()
        mailbox = _mailbox(r)
        params = r.parameters() if r.try_sp() else ()
        r.end()
        return cls(tag, mailbox, params)

    return parse


def _create(r: Reader, tag: str, uid: bool) -> Command:
    r.sp()
    mailbox = _mailbox(r)
    params = r.parameters() if r.try_sp() else ()
    r.end()
    return Create(tag, mailbox, params)


def _rename(r: Reader, tag: str, uid: bool) -> Command:
    r.sp()
    old = _mailbox(r)
    r.sp()
    new = _mailbox(r)
    params = r.parameters() if r.try_sp() else ()
    r.end()
    return Rename(tag, old, new, params)


def _list(r: Reader, tag: str, uid: bool) -> Command:
    r.sp()
    selection: tuple[str, ...] = ()
    extended = False
    if r.peek() == 0x28:
        selection = tuple(r.paren_list(lambda: r.keyword("a selection option"), allow_empty=True))
        extended = True
        r.sp()
    reference = r.astring("a reference name")
    r.sp()
    if r.peek() == 0x28:
        patterns = tuple(r.paren_list(r.list_mailbox))
        extended = True
    else:
        patterns = (r.list_mailbox(),)
    return_options: list[str] = []
    status_items: tuple[str, ...] | None = None
    metadata: ListMetadata | None = None
    if r.try_sp():
        r.expect(b"RETURN")
        r.sp()
        extended = True
        r.expect(b"(")
        while r.peek() != 0x29:
            if return_options or status_items is not None or metadata is not None:
                r.sp()
            option = r.keyword("a return option")
            if option == "STATUS":
                r.sp()
                status_items = tuple(r.paren_list(lambda: r.keyword("a status item")))
            elif option == "METADATA" and metadata is None:  # RFC 9590
                r.sp()
                metadata = parse_list_metadata(r)
            else:
                return_options.append(option)
        r.pos += 1
    r.end()
    return List(
        tag,
        reference=reference,
        patterns=patterns,
        selection=selection,
        return_options=tuple(return_options),
        status_items=status_items,
        extended=extended,
        metadata=metadata,
    )


def _lsub(r: Reader, tag: str, uid: bool) -> Command:
    r.sp()
    reference = r.astring("a reference name")
    r.sp()
    pattern = r.list_mailbox()
    r.end()
    return Lsub(tag, reference, pattern)


def _status(r: Reader, tag: str, uid: bool) -> Command:
    r.sp()
    mailbox = _mailbox(r)
    r.sp()
    items = tuple(r.paren_list(lambda: r.keyword("a status item")))
    r.end()
    return Status(tag, mailbox, items)


def _store(r: Reader, tag: str, uid: bool) -> Command:
    r.sp()
    seqs = r.sequence_set()
    r.sp()
    modifiers: tuple[Parameter, ...] = ()
    if r.peek() == 0x28:
        modifiers = r.parameters()
        r.sp()
    mode = StoreMode.REPLACE
    sign = r.peek()
    if sign in (0x2B, 0x2D):  # "+" or "-"
        mode = StoreMode(chr(sign))
        r.pos += 1
    item = r.word()
    silent = item.endswith(".SILENT")
    if silent:
        item = item[: -len(".SILENT")]
    if item != "FLAGS":
        raise ParseError(f"unknown STORE item {item}")
    r.sp()
    if r.peek() == 0x28:
        flags = r.flag_list()
    else:
        flags_list = [r.flag()]
        while r.try_sp():
            flags_list.append(r.flag())
        flags = tuple(flags_list)
    r.end()
    return Store(tag, uid, seqs, mode, silent, flags, modifiers)


def _copy_move(cls: type[Copy] | type[Move]) -> Callable[[Reader, str, bool], Command]:
    def parse(r: Reader, tag: str, uid: bool) -> Command:
        r.sp()
        seqs = r.sequence_set()
        r.sp()
        mailbox = _mailbox(r)
        r.end()
        return cls(tag, uid, seqs, mailbox)

    return parse


def _expunge(r: Reader, tag: str, uid: bool) -> Command:
    uid_set = None
    if uid:
        r.sp()
        uid_set = r.sequence_set()
    r.end()
    return Expunge(tag, uid_set)


def _id(r: Reader, tag: str, uid: bool) -> Command:
    r.sp()
    if r.try_nil():
        r.end()
        return Id(tag, None)

    def pair() -> tuple[str, str | None]:
        key = r.string().decode("utf-8", "replace")
        r.sp()
        value = r.nstring()
        return key, None if value is None else value.decode("utf-8", "replace")

    params = tuple(r.paren_list(pair, allow_empty=True))
    r.end()
    return Id(tag, params)


def _search(r: Reader, tag: str, uid: bool) -> Command:
    return parse_search(r, tag, uid)


def _sort(r: Reader, tag: str, uid: bool) -> Command:
    return parse_sort(r, tag, uid)


def _thread(r: Reader, tag: str, uid: bool) -> Command:
    return parse_thread(r, tag, uid)


def _fetch(r: Reader, tag: str, uid: bool) -> Command:
    return parse_fetch(r, tag, uid)


_COMMANDS: dict[str, Callable[[Reader, str, bool], Command]] = {
    "CAPABILITY": _no_args(Capability),
    "NOOP": _no_args(Noop),
    "LOGOUT": _no_args(Logout),
    "STARTTLS": _no_args(StartTls),
    "AUTHENTICATE": _authenticate,
    "LOGIN": _login,
    "ENABLE": _enable,
    "COMPRESS": _compress,
    "SELECT": _select(Select),
    "EXAMINE": _select(Examine),
    "CREATE": _create,
    "DELETE": _mailbox_only(Delete),
    "RENAME": _rename,
    "SUBSCRIBE": _mailbox_only(Subscribe),
    "UNSUBSCRIBE": _mailbox_only(Unsubscribe),
    "LIST": _list,
    "LSUB": _lsub,
    "NAMESPACE": _no_args(Namespace),
    "STATUS": _status,
    "IDLE": _no_args(Idle),
    "CHECK": _no_args(Check),
    "CLOSE": _no_args(Close),
    "UNSELECT": _no_args(Unselect),
    "UNAUTHENTICATE": _no_args(Unauthenticate),
    "EXPUNGE": _expunge,
    "SEARCH": _search,
    "SORT": _sort,
    "THREAD": _thread,
    "FETCH": _fetch,
    "STORE": _store,
    "COPY": _copy_move(Copy),
    "MOVE": _copy_move(Move),
    "ID": _id,
    **ACL_COMMANDS,
    **QUOTA_COMMANDS,
    **METADATA_COMMANDS,
    **CONTEXT_COMMANDS,
    **NOTIFY_COMMANDS,
    **URLAUTH_COMMANDS,
}
_UID_COMMANDS = frozenset({"COPY", "MOVE", "FETCH", "SEARCH", "SORT", "THREAD", "STORE", "EXPUNGE"})


# --------------------------------------------------------------------------- APPEND
# (the messages themselves: pobox.imap.append_grammar)


@dataclass(frozen=True, slots=True)
class OrdinaryLiteral:
    """The announced literal is an ordinary argument, to be buffered with the command."""


@dataclass(frozen=True, slots=True)
class AppendScan:
    """The announced literal belongs to APPEND or REPLACE: what the command holds up to it
    (ending with the message or TEXT literal), and where the next line goes on."""

    items: list[AppendItem]
    position: AppendPosition


def _append_start(r: Reader, tag: str, name: str) -> AppendPosition | None:
    """After the command name: the context of APPEND, REPLACE or UID REPLACE (RFC 8508:
    ``SP seq-number SP mailbox``), or None for any other command."""
    replace: str | None = None
    uid = False
    if name == "UID":
        if not r.try_expect(b" REPLACE "):
            return None
        r.pos -= 1
        name, uid = "REPLACE", True
    if name not in ("APPEND", "REPLACE"):
        return None
    r.sp()
    if name == "REPLACE":
        replace = "*" if r.try_expect(b"*") else str(r.nz_number())
        r.sp()
    return AppendPosition(AppendContext(tag, _mailbox(r), replace, uid))


def classify_literal(
    lines: Sequence[bytes], literals: Sequence[bytes]
) -> OrdinaryLiteral | AppendScan:
    """What the literal announced at the end of ``lines[-1]`` is. Raises :class:`CommandError`
    when an APPEND is malformed before its message literal."""
    r = Reader(lines, literals)
    tag: str | None = None
    try:
        tag = r.tag()
        r.sp()
        name = r.word()
        try:
            start = _append_start(r, tag, name)
        except PendingLiteral:
            return OrdinaryLiteral()  # the mailbox name is the literal
        if start is None:
            if name != "UID" and name not in _COMMANDS:
                # refuse before the client sends (possibly large) literal data
                raise ParseError(f"unknown command {name}")
            return OrdinaryLiteral()
        items, position = append_grammar.scan(r, start)
        return AppendScan(items, position)
    except ParseError as exc:
        raise CommandError(tag, exc.text, exc.code) from None
    except PendingLiteral:
        return OrdinaryLiteral()


def complete_append(lines: Sequence[bytes], literals: Sequence[bytes]) -> AppendScan | None:
    """A whole command without a message literal that is an APPEND or REPLACE all of whose
    messages are CATENATE lists of URLs; None for any other command."""
    r = Reader(lines, literals)
    tag: str | None = None
    try:
        tag = r.tag()
        if not r.try_sp():
            return None
        name = r.word()
        start = _append_start(r, tag, name)
        if start is None:
            return None
        items, position = append_grammar.scan(r, start)
        if not isinstance(items[-1], AppendEndOfCommand):  # pragma: no cover (no marker)
            raise ParseError("a message literal must end the line")
        return AppendScan(items, position)
    except ParseError as exc:
        if tag is not None and exc.text == "expected a message":
            raise CommandError(tag, f"{name} needs a message literal") from None
        raise CommandError(tag, exc.text, exc.code) from None
    except PendingLiteral:
        return None


def parse_append_continuation(line: bytes, at: AppendPosition) -> AppendScan:
    """The line after a message or TEXT literal: more of the CATENATE list, the next message of
    a MULTIAPPEND (RFC 3502), or the end of the command. Raises :class:`CommandError`."""
    try:
        items, position = append_grammar.continuation(line, at)
    except ParseError as exc:
        raise CommandError(at.context.tag, exc.text, exc.code) from None
    return AppendScan(items, position)
