"""The storage interface every backend implements (SQLite now, PostgreSQL later).

The store speaks mail, not IMAP: accounts, mailboxes, messages with UIDs, MODSEQs and flags,
content blobs and a change log. It holds no protocol words and no policy; ``pobox.service``
decides *what* to do and calls one store method per atomic step. Every method is one transaction:
it either happens whole or not at all, and it is durable when it returns.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO, NewType, Protocol

from pobox.errors import NotAllowed

AccountId = NewType("AccountId", int)
MailboxId = NewType("MailboxId", int)
Uid = NewType("Uid", int)
ModSeq = NewType("ModSeq", int)
BlobId = NewType("BlobId", int)

#: The hierarchy delimiter of mailbox names.
DELIMITER = "/"

#: Mailboxes every new account gets, with their RFC 6154 special-use attribute.
DEFAULT_MAILBOXES: tuple[tuple[str, str | None], ...] = (
    ("INBOX", None),
    ("Drafts", "\\Drafts"),
    ("Sent", "\\Sent"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
)

SPECIAL_USES = frozenset(
    {"\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash"}
)

#: System flags in their canonical spelling. Everything else in a flag set is a keyword.
SYSTEM_FLAGS: tuple[str, ...] = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")
SEEN = "\\Seen"
DELETED = "\\Deleted"


class FlagOp(enum.Enum):
    REPLACE = "replace"
    ADD = "add"
    REMOVE = "remove"


@dataclass(frozen=True, slots=True)
class Account:
    id: AccountId
    address: str
    password_hash: str
    settings: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Mailbox:
    id: MailboxId
    account_id: AccountId
    name: str
    uidvalidity: int
    uidnext: Uid
    highest_modseq: ModSeq
    special_use: str | None
    subscribed: bool


#: Annotation names under this prefix are private to one account (RFC 5464 §3.2); the others
#: are shared by everyone who may see the mailbox.
PRIVATE_PREFIX = "/private/"


@dataclass(frozen=True, slots=True)
class AnnotationLimits:
    """How many annotations a write may leave (None: no limit). *per_mailbox* counts what one
    account sees on one mailbox (or on the server): the shared entries and its own private
    ones. *per_account* counts what an account is charged with: its private entries
    everywhere and the shared entries of its own mailboxes."""

    per_mailbox: int | None = None
    per_account: int | None = None


class TooManyAnnotations(NotAllowed):
    """A metadata write would take an account or a mailbox past its number of entries."""


@dataclass(frozen=True, slots=True)
class StoreTotals:
    """The size of the whole store: what ``pobox status`` and the metrics show. *octets* adds
    up the messages' sizes (a copy counts again, as it would against a quota)."""

    accounts: int
    mailboxes: int
    messages: int
    octets: int


@dataclass(frozen=True, slots=True)
class MailboxStatus:
    messages: int
    unseen: int
    deleted: int
    size: int
    uidnext: Uid
    uidvalidity: int
    highest_modseq: ModSeq
    first_unseen_uid: Uid | None
    recent: int
    deleted_size: int = 0  # octets of the messages with \Deleted (RFC 9208 DELETED-STORAGE)


@dataclass(frozen=True, slots=True)
class MessageMeta:
    """What a session needs of a message without touching its content."""

    mailbox_id: MailboxId
    uid: Uid
    modseq: ModSeq
    flags: frozenset[str]
    internal_date: datetime
    save_date: datetime
    size: int
    blob: BlobId
    pop3_uidl: str | None = None
    pop3_hidden: bool = False


@dataclass(frozen=True, slots=True)
class MessageColumns:
    """A mailbox's messages as columns, ascending UID: what an in-memory index loads (no object
    per message). ``flags`` are system-flag bits as in ``pobox.store.rows``; ``keywords`` the
    space-separated keywords of each message ('' for none)."""

    mailbox: Mailbox
    uids: Sequence[int]
    modseqs: Sequence[int]
    flags: Sequence[int]
    keywords: Sequence[str]
    internal_dates: Sequence[float]
    zones: Sequence[int]
    save_dates: Sequence[float]
    sizes: Sequence[int]
    blobs: Sequence[int]
    uidls: Mapping[int, str]  # the messages with a stored POP3 UIDL
    hidden: frozenset[int]  # the messages hidden from POP3


@dataclass(frozen=True, slots=True)
class Expunged:
    uid: Uid
    modseq: ModSeq


@dataclass(frozen=True, slots=True)
class ChangeBatch:
    """Everything in a mailbox that changed after a given MODSEQ."""

    mailbox: Mailbox
    changed: Sequence[MessageMeta]  # new messages and flag changes, ascending UID
    expunged: Sequence[Expunged]


@dataclass(frozen=True, slots=True)
class SearchFields:
    """Decoded header fields the store indexes for SEARCH and SORT (parse once, at delivery)."""

    subject: str = ""
    from_: str = ""
    to: str = ""
    cc: str = ""
    bcc: str = ""
    message_id: str = ""
    sent_date: datetime | None = None
    #: THREAD=REFERENCES' parent ids (pobox.mail.threading.pack_references); None: not known
    #: (not computed by the one who built these fields; the store keeps NULL)
    references: str | None = None


@dataclass(frozen=True, slots=True)
class SearchText:
    """A content's entry in the full-text index (docs/decisions/full-text-search.md), already
    folded by the service (pobox.mail.text): *header* is what TEXT searches besides the body,
    *body* the body's segments joined by ``pobox.mail.text.SEPARATOR``, and the others the
    header fields as SEARCH SUBJECT, FROM, TO, CC and BCC see them. Opaque to the store."""

    header: str = ""
    body: str = ""
    subject: str = ""
    from_: str = ""
    to: str = ""
    cc: str = ""
    bcc: str = ""


#: The columns of the full-text index, by SearchText attribute name.
TEXT_COLUMNS: tuple[str, ...] = ("header", "body", "subject", "from_", "to", "cc", "bcc")


@dataclass(frozen=True, slots=True)
class TextMatches:
    """What the full-text index says about a mailbox for one search string."""

    uids: list[Uid]  # indexed messages with the string in one of the columns asked for
    unindexed: list[Uid]  # messages whose content is not indexed yet: the caller scans them


@dataclass(frozen=True, slots=True)
class Rendered:
    """Answers a front end rendered once from a content's structure and keeps with it (IMAP's
    ENVELOPE and BODYSTRUCTURE, as Dovecot's cache file keeps them). Opaque to the store; None
    where nothing is kept yet."""

    envelope: bytes | None = None
    bodystructure: bytes | None = None


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message ready to be stored: content already in a finished spool."""

    spool: Spool
    structure: bytes  # pobox.mail's serialised ParsedMessage
    fields: SearchFields
    flags: frozenset[str] = frozenset()
    internal_date: datetime | None = None
    pop3_uidl: str | None = None
    rendered: Rendered | None = None


@dataclass(frozen=True, slots=True)
class Recoverable:
    """A message a POP3 client deleted, kept for the recovery window."""

    id: int
    mailbox_name: str
    uid: Uid
    uidl: str
    deleted_at: datetime
    size: int
    still_present: bool  # True when retention kept it in the mailbox (only hidden from POP3)


@dataclass(frozen=True, slots=True)
class SharedMailbox:
    """A mailbox whose access control list names someone (RFC 4314): the mailbox, its owner's
    address and the whole list as (identifier, rights) pairs."""

    mailbox: Mailbox
    owner: str
    acl: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class FolderPolicy:
    """One stored folder-policy setting of an account (docs/policies.md). *folder* is a
    mailbox name, a special-use attribute such as ``\\Trash``, or ``*`` (every folder);
    *key* is ``expunge-after``, ``archive-after`` or ``archive-by``. Opaque to the store."""

    account_id: AccountId
    folder: str
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    """An account's limits (None: unlimited), which the service hands to the writes that may
    add to its usage; the store refuses such a write with OverQuota in its own transaction
    (docs/quota.md)."""

    storage: int | None = None  # octets
    messages: int | None = None
    mailboxes: int | None = None

    def exceeded(self, storage: int, messages: int) -> bool:
        return (self.storage is not None and storage > self.storage) or (
            self.messages is not None and messages > self.messages
        )


@dataclass(frozen=True, slots=True)
class QuotaUsage:
    """What an account uses: the octets and number of the messages in its mailboxes, and its
    mailboxes; *warned* is the last warning level (percent) delivered, *low_storage* and
    *low_messages* the lowest usage since then (docs/decisions/quota.md)."""

    storage: int
    messages: int
    mailboxes: int
    warned: int = 0
    low_storage: int = 0
    low_messages: int = 0


class Spool(Protocol):
    """A message being received: written in chunks, then sealed (made durable).

    ``append``, ``append_many`` and ``replace`` take a spool sealed or not: one that is not is
    sealed by the store before the commit that makes the message visible (the embedded store
    fsyncs it in its writer's turn, with the other messages of the same group commit)."""

    size: int
    sealed: bool

    def write(self, data: bytes) -> None: ...
    def seal(self) -> None: ...  # flush and fsync; after this the content survives a crash
    def open(self) -> BinaryIO: ...  # read back what was written (for parsing)
    def discard(self) -> None: ...


class Content(Protocol):
    """A stored message's bytes, for streaming to a client."""

    size: int

    def read(self, offset: int, length: int) -> bytes: ...
    def file(self) -> BinaryIO | None: ...  # a real file object for sendfile, when there is one
    def close(self) -> None: ...


class Lock(Protocol):
    async def release(self) -> None: ...


ChangeListener = Callable[[MailboxId], None]


def logins_changed(account_id: AccountId) -> MailboxId:
    """The change a store announces (journal, NOTIFY, listeners) when a login of *account_id*
    is deleted: the negative account id, which names no mailbox, so that every process learns
    of a revoked app password through the change watcher it already runs."""
    return MailboxId(-account_id)


@dataclass(frozen=True, slots=True)
class Login:
    """An app password of an account (docs/app-passwords.md): a *label* unique in the account
    and an Argon2id hash. Times are seconds since the epoch; *last_used* and *last_address*
    are None until its first use (recorded at most once a minute per process)."""

    id: int
    account_id: AccountId
    label: str
    password_hash: str
    created: float
    last_used: float | None = None
    last_address: str | None = None


@dataclass(frozen=True, slots=True)
class AuthBlock:
    """A failed-login block a server started: kept in the store so that every node lists it
    and an unblock on any node lifts it everywhere (docs/decisions/admin-control.md). *until*
    is wall-clock time, seconds since the epoch."""

    kind: str  # "address" or "account"
    key: str
    failures: int
    until: float


#: States of one recipient of a queued outbound message (docs/decisions/outbound-queue.md).
QUEUE_PENDING = "pending"  # not tried yet, or deferred (a 4xx or no connection): tried again
QUEUE_DELIVERED = "delivered"  # the next hop answered 250
QUEUE_FAILED = "failed"  # a 5xx, the lifetime ran out, or an administrator bounced it


@dataclass(frozen=True, slots=True)
class QueueRecipient:
    """One recipient of a queued message and where its delivery stands. Times are seconds
    since the epoch."""

    address: str
    state: str  # QUEUE_PENDING, QUEUE_DELIVERED or QUEUE_FAILED
    attempts: int
    next_attempt: float
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """A message in the outbound queue (its content is read with ``queue_content``)."""

    id: str
    sender: str  # "" for the null reverse-path (a bounce)
    created: float
    size: int
    recipients: tuple[QueueRecipient, ...]
    warned: bool  # a delay notice went to the sender
    next_attempt: float  # the earliest next attempt of its pending recipients


@dataclass(frozen=True, slots=True)
class RecipientResult:
    """What one delivery attempt did for one recipient: the new state, and for a deferred
    (still pending) recipient when to try again."""

    address: str
    state: str
    error: str = ""
    next_attempt: float = 0.0


@dataclass(frozen=True, slots=True)
class DkimKey:
    """A domain's DKIM signing key: RSA private key in PEM, kept in the store so that every
    node signs with it."""

    domain: str
    selector: str
    private_key: bytes
    created: float


@dataclass(frozen=True, slots=True)
class WebSession:
    """A webmail login (docs/decisions/webmail-sessions.md). *id_hash* is the hex SHA-256 of
    the session id the browser holds; the id itself is never stored. Times are seconds since
    the epoch."""

    id_hash: str
    account_id: AccountId
    created: float
    last_seen: float
    #: the app password the session logged in with (None: the account's password); deleting
    #: the app password ends the session
    login_id: int | None = None


class Store(Protocol):
    """One mail store. Methods are atomic and durable on return."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...

    # accounts
    async def create_account(self, address: str, password_hash: str) -> Account: ...
    async def get_account(self, address: str) -> Account | None: ...
    async def get_account_by_id(self, account_id: AccountId) -> Account | None: ...
    async def resolve_address(self, address: str) -> Account | None: ...
    async def list_accounts(self) -> list[Account]: ...
    async def totals(self) -> StoreTotals:
        """Accounts, mailboxes, messages and their octets, counted in one read."""
        ...

    async def delete_account(self, account_id: AccountId) -> None: ...
    async def set_password_hash(self, account_id: AccountId, password_hash: str) -> None: ...
    async def set_account_setting(
        self, account_id: AccountId, key: str, value: str | None
    ) -> None: ...
    async def add_alias(self, alias: str, account_id: AccountId) -> None: ...
    async def remove_alias(self, alias: str) -> None: ...
    async def list_aliases(self, account_id: AccountId | None = None) -> list[tuple[str, str]]: ...

    # mailboxes
    async def list_mailboxes(self, account_id: AccountId) -> list[Mailbox]: ...
    async def get_mailbox(self, account_id: AccountId, name: str) -> Mailbox | None: ...
    async def get_mailbox_by_id(self, mailbox_id: MailboxId) -> Mailbox | None: ...
    async def create_mailbox(
        self,
        account_id: AccountId,
        name: str,
        special_use: str | None = None,
        *,
        quota: QuotaLimits | None = None,
    ) -> Mailbox:
        """OverQuota when *quota* limits the mailboxes and the account has that many."""
        ...

    async def delete_mailbox(self, mailbox_id: MailboxId) -> None: ...
    async def rename_mailbox(self, mailbox_id: MailboxId, new_name: str) -> Mailbox: ...
    async def set_subscribed(self, account_id: AccountId, name: str, subscribed: bool) -> None: ...
    async def list_subscriptions(self, account_id: AccountId) -> list[str]: ...

    # access control lists (RFC 4314; pobox.service.acl decides what they mean)
    async def get_acl(self, mailbox_id: MailboxId) -> list[tuple[str, str]]:
        """The mailbox's (identifier, rights) pairs, by identifier."""
        ...

    async def set_acl(self, mailbox_id: MailboxId, identifier: str, rights: str | None) -> None:
        """Set *identifier*'s rights on the mailbox; None removes the entry."""
        ...

    async def shared_mailboxes(self, identifiers: Sequence[str]) -> list[SharedMailbox]:
        """The mailboxes whose access control list names any of *identifiers*, each with its
        owner and its whole list."""
        ...

    async def drop_acl_identifiers(self, identifiers: Sequence[str]) -> None:
        """Remove every entry for *identifiers* from every mailbox (an account was deleted)."""
        ...

    # IMAP METADATA annotations (RFC 5464; docs/decisions/metadata.md)
    async def get_annotations(
        self, account_id: AccountId, mailbox_ids: Sequence[MailboxId | None]
    ) -> dict[MailboxId | None, list[tuple[str, bytes]]]:
        """The annotations *account_id* sees on each of *mailbox_ids* (None: the server):
        the shared ones and its own private ones (names under :data:`PRIVATE_PREFIX`), by
        name; every id asked for has a list (empty without annotations). One read."""
        ...

    async def set_annotations(
        self,
        account_id: AccountId,
        mailbox_id: MailboxId | None,
        changes: Sequence[tuple[str, bytes | None]],
        limits: AnnotationLimits | None = None,
    ) -> None:
        """Set (a value) or remove (None) entries of a mailbox (None: the server) in one
        transaction: names under :data:`PRIVATE_PREFIX` are *account_id*'s own, the others
        shared. Names are lower-case. With *limits*, :class:`TooManyAnnotations` (and
        nothing written) when the changes add entries past a limit. NotFound without the
        mailbox."""
        ...

    async def set_special_use(self, mailbox_id: MailboxId, special_use: str | None) -> Mailbox:
        """Give the mailbox this RFC 6154 attribute (None: none); NotFound without it."""
        ...

    # URLAUTH mailbox access keys (RFC 4467 §2.2; pobox.service.urlauth): one secret per
    # (account, mailbox), gone with either
    async def mailbox_key(
        self, account_id: AccountId, mailbox_id: MailboxId, new: bytes | None = None
    ) -> bytes | None:
        """*account_id*'s access key for the mailbox; without one, *new* is stored and returned
        (of two callers racing, both get the key stored first), or None when *new* is None.
        NotFound when *new* is given and the mailbox does not exist."""
        ...

    async def reset_mailbox_keys(
        self, account_id: AccountId, mailbox_id: MailboxId | None, new: bytes | None = None
    ) -> None:
        """RESETKEY: the mailbox's key becomes *new* (None: it has none); with *mailbox_id*
        None, every key of *account_id* is removed. NotFound for a mailbox that does not
        exist when *new* is given."""
        ...

    async def mailbox_status(self, mailbox_id: MailboxId) -> MailboxStatus: ...
    async def claim_recent(self, mailbox_id: MailboxId, below: Uid | None = None) -> Uid:
        """Claim \\Recent for the messages below UID *below* (None: every message so far).

        The mailbox's recent floor moves up to *below* (never down, never past UIDNEXT) in one
        atomic write, none when it is there already. Returns the floor before: the messages from
        there up to *below* are \\Recent for the caller; older ones were claimed before."""
        ...

    # messages
    def new_spool(self) -> Spool: ...
    async def append(
        self, mailbox_id: MailboxId, message: NewMessage, *, quota: QuotaLimits | None = None
    ) -> MessageMeta:
        """Append one message; with *quota*, OverQuota (and nothing stored) when the
        account's usage would go past a limit."""
        ...

    async def append_claiming(
        self, mailbox_id: MailboxId, message: NewMessage, *, quota: QuotaLimits | None = None
    ) -> tuple[MessageMeta, Uid]:
        """``append``, and in the same transaction ``claim_recent`` below the new message's UID
        + 1: what an IMAP session appending into the mailbox it has selected does, being the
        first to be told of the message (RFC 3501 §2.3.2), without a second commit. Returns the
        message and the recent floor before the claim."""
        ...

    async def append_many(
        self,
        mailbox_id: MailboxId,
        messages: Sequence[NewMessage],
        *,
        quota: QuotaLimits | None = None,
    ) -> list[MessageMeta]:
        """Append *messages* in one transaction, with consecutive UIDs in that order: all of
        them or none (IMAP MULTIAPPEND, RFC 3502)."""
        ...

    async def replace(
        self,
        mailbox_id: MailboxId,
        message: NewMessage,
        src: MailboxId,
        uid: Uid,
        *,
        quota: QuotaLimits | None = None,
    ) -> tuple[MessageMeta, Expunged]:
        """Append *message* to *mailbox_id* and expunge *uid* from *src*, in one transaction
        (IMAP REPLACE, RFC 8508): both or neither. Expunged (and nothing stored) when *uid* is
        no longer in *src*; with *quota*, the limits are checked after both."""
        ...

    async def list_messages(self, mailbox_id: MailboxId) -> list[MessageMeta]: ...
    async def message_columns(self, mailbox_id: MailboxId) -> MessageColumns:
        """The mailbox and its messages in one snapshot, as columns (NotFound without it)."""
        ...

    async def get_messages(
        self, mailbox_id: MailboxId, uids: Iterable[Uid]
    ) -> list[MessageMeta]: ...
    async def set_flags(
        self,
        mailbox_id: MailboxId,
        uids: Iterable[Uid],
        op: FlagOp,
        flags: frozenset[str],
        unchanged_since: ModSeq | None = None,
    ) -> list[MessageMeta]: ...
    async def expunge(
        self, mailbox_id: MailboxId, uids: Iterable[Uid], *, keep_recoverable: bool = False
    ) -> list[Expunged]: ...
    async def copy(
        self,
        src: MailboxId,
        uids: Iterable[Uid],
        dst: MailboxId,
        *,
        move: bool = False,
        quota: QuotaLimits | None = None,
    ) -> list[tuple[Uid, Uid]]:
        """Copy (or move) messages; with *quota* (the target account's limits), OverQuota when
        the copy adds to that account's usage and takes it past a limit."""
        ...

    async def changes_since(self, mailbox_id: MailboxId, modseq: ModSeq) -> ChangeBatch: ...
    async def expunged_since(self, mailbox_id: MailboxId, modseq: ModSeq) -> list[Uid]:
        """The UIDs expunged from the mailbox with a MODSEQ above *modseq*, ascending (IMAP's
        VANISHED (EARLIER)). The log of expunges is kept for as long as the mailbox exists, so
        the answer is exact for any *modseq*; NotFound without the mailbox."""
        ...

    async def get_structure(self, blob: BlobId) -> bytes: ...
    async def get_structures(self, blobs: Iterable[BlobId]) -> dict[BlobId, bytes]:
        """The structures of many contents in one call; contents that are gone are left out."""
        ...

    async def get_rendered(self, blobs: Iterable[BlobId]) -> dict[BlobId, Rendered]:
        """What is kept rendered for these contents (gone ones are left out)."""
        ...

    async def set_rendered(self, items: Mapping[BlobId, Rendered]) -> None:
        """Keep renderings made after the fact (fills only what is not kept yet)."""
        ...

    async def open_content(self, blob: BlobId) -> Content: ...
    async def open_contents(self, blobs: Iterable[BlobId]) -> dict[BlobId, Content]:
        """Many contents opened in one call (the caller closes them); gone ones are left out."""
        ...

    async def open_message(self, mailbox_id: MailboxId, uid: Uid) -> Content: ...

    # POP3 retention and recovery
    async def pop3_hide(
        self, mailbox_id: MailboxId, uids: Iterable[Uid], at: datetime
    ) -> list[MessageMeta]: ...
    async def hidden_before(
        self, account_id: AccountId, cutoff: datetime
    ) -> list[tuple[MailboxId, Uid]]: ...
    async def list_recoverable(
        self, account_id: AccountId, since: datetime | None = None
    ) -> list[Recoverable]: ...
    async def recover(self, account_id: AccountId, ids: Iterable[int]) -> list[MessageMeta]: ...
    async def purge_recoverable(self, cutoff: datetime) -> int: ...

    # maintenance
    async def check(self, repair: bool = False) -> list[str]: ...

    # quotas (docs/quota.md): usage is kept by every write above, in its own transaction
    async def quota_usage(self, account_id: AccountId) -> QuotaUsage:
        """The account's usage as of now (zero for an account without messages)."""
        ...

    async def quota_warn(
        self,
        account_id: AccountId,
        seen: int,
        level: int,
        mailbox_id: MailboxId | None = None,
        message: NewMessage | None = None,
    ) -> bool:
        """Record *level* as the last warning level (and the usage now as the lowest since),
        only if it is still *seen* (another writer may have warned meanwhile), and in the same
        transaction append *message* (no quota check) to *mailbox_id*. False when the level
        was not *seen* any more: nothing was written."""
        ...

    # folder policies (docs/policies.md)
    async def set_folder_policy(
        self, account_id: AccountId, folder: str, key: str, value: str | None
    ) -> None:
        """Store one setting of *folder* (None removes it). NotFound without the account."""
        ...

    async def list_folder_policies(self, account_id: AccountId | None = None) -> list[FolderPolicy]:
        """The stored settings of one account (None: of every account), by account, folder
        and key."""
        ...

    async def due_messages(
        self, mailbox_id: MailboxId, by: str, before: datetime, limit: int
    ) -> list[tuple[Uid, datetime]]:
        """Up to *limit* messages of a mailbox whose *by* date ("save_date" or
        "internal_date") is before *before*, oldest first, with their internal dates (UTC)."""
        ...

    # app passwords (docs/app-passwords.md)
    async def add_login(
        self, account_id: AccountId, label: str, password_hash: str, now: float
    ) -> Login:
        """A new login for the account. AlreadyExists when the account has one with *label*,
        NotFound when there is no such account."""
        ...

    async def list_logins(self, account_id: AccountId) -> list[Login]:
        """The account's logins, oldest first."""
        ...

    async def delete_login(self, account_id: AccountId, label: str) -> Login | None:
        """Delete the account's login *label* and announce it (``logins_changed``) to every
        process; returns what was deleted (None: no such login)."""
        ...

    async def get_account_logins(self, address: str) -> tuple[Account, list[Login]] | None:
        """The account at *address* with its logins, in one read (what a login needs)."""
        ...

    async def record_login_use(self, uses: Sequence[tuple[int, float, str]]) -> None:
        """Record (login id, time, remote address) uses; a time never moves back, and a login
        deleted meanwhile is skipped."""
        ...

    # failed-login blocks shared by every node
    async def save_auth_block(self, block: AuthBlock) -> None:
        """Record (or extend) a block; blocks that ended are dropped on the way."""
        ...

    async def get_auth_block(self, kind: str, key: str) -> AuthBlock | None:
        """The recorded block on *key*, ended or not (None: never recorded, or lifted)."""
        ...

    async def list_auth_blocks(self, now: float) -> list[AuthBlock]:
        """The blocks in force at *now* (seconds since the epoch), by kind and key."""
        ...

    async def delete_auth_blocks(self, keys: Iterable[tuple[str, str]]) -> list[AuthBlock]:
        """Lift the blocks on these (kind, key) pairs; returns those that were recorded."""
        ...

    # the outbound queue (docs/decisions/outbound-queue.md)
    async def queue_add(
        self, queue_id: str, sender: str, recipients: Sequence[str], content: bytes, now: float
    ) -> QueuedMessage:
        """Queue a message for *recipients* (all pending, due at *now*); durable on return.
        AlreadyExists when *queue_id* is taken."""
        ...

    async def queue_claim(
        self, owner: str, now: float, lease: float, limit: int
    ) -> list[QueuedMessage]:
        """Claim up to *limit* messages with a pending recipient due at *now* whose lease is
        free or ran out: each is leased to *owner* until *now* + *lease*, so that no other
        claim (on any node) returns it meanwhile. Earliest due first."""
        ...

    async def queue_content(self, queue_id: str) -> bytes:
        """A queued message's content (NotFound when it left the queue)."""
        ...

    async def queue_record(
        self,
        queue_id: str,
        results: Sequence[RecipientResult],
        now: float,
        *,
        warned: bool = False,
    ) -> QueuedMessage | None:
        """Record an attempt's results for pending recipients (others are left alone; a
        recipient recorded pending counts one more attempt) and release the lease; *warned*
        marks the delay notice as sent. A message with no pending recipient left leaves the
        queue: returns None then (and when it was not queued)."""
        ...

    async def queue_get(self, queue_id: str) -> QueuedMessage | None: ...
    async def queue_list(self) -> list[QueuedMessage]:
        """Every queued message, oldest first."""
        ...

    async def queue_delete(self, queue_id: str) -> bool:
        """Drop a message from the queue; False when it was not there."""
        ...

    async def queue_retry(self, queue_id: str | None, now: float) -> int:
        """Make the pending recipients of one message (None: of every message) due at *now*
        and free its lease; returns the number of messages changed."""
        ...

    async def queue_length(self) -> int:
        """The number of queued messages."""
        ...

    async def queue_release(self, owner: str) -> int:
        """Free the leases *owner* holds (a runner starting again after its process died);
        returns how many were freed."""
        ...

    async def queue_renew(self, owner: str, queue_ids: Sequence[str], until: float) -> int:
        """Extend *owner*'s leases on these messages to *until* (a round still at work);
        returns how many it still held."""
        ...

    # DKIM keys
    async def save_dkim_key(self, key: DkimKey) -> None:
        """Keep *key* as the domain's signing key (replacing one it had)."""
        ...

    async def get_dkim_key(self, domain: str) -> DkimKey | None: ...

    # webmail sessions (docs/decisions/webmail-sessions.md)
    async def web_session_add(self, session: WebSession) -> None:
        """Record a new session (AlreadyExists when its hash is taken)."""
        ...

    async def web_session_get(self, id_hash: str) -> WebSession | None: ...
    async def web_session_touch(self, id_hash: str, now: float) -> None:
        """Set the session's last use to *now* (nothing when it is gone)."""
        ...

    async def web_session_delete(self, id_hash: str) -> bool:
        """End one session; False when it was not there."""
        ...

    async def web_session_delete_account(self, account_id: AccountId) -> int:
        """End every session of an account ("log out everywhere"); returns how many."""
        ...

    async def web_session_purge(self, idle_before: float, created_before: float) -> int:
        """Drop sessions last used before *idle_before* or created before *created_before*;
        returns how many."""
        ...

    # coordination
    async def try_lock(self, account_id: AccountId, name: str) -> Lock | None: ...
    def add_listener(self, listener: ChangeListener) -> None: ...
    def remove_listener(self, listener: ChangeListener) -> None: ...

    # search support
    async def search_fields(
        self, mailbox_id: MailboxId, uids: Sequence[Uid] | None = None
    ) -> dict[Uid, SearchFields]:
        """The indexed header fields of messages in a mailbox (all of them when *uids* is None;
        UIDs not in the mailbox are left out). ``sent_date`` comes back in UTC: the store keeps
        the moment, not the zone the Date: header was written in."""
        ...

    # full-text index (docs/decisions/full-text-search.md)
    async def search_text(
        self, mailbox_id: MailboxId, columns: Sequence[str], needle: str
    ) -> TextMatches:
        """The messages of a mailbox whose indexed text has *needle* as a substring of one of
        *columns* (TEXT_COLUMNS names), exactly (no case folding: the text is stored folded),
        and the messages whose content is not indexed yet. *needle* is at least three
        characters long and holds neither NUL nor the segment separator."""
        ...

    async def unindexed_contents(
        self, limit: int, account_id: AccountId | None = None
    ) -> dict[BlobId, SearchFields]:
        """Up to *limit* contents (of one account's messages, or of any) not in the full-text
        index yet, oldest first, with their header fields."""
        ...

    async def set_search_text(self, items: Mapping[BlobId, SearchText]) -> None:
        """Put contents into the full-text index, one transaction for all. A content that is
        indexed already or gone meanwhile is left as it is."""
        ...

    async def field_values(
        self, mailbox_id: MailboxId, field: str, uids: Sequence[Uid] | None = None
    ) -> dict[Uid, str | float | None]:
        """One decoded header field of a mailbox's messages (all, or those of *uids*), for
        SORT and THREAD: *field* is "subject", "from_", "to", "cc", "message_id" (text),
        "sent_date" (seconds since the epoch, None without a usable Date:) or "references"
        (the packed ids THREAD=REFERENCES links by, None for content stored before schema 12).
        Lighter than ``search_fields``."""
        ...

    async def date_page(
        self, mailbox_id: MailboxId, limit: int, *, newest_first: bool = True
    ) -> tuple[int, list[Uid]]:
        """How many messages the mailbox holds, and the UIDs of the first *limit* of them in
        SORT's DATE order (the sent date, else the internal date; equal dates by UID), newest
        first or oldest first: one query, for a first list page before the mailbox index is
        loaded (docs/decisions/webmail-first-page.md)."""
        ...

    async def reset_search_text(self, account_id: AccountId | None = None) -> int:
        """Take the contents of one account's messages (or all contents) out of the index, to
        be indexed again; returns how many."""
        ...

    # backup and restore (docs/backup.md): whole accounts as they are, ids and all
    def snapshot(
        self, addresses: Sequence[str] | None = None
    ) -> AbstractAsyncContextManager[StoreSnapshot]:
        """One consistent, read-only view of the accounts at *addresses* (None: every
        account) while the store goes on serving: their images and their contents as of one
        moment. NotFound for an address that is no account."""
        ...

    async def restore_account(self, image: AccountImage, *, replace: bool = False) -> Account:
        """Create the account of *image* with its password hash, settings, aliases,
        subscriptions and mailboxes (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and expunge log as in
        the image; no messages yet: ``restore_messages``). AlreadyExists when the address (or
        an alias) is taken, unless *replace*, which first deletes that account and its mail.
        The store's UIDVALIDITY counter moves past every restored UIDVALIDITY."""
        ...

    def spool_content(self, data: bytes) -> Spool:
        """Blocking: a spool of this store holding *data* whole, for a ``RestoreContent``: not
        sealed yet (``seal_spools``), written the cheapest way the store has for a content that
        is in memory already (one file written in one go, or no file at all)."""
        ...

    async def seal_spools(self, spools: Sequence[Spool]) -> None:
        """Seal many written spools of this store at once (as ``Spool.seal`` each, in one
        flush to disk): how a restore or import makes a batch of contents durable."""
        ...

    async def restore_mailbox(self, account_id: AccountId, image: MailboxImage) -> Mailbox:
        """Create the mailbox *image* names with its UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and
        special-use (no messages: ``restore_messages``), or give those to a mailbox of that
        name that has never held a message (UIDNEXT 1), such as a new account's INBOX; the
        UIDVALIDITY counter moves past it. AlreadyExists when the mailbox has held messages."""
        ...

    async def restore_messages(
        self,
        mailbox_id: MailboxId,
        messages: Sequence[MessageImage],
        contents: Mapping[str, RestoreContent | BlobId],
    ) -> dict[str, BlobId]:
        """Store *messages* with the UIDs, MODSEQs, flags, dates and POP3 state they carry (in
        one transaction), each with the content its ``content`` key names in *contents*: new
        content (a sealed spool of this store) or one stored before (its BlobId). Returns the
        BlobId of every key used. InvalidInput for a UID at or above the mailbox's UIDNEXT,
        a MODSEQ above its HIGHESTMODSEQ or a UID already there."""
        ...

    async def restore_recoverable(
        self,
        account_id: AccountId,
        items: Sequence[RecoverableImage],
        contents: Mapping[str, RestoreContent | BlobId],
    ) -> dict[str, BlobId]:
        """Store recovery items (messages a POP3 client deleted) as in *items*; like
        ``restore_messages`` for contents."""
        ...


StoreFactory = Callable[[], Awaitable[Store]]


# -- backup and restore images (docs/backup.md) ---------------------------------------------
# What a backup keeps of an account, independent of the backend. Times are epoch seconds (with
# the zone offset in minutes where the store keeps one). ``content`` is a key: the backend's
# own in a snapshot (read it with ``StoreSnapshot.read_content``), the backup's (a SHA-256)
# in a restore.


@dataclass(frozen=True, slots=True)
class MessageImage:
    uid: int
    modseq: int
    flags: frozenset[str]
    internal_date: float
    internal_tz: int
    save_date: float
    size: int
    content: str
    pop3_uidl: str | None = None  # a stored UIDL; None: derived from UID and UIDVALIDITY
    pop3_hidden_at: float | None = None


@dataclass(frozen=True, slots=True)
class MailboxImage:
    name: str
    uidvalidity: int
    uidnext: int
    highest_modseq: int
    recent_floor: int
    special_use: str | None
    messages: tuple[MessageImage, ...] = ()
    expunged: tuple[Expunged, ...] = ()
    #: the access control list (RFC 4314): (identifier, rights), by identifier
    acl: tuple[tuple[str, str], ...] = ()
    #: METADATA entries (RFC 5464): (name, value), by name: the shared ones and the owner's
    #: private ones (other accounts' private entries stay out)
    annotations: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class RecoverableImage:
    mailbox_name: str
    uid: int
    uidl: str
    deleted_at: float
    still_present: bool
    content: str | None  # None while the message is still in its mailbox (still_present)
    flags: frozenset[str]
    internal_date: float
    internal_tz: int
    size: int


@dataclass(frozen=True, slots=True)
class LoginImage:
    """An app password as a backup keeps it: its hash, never the password."""

    label: str
    password_hash: str
    created: float
    last_used: float | None = None
    last_address: str | None = None


@dataclass(frozen=True, slots=True)
class AccountImage:
    address: str
    password_hash: str
    created: float
    settings: Mapping[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    subscriptions: tuple[str, ...] = ()
    mailboxes: tuple[MailboxImage, ...] = ()
    recoverable: tuple[RecoverableImage, ...] = ()
    #: folder policies (docs/policies.md): (folder, key, value), by folder and key
    policies: tuple[tuple[str, str, str], ...] = ()
    #: app passwords (docs/app-passwords.md), oldest first
    logins: tuple[LoginImage, ...] = ()
    #: the account's private METADATA entries of the server (RFC 5464): (name, value)
    annotations: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class RestoreContent:
    """A content to store with restored messages: a sealed spool of the store and what
    ``pobox.mail`` parsed of it (as for ``NewMessage``)."""

    spool: Spool
    structure: bytes
    fields: SearchFields


class StoreSnapshot(Protocol):
    """The store as of one moment (``Store.snapshot``)."""

    async def accounts(self) -> list[AccountImage]: ...
    async def read_content(self, key: str) -> bytes:
        """A content named by a ``content`` key of this snapshot's images; NotFound when it
        is no longer there (the embedded store removes a file when its last message goes)."""
        ...

    async def read_contents(self, keys: Sequence[str]) -> list[bytes]:
        """Many contents in one call, in the order of *keys* (NotFound as ``read_content``)."""
        ...
