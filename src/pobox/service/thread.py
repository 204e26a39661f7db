"""THREAD (RFC 5256): the threads of a view's messages, by REFERENCES or ORDEREDSUBJECT.

What each message contributes (its Message-ID, References or In-Reply-To, base subject and
sent date) is read once from the store's columns (the decoded fields kept since delivery, and
the parent ids kept since schema 12; content stored before that has its header block read from
the stored structure instead) and kept in the shared mailbox index's ``sort_cache`` beside
SORT's keys; the algorithms themselves are pobox.mail.threading.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from pobox.mail.sortkeys import collate, subject_and_reply
from pobox.mail.structure import ParsedMessage
from pobox.mail.threading import (
    Item,
    Thread,
    message_ids,
    ordered_subject,
    references,
    thread_references,
    unpack_references,
)
from pobox.service.search import ColumnRecords, Message
from pobox.service.sort import SortCache
from pobox.store.api import BlobId, MailboxId, Store, Uid

ALGORITHMS = ("ORDEREDSUBJECT", "REFERENCES")
#: Structures read per store call.
BATCH = 512
#: The slot of ``sort_cache`` that keeps each algorithm's last answer, with the messages (UIDs
#: and sequence numbers) it threaded; callers only read the threads they are given.
ANSWERS = "\0threads"

# (message id, references, base subject, reply, sent date)
_Facts = tuple[str | None, tuple[str, ...], str, bool, float | None]


async def thread(
    store: Store,
    mailbox: MailboxId,
    algorithm: str,
    messages: Sequence[Message],
    cache: SortCache | None = None,
    only: Collection[int] | None = None,
) -> list[Thread]:
    """The threads of *messages* (a view's, in sequence order), or of those whose UID is in
    *only*."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown threading algorithm {algorithm}")
    cache = {} if cache is None else cache
    if isinstance(messages, ColumnRecords):
        cols, count = messages.columns, len(messages)
        rows = zip(cols.uids[:count], cols.blobs[:count], cols.dates[:count], strict=True)
        chosen = [
            (seq, int(uid), int(blob), float(date))
            for seq, (uid, blob, date) in enumerate(rows, 1)
            if only is None or uid in only
        ]
    else:
        chosen = [
            (n, int(m.uid), int(m.blob), m.internal_date.timestamp())
            for n, m in enumerate(messages, 1)
            if only is None or m.uid in only
        ]
    # the same algorithm over the same messages at the same positions: the kept answer
    answers = cache.setdefault(ANSWERS, {})
    signature = [(seq, uid) for seq, uid, _, _ in chosen]
    last = answers.get(hash(algorithm))
    if last is not None and last[0] == algorithm and last[1] == signature:
        return list(last[2])
    kept: dict[int, Any] = cache.setdefault("THREAD", {})
    missing = [(uid, blob) for _, uid, blob, _ in chosen if uid not in kept]
    if missing:
        await _read(store, mailbox, missing, kept)
    items = []
    for seq, uid, _, arrival in chosen:
        facts: _Facts | None = kept.get(uid)
        if facts is None:  # expunged meanwhile: nothing to thread it by
            facts = (None, (), "", False, None)
        message_id, refs, subject, reply, sent = facts
        date = arrival if sent is None else sent
        items.append(Item(uid, seq, message_id, refs, subject, reply, date))
    roots = references(items) if algorithm == "REFERENCES" else ordered_subject(items)
    answers[hash(algorithm)] = (algorithm, signature, roots)
    return list(roots)


async def _read(
    store: Store, mailbox: MailboxId, missing: list[tuple[int, int]], kept: dict[int, Any]
) -> None:
    uids = None if len(missing) > BATCH * 4 else [Uid(u) for u, _ in missing]
    subjects = await store.field_values(mailbox, "subject", uids)
    ids = await store.field_values(mailbox, "message_id", uids)
    dates = await store.field_values(mailbox, "sent_date", uids)
    stored = await store.field_values(mailbox, "references", uids)
    # content stored before schema 12 has no references column yet: its header is read
    unknown = [(u, b) for u, b in missing if Uid(u) in stored and stored[Uid(u)] is None]
    parsed_refs: dict[int, tuple[str, ...]] = {}
    for start in range(0, len(unknown), BATCH):
        batch = unknown[start : start + BATCH]
        structures = await store.get_structures([BlobId(b) for _, b in batch])
        for number, blob in batch:
            raw = structures.get(BlobId(blob))
            if raw is None:
                continue  # expunged meanwhile
            parsed = ParsedMessage.cached(raw)
            parsed_refs[number] = thread_references(
                " ".join(parsed.header_values("References")),
                " ".join(parsed.header_values("In-Reply-To")),
            )
    for number, _ in missing:
        uid = Uid(number)
        if uid not in subjects:
            continue  # expunged meanwhile
        packed = stored.get(uid)
        if packed is not None:
            refs = unpack_references(str(packed))
        elif number in parsed_refs:
            refs = parsed_refs[number]
        else:
            continue  # expunged meanwhile
        own = message_ids(str(ids.get(uid) or ""))
        base, reply = subject_and_reply(str(subjects.get(uid) or ""))
        sent = dates.get(uid)
        kept[number] = (
            own[0] if own else None,
            refs,
            collate(base),
            reply,
            None if sent is None else float(sent),
        )
