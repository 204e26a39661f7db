"""pobox.service.acl: what rights mean (RFC 4314) and the shared namespace."""

from __future__ import annotations

import dataclasses

import pytest

from pobox.config import AclConfig
from pobox.errors import AlreadyExists, NoPermission, NotAllowed, NotFound
from pobox.service.acl import (
    ALL_RIGHTS,
    Acl,
    BadIdentifier,
    BadRights,
    effective,
    parse_rights,
    shown,
)
from pobox.service.mail import MailService
from pobox.service.mailboxes import Mailboxes


def test_rights_are_parsed_with_the_virtual_rights_expanded() -> None:
    assert parse_rights("") == ""
    assert parse_rights("rl") == "lr"
    assert parse_rights("c") == "k"  # pobox is a "c=k" server (§2.1.1)
    assert parse_rights("d") == "xte"
    assert parse_rights("lrswicda") == "lrswikxtea"
    for bad in ("Q", "L", "q", "1", " ", "lr+"):
        with pytest.raises(BadRights):
            parse_rights(bad)


def test_answers_show_c_and_d_when_a_member_is_granted() -> None:
    assert shown(ALL_RIGHTS) == "lrswipkxteacd"
    assert shown("lr") == "lr"
    assert shown("lrk") == "lrkc"
    assert shown("lrt") == "lrtd"  # any member of d is enough


def test_effective_rights_are_granted_minus_denied() -> None:
    acl = [("ben@x", "lrsw"), ("-ben@x", "w"), ("anyone", "li"), ("-authenticated", "s")]
    assert effective(acl, "ben@x", allow_anyone=True) == "lri"
    assert effective(acl, "ben@x", allow_anyone=False) == "lrs"
    assert effective(acl, "carl@x", allow_anyone=True) == "li"
    assert effective(acl, "carl@x", allow_anyone=False) == ""


async def test_identifiers_are_canonical_accounts(service: MailService) -> None:
    await service.accounts.add("ben@example.org", "pw")
    acl = service.acl
    assert await acl.identifier("Ben@Example.ORG") == "ben@example.org"
    assert await acl.identifier("-ben@example.org") == "-ben@example.org"
    with pytest.raises(NotAllowed):
        await acl.identifier("nobody@example.org")
    with pytest.raises(NotAllowed):
        await acl.identifier("anyone")  # [acl] allow_anyone is off by default
    for bad in ("", "-", "a b", "x\x00y"):
        with pytest.raises(BadIdentifier):
            await acl.identifier(bad)
    everyone = Acl(service.store, AclConfig(allow_anyone=True))
    assert await everyone.identifier("Anyone") == "anyone"
    assert await everyone.identifier("-authenticated") == "-authenticated"


async def test_a_grantee_creates_renames_and_deletes_by_rights(service: MailService) -> None:
    anna = await service.accounts.add("anna@example.org", "pw")
    ben = await service.accounts.add("ben@example.org", "pw")
    boxes = Mailboxes(service.store, service.acl)
    await boxes.create(anna, "Team")
    await service.acl.set_acl(anna, "Team", "ben@example.org", "lrk")
    # created below a shared folder: the child belongs to the owner and inherits the list
    child = await boxes.create(ben, "Shared/anna@example.org/Team/Plans")
    assert child.account_id == anna.id and child.name == "Team/Plans"
    assert await service.store.get_acl(child.id) == [("ben@example.org", "lrk")]
    with pytest.raises(AlreadyExists):
        await boxes.create(ben, "Shared/anna@example.org/Team/Plans")
    # no x: no DELETE, no RENAME away
    with pytest.raises(NoPermission):
        await boxes.delete(ben, "Shared/anna@example.org/Team/Plans")
    await service.acl.set_acl(anna, "Team/Plans", "ben@example.org", "+x")
    renamed = await boxes.rename(
        ben, "Shared/anna@example.org/Team/Plans", "Shared/anna@example.org/Team/Ideas"
    )
    assert renamed.name == "Team/Ideas"
    # a mailbox never moves from one account to another
    with pytest.raises(NotAllowed):
        await boxes.rename(ben, "Shared/anna@example.org/Team/Ideas", "Ideas")
    # nor to the top of the owner's tree, where ben has no k
    with pytest.raises(NoPermission):
        await boxes.rename(ben, "Shared/anna@example.org/Team/Ideas", "Shared/anna@example.org/X")
    await boxes.delete(ben, "Shared/anna@example.org/Team/Ideas")
    assert await service.store.get_mailbox(anna.id, "Team/Ideas") is None
    # the owner's own namespace keeps its names; the shared prefix is not a personal folder
    with pytest.raises(NotAllowed):
        await boxes.create(anna, "Shared")
    with pytest.raises(NoPermission):
        await boxes.create(anna, "Shared/nobody@example.org/Team")


async def test_what_a_grantee_sees(service: MailService) -> None:
    anna = await service.accounts.add("anna@example.org", "pw")
    ben = await service.accounts.add("ben@example.org", "pw")
    boxes = Mailboxes(service.store, service.acl)
    for name in ("A", "A/B", "C"):
        await boxes.create(anna, name)
    await service.acl.set_acl(anna, "A/B", "ben@example.org", "lr")
    await service.acl.set_acl(anna, "C", "ben@example.org", "r")  # no l: invisible
    names = [e.name for e in await boxes.matching(ben, ["*"])]
    assert "Shared/anna@example.org/A/B" in names
    assert not any(n.startswith("Shared/anna@example.org/A/") and n.endswith("/A") for n in names)
    assert "Shared/anna@example.org/C" not in names
    with pytest.raises(NotFound):
        await service.acl.access(ben, "Shared/anna@example.org/C")
    with pytest.raises(NotFound):
        await service.acl.access(ben, "Shared/anna@example.org/A")
    access = await service.acl.access(ben, "Shared/anna@example.org/A/B", "r")
    assert (access.owner, access.own, access.read_write) == ("anna@example.org", False, False)
    assert access.allowed_flags({"\\Seen", "\\Deleted", "$Work"}) == frozenset()
    # the owner keeps every right on their own mailboxes, whatever the list says
    own = await service.acl.access(anna, "A/B", "lrswipkxtea")
    assert own.own and own.rights == ALL_RIGHTS
    # a deleted account's entries go: a new account with the address inherits nothing
    await service.accounts.delete("ben@example.org")
    assert await service.store.shared_mailboxes(["ben@example.org"]) == []


async def test_anyone_works_only_while_the_administrator_allows_it(
    service: MailService,
) -> None:
    anna = await service.accounts.add("anna@example.org", "pw")
    ben = await service.accounts.add("ben@example.org", "pw")
    await Mailboxes(service.store, service.acl).create(anna, "News")
    service.acl.config = dataclasses.replace(service.acl.config, allow_anyone=True)
    await service.acl.set_acl(anna, "News", "anyone", "lr")
    assert (await service.acl.access(ben, "Shared/anna@example.org/News")).rights == "lr"
    service.acl.config = dataclasses.replace(service.acl.config, allow_anyone=False)
    with pytest.raises(NotFound):
        await service.acl.access(ben, "Shared/anna@example.org/News")
