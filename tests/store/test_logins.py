"""App passwords (logins), on every backend (docs/app-passwords.md)."""

from __future__ import annotations

import pytest

from pobox.errors import AlreadyExists, NotFound
from pobox.store.api import AccountId, Login, MailboxId, Store, logins_changed


async def test_a_login_is_added_listed_and_deleted(store: Store) -> None:
    alice = await store.create_account("alice@example.org", "main-hash")
    phone = await store.add_login(alice.id, "Anna's phone", "hash-1", 100.0)
    laptop = await store.add_login(alice.id, "laptop", "hash-2", 200.0)
    assert phone == Login(phone.id, alice.id, "Anna's phone", "hash-1", 100.0, None, None)
    assert laptop.id != phone.id
    assert await store.list_logins(alice.id) == [phone, laptop]

    assert await store.delete_login(alice.id, "Anna's phone") == phone
    assert await store.delete_login(alice.id, "Anna's phone") is None
    assert await store.list_logins(alice.id) == [laptop]


async def test_labels_are_unique_per_account(store: Store) -> None:
    alice = await store.create_account("alice@example.org", "h")
    bob = await store.create_account("bob@example.org", "h")
    await store.add_login(alice.id, "phone", "h1", 1.0)
    with pytest.raises(AlreadyExists):
        await store.add_login(alice.id, "phone", "h2", 2.0)
    await store.add_login(bob.id, "phone", "h3", 3.0)  # another account's label is no conflict
    assert [x.password_hash for x in await store.list_logins(alice.id)] == ["h1"]
    with pytest.raises(NotFound):
        await store.add_login(AccountId(999999), "phone", "h4", 4.0)


async def test_logins_go_with_their_account_and_ids_are_never_reused(store: Store) -> None:
    alice = await store.create_account("alice@example.org", "h")
    first = await store.add_login(alice.id, "phone", "h1", 1.0)
    await store.delete_login(alice.id, "phone")
    again = await store.add_login(alice.id, "phone", "h2", 2.0)
    assert again.id > first.id
    await store.delete_account(alice.id)
    assert await store.list_logins(alice.id) == []
    assert await store.get_account_logins("alice@example.org") is None


async def test_the_account_and_its_logins_in_one_read(store: Store) -> None:
    alice = await store.create_account("alice@example.org", "main-hash")
    assert await store.get_account_logins("alice@example.org") == (alice, [])
    phone = await store.add_login(alice.id, "phone", "h1", 1.0)
    found = await store.get_account_logins("alice@example.org")
    assert found is not None
    account, logins = found
    assert account.id == alice.id and account.password_hash == "main-hash"
    assert logins == [phone]
    assert await store.get_account_logins("nobody@example.org") is None


async def test_uses_are_recorded_and_never_move_back(store: Store) -> None:
    alice = await store.create_account("alice@example.org", "h")
    phone = await store.add_login(alice.id, "phone", "h1", 1.0)
    gone = await store.add_login(alice.id, "gone", "h2", 1.0)
    await store.delete_login(alice.id, "gone")
    await store.record_login_use([(phone.id, 50.0, "192.0.2.1"), (gone.id, 50.0, "192.0.2.9")])
    await store.record_login_use([(phone.id, 40.0, "192.0.2.2")])  # older: ignored
    (got,) = await store.list_logins(alice.id)
    assert (got.last_used, got.last_address) == (50.0, "192.0.2.1")
    await store.record_login_use([(phone.id, 60.0, "2001:db8::1")])
    (got,) = await store.list_logins(alice.id)
    assert (got.last_used, got.last_address) == (60.0, "2001:db8::1")
    await store.record_login_use([])


async def test_a_deletion_is_announced_to_listeners(store: Store) -> None:
    alice = await store.create_account("alice@example.org", "h")
    await store.add_login(alice.id, "phone", "h1", 1.0)
    heard: list[MailboxId] = []
    store.add_listener(heard.append)
    try:
        await store.delete_login(alice.id, "nothing")  # nothing deleted: nothing announced
        assert heard == []
        await store.delete_login(alice.id, "phone")
        assert heard == [logins_changed(alice.id)]
    finally:
        store.remove_listener(heard.append)
