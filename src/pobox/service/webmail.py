"""What the webmail asks of the mail service (docs/webmail.md).

Every method takes the logged-in :class:`Account` and checks that each mailbox it names belongs
to it: a folder or message id from a URL that is another account's is :class:`NotFound`, exactly
as one that does not exist (no way to probe). Lists come from the shared mailbox index
(pobox.service.index) and are ordered by pobox.service.sort; flags, moves and expunges go
through the index too, so IMAP sessions of the same process hear of them at once and other
processes through the store's change watcher, as for any IMAP client.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.policy
import email.utils
import io
import logging
import mimetypes
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import BinaryIO

from pobox.errors import InvalidInput, NoPermission, NotAllowed, NotFound
from pobox.mail.envelope import Address
from pobox.mail.headers import split_fields
from pobox.mail.structure import MimePart, ParsedMessage, bstr
from pobox.mail.text import part_bytes, part_text
from pobox.service.acl import Access, flag_right
from pobox.service.content import chunked, spool_message
from pobox.service.index import SEEN_BIT, MailboxIndex
from pobox.service.logins import Logins, NewLogin
from pobox.service.mail import MailService
from pobox.service.mailboxes import Mailboxes
from pobox.service.search import (
    And,
    Body,
    ColumnRecords,
    Header,
    Or,
    Query,
    search,
)
from pobox.service.sort import WHOLE_MAILBOX, SortKey, sort
from pobox.service.submission import Submission, Submitted
from pobox.service.thread import thread
from pobox.store.api import (
    DELETED,
    SEEN,
    Account,
    Content,
    FlagOp,
    Login,
    Mailbox,
    MailboxId,
    MessageMeta,
    NewMessage,
    Uid,
)

log = logging.getLogger("pobox.web")

FLAGGED = "\\Flagged"
ANSWERED = "\\Answered"
DRAFT = "\\Draft"
#: The flags a user sets from the list and the message page.
SETTABLE = {"seen": SEEN, "flagged": FLAGGED}
#: List orders: name → index sort key.
SORTS = {
    "date": "DATE",
    "arrival": "ARRIVAL",
    "from": "FROM",
    "subject": "SUBJECT",
    "size": "SIZE",
    "thread": "THREAD",  # conversations (RFC 5256 REFERENCES), the newest conversation first
}
#: A folder of at least this many messages whose worker has no order for it yet gets its first
#: page by date from one store query while its index loads and is ordered in the background
#: (docs/decisions/webmail-first-page.md); smaller ones are ordered at once.
COLD_PAGE_MIN = 5000
#: Deepest indentation a threaded list shows.
MAX_DEPTH = 6
#: Search fields: name → terms.
SEARCH_FIELDS = ("all", "subject", "from", "to", "body")
#: Most messages one action names.
MAX_ACTION = 10000
#: Inline (cid:) images larger than this are not embedded in a message's HTML.
MAX_INLINE = 5 * 1024 * 1024
#: Text parts larger than this are shown cut (the whole part can still be downloaded).
MAX_TEXT = 2 * 1024 * 1024
#: Inline image types a page may embed (never SVG: it can carry script).
INLINE_IMAGES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


@dataclass(frozen=True, slots=True)
class Folder:
    mailbox: Mailbox
    messages: int
    unseen: int
    #: the name the user sees: another account's shared folder is Shared/owner/Folder
    label: str = ""

    @property
    def id(self) -> MailboxId:
        return self.mailbox.id

    @property
    def name(self) -> str:
        return self.label or self.mailbox.name

    @property
    def shared(self) -> bool:
        return bool(self.label)

    @property
    def special_use(self) -> str | None:
        return self.mailbox.special_use


@dataclass(frozen=True, slots=True)
class ListItem:
    uid: Uid
    flags: frozenset[str]
    size: int
    date: datetime
    sender: str
    subject: str
    attachment: bool
    depth: int = 0  # in a threaded list: how far below its conversation's first message

    @property
    def seen(self) -> bool:
        return SEEN in self.flags

    @property
    def flagged(self) -> bool:
        return FLAGGED in self.flags


@dataclass(frozen=True, slots=True)
class ListPage:
    mailbox: Mailbox
    items: list[ListItem]
    page: int
    pages: int
    total: int  # messages listed (all of the folder, or the search's matches)
    sort: str
    reverse: bool


@dataclass(frozen=True, slots=True)
class Attachment:
    number: int  # the part's position in ParsedMessage.root.walk()
    filename: str
    mime_type: str
    size: int
    is_message: bool


@dataclass(slots=True)
class MessageView:
    """A message (or a message/rfc822 part of one) as the reading page shows it."""

    mailbox: Mailbox
    uid: Uid
    flags: frozenset[str]
    size: int
    part: int | None  # the message/rfc822 part shown; None: the message itself
    subject: str
    sender: str
    to: str
    cc: str
    date: str
    message_id: str
    references: str
    reply_to: str
    text: str | None  # the plain-text body (None: there is only HTML, or no body)
    html: str | None  # the HTML body, not sanitised yet (the web layer does that)
    inline: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # Content-ID → image
    attachments: list[Attachment] = field(default_factory=list)
    from_addresses: list[str] = field(default_factory=list)
    to_addresses: list[str] = field(default_factory=list)
    cc_addresses: list[str] = field(default_factory=list)
    reply_to_addresses: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Download:
    filename: str
    mime_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Moved:
    """What an undo needs: the messages' new UIDs in *dst*, to go back to *src*."""

    src: MailboxId
    dst: MailboxId
    uids: tuple[Uid, ...]  # in dst


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message written in the browser."""

    to: str = ""
    cc: str = ""
    bcc: str = ""
    subject: str = ""
    body: str = ""
    in_reply_to: str = ""
    references: str = ""
    #: (file name, type, content): the content's bytes, or a file to read it from in pieces
    #: (an upload as the form parser spooled it), never read whole
    attachments: tuple[tuple[str, str, bytes | BinaryIO], ...] = ()
    forward: tuple[MailboxId, Uid] | None = None  # attach this message (message/rfc822)


def _header(parsed: ParsedMessage, name: str) -> str:
    values = parsed.header_values(name)
    return _clean(values[-1]) if values else ""


def _clean(text: str) -> str:
    """Header text for display: no control characters (CR, LF, NUL…) survive decoding."""
    return "".join(ch if ch.isprintable() else " " for ch in text).strip()


def _address(addr: Address) -> str:
    mailbox = bstr(addr.mailbox or b"")
    host = bstr(addr.host or b"")
    return _clean(f"{mailbox}@{host}" if host else mailbox)


def _addresses(parsed: ParsedMessage, name: str) -> list[str]:
    from pobox.mail.envelope import parse_address_list

    out: list[str] = []
    lname = name.lower().encode()
    for field_name, value in split_fields(parsed.header):
        if field_name.lower() == lname:
            out += [_address(a) for a in parse_address_list(value) if not a.is_group_marker]
    return [a for a in out if "@" in a]


def _is_attachment(part: MimePart, body: set[int], number: int) -> bool:
    if part.is_multipart or number in body:
        return False
    if part.is_message_rfc822:
        return True
    disposition = (part.disposition or "").lower()
    return disposition == "attachment" or part.filename is not None


def has_attachment(parsed: ParsedMessage) -> bool:
    """Whether a list shows the message with an attachment mark (from the stored structure)."""
    for part in parsed.root.walk():
        if part.is_multipart:
            continue
        if part.is_message_rfc822 or (part.disposition or "").lower() == "attachment":
            return True
    return False


def _body_parts(root: MimePart) -> tuple[MimePart | None, MimePart | None]:
    """The text/plain and text/html leaves that are the message's body (not attachments):
    the first of each outside attachments and encapsulated messages."""
    text: MimePart | None = None
    html: MimePart | None = None

    def visit(part: MimePart) -> None:
        nonlocal text, html
        if part.is_message_rfc822:
            return
        if part.is_multipart:
            for child in part.children:
                visit(child)
            return
        if (part.disposition or "").lower() == "attachment":
            return
        kind = part.mime_type
        if kind == "text/plain" and text is None:
            text = part
        elif kind == "text/html" and html is None:
            html = part

    visit(root)
    return text, html


def _read_text(content: Content, part: MimePart) -> str:
    pieces: list[str] = []
    size = 0
    for piece in part_text(content.read, part):
        pieces.append(piece)
        size += len(piece)
        if size > MAX_TEXT:
            pieces.append("\n[…]")
            break
    return "".join(pieces)


def _read_bytes(content: Content, part: MimePart) -> bytes:
    return b"".join(part_bytes(content.read, part))


def _safe_filename(name: str | None, fallback: str) -> str:
    cleaned = _clean(name or "").replace("/", "_").replace("\\", "_").strip(". ")
    return cleaned[:200] or fallback


#: Octets of an attachment read at a time while its base64 is written: 1,024 lines of 76
#: characters (57 octets each).
ATTACHMENT_CHUNK = 57 * 1024


def _base64_lines(source: BinaryIO) -> Iterator[bytes]:
    """Blocking: the base64 body of the content *source* holds (from where it stands), in lines
    of 76 characters ending in CRLF (RFC 2045 §6.8), read ATTACHMENT_CHUNK octets at a time."""
    pending = b""
    while True:
        data = source.read(ATTACHMENT_CHUNK)
        if not data:
            break
        pending += data
        whole = len(pending) - len(pending) % 57
        if whole:
            block, pending = pending[:whole], pending[whole:]
            yield base64.encodebytes(block).replace(b"\n", b"\r\n")
    if pending:
        yield base64.encodebytes(pending).replace(b"\n", b"\r\n")


def _read_spool(new: NewMessage) -> bytes:
    """Blocking: a spooled message's bytes, whole."""
    with new.spool.open() as fp:
        return fp.read()


def _quote(text: str) -> str:
    return "".join(f"> {line}\n" if line else ">\n" for line in text.splitlines())


class Webmail:
    def __init__(self, service: MailService, submission: Submission | None = None) -> None:
        self.service = service
        self.store = service.store
        self.submission = submission
        #: one list order per mailbox: (index version, sort, reverse, search) → UIDs
        self._orders: dict[MailboxId, tuple[tuple[int, str, bool, str], list[Uid]]] = {}
        #: depths of the messages of a threaded order, by mailbox
        self._depths: dict[MailboxId, dict[int, int]] = {}
        #: unseen counts of indexed mailboxes: (index version, count)
        self._unseen: dict[MailboxId, tuple[int, int]] = {}
        #: folders whose index is being loaded and ordered by date in the background
        self._warming: dict[MailboxId, asyncio.Task[None]] = {}
        #: their first pages as last read, by (HIGHESTMODSEQ, newest first, size): (total, UIDs)
        self._first: dict[MailboxId, dict[tuple[int, bool, int], tuple[int, list[Uid]]]] = {}

    def close(self) -> None:
        """Stop the background work (the server is shutting down)."""
        for task in list(self._warming.values()):
            task.cancel()

    # ---- folders -------------------------------------------------------------------------
    async def access(self, account: Account, mailbox_id: int, need: str = "r") -> Access:
        """What the account may do with the mailbox of that id: its own, or another account's
        folder shared with it (docs/sharing.md), with every right of *need*. NotFound for any
        other id, and for a shared folder without the l right (it does not exist for the
        user); NoPermission when a right of *need* is missing."""
        mailbox = await self.store.get_mailbox_by_id(MailboxId(mailbox_id))
        if mailbox is None:
            raise NotFound("no such folder")
        acl = self.service.acl
        name = mailbox.name
        if mailbox.account_id != account.id:
            owner = await self.store.get_account_by_id(mailbox.account_id)
            if owner is None:
                raise NotFound("no such folder")
            name = acl.shared_name(owner.address.lower(), mailbox.name)
        try:
            return await acl.access_to(account, mailbox, name, need)
        except NotFound:
            raise NotFound("no such folder") from None

    async def mailbox(self, account: Account, mailbox_id: int, need: str = "r") -> Mailbox:
        """The mailbox of that id if the account may use it so (see :meth:`access`)."""
        return (await self.access(account, mailbox_id, need)).mailbox

    async def label(self, account: Account, mailbox: Mailbox) -> str:
        """The name the account sees *mailbox* under."""
        if mailbox.account_id == account.id:
            return mailbox.name
        return (await self.access(account, mailbox.id)).name

    async def folders(self, account: Account) -> list[Folder]:
        """The account's folders, then the folders shared with it that it may read."""
        mailboxes = await self.store.list_mailboxes(account.id)
        order = {"INBOX": 0}
        mailboxes.sort(key=lambda m: (order.get(m.name, 1), m.name.lower()))
        shared = await self.service.acl.shared_with(account)
        listed = [(m, "") for m in mailboxes] + [
            (mailbox, name)
            for name, (mailbox, rights) in sorted(shared.items(), key=lambda i: i[0].lower())
            if "r" in rights
        ]
        folders = []
        for mailbox, label in listed:
            counted = self._counts(mailbox)
            if counted is None:
                status = await self.store.mailbox_status(mailbox.id)
                counted = (status.messages, status.unseen)
            folders.append(Folder(mailbox, *counted, label=label))
        return folders

    async def readable_shared(self, account: Account) -> list[MailboxId]:
        """The other accounts' folders shared with the account that it may read (the r right):
        the live updates of its pages follow them too."""
        shared = await self.service.acl.shared_with(account)
        return [mailbox.id for mailbox, rights in shared.values() if "r" in rights]

    def _counts(self, mailbox: Mailbox) -> tuple[int, int] | None:
        """Messages and unseen messages from the process's index of the mailbox, when it holds
        a current one (no store call: a COUNT over a large mailbox costs more than the page)."""
        index = self.service.index.find(mailbox.account_id, mailbox.name)
        if index is None or index.stale or index.id != mailbox.id:
            return None
        kept = self._unseen.get(mailbox.id)
        if kept is not None and kept[0] == index.version:
            return len(index), kept[1]
        flags = index.flags
        unseen = sum(1 for p in range(len(index)) if not flags[p] & SEEN_BIT)
        self._unseen[mailbox.id] = (index.version, unseen)
        return len(index), unseen

    def _mailboxes(self) -> Mailboxes:
        service = self.service
        return Mailboxes(service.store, service.acl, service.quota)

    async def create_folder(self, account: Account, name: str) -> Mailbox:
        """A new folder of the account's own (parents made as IMAP CREATE makes them)."""
        name = name.strip()
        if not name:
            raise InvalidInput("the folder needs a name")
        if self.service.acl.is_shared_name(name):
            raise NotAllowed(f"{name}: that name is for other accounts' shared folders")
        return await self._mailboxes().create(account, name)

    async def rename_folder(self, account: Account, mailbox_id: int, new: str) -> Mailbox:
        access = await self.access(account, mailbox_id, "x")
        mailbox = access.mailbox
        if mailbox.name == "INBOX" or mailbox.special_use is not None:
            raise NotAllowed(f"{access.name} keeps its name")
        new = new.strip()
        if self.service.acl.is_shared_name(new) and access.own:
            raise NotAllowed(f"{new}: that name is for other accounts' shared folders")
        return await self._mailboxes().rename(account, access.name, new)

    async def delete_folder(self, account: Account, mailbox_id: int) -> Mailbox:
        """Delete an empty folder (INBOX and the special-use folders stay)."""
        access = await self.access(account, mailbox_id, "x")
        mailbox = access.mailbox
        if mailbox.name == "INBOX" or mailbox.special_use is not None:
            raise NotAllowed(f"{access.name} cannot be deleted")
        if (await self.store.mailbox_status(mailbox.id)).messages:
            raise NotAllowed(f"{access.name} is not empty: move or delete its messages first")
        return await self._mailboxes().delete(account, access.name)

    # ---- app passwords (docs/app-passwords.md) -----------------------------------------------
    async def app_passwords(self, account: Account) -> list[Login]:
        return await Logins(self.store).list(account.address)

    async def add_app_password(
        self, account: Account, label: str, password: str, remote: str
    ) -> NewLogin:
        """A new app password, once the account's main password is given again (a session
        alone, perhaps left open somewhere, must not mint lasting credentials)."""
        signed = await self.service.auth.sign_in(account.address, password, remote=remote)
        if signed is None or signed.account.id != account.id or signed.login is not None:
            raise NotAllowed("that is not the account's password")
        return await Logins(self.store).add(account.address, label)

    async def delete_app_password(self, account: Account, label: str) -> Login:
        return await Logins(self.store).delete(account.address, label)

    async def quota(self, account: Account) -> tuple[int, int] | None:
        """Octets used and the storage limit, when the account has one."""
        report = await self.service.quota.report(account)
        if report.limits.storage is None:
            return None
        return report.usage.storage, report.limits.storage

    async def special(self, account: Account, use: str) -> Mailbox:
        for mailbox in await self.store.list_mailboxes(account.id):
            if mailbox.special_use == use:
                return mailbox
        name = use.lstrip("\\")
        mailbox_or_none = await self.store.get_mailbox(account.id, name)
        if mailbox_or_none is None:
            raise NotFound(f"this account has no {name} folder")
        return mailbox_or_none

    async def inbox(self, account: Account) -> Mailbox:
        mailbox = await self.store.get_mailbox(account.id, "INBOX")
        if mailbox is None:
            raise NotFound("this account has no INBOX")
        return mailbox

    # ---- lists ---------------------------------------------------------------------------
    async def page(
        self,
        account: Account,
        mailbox_id: int,
        *,
        sort_by: str = "date",
        reverse: bool = True,
        page: int = 1,
        size: int = 50,
        query: str = "",
        field: str = "all",
    ) -> ListPage:
        """One page of a folder's messages (newest first by default), or of those matching
        *query* in *field* (pobox.service.search, as IMAP SEARCH)."""
        if sort_by not in SORTS:
            raise InvalidInput(f"unknown order {sort_by!r}")
        mailbox = await self.mailbox(account, mailbox_id)
        if sort_by == "date" and page <= 1 and not query.strip():
            first = await self._first_page(mailbox, reverse, size)
            if first is not None:
                return first
        index = await self.service.index.acquire(mailbox)
        try:
            uids = await self._order(index, sort_by, reverse, query.strip(), field)
            total = len(uids)
            pages = max(1, (total + size - 1) // size)
            page = min(max(page, 1), pages)
            window = uids[(page - 1) * size : page * size]
            metas = [m for m in (index.meta(uid) for uid in window) if m is not None]
        finally:
            self.service.index.release(index)
        items = await self._items(mailbox, metas)
        if sort_by == "thread":
            depths = self._depths.get(mailbox.id, {})
            items = [replace(item, depth=depths.get(item.uid, 0)) for item in items]
        return ListPage(mailbox, items, page, pages, total, sort_by, reverse)

    def _ordered(self, mailbox: Mailbox) -> bool:
        """Whether this worker can order the folder by date without reading a whole column
        from the store: its index is loaded and keeps a date order made for it, or the date
        keys of all but a few of its messages."""
        if mailbox.id in self._warming:
            return False
        index = self.service.index.find(mailbox.account_id, mailbox.name)
        if index is None or index.id != mailbox.id or not index.loaded:
            return False
        kept = self._orders.get(mailbox.id)
        if kept is not None and kept[0][:2] == (index.version, "date"):
            return True
        # a few new messages' keys are read by UID in a moment; a whole column is not
        return len(index.sort_cache.get("DATE", ())) + WHOLE_MAILBOX >= len(index)

    async def _first_page(self, mailbox: Mailbox, reverse: bool, size: int) -> ListPage | None:
        """The first page by date of a large folder this worker has not ordered yet, from one
        store query (the same order as :meth:`_order`'s: SORT's DATE key, equal keys by UID),
        while the index is loaded and ordered in the background for the pages after it; None
        when the index path is as quick."""
        if self._ordered(mailbox):
            return None
        key = (int(mailbox.highest_modseq), reverse, size)
        kept = self._first.get(mailbox.id, {})
        if key in kept and mailbox.id in self._warming:
            total, uids = kept[key]  # nothing changed in the folder since
        else:
            total, uids = await self.store.date_page(mailbox.id, size, newest_first=reverse)
        if total < COLD_PAGE_MIN and mailbox.id not in self._warming:
            return None
        self._warm(mailbox, reverse)
        kept = {k: v for k, v in kept.items() if k[0] == key[0]}  # older versions go
        kept[key] = (total, uids)
        self._first[mailbox.id] = kept
        found = {m.uid: m for m in await self.store.get_messages(mailbox.id, uids)}
        metas = [found[uid] for uid in uids if uid in found]
        items = await self._items(mailbox, metas)
        pages = max(1, (total + size - 1) // size)
        return ListPage(mailbox, items, 1, pages, total, "date", reverse)

    def _warm(self, mailbox: Mailbox, reverse: bool) -> None:
        if mailbox.id in self._warming:
            return
        task = asyncio.get_running_loop().create_task(self._warm_order(mailbox, reverse))
        self._warming[mailbox.id] = task
        task.add_done_callback(lambda done: self._warmed(mailbox.id, done))

    def _warmed(self, mailbox_id: MailboxId, task: asyncio.Task[None]) -> None:
        if self._warming.get(mailbox_id) is task:
            del self._warming[mailbox_id]
            self._first.pop(mailbox_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.warning("webmail: ordering folder %s failed: %s", mailbox_id, task.exception())

    async def _warm_order(self, mailbox: Mailbox, reverse: bool) -> None:
        index = await self.service.index.acquire(mailbox)
        try:
            await self._order(index, "date", reverse, "", "all")
        finally:
            self.service.index.release(index)

    async def _order(
        self, index: MailboxIndex, sort_by: str, reverse: bool, query: str, field: str
    ) -> list[Uid]:
        key = (index.version, sort_by, reverse, f"{field}:{query}")
        kept = self._orders.get(index.id)
        if kept is not None and kept[0] == key and not index.stale:
            return kept[1]
        messages = ColumnRecords(index, len(index), index.record_at)
        only: set[Uid] | None = None
        if query:
            only = set(await search(self.store, index.id, search_query(query, field), messages))
        if sort_by == "thread":
            uids, depths = await self._threads(index, messages, only, reverse)
            self._orders[index.id] = (key, uids)
            self._depths[index.id] = depths
            return uids
        # descending is ascending turned round: equal keys then list the newest message first
        ordered = await sort(
            self.store,
            index.id,
            [SortKey(SORTS[sort_by])],
            messages,
            index.sort_cache,
            only,
        )
        uids = ordered[::-1] if reverse else ordered
        self._orders[index.id] = (key, uids)
        return uids

    async def search_all(
        self, account: Account, query: str, field: str = "all", limit: int = 200
    ) -> list[tuple[Mailbox, ListItem]]:
        """Messages of every folder of the account matching *query* (as :meth:`page` finds
        them in one), newest first, at most *limit*."""
        program = search_query(query, field)
        found: list[tuple[float, int, Mailbox, MessageMeta]] = []
        for mailbox in await self.store.list_mailboxes(account.id):
            index = await self.service.index.acquire(mailbox)
            try:
                messages = ColumnRecords(index, len(index), index.record_at)
                for uid in await search(self.store, index.id, program, messages):
                    meta = index.meta(uid)
                    if meta is not None:
                        found.append((meta.internal_date.timestamp(), uid, mailbox, meta))
            finally:
                self.service.index.release(index)
        found.sort(key=lambda item: (item[0], item[1]), reverse=True)
        chosen = found[:limit]
        out: list[tuple[Mailbox, ListItem]] = []
        by_mailbox: dict[MailboxId, list[MessageMeta]] = {}
        boxes: dict[MailboxId, Mailbox] = {}
        for _, _, mailbox, meta in chosen:
            by_mailbox.setdefault(mailbox.id, []).append(meta)
            boxes[mailbox.id] = mailbox
        items: dict[tuple[MailboxId, Uid], ListItem] = {}
        for mailbox_id, metas in by_mailbox.items():
            for item in await self._items(boxes[mailbox_id], metas):
                items[(mailbox_id, item.uid)] = item
        for _, _, mailbox, meta in chosen:
            out.append((mailbox, items[(mailbox.id, meta.uid)]))
        return out

    async def _threads(
        self,
        index: MailboxIndex,
        messages: ColumnRecords,
        only: set[Uid] | None,
        newest_first: bool,
    ) -> tuple[list[Uid], dict[int, int]]:
        """The messages conversation by conversation (each in reply order, its first message
        first), conversations by their newest message; and each message's depth."""
        roots = await thread(self.store, index.id, "REFERENCES", messages, index.sort_cache, only)
        flattened: list[tuple[float, list[tuple[int, int]]]] = []
        for root in roots:
            rows: list[tuple[int, int]] = []
            latest = 0.0
            stack = [(root, 0)]
            while stack:
                node, depth = stack.pop()
                if node.item is not None:
                    rows.append((node.item.uid, min(depth, MAX_DEPTH)))
                    latest = max(latest, node.item.date)
                    depth += 1
                stack.extend((child, depth) for child in reversed(node.children))
            flattened.append((latest, rows))
        flattened.sort(key=lambda t: t[0], reverse=newest_first)
        uids = [Uid(uid) for _, rows in flattened for uid, _ in rows]
        depths = {uid: depth for _, rows in flattened for uid, depth in rows if depth}
        return uids, depths

    async def _items(self, mailbox: Mailbox, metas: Sequence[MessageMeta]) -> list[ListItem]:
        if not metas:
            return []
        uids = [m.uid for m in metas]
        fields = await self.store.search_fields(mailbox.id, uids)
        structures = await self.store.get_structures({m.blob for m in metas})
        items = []
        for meta in metas:
            f = fields.get(meta.uid)
            stored = structures.get(meta.blob)
            attached = stored is not None and has_attachment(ParsedMessage.cached(stored))
            items.append(
                ListItem(
                    meta.uid,
                    meta.flags,
                    meta.size,
                    (f.sent_date if f is not None and f.sent_date else meta.internal_date),
                    _clean(f.from_) if f is not None else "",
                    _clean(f.subject) if f is not None else "",
                    attached,
                )
            )
        return items

    # ---- reading -------------------------------------------------------------------------
    async def _open(
        self, account: Account, mailbox_id: int, uid: int
    ) -> tuple[Mailbox, MessageMeta, ParsedMessage]:
        mailbox = await self.mailbox(account, mailbox_id)
        metas = await self.store.get_messages(mailbox.id, [Uid(uid)])
        if not metas:
            raise NotFound("no such message")
        meta = metas[0]
        parsed = ParsedMessage.cached(await self.store.get_structure(meta.blob))
        return mailbox, meta, parsed

    async def message(
        self, account: Account, mailbox_id: int, uid: int, part: int | None = None
    ) -> MessageView:
        """A message for reading (*part*: a message/rfc822 part of it instead)."""
        mailbox, meta, parsed = await self._open(account, mailbox_id, uid)
        parts = parsed.root.walk()
        shown = parsed
        if part is not None:
            if not 0 <= part < len(parts) or parts[part].message is None:
                raise NotFound("no such forwarded message")
            encapsulated = parts[part].message
            assert encapsulated is not None
            shown = encapsulated
        content = await self.store.open_message(mailbox.id, meta.uid)
        try:
            return await asyncio.to_thread(self._view, mailbox, meta, parts, shown, part, content)
        finally:
            content.close()

    def _view(
        self,
        mailbox: Mailbox,
        meta: MessageMeta,
        parts: list[MimePart],
        shown: ParsedMessage,
        number: int | None,
        content: Content,
    ) -> MessageView:
        text_part, html_part = _body_parts(shown.root)
        numbers = {id(p): n for n, p in enumerate(parts)}
        body = {numbers[id(p)] for p in (text_part, html_part) if p is not None}
        view = MessageView(
            mailbox=mailbox,
            uid=meta.uid,
            flags=meta.flags,
            size=meta.size,
            part=number,
            subject=_header(shown, "subject"),
            sender=_header(shown, "from"),
            to=_header(shown, "to"),
            cc=_header(shown, "cc"),
            date=_header(shown, "date"),
            message_id=_header(shown, "message-id"),
            references=_header(shown, "references"),
            reply_to=_header(shown, "reply-to"),
            text=_read_text(content, text_part) if text_part is not None else None,
            html=_read_text(content, html_part) if html_part is not None else None,
            from_addresses=_addresses(shown, "from"),
            to_addresses=_addresses(shown, "to"),
            cc_addresses=_addresses(shown, "cc"),
            reply_to_addresses=_addresses(shown, "reply-to"),
        )
        inline_size = 0
        inside = shown.root.walk()
        skip: set[int] = set()  # parts of encapsulated messages: theirs, not this one's
        for part in inside:
            if part.message is not None and part is not shown.root:
                skip.update(id(p) for p in part.message.root.walk())
        for part in inside:
            if id(part) in skip or (part is shown.root and part.is_message_rfc822):
                continue
            n = numbers[id(part)]
            cid = (part.content_id or "").strip().strip("<>")
            if (
                cid
                and part.mime_type in INLINE_IMAGES
                and html_part is not None
                and inline_size + part.body_size <= MAX_INLINE
            ):
                data = _read_bytes(content, part)
                inline_size += len(data)
                view.inline[cid] = (part.mime_type, data)
                if (part.disposition or "").lower() != "attachment":
                    continue
            if _is_attachment(part, body, n):
                fallback = "message.eml" if part.is_message_rfc822 else f"part-{n}"
                view.attachments.append(
                    Attachment(
                        n,
                        _safe_filename(part.filename, fallback),
                        part.mime_type,
                        part.body_size,
                        part.is_message_rfc822,
                    )
                )
        return view

    async def download(self, account: Account, mailbox_id: int, uid: int, part: int) -> Download:
        """An attachment's decoded content."""
        mailbox, meta, parsed = await self._open(account, mailbox_id, uid)
        parts = parsed.root.walk()
        if not 0 <= part < len(parts) or parts[part].is_multipart:
            raise NotFound("no such attachment")
        leaf = parts[part]
        content = await self.store.open_message(mailbox.id, meta.uid)
        try:
            if leaf.is_message_rfc822:  # the encapsulated message as it is
                data = await asyncio.to_thread(content.read, leaf.body_offset, leaf.body_size)
            else:
                data = await asyncio.to_thread(_read_bytes, content, leaf)
        finally:
            content.close()
        fallback = "message.eml" if leaf.is_message_rfc822 else f"part-{part}"
        filename = _safe_filename(leaf.filename, fallback)
        mime_type = leaf.mime_type
        if not leaf.filename and not leaf.is_message_rfc822:
            filename += mimetypes.guess_extension(mime_type) or ".bin"
        return Download(filename, mime_type, data)

    async def source(self, account: Account, mailbox_id: int, uid: int) -> bytes:
        mailbox, meta, _ = await self._open(account, mailbox_id, uid)
        content = await self.store.open_message(mailbox.id, meta.uid)
        try:
            return await asyncio.to_thread(content.read, 0, content.size)
        finally:
            content.close()

    # ---- acting --------------------------------------------------------------------------
    @staticmethod
    def _uids(uids: Iterable[int]) -> list[Uid]:
        """The UIDs an action names (each once); more than MAX_ACTION is refused."""
        wanted = sorted({Uid(u) for u in uids if 0 < u < 2**32})
        if len(wanted) > MAX_ACTION:
            raise InvalidInput(f"at most {MAX_ACTION} messages at once")
        return wanted

    async def set_flag(
        self, account: Account, mailbox_id: int, uids: Iterable[int], flag: str, on: bool
    ) -> int:
        if flag not in SETTABLE:
            raise InvalidInput(f"unknown flag {flag!r}")
        # \\Seen needs the s right, other flags w (RFC 4314 §4)
        mailbox = await self.mailbox(account, mailbox_id, "r" + flag_right(SETTABLE[flag]))
        wanted = self._uids(uids)
        if not wanted:
            return 0
        op = FlagOp.ADD if on else FlagOp.REMOVE
        changed = await self.service.index.set_flags(
            mailbox.id, wanted, op, frozenset({SETTABLE[flag]})
        )
        return len(changed)

    async def move(
        self, account: Account, mailbox_id: int, uids: Iterable[int], dest_id: int
    ) -> Moved:
        src = await self.mailbox(account, mailbox_id, "rte")  # moving out expunges
        dst = await self.mailbox(account, dest_id, "i")
        if src.id == dst.id:
            raise InvalidInput("the messages are in that folder already")
        wanted = self._uids(uids)
        pairs = await self.service.index.copy(src.id, wanted, dst.id, move=True) if wanted else []
        return Moved(src.id, dst.id, tuple(new for _, new in pairs))

    async def delete(self, account: Account, mailbox_id: int, uids: Iterable[int]) -> Moved | None:
        """Into Trash; in Trash (and Junk), for good. Returns what an undo needs (None: gone)."""
        mailbox = await self.mailbox(account, mailbox_id, "rte")
        if mailbox.special_use in ("\\Trash", "\\Junk"):
            wanted = self._uids(uids)
            if wanted:
                await self.service.index.set_flags(
                    mailbox.id, wanted, FlagOp.ADD, frozenset({DELETED})
                )
                await self.service.index.expunge(mailbox.id, wanted)
            return None
        trash = await self.special(account, "\\Trash")
        return await self.move(account, mailbox.id, uids, trash.id)

    async def junk(self, account: Account, mailbox_id: int, uids: Iterable[int]) -> Moved:
        junk = await self.special(account, "\\Junk")
        return await self.move(account, mailbox_id, uids, junk.id)

    async def empty(self, account: Account, mailbox_id: int) -> int:
        """Empty Trash or Junk (other folders are refused)."""
        mailbox = await self.mailbox(account, mailbox_id, "rte")
        if mailbox.special_use not in ("\\Trash", "\\Junk"):
            raise NotAllowed("only Trash and Junk can be emptied")
        uids = [m.uid for m in await self.store.list_messages(mailbox.id)]
        for start in range(0, len(uids), MAX_ACTION):
            await self.delete(account, mailbox.id, uids[start : start + MAX_ACTION])
        return len(uids)

    async def undo(self, account: Account, moved: Moved) -> Moved:
        """Put moved messages back (both folders checked again: the form came from a page)."""
        return await self.move(account, moved.dst, moved.uids, moved.src)

    # ---- writing -------------------------------------------------------------------------
    def build(self, account: Account, out: Outgoing, forwarded: bytes | None) -> bytes:
        """Blocking: the message *out* describes, whole (see :meth:`message_chunks`)."""
        return b"".join(self.message_chunks(account, out, forwarded))

    def message_chunks(
        self, account: Account, out: Outgoing, forwarded: bytes | None
    ) -> Iterator[bytes]:
        """Blocking: the message *out* describes, in pieces. The headers, the text and an
        attached message come from :mod:`email`; each attachment stands there as a part whose
        body is a random placeholder line, and the pieces are that message cut at the
        placeholders with each attachment's base64 written in their place, read from its file
        a piece at a time: an attachment is never whole in memory."""
        message = EmailMessage(policy=email.policy.SMTP)
        message["From"] = account.address
        for name, value in (("To", out.to), ("Cc", out.cc)):
            if value.strip():
                message[name] = ", ".join(parse_recipients(value))
        message["Subject"] = _clean(out.subject)
        message["Date"] = email.utils.format_datetime(datetime.now(UTC))
        if out.in_reply_to:
            message["In-Reply-To"] = _clean(out.in_reply_to)
        if out.references:
            message["References"] = _clean(out.references)
        message.set_content(out.body.replace("\r\n", "\n"))
        holders: list[tuple[bytes, BinaryIO]] = []
        for filename, mime_type, data in out.attachments:
            maintype, _, subtype = (mime_type or "application/octet-stream").partition("/")
            if not subtype or maintype in ("multipart", "message"):
                maintype, subtype = "application", "octet-stream"
            token = secrets.token_bytes(45)  # one base64 line of 60 characters
            message.add_attachment(
                token, maintype=maintype, subtype=subtype, filename=_safe_filename(filename, "file")
            )
            source = io.BytesIO(data) if isinstance(data, bytes) else data
            holders.append((base64.b64encode(token) + b"\r\n", source))
        if forwarded is not None:  # as a message part (RFC 2046 §5.2.1: 7bit/8bit, no base64)
            original = email.message_from_bytes(forwarded, policy=email.policy.SMTP)
            message.add_attachment(original, disposition="attachment", filename="forwarded.eml")
        skeleton = message.as_bytes()
        at = 0
        for line, source in holders:
            where = skeleton.index(line, at)
            yield skeleton[at:where]
            yield from _base64_lines(source)
            at = where + len(line)
        yield skeleton[at:]

    async def _forwarded(self, account: Account, out: Outgoing) -> bytes | None:
        if out.forward is None:
            return None
        return await self.source(account, out.forward[0], out.forward[1])

    async def send(self, account: Account, out: Outgoing) -> Submitted:
        """Send through the submission path (local recipients delivered at once, others
        queued), then keep a copy in Sent."""
        if self.submission is None:
            raise NotAllowed("sending is not set up on this server")
        recipients = [
            *parse_recipients(out.to),
            *parse_recipients(out.cc),
            *parse_recipients(out.bcc),
        ]
        if not recipients:
            raise InvalidInput("the message needs a recipient")
        # built into the spool of the copy for Sent, attachments streamed from their files;
        # the submission path takes the message whole, as SMTP's DATA gives it
        new = await self._spooled(account, out, frozenset({SEEN}))
        try:
            data = await asyncio.to_thread(_read_spool, new)
            submitted = await self.submission.submit(
                account, account.address, recipients, data, protocol="HTTP"
            )
            del data
            try:
                sent: Mailbox | None = await self.special(account, "\\Sent")
            except NotFound:  # no Sent folder: sent all the same, without a copy
                sent = None
        except BaseException:
            await asyncio.to_thread(new.spool.discard)
            raise
        if sent is None:
            await asyncio.to_thread(new.spool.discard)
            return submitted
        with contextlib.suppress(NotFound):
            await self._store(sent, new)
        return submitted

    async def save_draft(
        self, account: Account, out: Outgoing, replaces: tuple[int, int] | None = None
    ) -> Uid:
        """Keep the message in Drafts (the draft it replaces goes)."""
        drafts = await self.special(account, "\\Drafts")
        new = await self._spooled(account, out, frozenset({SEEN, DRAFT}))
        uid = await self._store(drafts, new)
        if replaces is not None:  # the older version goes for good, not to Trash
            with contextlib.suppress(NotFound, NotAllowed):
                await self.discard_draft(account, replaces[0], replaces[1])
        return uid

    async def discard_draft(self, account: Account, mailbox_id: int, uid: int) -> None:
        drafts = await self.special(account, "\\Drafts")
        mailbox = await self.mailbox(account, mailbox_id)
        if mailbox.id != drafts.id:
            raise NotAllowed("only drafts can be discarded")
        await self.service.index.set_flags(mailbox.id, [Uid(uid)], FlagOp.ADD, frozenset({DELETED}))
        await self.service.index.expunge(mailbox.id, [Uid(uid)])

    async def _append(self, mailbox: Mailbox, data: bytes, flags: frozenset[str]) -> Uid:
        new = await asyncio.to_thread(
            spool_message, self.store.new_spool(), chunked(data), flags=flags
        )
        return await self._store(mailbox, new)

    async def _spooled(self, account: Account, out: Outgoing, flags: frozenset[str]) -> NewMessage:
        """The message *out* describes, written into a new spool piece by piece (in a
        thread) and parsed: ready to be stored."""
        forwarded = await self._forwarded(account, out)
        return await asyncio.to_thread(
            lambda: spool_message(
                self.store.new_spool(), self.message_chunks(account, out, forwarded), flags=flags
            )
        )

    async def _store(self, mailbox: Mailbox, new: NewMessage) -> Uid:
        # the same quota check as IMAP APPEND and delivery (docs/quota.md): a full account
        # refuses the copy in Sent or the draft with OverQuota, which the page reports
        limits = await self.service.quota.current_limits(mailbox.account_id)
        meta = await self.service.index.append(mailbox.id, new, quota=limits)
        return meta.uid

    async def mark_answered(self, account: Account, mailbox_id: int, uid: int) -> None:
        """\\Answered on a message replied to, where the user may set it (the w right)."""
        try:
            mailbox = await self.mailbox(account, mailbox_id, "rw")
        except NoPermission:
            return
        await self.service.index.set_flags(
            mailbox.id, [Uid(uid)], FlagOp.ADD, frozenset({ANSWERED})
        )

    def reply(self, view: MessageView, mode: str, me: str) -> Outgoing:
        """A reply ("reply", "all") or forward ("forward") to *view*, quoted."""
        subject = view.subject
        refs = " ".join(x for x in (view.references, view.message_id) if x).strip()
        if mode == "forward":
            if not subject.lower().startswith("fwd:"):
                subject = f"Fwd: {subject}"
            return Outgoing(subject=subject, forward=(view.mailbox.id, view.uid))
        if not subject.lower().startswith("re:"):
            subject = f"Re: {subject}"
        to = view.reply_to_addresses or view.from_addresses
        cc: list[str] = []
        if mode == "all":
            mine = me.lower()
            seen = {a.lower() for a in to} | {mine}
            for address in [*view.to_addresses, *view.cc_addresses]:
                if address.lower() not in seen:
                    seen.add(address.lower())
                    cc.append(address)
        quoted = _quote(view.text or "")
        intro = f"On {view.date}, {view.sender} wrote:\n" if view.date else ""
        return Outgoing(
            to=", ".join(to),
            cc=", ".join(cc),
            subject=subject,
            body=f"\n\n{intro}{quoted}",
            in_reply_to=view.message_id,
            references=refs,
        )

    async def known_addresses(self, account: Account, limit: int = 200) -> list[str]:
        """Addresses to suggest in To/Cc: those the account wrote to (Sent) and heard from
        (INBOX), most recent first."""
        seen: dict[str, None] = {}
        for use, fields in (("\\Sent", ("to", "cc")), ("INBOX", ("from_",))):
            try:
                mailbox = await (
                    self.inbox(account) if use == "INBOX" else self.special(account, use)
                )
            except NotFound:
                continue
            for name in fields:
                values = await self.store.field_values(mailbox.id, name)
                for uid in sorted(values, reverse=True)[:1000]:
                    text = values[uid]
                    if isinstance(text, str):
                        for address in parse_recipients(text, strict=False):
                            seen.setdefault(address, None)
                    if len(seen) >= limit:
                        return list(seen)
        return list(seen)


def search_query(text: str, field: str) -> Query:
    """The SEARCH program of the webmail's search box: every word must match (in *field*)."""
    if field not in SEARCH_FIELDS:
        raise InvalidInput(f"unknown search field {field!r}")
    words = text.split()
    terms: list[Query] = []
    for word in words[:10]:
        if field == "subject":
            terms.append(Header("subject", word))
        elif field == "from":
            terms.append(Header("from", word))
        elif field == "to":
            terms.append(Or(Header("to", word), Header("cc", word)))
        elif field == "body":
            terms.append(Body(word))
        else:
            terms.append(
                Or(
                    Or(Header("subject", word), Header("from", word)),
                    Or(Or(Header("to", word), Header("cc", word)), Body(word)),
                )
            )
    return And(tuple(terms))


def parse_recipients(text: str, *, strict: bool = True) -> list[str]:
    """Addresses typed in a To/Cc/Bcc field (commas or semicolons between them)."""
    from pobox.service.accounts import normalise_address

    out: list[str] = []
    for _name, address in email.utils.getaddresses([text.replace(";", ",")]):
        address = address.strip()
        if not address:
            continue
        try:
            out.append(normalise_address(address))
        except InvalidInput:
            if strict:
                raise InvalidInput(f"{address[:100]!r} is not a mail address") from None
    return out
