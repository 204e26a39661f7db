"""Row conventions both backends share, so rows copy across unchanged.

System flags are a bit mask in ``SYSTEM_FLAGS`` order, keywords one space-separated sorted text;
times are epoch seconds plus the zone offset in minutes; a POP3 UIDL not stored explicitly is
derived from the UID and UIDVALIDITY (Dovecot's default form).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from pobox.errors import InvalidInput
from pobox.store.api import (
    SEEN,
    SYSTEM_FLAGS,
    AccountId,
    Mailbox,
    MailboxId,
    MessageColumns,
    ModSeq,
    SearchFields,
    SharedMailbox,
    Uid,
)

FLAG_BITS = {name: 1 << index for index, name in enumerate(SYSTEM_FLAGS)}
_FLAG_BY_LOWER = {name.lower(): name for name in SYSTEM_FLAGS}
SEEN_BIT = FLAG_BITS[SEEN]
DELETED_BIT = FLAG_BITS["\\Deleted"]


def split_flags(flags: Iterable[str]) -> tuple[int, frozenset[str]]:
    """System flags to a bit mask (case-insensitive), the rest are keywords."""
    bits = 0
    keywords: set[str] = set()
    for flag in flags:
        system = _FLAG_BY_LOWER.get(flag.lower())
        if system is not None:
            bits |= FLAG_BITS[system]
        elif flag.startswith("\\"):
            raise InvalidInput(f"{flag} is not a flag that can be stored")
        elif flag:
            keywords.add(flag)
    return bits, frozenset(keywords)


def join_flags(bits: int, keywords: str) -> frozenset[str]:
    names = {name for name, bit in FLAG_BITS.items() if bits & bit}
    if keywords:
        names.update(keywords.split(" "))
    return frozenset(names)


def keywords_text(keywords: Iterable[str]) -> str:
    return " ".join(sorted(keywords))


def to_epoch(moment: datetime) -> tuple[float, int]:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    offset = moment.utcoffset() or timedelta(0)
    return moment.timestamp(), int(offset.total_seconds() // 60)


def from_epoch(epoch: float, tz_minutes: int = 0) -> datetime:
    return datetime.fromtimestamp(epoch, timezone(timedelta(minutes=tz_minutes)))


#: Rows turned into columns at a time by :class:`ColumnBuilder`.
COLUMN_PIECE = 8192


class ColumnBuilder:
    """Both backends' ``message_columns``: rows of (uid, modseq, flags, keywords,
    internal_date, internal_tz, save_date, size, blob, pop3_uidl, pop3_hidden_at), a piece at a
    time, into ``array`` columns (what pobox.service.index keeps, so it adopts them as they are).
    """

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox
        self.uids = array("I")
        self.modseqs = array("Q")
        self.flags = array("Q")
        self.keywords: list[str] = []
        self.dates = array("d")
        self.zones = array("h")
        self.saved = array("d")
        self.sizes = array("Q")
        self.blobs = array("Q")
        self.uidls: dict[int, str] = {}
        self.hidden: set[int] = set()

    def add(self, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        cols = list(zip(*rows, strict=True))
        self.uids.extend(cols[0])
        self.modseqs.extend(cols[1])
        self.flags.extend(cols[2])
        self.keywords.extend(cols[3])
        self.dates.extend(cols[4])
        self.zones.extend(cols[5])
        self.saved.extend(cols[6])
        self.sizes.extend(cols[7])
        self.blobs.extend(cols[8])
        self.uidls.update((u, x) for u, x in zip(cols[0], cols[9], strict=True) if x is not None)
        self.hidden.update(u for u, h in zip(cols[0], cols[10], strict=True) if h is not None)

    def finish(self) -> MessageColumns:
        return MessageColumns(
            self.mailbox,
            self.uids,
            self.modseqs,
            self.flags,
            self.keywords,
            self.dates,
            self.zones,
            self.saved,
            self.sizes,
            self.blobs,
            self.uidls,
            frozenset(self.hidden),
        )


def uidl_for(uid: int, uidvalidity: int) -> str:
    """Dovecot's default POP3 UIDL form: 8 hex digits of the UID, then 8 of UIDVALIDITY."""
    return f"{uid:08x}{uidvalidity:08x}"


#: Columns of ``blobs`` that ``Store.field_values`` reads, by field name (both backends).
FIELD_COLUMNS = {
    "subject": "subject",
    "from_": "from_",
    "to": "to_",
    "cc": "cc",
    "message_id": "message_id",
    "sent_date": "sent_date",
    "references": "thread_refs",  # schema 12; NULL for content stored before
}


#: The columns of ``blobs`` that hold SearchFields, by field: what a backup carries of each
#: content's parse (read when the schema has them; both backends).
PARSED_COLUMNS = {
    "subject": "subject",
    "from_": "from_",
    "to": "to_",
    "cc": "cc",
    "bcc": "bcc",
    "message_id": "message_id",
    "sent_date": "sent_date",
    "references": "thread_refs",
}


def search_fields(row: Sequence[Any]) -> SearchFields:
    """A row of (key, subject, from_, to_, cc, bcc, message_id, sent_date) of ``blobs`` (the key
    first, ignored here) as SearchFields; ``sent_date`` in UTC."""
    sent = row[7]
    return SearchFields(
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        None if sent is None else datetime.fromtimestamp(sent, UTC),
    )


#: The columns ``shared_mailboxes`` reads in both backends, in the order :func:`shared_mailboxes`
#: expects them: the mailbox, its owner's address, one ACL entry.
SHARED_COLUMNS = (
    "m.id, m.account_id, m.name, m.uidvalidity, m.uidnext, m.highestmodseq, m.special_use,"
    " a.address, acl.identifier, acl.rights"
)


def shared_mailboxes(rows: Iterable[Sequence[Any]]) -> list[SharedMailbox]:
    """Rows of SHARED_COLUMNS, ordered by mailbox, as one SharedMailbox per mailbox."""
    found: dict[int, tuple[Mailbox, str, list[tuple[str, str]]]] = {}
    for row in rows:
        entry = found.get(row[0])
        if entry is None:
            mailbox = Mailbox(
                id=MailboxId(row[0]),
                account_id=AccountId(row[1]),
                name=row[2],
                uidvalidity=row[3],
                uidnext=Uid(row[4]),
                highest_modseq=ModSeq(row[5]),
                special_use=row[6],
                subscribed=False,
            )
            entry = found[row[0]] = (mailbox, str(row[7]).lower(), [])
        entry[2].append((row[8], row[9]))
    return [SharedMailbox(m, owner, tuple(acl)) for m, owner, acl in found.values()]
