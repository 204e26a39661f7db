"""Webmail sessions, on every backend (docs/decisions/webmail-sessions.md)."""

from __future__ import annotations

import pytest

from pobox.errors import AlreadyExists
from pobox.store.api import AccountId, Store, WebSession


async def test_a_session_is_added_read_touched_and_deleted(store: Store) -> None:
    alice = await store.create_account("alice@example.org", "h")
    await store.web_session_add(WebSession("a" * 64, alice.id, 100.0, 100.0))
    assert await store.web_session_get("a" * 64) == WebSession("a" * 64, alice.id, 100.0, 100.0)
    assert await store.web_session_get("b" * 64) is None
    with pytest.raises(AlreadyExists):
        await store.web_session_add(WebSession("a" * 64, alice.id, 200.0, 200.0))
    await store.web_session_touch("a" * 64, 150.0)
    await store.web_session_touch("a" * 64, 120.0)  # never moves back
    got = await store.web_session_get("a" * 64)
    assert got is not None and got.last_seen == 150.0 and got.created == 100.0
    assert await store.web_session_delete("a" * 64)
    assert not await store.web_session_delete("a" * 64)
    assert await store.web_session_get("a" * 64) is None


async def test_a_session_needs_its_account_and_goes_with_it(store: Store) -> None:
    with pytest.raises(AlreadyExists):
        await store.web_session_add(WebSession("c" * 64, AccountId(999999), 1.0, 1.0))
    bob = await store.create_account("bob@example.org", "h")
    await store.web_session_add(WebSession("c" * 64, bob.id, 1.0, 1.0))
    await store.delete_account(bob.id)
    assert await store.web_session_get("c" * 64) is None


async def test_log_out_everywhere_and_purge(store: Store) -> None:
    alice = await store.create_account("alice@example.org", "h")
    bob = await store.create_account("bob@example.org", "h")
    for n in range(3):
        await store.web_session_add(WebSession(f"{n}" * 64, alice.id, 10.0 * n, 10.0 * n))
    await store.web_session_add(WebSession("b" * 64, bob.id, 100.0, 100.0))
    assert await store.web_session_delete_account(alice.id) == 3
    assert await store.web_session_get("0" * 64) is None
    assert await store.web_session_get("b" * 64) is not None
    await store.web_session_add(WebSession("i" * 64, alice.id, 100.0, 5.0))  # idle
    await store.web_session_add(WebSession("o" * 64, alice.id, 1.0, 500.0))  # too old
    assert await store.web_session_purge(idle_before=50.0, created_before=50.0) == 2
    assert await store.web_session_get("b" * 64) is not None


async def test_a_session_goes_with_the_app_password_it_logged_in_with(store: Store) -> None:
    alice = await store.create_account("alice@example.org", "h")
    phone = await store.add_login(alice.id, "Phone", "hash", 1.0)
    laptop = await store.add_login(alice.id, "Laptop", "hash", 1.0)
    await store.web_session_add(WebSession("p" * 64, alice.id, 1.0, 1.0, phone.id))
    await store.web_session_add(WebSession("l" * 64, alice.id, 1.0, 1.0, laptop.id))
    await store.web_session_add(WebSession("m" * 64, alice.id, 1.0, 1.0))
    got = await store.web_session_get("p" * 64)
    assert got is not None and got.login_id == phone.id
    await store.delete_login(alice.id, "Phone")
    assert await store.web_session_get("p" * 64) is None
    assert await store.web_session_get("l" * 64) is not None
    assert await store.web_session_get("m" * 64) is not None
    with pytest.raises(AlreadyExists):  # an app password that is gone logs nobody in
        await store.web_session_add(WebSession("q" * 64, alice.id, 1.0, 1.0, phone.id))
