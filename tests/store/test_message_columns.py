"""``Store.message_columns`` (what a mailbox index loads; PostgreSQL sends it as packed columns,
pobox.store.postgres.columns) says exactly what ``list_messages`` says, on every backend."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

from tests.store.util import append, message_bytes, new_message

from pobox.store.api import FlagOp, MailboxId, Store, Uid
from pobox.store.rows import join_flags, to_epoch


async def _same(store: Store, mailbox_id: MailboxId) -> None:
    columns = await store.message_columns(mailbox_id)
    metas = await store.list_messages(mailbox_id)
    assert list(columns.uids) == [m.uid for m in metas]
    assert list(columns.modseqs) == [m.modseq for m in metas]
    assert [
        join_flags(bits, words) for bits, words in zip(columns.flags, columns.keywords, strict=True)
    ] == [m.flags for m in metas]
    assert [(d, z) for d, z in zip(columns.internal_dates, columns.zones, strict=True)] == [
        to_epoch(m.internal_date) for m in metas
    ]
    saved = [m.save_date.timestamp() for m in metas]  # a datetime keeps microseconds
    assert len(columns.save_dates) == len(saved)
    assert all(abs(a - b) < 1e-5 for a, b in zip(columns.save_dates, saved, strict=True))
    assert list(columns.sizes) == [m.size for m in metas]
    assert list(columns.blobs) == [m.blob for m in metas]
    assert dict(columns.uidls) == {m.uid: m.pop3_uidl for m in metas if m.pop3_uidl is not None}
    assert columns.hidden == {m.uid for m in metas if m.pop3_hidden}
    assert columns.mailbox.id == mailbox_id


async def test_columns_of_an_empty_mailbox(store: Store) -> None:
    account = await store.create_account("empty@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    columns = await store.message_columns(inbox.id)
    assert len(columns.uids) == len(columns.keywords) == 0
    assert not columns.uidls and not columns.hidden


async def test_columns_say_what_list_messages_says(store: Store) -> None:
    account = await store.create_account("cols@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    rng = random.Random(5)
    keywords = ["$Label1", "NonJunk", "$Forwarded", "Ümlaut-free", "x"]
    for n in range(300):
        flags = {f for f in ("\\Seen", "\\Flagged", "\\Deleted") if rng.random() < 0.4}
        flags |= {k for k in keywords if rng.random() < 0.15}
        zone = timezone(timedelta(minutes=rng.choice([0, 60, -330, 840, -720])))
        when = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 10**8))
        kwargs: dict[str, object] = {
            "flags": frozenset(flags),
            "internal_date": when.astimezone(zone),
        }
        if n % 50 == 7:
            kwargs["pop3_uidl"] = f"uidl-{n}.{rng.randint(0, 999)}"
        await append(store, inbox.id, message_bytes(n, rng.randint(0, 2000)), **kwargs)
    await _same(store, inbox.id)
    uids = [m.uid for m in await store.list_messages(inbox.id)]
    await store.expunge(inbox.id, rng.sample(uids, 40))
    uids = [m.uid for m in await store.list_messages(inbox.id)]
    await store.set_flags(inbox.id, rng.sample(uids, 30), FlagOp.ADD, frozenset({"$Junk"}))
    await store.pop3_hide(inbox.id, rng.sample(uids, 5), datetime.now(UTC))
    more = [await new_message(store, message_bytes(1000 + n)) for n in range(3)]
    await store.append_many(inbox.id, more)
    await _same(store, inbox.id)
    # another mailbox of the same account is not mixed in
    other = await store.create_mailbox(account.id, "Other")
    await append(store, other.id, message_bytes(5000))
    await _same(store, other.id)
    assert list((await store.message_columns(other.id)).uids) == [Uid(1)]
