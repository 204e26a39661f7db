"""Sessions that open a mailbox while its index is being loaded for the first time wait for the
load (before, the load cleared the index's stale mark as it began and a second session went on
with an empty index: the webmail's benchmark showed empty lists, and IMAP SELECT could answer
0 EXISTS)."""

from __future__ import annotations

import asyncio

from pobox.service.delivery import Envelope
from pobox.service.index import MailIndex
from pobox.service.mail import MailService


async def test_concurrent_first_opens_all_see_every_message(service: MailService) -> None:
    account = await service.accounts.add("alice@example.org", "pw")
    for n in range(20):
        message = f"Subject: {n}\r\n\r\nbody\r\n".encode()
        (result,) = await service.delivery.deliver(Envelope("x@y.org", (account.address,)), message)
        assert result.delivered
    inbox = await service.store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    index = MailIndex(service.store)
    first = asyncio.ensure_future(index.acquire(inbox))
    # let the first load begin (it clears the stale mark as it starts), then open again
    for _ in range(1000):
        await asyncio.sleep(0)
        loading = index.find(account.id, "INBOX")
        if loading is not None and not loading.stale:
            break
    assert loading is not None and not loading.loaded, "the load should be under way"
    second = await index.acquire(inbox)
    assert len(second) == 20  # loaded when handed out, not later
    held = [await first, second]
    try:
        assert [len(h) for h in held] == [20, 20]
        assert held[0] is held[1]  # one index for both
    finally:
        for h in held:
            index.release(h)
        index.close()
