"""Ordering a mailbox's messages: IMAP SORT (RFC 5256, RFC 5957) and the webmail's lists.

Keys come from the shared mailbox index (ARRIVAL, SIZE) or from the header fields the store
keeps decoded since delivery (DATE, SUBJECT, FROM, TO, CC, DISPLAYFROM, DISPLAYTO), read once
per message and kept, already in comparable form, in the index's ``sort_cache``: a message's
content never changes, so a kept key stays right for as long as the message is there. The first
SUBJECT sort of a 100,000-message mailbox reads one column and computes 100,000 base subjects;
every later sort only orders.

Equal keys fall back to the next key, and last to the order of the messages given (their
sequence numbers, as RFC 5256 §3 requires). REVERSE reverses one key's order only. The last few
answers are kept beside the keys, each with the messages it ordered: asked again over the same
messages, the same keys give the kept answer without sorting (flags do not change an order).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from pobox.mail.sortkeys import base_subject, collate, display_name, first_mailbox
from pobox.service.search import ColumnRecords, Message
from pobox.store.api import MailboxId, Store, Uid

#: The keys of RFC 5256 and RFC 5957.
SORT_KEYS = ("ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO")
#: Read a whole mailbox's field rather than a list of UIDs above this many missing keys.
WHOLE_MAILBOX = 2000
#: The slot of ``sort_cache`` that keeps the last answers (by hash of their key list), and how
#: many it keeps.
ORDERS = "\0orders"
KEPT_ORDERS = 4

# key → (stored field, how a value becomes the comparable key)
_FIELD_KEYS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "SUBJECT": ("subject", lambda v: collate(base_subject(v or ""))),
    "FROM": ("from_", lambda v: collate(first_mailbox(v or ""))),
    "TO": ("to", lambda v: collate(first_mailbox(v or ""))),
    "CC": ("cc", lambda v: collate(first_mailbox(v or ""))),
    "DISPLAYFROM": ("from_", lambda v: collate(display_name(v or ""))),
    "DISPLAYTO": ("to", lambda v: collate(display_name(v or ""))),
    "DATE": ("sent_date", lambda v: v),  # None: no usable Date:, the arrival stands in
}

SortCache = MutableMapping[str, dict[int, Any]]


@dataclass(frozen=True, slots=True)
class SortKey:
    name: str  # one of SORT_KEYS
    reverse: bool = False


async def sort(
    store: Store,
    mailbox: MailboxId,
    keys: Sequence[SortKey],
    messages: Sequence[Message],
    cache: SortCache | None = None,
    only: Collection[int] | None = None,
) -> list[Uid]:
    """The UIDs of *messages* (a view's, in sequence order), or of those whose UID is in
    *only* (a SEARCH's result), ordered by *keys*.

    *cache* keeps field-derived keys between calls (``MailboxIndex.sort_cache``); without one
    they are read for this call only.
    """
    for key in keys:
        if key.name not in SORT_KEYS:
            raise ValueError(f"unknown sort key {key.name}")
    cache = {} if cache is None else cache
    uids = _uids(messages)
    if only is None:
        positions = list(range(len(uids)))
    else:
        positions = [p for p, uid in enumerate(uids) if uid in only]
    # the same keys over the same messages (in the same order) give the same answer: no key
    # depends on flags, so an answer stays right until a message comes or goes
    signature = tuple((key.name, key.reverse) for key in keys)
    chosen = [uids[p] for p in positions]
    orders = cache.setdefault(ORDERS, {})
    kept = orders.get(hash(signature))
    if kept is not None and kept[0] == signature and kept[1] == chosen:
        return list(kept[2])
    for key in reversed(keys):  # stable sorts, last key first: the first key decides most
        value_of = await _key(store, mailbox, key.name, messages, uids, positions, cache)
        positions.sort(key=value_of, reverse=key.reverse)
    answer = [Uid(uids[p]) for p in positions]
    if len(orders) >= KEPT_ORDERS:
        del orders[next(iter(orders))]  # the oldest goes
    orders.pop(hash(signature), None)
    orders[hash(signature)] = (signature, chosen, answer)
    return list(answer)


def _uids(messages: Sequence[Message]) -> Sequence[int]:
    if isinstance(messages, ColumnRecords):
        return messages.columns.uids[: len(messages)]
    return [m.uid for m in messages]


def _arrival(messages: Sequence[Message]) -> Callable[[int], float]:
    if isinstance(messages, ColumnRecords):
        return messages.columns.dates.__getitem__
    return lambda p: messages[p].internal_date.timestamp()


async def _key(
    store: Store,
    mailbox: MailboxId,
    name: str,
    messages: Sequence[Message],
    uids: Sequence[int],
    positions: Sequence[int],
    cache: SortCache,
) -> Callable[[int], Any]:
    """The key *name* of the message at a position."""
    if name == "ARRIVAL":
        return _arrival(messages)
    if name == "SIZE":
        if isinstance(messages, ColumnRecords):
            return messages.columns.sizes.__getitem__
        return lambda p: messages[p].size
    field, convert = _FIELD_KEYS[name]
    kept = cache.setdefault(name, {})
    missing = [uids[p] for p in positions if uids[p] not in kept]
    if missing:
        wanted = None if len(missing) > WHOLE_MAILBOX else [Uid(u) for u in missing]
        for uid, value in (await store.field_values(mailbox, field, wanted)).items():
            kept[uid] = convert(value)
        if len(kept) > 2 * len(uids) + WHOLE_MAILBOX:  # expunged messages' keys: let them go
            alive = set(uids)
            for gone in [u for u in kept if u not in alive]:
                del kept[gone]
    if name == "DATE":  # no usable Date: header: the arrival stands in (RFC 5256 §3)
        arrival = _arrival(messages)

        def date(p: int) -> float:
            sent = kept.get(uids[p])
            return arrival(p) if sent is None else float(sent)

        return date
    # a message expunged meanwhile has no stored field: it sorts as empty
    return lambda p: kept.get(uids[p], "")
