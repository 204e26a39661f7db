"""A mailbox index's columns made from a list of MessageMeta (what MailboxIndex keeps), for
tests of search and sort over pobox.service.search.ColumnRecords."""

from __future__ import annotations

from pobox.service.search import ColumnRecords
from pobox.store.api import MessageMeta


class Columns:
    def __init__(self, metas: list[MessageMeta]) -> None:
        self.bit: dict[str, int] = {}
        self.uids = [m.uid for m in metas]
        self.modseqs = [m.modseq for m in metas]
        self.flags = [sum(1 << self._bit(f) for f in m.flags) for m in metas]
        self.sizes = [m.size for m in metas]
        self.dates = [m.internal_date.timestamp() for m in metas]
        self.saved = [m.save_date.timestamp() for m in metas]
        self.blobs = [m.blob for m in metas]

    def _bit(self, flag: str) -> int:
        return self.bit.setdefault(flag, len(self.bit))

    def flag_mask(self, flag: str) -> int:
        return sum(1 << b for f, b in self.bit.items() if f.lower() == flag.lower())


def column_records(metas: list[MessageMeta]) -> ColumnRecords:
    return ColumnRecords(Columns(metas), len(metas), metas.__getitem__)
