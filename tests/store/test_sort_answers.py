"""SORT and THREAD keep their last answers with the messages they ordered
(pobox.service.sort.ORDERS, pobox.service.thread.ANSWERS): asked again over the same messages
they answer without sorting; a message that comes or goes makes a new answer. Both backends."""

from __future__ import annotations

from tests.helpers.columns import column_records
from tests.store.util import append

from pobox.mail.threading import render
from pobox.service.sort import SortKey, sort
from pobox.service.thread import thread
from pobox.store.api import Store


def _message(n: int, subject: str, refs: str = "") -> bytes:
    head = f"From: u{n % 3}@example.org\r\nSubject: {subject}\r\nMessage-ID: <{n}@x>\r\n"
    if refs:
        head += f"References: {refs}\r\n"
    return f"{head}Date: Thu, 0{1 + n % 5} Jan 2026 10:00:00 +0000\r\n\r\nbody\r\n".encode()


async def test_answers_are_kept_until_the_messages_change(store: Store) -> None:
    account = await store.create_account("keep@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    metas = [await append(store, inbox.id, _message(n, f"s{n % 4}")) for n in range(8)]
    metas.append(await append(store, inbox.id, _message(8, "Re: s1", "<1@x>")))
    cache: dict[str, dict[int, object]] = {}
    keys = [SortKey("SUBJECT"), SortKey("DATE", reverse=True)]
    first = await sort(store, inbox.id, keys, column_records(metas), cache)
    threads = render(await thread(store, inbox.id, "REFERENCES", column_records(metas), cache))
    real = store.field_values
    calls: list[str] = []

    async def counted(mailbox: object, field: str, uids: object = None) -> object:
        calls.append(field)
        return await real(mailbox, field, uids)  # type: ignore[arg-type]

    store.field_values = counted  # type: ignore[method-assign]
    try:
        again = await sort(store, inbox.id, keys, column_records(metas), cache)
        assert again == first
        again.reverse()  # the caller's list is its own
        assert await sort(store, inbox.id, keys, column_records(metas), cache) == first
        assert (
            render(await thread(store, inbox.id, "REFERENCES", column_records(metas), cache))
            == threads
        )
        assert calls == []
        # one more message: new answers that list it (its keys read, the others kept)
        late = await append(store, inbox.id, _message(9, "a first", "<8@x>"))
        metas.append(late)
        grown = await sort(store, inbox.id, keys, column_records(metas), cache)
        assert grown[0] == late.uid and grown[1:] == first
        assert sorted(calls) == ["sent_date", "subject"]
        more = render(await thread(store, inbox.id, "REFERENCES", column_records(metas), cache))
        assert more != threads and b"10" in more
        # one message fewer (as after an expunge): the answer without it
        del metas[0]
        shrunk = await sort(store, inbox.id, keys, column_records(metas), cache)
        assert shrunk == [u for u in grown if u != first_uid(first, metas)]
    finally:
        store.field_values = real  # type: ignore[method-assign]


def first_uid(order: list[int], metas: list[object]) -> int:
    alive = {m.uid for m in metas}  # type: ignore[attr-defined]
    return next(u for u in order if u not in alive)
