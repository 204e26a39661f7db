"""IMAP METADATA annotations (RFC 5464), on every backend (docs/decisions/metadata.md)."""

from __future__ import annotations

import asyncio

import pytest

from pobox.errors import NotFound
from pobox.store.api import AnnotationLimits, MailboxId, Store, TooManyAnnotations


async def test_annotations_are_set_read_replaced_and_removed(store: Store) -> None:
    anna = await store.create_account("anna@example.org", "h")
    ben = await store.create_account("ben@example.org", "h")
    team = await store.create_mailbox(anna.id, "Team")
    await store.set_annotations(
        anna.id,
        team.id,
        [("/shared/comment", b"the team's"), ("/private/comment", b"mine \x00 binary")],
    )
    await store.set_annotations(ben.id, team.id, [("/private/comment", b"ben's")])
    await store.set_annotations(anna.id, None, [("/private/vendor/x/y", b"server, mine")])
    seen = await store.get_annotations(anna.id, [team.id, None])
    assert seen == {
        team.id: [("/private/comment", b"mine \x00 binary"), ("/shared/comment", b"the team's")],
        None: [("/private/vendor/x/y", b"server, mine")],
    }
    # another account sees the shared entries and only its own private ones
    assert (await store.get_annotations(ben.id, [team.id, None])) == {
        team.id: [("/private/comment", b"ben's"), ("/shared/comment", b"the team's")],
        None: [],
    }
    await store.set_annotations(anna.id, team.id, [("/shared/comment", b"new")])  # replaced
    await store.set_annotations(anna.id, team.id, [("/private/comment", None)])  # removed
    await store.set_annotations(anna.id, team.id, [("/private/nothing", None)])  # no-op
    assert (await store.get_annotations(anna.id, [team.id]))[team.id] == [
        ("/shared/comment", b"new")
    ]
    assert (await store.get_annotations(ben.id, [team.id]))[team.id] == [
        ("/private/comment", b"ben's"),
        ("/shared/comment", b"new"),
    ]
    assert await store.get_annotations(anna.id, []) == {}


async def test_annotations_go_with_the_mailbox_and_stay_through_a_rename(store: Store) -> None:
    anna = await store.create_account("anna@example.org", "h")
    ben = await store.create_account("ben@example.org", "h")
    team = await store.create_mailbox(anna.id, "Team")
    await store.set_annotations(anna.id, team.id, [("/shared/comment", b"c")])
    await store.set_annotations(ben.id, team.id, [("/private/comment", b"b")])
    renamed = await store.rename_mailbox(team.id, "Crew")
    assert (await store.get_annotations(ben.id, [renamed.id]))[renamed.id] == [
        ("/private/comment", b"b"),
        ("/shared/comment", b"c"),
    ]
    await store.delete_mailbox(renamed.id)
    again = await store.create_mailbox(anna.id, "Team")
    assert (await store.get_annotations(ben.id, [again.id, renamed.id])) == {
        again.id: [],
        renamed.id: [],
    }
    with pytest.raises(NotFound):
        await store.set_annotations(anna.id, renamed.id, [("/shared/comment", b"x")])


async def test_private_annotations_go_with_their_account(store: Store) -> None:
    anna = await store.create_account("anna@example.org", "h")
    ben = await store.create_account("ben@example.org", "h")
    team = await store.create_mailbox(anna.id, "Team")
    await store.set_annotations(ben.id, team.id, [("/private/comment", b"b")])
    await store.set_annotations(ben.id, None, [("/private/comment", b"server")])
    await store.set_annotations(anna.id, None, [("/shared/comment", b"motd")])
    await store.delete_account(ben.id)
    assert (await store.get_annotations(anna.id, [team.id, None])) == {
        team.id: [],
        None: [("/shared/comment", b"motd")],
    }


async def test_limits_count_what_a_write_adds(store: Store) -> None:
    anna = await store.create_account("anna@example.org", "h")
    ben = await store.create_account("ben@example.org", "h")
    team = await store.create_mailbox(anna.id, "Team")
    limits = AnnotationLimits(per_mailbox=3)
    await store.set_annotations(
        anna.id, team.id, [("/shared/a", b"1"), ("/private/b", b"2"), ("/private/c", b"3")], limits
    )
    # all or nothing: the first entry would fit, the second not
    with pytest.raises(TooManyAnnotations):
        await store.set_annotations(
            anna.id,
            team.id,
            [("/private/c", None), ("/private/d", b"4"), ("/private/e", b"5")],
            limits,
        )
    assert [n for n, _ in (await store.get_annotations(anna.id, [team.id]))[team.id]] == [
        "/private/b",
        "/private/c",
        "/shared/a",
    ]
    # replacing and removing are always allowed, adding after a removal too
    await store.set_annotations(anna.id, team.id, [("/private/c", b"33")], limits)
    await store.set_annotations(
        anna.id, team.id, [("/private/c", None), ("/private/d", b"4")], limits
    )
    # ben sees the shared entry only: he may add two of his own
    await store.set_annotations(
        ben.id, team.id, [("/private/x", b"1"), ("/private/y", b"2")], limits
    )
    with pytest.raises(TooManyAnnotations):
        await store.set_annotations(ben.id, team.id, [("/private/z", b"3")], limits)
    # a limit lowered below what is there: nothing can be added, everything can be changed
    tighter = AnnotationLimits(per_mailbox=1)
    await store.set_annotations(ben.id, team.id, [("/private/x", b"11")], tighter)
    with pytest.raises(TooManyAnnotations):
        await store.set_annotations(
            ben.id, None, [("/private/a", b"1"), ("/private/b", b"2")], tighter
        )


async def test_the_account_limit_counts_private_entries_and_shared_ones_of_its_mailboxes(
    store: Store,
) -> None:
    anna = await store.create_account("anna@example.org", "h")
    ben = await store.create_account("ben@example.org", "h")
    one = await store.create_mailbox(anna.id, "One")
    two = await store.create_mailbox(anna.id, "Two")
    limits = AnnotationLimits(per_account=3)
    await store.set_annotations(anna.id, one.id, [("/shared/a", b"1")], limits)
    await store.set_annotations(anna.id, None, [("/private/b", b"2")], limits)
    # ben's shared entry on anna's mailbox is charged to anna
    await store.set_annotations(ben.id, two.id, [("/shared/c", b"3")], limits)
    with pytest.raises(TooManyAnnotations):
        await store.set_annotations(ben.id, two.id, [("/shared/d", b"4")], limits)
    with pytest.raises(TooManyAnnotations):
        await store.set_annotations(anna.id, two.id, [("/private/e", b"5")], limits)
    # ben's private entries are his own
    await store.set_annotations(ben.id, two.id, [("/private/e", b"5")], limits)
    # server shared entries are charged to nobody
    await store.set_annotations(anna.id, None, [("/shared/admin", b"x")], limits)


async def test_concurrent_writes_never_pass_the_limit(store: Store) -> None:
    anna = await store.create_account("anna@example.org", "h")
    team = await store.create_mailbox(anna.id, "Team")
    limits = AnnotationLimits(per_mailbox=5)

    async def add(n: int) -> bool:
        try:
            await store.set_annotations(anna.id, team.id, [(f"/shared/e{n}", b"v")], limits)
        except TooManyAnnotations:
            return False
        return True

    results = await asyncio.gather(*(add(n) for n in range(12)))
    assert sum(results) == 5
    assert len((await store.get_annotations(anna.id, [team.id]))[team.id]) == 5


async def test_many_mailboxes_in_one_read(store: Store) -> None:
    anna = await store.create_account("anna@example.org", "h")
    # more than one chunk of parameters
    boxes = await asyncio.gather(*(store.create_mailbox(anna.id, f"F{n}") for n in range(600)))
    ids: list[MailboxId] = [b.id for b in boxes]
    await store.set_annotations(anna.id, ids[599], [("/shared/comment", b"last")])
    found = await store.get_annotations(anna.id, ids)
    assert len(found) == 600
    assert found[ids[599]] == [("/shared/comment", b"last")]
    assert found[ids[0]] == []


async def test_the_special_use_is_set_and_announced(store: Store) -> None:
    anna = await store.create_account("anna@example.org", "h")
    old = await store.create_mailbox(anna.id, "Old")
    heard: list[MailboxId] = []
    store.add_listener(heard.append)
    try:
        changed = await store.set_special_use(old.id, "\\Archive")
        assert changed.special_use == "\\Archive"
        assert old.id in heard
        again = await store.get_mailbox(anna.id, "Old")
        assert again is not None and again.special_use == "\\Archive"
        assert (await store.set_special_use(old.id, None)).special_use is None
    finally:
        store.remove_listener(heard.append)
    await store.delete_mailbox(old.id)
    with pytest.raises(NotFound):
        await store.set_special_use(old.id, "\\Trash")


async def test_entries_come_in_byte_order_of_their_names(store: Store) -> None:
    anna = await store.create_account("anna@example.org", "h")
    names = ["/shared/ab", "/shared/a_b", "/shared/a-b", "/shared/a/b", "/shared/a.b"]
    await store.set_annotations(anna.id, None, [(n, b"v") for n in names])
    found = (await store.get_annotations(anna.id, [None]))[None]
    assert [n for n, _ in found] == sorted(names)
