"""Access control lists (RFC 4314), on every backend (docs/decisions/shared-folders.md)."""

from __future__ import annotations

from pobox.store.api import Store


async def test_an_acl_is_set_read_replaced_and_removed(store: Store) -> None:
    anna = await store.create_account("anna@example.org", "h")
    team = await store.create_mailbox(anna.id, "Team")
    other = await store.create_mailbox(anna.id, "Other")
    assert await store.get_acl(team.id) == []
    await store.set_acl(team.id, "ben@example.org", "lr")
    await store.set_acl(team.id, "-ben@example.org", "w")
    await store.set_acl(team.id, "anyone", "l")
    assert await store.get_acl(team.id) == [
        ("-ben@example.org", "w"),
        ("anyone", "l"),
        ("ben@example.org", "lr"),
    ]
    await store.set_acl(team.id, "ben@example.org", "lrs")  # replaced, not added
    await store.set_acl(team.id, "anyone", None)
    assert await store.get_acl(team.id) == [("-ben@example.org", "w"), ("ben@example.org", "lrs")]
    assert await store.get_acl(other.id) == []


async def test_shared_mailboxes_name_the_owner_and_the_whole_list(store: Store) -> None:
    anna = await store.create_account("Anna@Example.org", "h")
    carl = await store.create_account("carl@example.org", "h")
    team = await store.create_mailbox(anna.id, "Team")
    notes = await store.create_mailbox(carl.id, "Notes")
    await store.create_mailbox(carl.id, "Private")
    await store.set_acl(team.id, "ben@example.org", "lr")
    await store.set_acl(team.id, "-ben@example.org", "r")
    await store.set_acl(team.id, "dora@example.org", "lrswi")
    await store.set_acl(notes.id, "anyone", "lr")
    found = {s.mailbox.id: s for s in await store.shared_mailboxes(["ben@example.org"])}
    assert list(found) == [team.id]
    shared = found[team.id]
    assert (shared.mailbox.name, shared.mailbox.account_id) == ("Team", anna.id)
    assert shared.owner == "anna@example.org"
    # the whole list, negative entries and other people's included: rights are computed from it
    assert shared.acl == (
        ("-ben@example.org", "r"),
        ("ben@example.org", "lr"),
        ("dora@example.org", "lrswi"),
    )
    both = await store.shared_mailboxes(["ben@example.org", "anyone"])
    assert sorted(s.mailbox.id for s in both) == sorted([team.id, notes.id])
    assert await store.shared_mailboxes([]) == []
    assert await store.shared_mailboxes(["nobody@example.org"]) == []


async def test_the_list_goes_with_the_mailbox_and_stays_through_a_rename(store: Store) -> None:
    anna = await store.create_account("anna@example.org", "h")
    team = await store.create_mailbox(anna.id, "Team")
    await store.set_acl(team.id, "ben@example.org", "lr")
    renamed = await store.rename_mailbox(team.id, "Crew")
    assert await store.get_acl(renamed.id) == [("ben@example.org", "lr")]
    [shared] = await store.shared_mailboxes(["ben@example.org"])
    assert shared.mailbox.name == "Crew"
    await store.delete_mailbox(renamed.id)
    assert await store.shared_mailboxes(["ben@example.org"]) == []
    again = await store.create_mailbox(anna.id, "Team")  # a new mailbox starts with no list
    assert await store.get_acl(again.id) == []


async def test_an_identifier_is_dropped_everywhere(store: Store) -> None:
    anna = await store.create_account("anna@example.org", "h")
    one = await store.create_mailbox(anna.id, "One")
    two = await store.create_mailbox(anna.id, "Two")
    for mailbox in (one, two):
        await store.set_acl(mailbox.id, "ben@example.org", "lr")
        await store.set_acl(mailbox.id, "-ben@example.org", "r")
        await store.set_acl(mailbox.id, "carl@example.org", "l")
    await store.drop_acl_identifiers(["ben@example.org", "-ben@example.org"])
    for mailbox in (one, two):
        assert await store.get_acl(mailbox.id) == [("carl@example.org", "l")]
    await store.delete_account(anna.id)
    assert await store.shared_mailboxes(["carl@example.org"]) == []
