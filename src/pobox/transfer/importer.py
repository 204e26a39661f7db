"""Putting mail from elsewhere into an account: what the Maildir, mbox, IMAP and POP3 imports
share (docs/backup.md, "Import").

A source mailbox that comes with its UIDVALIDITY and UIDs (a Dovecot Maildir, an IMAP server)
keeps them when the target mailbox is new, or has never held a message (a new account's INBOX),
or is one an earlier, interrupted import of the same source made (same UIDVALIDITY: the import
goes on with the UIDs it lacks). Clients that cached the old server's mailbox then find the same
UIDs. Otherwise messages are appended and get new UIDs.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pobox.errors import InvalidInput, NotFound
from pobox.mail.parse import parse_message
from pobox.service.content import fields_of, normalize_crlf, spool_message
from pobox.store.api import (
    Account,
    BlobId,
    Mailbox,
    MailboxImage,
    MessageImage,
    RestoreContent,
    Spool,
    Store,
)
from pobox.store.rows import from_epoch, uidl_for
from pobox.transfer.backup import Reporter

BATCH = 200

#: Dovecot's default ``pop3_uidl_format``.
DOVECOT_UIDL_FORMAT = "%08Xu%08Xv"


@dataclass
class SourceMessage:
    """One message to import. *load* gives its bytes (read lazily, in a worker thread)."""

    load: Callable[[], bytes]
    flags: frozenset[str] = frozenset()
    internal_date: float | None = None  # epoch seconds
    internal_tz: int = 0
    uid: int | None = None
    pop3_uidl: str | None = None
    size: int = 0  # when known beforehand (progress only)


@dataclass
class SourceMailbox:
    name: str
    messages: list[SourceMessage]
    uidvalidity: int | None = None
    uidnext: int | None = None
    subscribed: bool = True
    #: loads many messages at once (an IMAP FETCH), instead of each message's *load*
    load_batch: Callable[[list[SourceMessage]], list[bytes]] | None = None


@dataclass
class ImportReport:
    mailboxes: int = 0
    messages: int = 0
    skipped: int = 0  # there already (an earlier run)
    bytes: int = 0
    kept_uids: list[str] = field(default_factory=list)  # mailboxes that kept their UIDs
    appended: list[str] = field(default_factory=list)  # mailboxes that got new UIDs


def uidl_from_format(fmt: str, uid: int, uidvalidity: int) -> str:
    """Expand a Dovecot ``pop3_uidl_format`` such as ``%08Xu%08Xv``: ``%u`` the UID, ``%v`` the
    UIDVALIDITY, with an optional zero-padded width and ``X`` for hexadecimal (lower-case
    digits, as Dovecot writes them)."""
    out: list[str] = []
    i = 0
    while i < len(fmt):
        ch = fmt[i]
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        j = i + 1
        width = ""
        while j < len(fmt) and fmt[j].isdigit():
            width += fmt[j]
            j += 1
        radix = ""
        if j < len(fmt) and fmt[j] in "Xx":
            radix = fmt[j]
            j += 1
        if j >= len(fmt):
            raise InvalidInput(f"--pop3-uidl-format {fmt!r} ends inside a variable")
        var = fmt[j]
        if var == "%":
            out.append("%")
        elif var in "uv":
            value = uid if var == "u" else uidvalidity
            spec = f"{'0' if width.startswith('0') else ''}{width.lstrip('0') or ''}"
            out.append(format(value, f"{spec}{'x' if radix else 'd'}"))
        else:
            raise InvalidInput(
                f"--pop3-uidl-format {fmt!r}: only %u (UID) and %v (UIDVALIDITY) are supported"
            )
        i = j + 1
    return "".join(out)


def content_from_bytes(store: Store, data: bytes) -> RestoreContent:
    """Blocking: *data* (line ends made CRLF) in a spool (for ``Store.seal_spools``), parsed
    once."""
    spool: Spool = store.new_spool()
    try:
        data = normalize_crlf(data)
        spool.write(data)
        parsed = parse_message(io.BytesIO(data))  # the bytes just written, from memory
    except BaseException:
        spool.discard()
        raise
    return RestoreContent(spool, parsed.to_bytes(), fields_of(parsed))


async def _target(
    store: Store, account: Account, source: SourceMailbox, count: int
) -> tuple[Mailbox, bool]:
    """The mailbox to import into, and whether the source's UIDs are kept."""
    existing = await store.get_mailbox(account.id, source.name)
    keep = source.uidvalidity is not None and all(m.uid is not None for m in source.messages)
    if keep and existing is not None and existing.uidvalidity == source.uidvalidity:
        return existing, True  # an earlier run of this import: go on
    if keep and (existing is None or existing.uidnext == 1):
        assert source.uidvalidity is not None
        top = max((m.uid or 0 for m in source.messages), default=0)
        uidnext = max(source.uidnext or 1, top + 1)
        image = MailboxImage(
            name=source.name,
            uidvalidity=source.uidvalidity,
            uidnext=uidnext,
            highest_modseq=max(1, count),
            recent_floor=uidnext,  # imported mail is not \Recent
            special_use=None,
        )
        return await store.restore_mailbox(account.id, image), True
    if existing is None:
        existing = await store.create_mailbox(account.id, source.name)
    return existing, False


async def import_mailbox(
    store: Store,
    account: Account,
    source: SourceMailbox,
    report: ImportReport,
    progress: Reporter,
    *,
    uidl_format: str | None = None,
) -> None:
    ordered = sorted(source.messages, key=lambda m: m.uid or 0)
    mailbox, keep = await _target(store, account, source, len(ordered))
    report.mailboxes += 1
    if source.subscribed:
        await store.set_subscribed(account.id, source.name, True)
    present: set[int] = set()
    uidls: set[str] = set()
    if keep:
        report.kept_uids.append(source.name)
        present = {m.uid for m in await store.list_messages(mailbox.id)}
    else:
        report.appended.append(source.name)
        if ordered and all(m.pop3_uidl for m in ordered):  # a POP3 import: resumable by UIDL
            uidls = {
                m.pop3_uidl or uidl_for(m.uid, mailbox.uidvalidity)
                for m in await store.list_messages(mailbox.id)
            }

    def done(m: SourceMessage) -> bool:
        return m.uid in present if keep else m.pop3_uidl in uidls

    for start in range(0, len(ordered), BATCH):
        batch = ordered[start : start + BATCH]
        todo = [(start + n, m) for n, m in enumerate(batch) if not done(m)]
        skipped = len(batch) - len(todo)
        report.skipped += skipped
        if skipped:
            progress.advance(skipped, skipped=skipped)
        if not todo:
            continue
        if source.load_batch is not None:
            datas = await asyncio.to_thread(source.load_batch, [m for _, m in todo])
        else:
            datas = list(await asyncio.gather(*(asyncio.to_thread(m.load) for _, m in todo)))
        nbytes = sum(len(d) for d in datas)
        if keep:
            await _restore_batch(store, mailbox, todo, datas, uidl_format)
        else:
            await _append_batch(store, mailbox, [m for _, m in todo], datas)
        report.messages += len(todo)
        report.bytes += nbytes
        progress.advance(len(todo), nbytes=nbytes)


def _uidl(
    message: SourceMessage, uid: int, uidvalidity: int, uidl_format: str | None
) -> str | None:
    """What to store as the message's POP3 UIDL override (None: pobox's own form fits)."""
    uidl = message.pop3_uidl
    if uidl is None and uidl_format is not None:
        uidl = uidl_from_format(uidl_format, uid, uidvalidity)
    return None if uidl == uidl_for(uid, uidvalidity) else uidl


async def _restore_batch(
    store: Store,
    mailbox: Mailbox,
    todo: Sequence[tuple[int, SourceMessage]],
    datas: Sequence[bytes],
    uidl_format: str | None,
) -> None:
    contents_list = await asyncio.gather(
        *(asyncio.to_thread(content_from_bytes, store, d) for d in datas)
    )
    try:
        await store.seal_spools([c.spool for c in contents_list])
    except BaseException:
        for c in contents_list:
            c.spool.discard()
        raise
    contents: dict[str, RestoreContent | BlobId] = {}
    images = []
    for (rank, message), content in zip(todo, contents_list, strict=True):
        assert message.uid is not None
        key = f"m{message.uid}"
        contents[key] = content
        when = message.internal_date if message.internal_date is not None else 0.0
        images.append(
            MessageImage(
                uid=message.uid,
                modseq=rank + 1,
                flags=message.flags,
                internal_date=when,
                internal_tz=message.internal_tz,
                save_date=when,
                size=content.spool.size,
                content=key,
                pop3_uidl=_uidl(message, message.uid, mailbox.uidvalidity, uidl_format),
            )
        )
    try:
        await store.restore_messages(mailbox.id, images, contents)
    except BaseException:
        for item in contents.values():
            if isinstance(item, RestoreContent):
                item.spool.discard()
        raise


async def _append_batch(
    store: Store, mailbox: Mailbox, messages: Sequence[SourceMessage], datas: Sequence[bytes]
) -> None:
    def spool(message: SourceMessage, data: bytes) -> object:
        when = (
            from_epoch(message.internal_date, message.internal_tz)
            if message.internal_date is not None
            else None
        )
        return spool_message(
            store.new_spool(),
            [data],
            flags=message.flags,
            internal_date=when,
            pop3_uidl=message.pop3_uidl,
        )

    spooled = await asyncio.gather(
        *(asyncio.to_thread(spool, m, d) for m, d in zip(messages, datas, strict=True))
    )
    await store.append_many(mailbox.id, spooled)  # type: ignore[arg-type]


async def account_for(store: Store, address: str) -> Account:
    account = await store.get_account(address)
    if account is None:
        raise NotFound(f"no account {address} (create it first: pobox user add {address})")
    return account


async def import_mailboxes(
    store: Store,
    address: str,
    mailboxes: Sequence[SourceMailbox],
    progress: Reporter,
    *,
    uidl_format: str | None = DOVECOT_UIDL_FORMAT,
) -> ImportReport:
    """Import *mailboxes* into the account at *address* (which must exist)."""
    if uidl_format:
        uidl_from_format(uidl_format, 1, 1)  # a bad format fails before anything is written
    account = await account_for(store, address)
    report = ImportReport()
    progress.set_total(sum(len(mb.messages) for mb in mailboxes))
    for source in mailboxes:
        await import_mailbox(
            store, account, source, report, progress, uidl_format=uidl_format or None
        )
    return report
