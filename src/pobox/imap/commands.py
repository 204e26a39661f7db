"""Typed IMAP commands (RFC 9051, RFC 3501 and the extensions pobox parses).

Every value here is a frozen, slotted dataclass produced by :mod:`pobox.imap.grammar`.
Conventions:

* ``tag`` is the client's tag as text (tags are 7-bit).
* Mailbox names are the raw bytes the client sent (modified UTF-7, or UTF-8 once UTF8=ACCEPT /
  IMAP4rev2 is enabled), except that every case variant of ``INBOX`` is normalised to
  ``b"INBOX"``; decode them with :func:`pobox.imap.grammar.decode_mailbox`.
* Keywords (command verbs, option and item names, fetch attribute names) are upper-cased
  ``str``; flags keep the client's spelling except that system flags are canonicalised
  (``\\seen`` → ``\\Seen``).
* Strings whose charset the protocol does not define (search values, login credentials) are
  ``bytes``.
* Extension parameters (SELECT ``(CONDSTORE)``, FETCH ``(CHANGEDSINCE 5)``, STORE
  ``(UNCHANGEDSINCE 7)``, CREATE ``(USE (\\Drafts))``) are parsed generically into
  :class:`Parameter` values so extensions need no grammar change.
"""

from __future__ import annotations

import datetime as _dt
import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from pobox.imap.sequences import SequenceSet

if TYPE_CHECKING:
    from pobox.imap.metadata_grammar import ListMetadata

# --------------------------------------------------------------------------- parameters

ExtValue = bytes | tuple["ExtValue", ...]


@dataclass(frozen=True, slots=True)
class Parameter:
    """``name [SP value]`` from RFC 4466 ``tagged-ext``; values are raw tokens or nested tuples."""

    name: str
    value: ExtValue | None = None


def find_parameter(params: tuple[Parameter, ...], name: str) -> Parameter | None:
    for p in params:
        if p.name == name:
            return p
    return None


# --------------------------------------------------------------------------- search keys


@dataclass(frozen=True, slots=True)
class SearchAll:
    pass


@dataclass(frozen=True, slots=True)
class SearchFlag:
    """ANSWERED/DELETED/DRAFT/FLAGGED/SEEN/RECENT, KEYWORD and their UN-/OLD forms."""

    flag: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class SearchField:
    """BCC, CC, FROM, SUBJECT, TO: substring of that field."""

    field: str
    value: bytes


@dataclass(frozen=True, slots=True)
class SearchHeader:
    name: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class SearchBody:
    value: bytes


@dataclass(frozen=True, slots=True)
class SearchText:
    value: bytes


@dataclass(frozen=True, slots=True)
class SearchDate:
    """BEFORE/ON/SINCE (internal date) or SENTBEFORE/SENTON/SENTSINCE (``sent=True``)."""

    relation: str  # "BEFORE" | "ON" | "SINCE"
    day: _dt.date
    sent: bool = False
    saved: bool = False  # SAVEDBEFORE/SAVEDON/SAVEDSINCE (RFC 8514)


@dataclass(frozen=True, slots=True)
class SearchObjectId:
    """EMAILID / THREADID objectid (RFC 8474 §7)."""

    kind: str  # "EMAILID" | "THREADID"
    objectid: str


@dataclass(frozen=True, slots=True)
class SearchSaveDateSupported:
    """SAVEDATESUPPORTED (RFC 8514): every message, where the mailbox keeps save dates."""


@dataclass(frozen=True, slots=True)
class SearchSize:
    larger: bool  # LARGER n (True) or SMALLER n (False)
    size: int


@dataclass(frozen=True, slots=True)
class SearchAge:
    """OLDER / YOUNGER n (RFC 5032 WITHIN), in seconds."""

    older: bool
    seconds: int


@dataclass(frozen=True, slots=True)
class SearchSequence:
    """A bare sequence set: message numbers, even inside UID SEARCH."""

    sequence_set: SequenceSet


@dataclass(frozen=True, slots=True)
class SearchUid:
    sequence_set: SequenceSet


@dataclass(frozen=True, slots=True)
class SearchModSeq:
    """MODSEQ [entry-name entry-type] n (RFC 7162)."""

    modseq: int
    entry_name: bytes | None = None
    entry_type: str | None = None


@dataclass(frozen=True, slots=True)
class SearchNot:
    key: SearchKey


@dataclass(frozen=True, slots=True)
class SearchOr:
    left: SearchKey
    right: SearchKey


@dataclass(frozen=True, slots=True)
class SearchAnd:
    """A parenthesised list, or several top-level keys."""

    keys: tuple[SearchKey, ...]


SearchKey = (
    SearchAll
    | SearchFlag
    | SearchField
    | SearchHeader
    | SearchBody
    | SearchText
    | SearchDate
    | SearchSize
    | SearchAge
    | SearchSequence
    | SearchUid
    | SearchModSeq
    | SearchSaveDateSupported
    | SearchObjectId
    | SearchNot
    | SearchOr
    | SearchAnd
)

# --------------------------------------------------------------------------- fetch attributes


@dataclass(frozen=True, slots=True)
class FetchSimple:
    """ENVELOPE FLAGS INTERNALDATE RFC822 RFC822.HEADER RFC822.SIZE RFC822.TEXT BODY
    BODYSTRUCTURE UID MODSEQ, and the tolerated pre-rev1 RFC822.PEEK / RFC822.TEXT.PEEK."""

    name: str


@dataclass(frozen=True, slots=True)
class FetchBody:
    """``BODY[section]<partial>`` / ``BODY.PEEK[...]``.

    ``section`` is the text between the brackets exactly as the client wrote it; the response
    must echo it (clients compare it textually). ``text`` is HEADER, HEADER.FIELDS,
    HEADER.FIELDS.NOT, MIME, TEXT or None (the whole part).
    """

    peek: bool
    part: tuple[int, ...]
    text: str | None
    fields: tuple[bytes, ...]
    partial: tuple[int, int] | None
    section: bytes

    def response_name(self) -> bytes:
        origin = b"" if self.partial is None else b"<%d>" % self.partial[0]
        return b"BODY[" + self.section + b"]" + origin


@dataclass(frozen=True, slots=True)
class FetchBinary:
    """``BINARY[part]<partial>`` / ``BINARY.PEEK[...]`` (RFC 3516)."""

    peek: bool
    part: tuple[int, ...]
    partial: tuple[int, int] | None
    section: bytes

    def response_name(self) -> bytes:
        origin = b"" if self.partial is None else b"<%d>" % self.partial[0]
        return b"BINARY[" + self.section + b"]" + origin


@dataclass(frozen=True, slots=True)
class FetchBinarySize:
    part: tuple[int, ...]
    section: bytes

    def response_name(self) -> bytes:
        return b"BINARY.SIZE[" + self.section + b"]"


FetchAttribute = FetchSimple | FetchBody | FetchBinary | FetchBinarySize

FETCH_MACROS: dict[str, tuple[str, ...]] = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}

# --------------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class Command:
    NAME: ClassVar[str] = ""
    tag: str


@dataclass(frozen=True, slots=True)
class Capability(Command):
    NAME: ClassVar[str] = "CAPABILITY"


@dataclass(frozen=True, slots=True)
class Noop(Command):
    NAME: ClassVar[str] = "NOOP"


@dataclass(frozen=True, slots=True)
class Logout(Command):
    NAME: ClassVar[str] = "LOGOUT"


@dataclass(frozen=True, slots=True)
class StartTls(Command):
    NAME: ClassVar[str] = "STARTTLS"


@dataclass(frozen=True, slots=True)
class Authenticate(Command):
    """``initial_response`` is the SASL-IR text as sent (base64, or ``b"="`` for empty)."""

    NAME: ClassVar[str] = "AUTHENTICATE"
    mechanism: str
    initial_response: bytes | None = None


@dataclass(frozen=True, slots=True)
class Login(Command):
    NAME: ClassVar[str] = "LOGIN"
    userid: bytes
    password: bytes

    def __repr__(self) -> str:  # never put the password in a log line
        return f"Login(tag={self.tag!r}, userid={self.userid!r}, password=<hidden>)"


@dataclass(frozen=True, slots=True)
class Compress(Command):
    """RFC 4978: ``COMPRESS DEFLATE``."""

    NAME: ClassVar[str] = "COMPRESS"
    mechanism: str


@dataclass(frozen=True, slots=True)
class Enable(Command):
    NAME: ClassVar[str] = "ENABLE"
    capabilities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Select(Command):
    NAME: ClassVar[str] = "SELECT"
    mailbox: bytes
    parameters: tuple[Parameter, ...] = ()


@dataclass(frozen=True, slots=True)
class Examine(Command):
    NAME: ClassVar[str] = "EXAMINE"
    mailbox: bytes
    parameters: tuple[Parameter, ...] = ()


@dataclass(frozen=True, slots=True)
class Create(Command):
    NAME: ClassVar[str] = "CREATE"
    mailbox: bytes
    parameters: tuple[Parameter, ...] = ()

    @property
    def special_use(self) -> tuple[str, ...]:
        """The flags of ``(USE (\\Drafts ...))`` (RFC 6154), canonical case."""
        p = find_parameter(self.parameters, "USE")
        if p is None or not isinstance(p.value, tuple):
            return ()
        return tuple(v.decode("ascii", "replace") for v in p.value if isinstance(v, bytes))


@dataclass(frozen=True, slots=True)
class Delete(Command):
    NAME: ClassVar[str] = "DELETE"
    mailbox: bytes


@dataclass(frozen=True, slots=True)
class Rename(Command):
    NAME: ClassVar[str] = "RENAME"
    old: bytes
    new: bytes
    parameters: tuple[Parameter, ...] = ()


@dataclass(frozen=True, slots=True)
class Subscribe(Command):
    NAME: ClassVar[str] = "SUBSCRIBE"
    mailbox: bytes


@dataclass(frozen=True, slots=True)
class Unsubscribe(Command):
    NAME: ClassVar[str] = "UNSUBSCRIBE"
    mailbox: bytes


@dataclass(frozen=True, slots=True)
class List(Command):
    """LIST, with LIST-EXTENDED (RFC 5258) selection and return options.

    ``status_items`` is set by ``RETURN (STATUS (...))`` (RFC 5819). ``extended`` tells whether
    the client used any LIST-EXTENDED syntax (then the reply follows RFC 5258 rules).
    """

    NAME: ClassVar[str] = "LIST"
    reference: bytes
    patterns: tuple[bytes, ...]
    selection: tuple[str, ...] = ()
    return_options: tuple[str, ...] = ()
    status_items: tuple[str, ...] | None = None
    extended: bool = False
    #: ``RETURN (METADATA (...))`` (RFC 9590)
    metadata: ListMetadata | None = None


@dataclass(frozen=True, slots=True)
class Lsub(Command):
    NAME: ClassVar[str] = "LSUB"
    reference: bytes
    pattern: bytes


@dataclass(frozen=True, slots=True)
class Namespace(Command):
    NAME: ClassVar[str] = "NAMESPACE"


@dataclass(frozen=True, slots=True)
class Status(Command):
    """Items are upper-cased as sent; unknown names are kept for the session to judge."""

    NAME: ClassVar[str] = "STATUS"
    mailbox: bytes
    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Idle(Command):
    NAME: ClassVar[str] = "IDLE"


@dataclass(frozen=True, slots=True)
class Check(Command):
    NAME: ClassVar[str] = "CHECK"


@dataclass(frozen=True, slots=True)
class Close(Command):
    NAME: ClassVar[str] = "CLOSE"


@dataclass(frozen=True, slots=True)
class Unselect(Command):
    NAME: ClassVar[str] = "UNSELECT"


@dataclass(frozen=True, slots=True)
class Unauthenticate(Command):
    """RFC 8437: back to the not authenticated state."""

    NAME: ClassVar[str] = "UNAUTHENTICATE"


@dataclass(frozen=True, slots=True)
class Expunge(Command):
    """EXPUNGE, or UID EXPUNGE when ``uid_set`` is given (RFC 4315 / RFC 9051)."""

    NAME: ClassVar[str] = "EXPUNGE"
    uid_set: SequenceSet | None = None


@dataclass(frozen=True, slots=True)
class Search(Command):
    """``return_options`` is None for a plain SEARCH, a tuple (maybe empty) after RETURN."""

    NAME: ClassVar[str] = "SEARCH"
    uid: bool
    key: SearchKey
    charset: str | None = None
    return_options: tuple[str, ...] | None = None
    #: RETURN (PARTIAL first:last), RFC 9394: signed, smaller magnitude first
    partial: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class Sort(Command):
    """SORT / UID SORT (RFC 5256): ``criteria`` are (key, reverse) pairs, keys upper-case;
    ``return_options`` as for Search (ESORT, RFC 5267)."""

    NAME: ClassVar[str] = "SORT"
    uid: bool
    criteria: tuple[tuple[str, bool], ...]
    charset: str
    key: SearchKey
    return_options: tuple[str, ...] | None = None
    partial: tuple[int, int] | None = None  # RETURN (PARTIAL first:last), RFC 9394


@dataclass(frozen=True, slots=True)
class Thread(Command):
    """THREAD / UID THREAD (RFC 5256): ``algorithm`` upper-case."""

    NAME: ClassVar[str] = "THREAD"
    uid: bool
    algorithm: str
    charset: str
    key: SearchKey


@dataclass(frozen=True, slots=True)
class Fetch(Command):
    """FETCH / UID FETCH. Macros (ALL, FAST, FULL) are expanded into ``attributes``."""

    NAME: ClassVar[str] = "FETCH"
    uid: bool
    sequence_set: SequenceSet
    attributes: tuple[FetchAttribute, ...]
    modifiers: tuple[Parameter, ...] = ()


class StoreMode(enum.Enum):
    REPLACE = ""
    ADD = "+"
    REMOVE = "-"


@dataclass(frozen=True, slots=True)
class Store(Command):
    NAME: ClassVar[str] = "STORE"
    uid: bool
    sequence_set: SequenceSet
    mode: StoreMode
    silent: bool
    flags: tuple[str, ...]
    modifiers: tuple[Parameter, ...] = ()

    @property
    def unchanged_since(self) -> int | None:
        p = find_parameter(self.modifiers, "UNCHANGEDSINCE")
        if p is None or not isinstance(p.value, bytes) or not p.value.isdigit():
            return None
        return int(p.value)


@dataclass(frozen=True, slots=True)
class Copy(Command):
    NAME: ClassVar[str] = "COPY"
    uid: bool
    sequence_set: SequenceSet
    mailbox: bytes


@dataclass(frozen=True, slots=True)
class Move(Command):
    NAME: ClassVar[str] = "MOVE"
    uid: bool
    sequence_set: SequenceSet
    mailbox: bytes


@dataclass(frozen=True, slots=True)
class Id(Command):
    """RFC 2971: ``parameters`` is None for ``ID NIL``."""

    NAME: ClassVar[str] = "ID"
    parameters: tuple[tuple[str, str | None], ...] | None


# APPEND is not a CommandReceived: its messages stream as AppendStart/AppendData/AppendEnd
# events (see pobox.imap.protocol), so that a message never has to be held in memory.
