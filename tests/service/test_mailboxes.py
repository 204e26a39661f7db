"""pobox.service.mailboxes: the name rules and hierarchy operations every front end shares."""

from __future__ import annotations

import pytest

from pobox.errors import AlreadyExists, InvalidInput, NotAllowed, NotFound
from pobox.service.mail import MailService
from pobox.service.mailboxes import (
    MAX_DEPTH,
    MAX_LEVEL_OCTETS,
    MAX_NAME_OCTETS,
    BadSpecialUse,
    HasChildren,
    Mailboxes,
    canonical_pattern,
    matcher,
    normalise_name,
    parents,
    special_use,
    validate_name,
)
from pobox.store.api import Account


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("Drafts", "Drafts"),
        ("inbox", "INBOX"),
        ("Inbox/Receipts", "INBOX/Receipts"),
        ("INBOXES", "INBOXES"),
        ("a/b/c", "a/b/c"),
        ("Räksmörgås", "Räksmörgås"),
        ("Tom & Jerry", "Tom & Jerry"),
        ("~peter/mail", "~peter/mail"),
    ],
)
def test_valid_names(raw: str, canonical: str) -> None:
    assert validate_name(raw) == canonical


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "/",
        "/rooted",
        "a//b",
        "trailing/",
        "star*",
        "100%",
        "a/../b",
        ".",
        "tab\there",
        "bell\x07",
        "c1\x85",
        "x" * (MAX_LEVEL_OCTETS + 1),
        "/".join(["x"] * (MAX_DEPTH + 1)),
        "/".join(["x" * 200] * 6),
    ],
)
def test_invalid_names(raw: str) -> None:
    with pytest.raises(InvalidInput):
        validate_name(raw)


def test_limits_count_utf8_octets() -> None:
    validate_name("ä" * (MAX_LEVEL_OCTETS // 2))
    with pytest.raises(InvalidInput):
        validate_name("ä" * (MAX_LEVEL_OCTETS // 2 + 1))
    assert len(("x" * 200 + "/") * 4) < MAX_NAME_OCTETS


def test_one_trailing_delimiter_is_allowed_on_create() -> None:
    assert validate_name("owatagusiam/", trailing_delimiter=True) == "owatagusiam"
    with pytest.raises(InvalidInput):
        validate_name("owatagusiam//", trailing_delimiter=True)
    with pytest.raises(InvalidInput):
        validate_name("/", trailing_delimiter=True)


def test_normalise_only_touches_inbox() -> None:
    assert normalise_name("iNbOx/x") == "INBOX/x"
    assert normalise_name("inboxes") == "inboxes"
    assert parents("a/b/c") == ["a", "a/b"]
    assert parents("a") == []


def test_special_use() -> None:
    assert special_use(()) is None
    assert special_use(["\\drafts"]) == "\\Drafts"
    assert special_use(["\\Sent", "\\sent"]) == "\\Sent"
    for bad in (["\\All"], ["\\Flagged"], ["\\Bogus"], ["\\Sent", "\\Trash"]):
        with pytest.raises(BadSpecialUse):
            special_use(bad)


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("*", "a/b/c", True),
        ("%", "a", True),
        ("%", "a/b", False),
        ("a/%", "a/b", True),
        ("a/%", "a/b/c", False),
        ("a*", "a/b/c", True),
        ("inbox", "INBOX", True),
        ("inbox*", "INBOX/x", True),
        ("inbox*", "INBOXES", False),
        ("Inbox/%", "INBOX/x", True),
        ("in*", "INBOX", False),
        ("a.b", "aXb", False),
        ("a?", "a?", True),
    ],
)
def test_matcher(pattern: str, name: str, expected: bool) -> None:
    assert matcher(pattern)(name) is expected


def test_canonical_pattern() -> None:
    assert canonical_pattern("news/", "comp/%") == "news/comp/%"
    assert canonical_pattern("news/", "/comp") == "news/comp"
    assert canonical_pattern("news/comp", "%") == "news/comp%"
    assert canonical_pattern("", "inbox/%") == "INBOX/%"
    assert canonical_pattern("", "inboxes") == "inboxes"


@pytest.fixture
async def joe(service: MailService) -> Account:
    return await service.accounts.add("joe@example.org", "secret")


async def _names(service: MailService, account: Account) -> list[str]:
    return [e.name for e in await Mailboxes(service.store).matching(account, ["*"])]


async def test_create_makes_missing_parents(service: MailService, joe: Account) -> None:
    boxes = Mailboxes(service.store)
    created = await boxes.create(joe, "a/b/c/", ["\\Drafts"])
    assert created.name == "a/b/c" and created.special_use == "\\Drafts"
    names = await _names(service, joe)
    assert names[0] == "INBOX"
    assert {"a", "a/b", "a/b/c"} <= set(names)
    parent = await boxes.get(joe, "a/b")
    assert parent.special_use is None
    with pytest.raises(AlreadyExists):
        await boxes.create(joe, "a/b")
    with pytest.raises(AlreadyExists):
        await boxes.create(joe, "inbox")
    with pytest.raises(BadSpecialUse):
        await boxes.create(joe, "x", ["\\All"])
    with pytest.raises(NotFound):
        await boxes.get(joe, "x")  # a refused CREATE creates nothing


async def test_delete_rules(service: MailService, joe: Account) -> None:
    boxes = Mailboxes(service.store)
    await boxes.create(joe, "foo/bar")
    await boxes.subscribe(joe, "foo/bar")
    with pytest.raises(NotAllowed):
        await boxes.delete(joe, "Inbox")
    with pytest.raises(HasChildren):
        await boxes.delete(joe, "foo")
    await boxes.delete(joe, "foo/bar")
    await boxes.delete(joe, "foo")
    with pytest.raises(NotFound):
        await boxes.delete(joe, "foo")
    # the subscription outlives the mailbox (RFC 9051 §6.3.7)
    assert "foo/bar" in await service.store.list_subscriptions(joe.id)
    (entry,) = await boxes.matching(joe, ["foo/*"], subscribed_only=True)
    assert entry.name == "foo/bar" and not entry.exists and entry.subscribed


async def test_rename_moves_children_and_subscriptions(service: MailService, joe: Account) -> None:
    boxes = Mailboxes(service.store)
    await boxes.create(joe, "foo/bar")
    await boxes.subscribe(joe, "foo/bar")
    before = await boxes.get(joe, "foo/bar")
    await boxes.rename(joe, "foo", "x/y/zowie")
    after = await boxes.get(joe, "x/y/zowie/bar")
    assert after.id == before.id and after.uidvalidity == before.uidvalidity
    subscriptions = await service.store.list_subscriptions(joe.id)
    assert "x/y/zowie/bar" in subscriptions and "foo/bar" not in subscriptions
    await boxes.get(joe, "x/y")
    with pytest.raises(AlreadyExists):
        await boxes.rename(joe, "x/y/zowie", "Drafts")
    with pytest.raises(InvalidInput):
        await boxes.rename(joe, "x", "x/inner")
    with pytest.raises(NotFound):
        await boxes.rename(joe, "nothere", "else")
    with pytest.raises(InvalidInput):
        await boxes.rename(joe, "x", "bad%")


async def test_rename_inbox_moves_its_messages(service: MailService, joe: Account) -> None:
    from pobox.service.delivery import Envelope

    boxes = Mailboxes(service.store)
    await boxes.create(joe, "INBOX/child")
    envelope = Envelope("a@example.org", ("joe@example.org",))
    for _ in range(3):
        (result,) = await service.delivery.deliver(envelope, b"Subject: hi\r\n\r\nhello\r\n")
        assert result.delivered
    inbox_before = await boxes.get(joe, "INBOX")
    moved = await boxes.rename(joe, "INBOX", "Old/2025")
    _, status = await boxes.status(joe, "Old/2025")
    assert moved.name == "Old/2025" and status.messages == 3
    inbox, inbox_status = await boxes.status(joe, "INBOX")
    assert inbox.id == inbox_before.id and inbox_status.messages == 0
    await boxes.get(joe, "INBOX/child")  # the children of INBOX stay


async def test_matching_with_selection_options(service: MailService, joe: Account) -> None:
    boxes = Mailboxes(service.store)
    await boxes.create(joe, "Fruit/Banana")
    await boxes.subscribe(joe, "Fruit/Banana")
    await boxes.subscribe(joe, "Fruit/Peach")
    entries = await boxes.matching(joe, ["%"], subscribed_only=True, recursive_match=True)
    fruit = next(e for e in entries if e.name == "Fruit")
    assert fruit.childinfo and not fruit.subscribed and fruit.has_children
    special = await boxes.matching(joe, ["*"], special_use_only=True)
    assert [e.special_use for e in special] == [
        "\\Archive",
        "\\Drafts",
        "\\Junk",
        "\\Sent",
        "\\Trash",
    ]
    assert ("Fruit", False) in await boxes.lsub(joe, "%")
    assert ("Fruit/Peach", False) in await boxes.lsub(joe, "Fruit/*")
