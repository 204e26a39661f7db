"""Shared folders: access control lists (RFC 4314) and the shared namespace.

Every front end asks this module what an account may do with a mailbox name; it never asks the
store directly. The rules (docs/decisions/shared-folders.md):

* An account's own mailboxes carry every right for it (:data:`ALL_RIGHTS`), always.
* Another account's mailbox is named ``PREFIX/owner@domain/Folder`` (``[acl] shared_prefix``,
  ``Shared`` by default) and is reachable only through its access control list. The list's
  identifiers are account addresses, ``anyone`` and ``authenticated`` (when ``[acl]
  allow_anyone`` lets owners grant to everybody; both mean every account of this server), and
  each of those after ``-`` for negative rights: the rights a user has are the union of the
  entries that name them, minus the union of the negative entries that name them (§2).
* Without the ``l`` right a mailbox does not exist for the user: every command answers as for a
  mailbox that does not exist, so nothing tells them it is there (§6). With ``l`` but without the
  right a command needs, the answer is ``NO [NOPERM]``.
* The obsolete rights are virtual (§2.1.1): ``c`` is ``k`` and ``d`` is ``x``, ``t`` and ``e``;
  answers show ``c`` and ``d`` whenever one of their members is granted.
* Flags in a shared mailbox are shared, ``\\Seen`` included: what one person reads, the others
  see as read (the ``s`` right decides who may change it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pobox.config import AclConfig
from pobox.errors import InvalidInput, NoPermission, NotAllowed, NotFound
from pobox.store.api import DELIMITER, Account, Mailbox, Store

#: RFC 4314 §2.1 rights in the order pobox writes them (``p`` is kept but means nothing here:
#: delivery to a folder is not an IMAP operation).
ALL_RIGHTS = "lrswipkxtea"
#: the obsolete RFC 2086 rights and what they stand for (§2.1.1, the "c=k" servers)
VIRTUAL = {"c": "k", "d": "xte"}
#: rights that make SELECT read-write (§5.2: i, e and the shared flag rights s, w, t)
WRITE_RIGHTS = frozenset("iestw")
#: rights any of which lets a user ask MYRIGHTS (§4)
ANY_RIGHTS = frozenset("lrikxa")
ANYONE = "anyone"
AUTHENTICATED = "authenticated"
#: what each right lets one do, for messages that say which right is missing
RIGHT_NAMES = {
    "l": "see",
    "r": "read",
    "s": "change \\Seen in",
    "w": "change flags in",
    "i": "add messages to",
    "p": "post to",
    "k": "create mailboxes in",
    "x": "delete",
    "t": "change \\Deleted in",
    "e": "expunge",
    "a": "administer",
}


class BadRights(InvalidInput):
    """A rights string with a letter RFC 4314 does not define (the command gets BAD)."""


class BadIdentifier(InvalidInput):
    """An identifier that is empty or not printable (the command gets BAD)."""


def canonical(rights: Iterable[str]) -> str:
    have = set(rights)
    return "".join(r for r in ALL_RIGHTS if r in have)


def parse_rights(text: str) -> str:
    """The rights a client names, virtual ones expanded, in canonical order (§3.1: a letter
    that is not a right, upper case included, is an error)."""
    out: set[str] = set()
    for letter in text:
        if letter in VIRTUAL:
            out.update(VIRTUAL[letter])
        elif letter in ALL_RIGHTS:
            out.add(letter)
        else:
            raise BadRights(f"{letter!r} is not a right this server supports (RFC 4314)")
    return canonical(out)


def shown(rights: str) -> str:
    """Rights as MYRIGHTS and ACL answers show them: with ``c`` and ``d`` (§2.1.1)."""
    extra = "".join(v for v, members in VIRTUAL.items() if any(r in rights for r in members))
    return rights + extra


def effective(acl: Iterable[tuple[str, str]], address: str, *, allow_anyone: bool) -> str:
    """The rights *address* has under *acl* (positive entries naming it, minus negative ones)."""
    granted: set[str] = set()
    denied: set[str] = set()
    names = {address, ANYONE, AUTHENTICATED} if allow_anyone else {address}
    for identifier, rights in acl:
        negative = identifier.startswith("-")
        if (identifier[1:] if negative else identifier) in names:
            (denied if negative else granted).update(rights)
    return canonical(granted - denied)


@dataclass(frozen=True, slots=True)
class Access:
    """What one account may do with one mailbox."""

    mailbox: Mailbox
    #: the name as this account sees it (``Shared/owner@domain/Folder`` for others' mailboxes)
    name: str
    rights: str
    #: the owner's address
    owner: str
    #: the account's own mailbox (every right, always)
    own: bool

    def has(self, right: str) -> bool:
        return right in self.rights

    def require(self, rights: str) -> None:
        """Raise :class:`NoPermission` unless every one of *rights* is granted."""
        for right in rights:
            if right not in self.rights:
                raise NoPermission(
                    f"no permission to {RIGHT_NAMES[right]} {self.name} (the {right!r} right)"
                )

    @property
    def read_write(self) -> bool:
        """SELECT answers READ-WRITE (RFC 4314 §5.2)."""
        return any(r in WRITE_RIGHTS for r in self.rights)

    def allowed_flags(self, flags: Iterable[str]) -> frozenset[str]:
        """The flags of *flags* this account may set here: ``\\Seen`` needs ``s``,
        ``\\Deleted`` ``t``, any other flag ``w`` (RFC 4314 §4, STORE, APPEND, COPY)."""
        return frozenset(f for f in flags if flag_right(f) in self.rights)


def flag_right(flag: str) -> str:
    lowered = flag.lower()
    if lowered == "\\seen":
        return "s"
    if lowered == "\\deleted":
        return "t"
    return "w"


@dataclass(frozen=True, slots=True)
class Location:
    """Where a name points: the owner's account and the owner's own name of the mailbox."""

    owner: Account
    local: str
    shared: bool


class Acl:
    """Rights checks and access control lists for every front end."""

    def __init__(self, store: Store, config: AclConfig) -> None:
        self.store = store
        self.config = config

    # -- names ------------------------------------------------------------------------------
    @property
    def prefix(self) -> str:
        return self.config.shared_prefix

    def is_shared_name(self, name: str) -> bool:
        """*name* is in the shared namespace (the prefix itself included)."""
        return name == self.prefix or name.startswith(self.prefix + DELIMITER)

    def shared_name(self, owner: str, local: str) -> str:
        return f"{self.prefix}{DELIMITER}{owner}{DELIMITER}{local}"

    def split(self, name: str) -> tuple[str, str] | None:
        """(owner address, the owner's name of the mailbox) for a shared name, else None.
        The prefix alone and ``PREFIX/owner`` give an empty mailbox name."""
        if not self.is_shared_name(name):
            return None
        parts = name.split(DELIMITER, 2)
        owner = parts[1].lower() if len(parts) > 1 else ""
        local = parts[2] if len(parts) > 2 else ""
        if local.upper() == "INBOX" or local.upper().startswith("INBOX" + DELIMITER):
            local = "INBOX" + local[5:]
        return owner, local

    async def locate(self, account: Account, name: str) -> Location:
        """The owner and local name *name* points at; NotFound for a shared name whose owner
        does not exist (the mailbox itself need not exist)."""
        split = self.split(name)
        if split is None:
            return Location(account, name, False)
        owner_address, local = split
        owner = await self.store.get_account(owner_address) if owner_address else None
        if owner is None or owner.id == account.id or not local:
            raise NotFound(f"mailbox {name} does not exist")
        return Location(owner, local, True)

    # -- rights -----------------------------------------------------------------------------
    async def rights_of(self, account: Account, mailbox: Mailbox) -> str:
        if mailbox.account_id == account.id:
            return ALL_RIGHTS
        acl = await self.store.get_acl(mailbox.id)
        return effective(acl, account.address.lower(), allow_anyone=self.config.allow_anyone)

    async def access(self, account: Account, name: str, need: str = "") -> Access:
        """What *account* may do with the mailbox *name*; NotFound when it does not exist or
        the account may not see it, NoPermission when a right of *need* is missing."""
        where = await self.locate(account, name)
        mailbox = await self.store.get_mailbox(where.owner.id, where.local)
        if mailbox is None:
            raise NotFound(f"mailbox {name} does not exist")
        return await self.access_to(account, mailbox, name, need)

    async def access_to(
        self, account: Account, mailbox: Mailbox, name: str, need: str = ""
    ) -> Access:
        """:meth:`access` for a mailbox already read."""
        own = mailbox.account_id == account.id
        if own:
            access = Access(mailbox, name, ALL_RIGHTS, account.address.lower(), True)
        else:
            rights = await self.rights_of(account, mailbox)
            if "l" not in rights:
                raise NotFound(f"mailbox {name} does not exist")
            owner = await self.store.get_account_by_id(mailbox.account_id)
            address = owner.address.lower() if owner is not None else ""
            access = Access(mailbox, name, rights, address, False)
        access.require(need)
        return access

    async def shared_with(self, account: Account) -> dict[str, tuple[Mailbox, str]]:
        """Other accounts' mailboxes *account* may see, by the name it sees them under, with
        its rights on each."""
        me = account.address.lower()
        names = [me, ANYONE, AUTHENTICATED] if self.config.allow_anyone else [me]
        out: dict[str, tuple[Mailbox, str]] = {}
        for shared in await self.store.shared_mailboxes(names):
            if shared.mailbox.account_id == account.id:
                continue
            rights = effective(shared.acl, me, allow_anyone=self.config.allow_anyone)
            if "l" in rights:
                out[self.shared_name(shared.owner, shared.mailbox.name)] = (shared.mailbox, rights)
        return out

    # -- the list itself --------------------------------------------------------------------
    async def identifier(self, text: str) -> str:
        """The canonical form of an identifier (§3: prepared, then checked): a lower-case
        account address, ``anyone`` or ``authenticated``, with a leading ``-`` kept."""
        prepared = text.strip()
        negative = prepared.startswith("-")
        name = prepared[1:] if negative else prepared
        if not name or not name.isprintable() or any(c.isspace() for c in name):
            raise BadIdentifier(f"{text!r} is not an identifier")
        lowered = name.lower()
        if lowered in (ANYONE, AUTHENTICATED):
            if not self.config.allow_anyone:
                raise NotAllowed(f"this server does not let owners grant rights to {lowered}")
        else:
            account = await self.store.get_account(lowered)
            if account is None:
                raise NotAllowed(f"there is no account {name}")
            lowered = account.address.lower()
        return ("-" if negative else "") + lowered

    async def get_acl(self, account: Account, name: str) -> tuple[Access, list[tuple[str, str]]]:
        """GETACL: the owner's entry first (every right, fixed), then the stored entries."""
        access = await self.access(account, name, "a")
        stored = await self.store.get_acl(access.mailbox.id)
        return access, [(access.owner, ALL_RIGHTS), *stored]

    async def set_acl(
        self, account: Account, name: str, identifier: str, modification: str
    ) -> tuple[Access, str]:
        """SETACL: ``+rights`` adds, ``-rights`` removes, ``rights`` replaces; an empty result
        removes the entry. Returns the entry's rights afterwards."""
        mode = modification[:1] if modification[:1] in ("+", "-") else ""
        rights = parse_rights(modification[len(mode) :])
        who = await self.identifier(identifier)
        access = await self.access(account, name, "a")
        self._not_owner(access, who)
        current = dict(await self.store.get_acl(access.mailbox.id)).get(who, "")
        if mode == "+":
            result = canonical(set(current) | set(rights))
        elif mode == "-":
            result = canonical(set(current) - set(rights))
        else:
            result = rights
        await self.store.set_acl(access.mailbox.id, who, result or None)
        return access, result

    async def delete_acl(self, account: Account, name: str, identifier: str) -> Access:
        who = await self.identifier(identifier)
        access = await self.access(account, name, "a")
        self._not_owner(access, who)
        await self.store.set_acl(access.mailbox.id, who, None)
        return access

    @staticmethod
    def _not_owner(access: Access, who: str) -> None:
        if who.lstrip("-") == access.owner:
            raise NotAllowed("the owner's rights on their own mailbox cannot be changed")

    async def list_rights(
        self, account: Account, name: str, identifier: str
    ) -> tuple[Access, str, tuple[str, ...]]:
        """LISTRIGHTS: (required, optional groups). The owner always has every right; anyone
        else may be granted each right on its own (no rights are tied; §2.1.1: ``c`` and ``d``
        are listed by themselves)."""
        who = await self.identifier(identifier)
        access = await self.access(account, name, "a")
        if who == access.owner:
            return access, shown(ALL_RIGHTS), ()
        return access, "", (*ALL_RIGHTS, *VIRTUAL)

    async def my_rights(self, account: Account, name: str) -> Access:
        access = await self.access(account, name)
        if not any(r in ANY_RIGHTS for r in access.rights):  # pragma: no cover - l is needed
            raise NotFound(f"mailbox {name} does not exist")
        return access

    async def inherit(self, parent: Mailbox, child: Mailbox) -> None:
        """A new mailbox takes its parent's list (RFC 4314 §4, CREATE: SHOULD)."""
        for identifier, rights in await self.store.get_acl(parent.id):
            await self.store.set_acl(child.id, identifier, rights)

    async def acl_of(self, mailbox: Mailbox) -> Sequence[tuple[str, str]]:
        return await self.store.get_acl(mailbox.id)
