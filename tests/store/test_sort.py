"""SORT's ordering (pobox.service.sort) on a real store, both backends: against a plain
Python ordering of the same keys, for random mailboxes and key lists."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from email.utils import format_datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.helpers.columns import column_records
from tests.store.util import append

from pobox.mail.sortkeys import base_subject, collate
from pobox.service.sort import SORT_KEYS, SortKey, sort
from pobox.store.api import MessageMeta, Store

NAMES = ["alice", "Bob", "carol", "dave"]
SUBJECTS = ["Re: plan", "plan", "[list] Budget", "budget (fwd)", "Fwd: zebra", "apple"]
_accounts = itertools.count()


@st.composite
def messages(draw: st.DrawFn) -> tuple[bytes, datetime | None]:
    sender = draw(st.sampled_from(NAMES))
    rcpt = draw(st.sampled_from(NAMES))
    sent = draw(st.none() | st.integers(0, 5).map(lambda d: datetime(2026, 1, 1 + d, tzinfo=UTC)))
    header = f"From: {sender.title()} <{sender}@example.org>\r\nTo: <{rcpt}@example.org>\r\n"
    header += f"Subject: {draw(st.sampled_from(SUBJECTS))}\r\n"
    if sent is not None:
        header += f"Date: {format_datetime(sent)}\r\n"
    body = "x" * draw(st.integers(0, 3))
    return f"{header}\r\n{body}\r\n".encode(), sent


keys = st.lists(
    st.builds(SortKey, st.sampled_from(SORT_KEYS), st.booleans()), min_size=1, max_size=3
)


def expected(
    metas: list[MessageMeta], raws: list[tuple[bytes, datetime | None]], order: list[SortKey]
) -> list[int]:
    def key_of(i: int, name: str) -> object:
        raw, sent = raws[i]
        text = raw.decode()
        field = {k: v for k, _, v in (line.partition(": ") for line in text.split("\r\n")[:4])}
        if name == "ARRIVAL":
            return metas[i].internal_date.timestamp()
        if name == "SIZE":
            return metas[i].size
        if name == "DATE":
            return sent.timestamp() if sent else metas[i].internal_date.timestamp()
        if name == "SUBJECT":
            return collate(base_subject(field["Subject"]))
        if name in ("FROM", "TO", "CC"):
            value = field.get({"FROM": "From", "TO": "To", "CC": "Cc"}[name], "")
            return collate(value.split("<")[-1].split("@")[0]) if value else ""
        value = field["From" if name == "DISPLAYFROM" else "To"]
        display = value.split(" <")[0] if " <" in value else value.strip("<>")
        return collate(display)

    positions = list(range(len(metas)))
    for key in reversed(order):
        positions.sort(key=lambda i: key_of(i, key.name), reverse=key.reverse)
    return [metas[p].uid for p in positions]


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(batch=st.lists(messages(), min_size=1, max_size=12), order=keys)
async def test_sort_orders_as_the_keys_say(
    store: Store, batch: list[tuple[bytes, datetime | None]], order: list[SortKey]
) -> None:
    account = await store.create_account(f"s{next(_accounts)}@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    metas = [await append(store, inbox.id, raw) for raw, _ in batch]
    want = expected(metas, batch, order)
    assert await sort(store, inbox.id, order, metas) == want
    # the same through columns, with a cache that a second sort reads without the store
    records = column_records(metas)
    cache: dict[str, dict[int, object]] = {}
    assert await sort(store, inbox.id, order, records, cache) == want
    real = store.field_values

    async def refuse(*args: object) -> object:
        raise AssertionError("the kept keys were read again")

    store.field_values = refuse  # type: ignore[method-assign]
    try:
        assert await sort(store, inbox.id, order, records, cache) == want
    finally:
        store.field_values = real  # type: ignore[method-assign]


async def test_field_values_reads_one_decoded_column(store: Store) -> None:
    account = await store.create_account("fv@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    first = await append(
        store,
        inbox.id,
        b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nFrom: A <a@x.org>\r\n"
        b"Date: Thu, 01 Jan 2026 10:00:00 +0100\r\n\r\nx\r\n",
    )
    second = await append(store, inbox.id, b"Subject: plain\r\n\r\nno date\r\n")
    assert await store.field_values(inbox.id, "subject") == {
        first.uid: "Grüße",
        second.uid: "plain",
    }
    dates = await store.field_values(inbox.id, "sent_date", [second.uid, first.uid])
    assert dates == {first.uid: datetime(2026, 1, 1, 9, tzinfo=UTC).timestamp(), second.uid: None}
    assert await store.field_values(inbox.id, "from_", [second.uid]) == {second.uid: ""}
