"""Live updates (pobox.web.live.ChangeFeed) of folders shared with the user: a change in
another account's folder that the user may read reaches the user's event streams."""

from __future__ import annotations

import asyncio

from tests.web.conftest import ALICE, BOB, Web

from pobox.service.content import chunked, spool_message
from pobox.store.api import NewMessage
from pobox.web.live import ChangeFeed


async def _next(queue: asyncio.Queue[int]) -> int:
    return await asyncio.wait_for(queue.get(), 5)


async def test_a_change_in_a_folder_shared_with_the_user_reaches_its_stream(web: Web) -> None:
    service = web.service
    alice = await service.accounts.require(ALICE)
    bob = await service.accounts.require(BOB)
    team = await service.store.create_mailbox(bob.id, "Team")
    private = await service.store.create_mailbox(bob.id, "Private")
    await service.acl.set_acl(bob, "Team", ALICE, "lr")
    await service.acl.set_acl(bob, "Private", ALICE, "l")  # seen in the list, not readable
    shared = await web.app.state.webmail.readable_shared(alice)
    assert shared == [team.id]
    feed = ChangeFeed(service.store)
    try:
        queue = await feed.subscribe(alice.id, shared)
        bobs = await feed.subscribe(bob.id)
        message = b"From: carol@example.net\r\nSubject: plan\r\n\r\nthe plan\r\n"
        await service.index.append(team.id, await _new(web, message))
        assert await _next(queue) == team.id
        assert await _next(bobs) == team.id
        await service.index.append(private.id, await _new(web, message))
        assert await _next(bobs) == private.id
        await web.deliver(ALICE, message)  # alice's own folders still reach her
        inbox = await service.store.get_mailbox(alice.id, "INBOX")
        assert inbox is not None
        assert await _next(queue) == inbox.id  # and nothing of Private came before it
        feed.unsubscribe(alice.id, queue)
        await service.index.append(team.id, await _new(web, message))
        assert await _next(bobs) == team.id
        assert queue.empty()
    finally:
        feed.close()


async def _new(web: Web, content: bytes) -> NewMessage:
    store = web.service.store
    return await asyncio.to_thread(lambda: spool_message(store.new_spool(), chunked(content)))
