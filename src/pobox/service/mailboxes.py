"""Mailbox operations every front end shares: name rules, create, delete, rename, list.

IMAP maps these to its wire words (``NO [ALREADYEXISTS]``, ``\\HasChildren`` …); the webmail
and the CLI call the same methods, so a name that IMAP refuses is refused everywhere.

Name rules (docs/imap.md, "Mailbox names"):

* the hierarchy delimiter is ``/``; a name is one or more levels separated by it, none empty;
  one trailing ``/`` is allowed on CREATE (RFC 9051 §6.3.4) and dropped;
* ``INBOX`` is case-insensitive, also as the first level of a longer name (``inbox/x`` is
  ``INBOX/x``), and is always spelled in upper case;
* no ``*`` or ``%`` (they are LIST wildcards), no control characters, no ``.`` or ``..`` level;
* at most :data:`MAX_NAME_OCTETS` octets of UTF-8, :data:`MAX_LEVEL_OCTETS` per level and
  :data:`MAX_DEPTH` levels.

Hierarchy: creating ``a/b/c`` creates ``a`` and ``a/b`` when they are missing, so every parent
of a mailbox exists; deleting a mailbox that has children is refused (:class:`HasChildren`,
RFC 9051 §6.3.5 allows this and asks for the HASCHILDREN code). Subscriptions are names, not
mailboxes: they survive DELETE (RFC 9051 §6.3.9) and follow a RENAME.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from pobox.config import AclConfig
from pobox.errors import AlreadyExists, InvalidInput, NoPermission, NotAllowed, NotFound
from pobox.service import notify
from pobox.service.acl import Acl, Location
from pobox.service.quota import Quotas
from pobox.store.api import (
    DELIMITER,
    SPECIAL_USES,
    Account,
    Mailbox,
    MailboxStatus,
    QuotaLimits,
    Store,
    Uid,
)

INBOX = "INBOX"
MAX_NAME_OCTETS = 1000
MAX_LEVEL_OCTETS = 255
MAX_DEPTH = 32

#: Special uses a mailbox can be created with. ``\\All`` and ``\\Flagged`` name virtual
#: mailboxes (every message / every flagged message), which pobox does not have.
CREATABLE_SPECIAL_USES = SPECIAL_USES - {"\\All", "\\Flagged"}

_CANONICAL_USE = {use.lower(): use for use in SPECIAL_USES}


class HasChildren(NotAllowed):
    """DELETE of a mailbox that still has mailboxes below it."""


class BadSpecialUse(InvalidInput):
    """A special-use attribute pobox does not know or cannot give to a mailbox."""


# --------------------------------------------------------------------------- names


def normalise_name(name: str) -> str:
    """Spell INBOX canonically (``inbox`` → ``INBOX``, ``Inbox/x`` → ``INBOX/x``); no checks."""
    head, sep, rest = name.partition(DELIMITER)
    if head.upper() == INBOX:
        return INBOX + sep + rest
    return name


def validate_name(name: str, *, trailing_delimiter: bool = False) -> str:
    """The canonical form of a mailbox name, or :class:`InvalidInput` saying what is wrong.

    ``trailing_delimiter`` allows (and drops) one ``/`` at the end, as CREATE does.
    """
    if trailing_delimiter and name.endswith(DELIMITER) and name != DELIMITER:
        name = name[: -len(DELIMITER)]
    if not name:
        raise InvalidInput("the mailbox name is empty")
    if "*" in name or "%" in name:
        raise InvalidInput("mailbox names cannot contain * or %")
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in name):
        raise InvalidInput("mailbox names cannot contain control characters")
    if any(0xD800 <= ord(ch) < 0xE000 for ch in name):
        raise InvalidInput("the mailbox name is not valid Unicode")
    levels = name.split(DELIMITER)
    if any(not level for level in levels):
        raise InvalidInput(f"mailbox names cannot have empty levels ({DELIMITER!r} twice)")
    if any(level in (".", "..") for level in levels):
        raise InvalidInput("mailbox names cannot have a '.' or '..' level")
    if len(levels) > MAX_DEPTH:
        raise InvalidInput(f"mailbox names can have at most {MAX_DEPTH} levels")
    if any(len(level.encode("utf-8")) > MAX_LEVEL_OCTETS for level in levels):
        raise InvalidInput(f"each level of a mailbox name is limited to {MAX_LEVEL_OCTETS} octets")
    if len(name.encode("utf-8")) > MAX_NAME_OCTETS:
        raise InvalidInput(f"mailbox names are limited to {MAX_NAME_OCTETS} octets")
    return normalise_name(name)


def parents(name: str) -> list[str]:
    """``a/b/c`` → ``["a", "a/b"]``."""
    levels = name.split(DELIMITER)
    return [DELIMITER.join(levels[:i]) for i in range(1, len(levels))]


def is_below(name: str, ancestor: str) -> bool:
    return name.startswith(ancestor + DELIMITER)


def special_use(attributes: Iterable[str]) -> str | None:
    """The one special use a new mailbox gets, from CREATE's ``USE (...)`` (RFC 6154 §5.2)."""
    wanted: list[str] = []
    for attribute in attributes:
        canonical = _CANONICAL_USE.get(attribute.lower())
        if canonical is None:
            raise BadSpecialUse(f"{attribute} is not a special-use attribute pobox knows")
        if canonical not in CREATABLE_SPECIAL_USES:
            raise BadSpecialUse(f"pobox has no virtual mailboxes: {canonical} is not supported")
        if canonical not in wanted:
            wanted.append(canonical)
    if len(wanted) > 1:
        raise BadSpecialUse("a mailbox can have only one special use")
    return wanted[0] if wanted else None


# --------------------------------------------------------------------------- patterns


def canonical_pattern(reference: str, pattern: str) -> str:
    """RFC 9051 §6.3.9: the reference name and the pattern make one pattern.

    pobox has one namespace with an empty prefix, so the reference is simply prepended
    (a delimiter where the two meet is not doubled), and an INBOX first level is canonicalised.
    """
    if reference.endswith(DELIMITER) and pattern.startswith(DELIMITER):
        pattern = pattern[len(DELIMITER) :]
    full = reference + pattern
    head = full[: len(INBOX)]
    if head.upper() == INBOX and full[len(INBOX) : len(INBOX) + 1] in ("", DELIMITER):
        full = INBOX + full[len(INBOX) :]
    return full


def matcher(pattern: str) -> Callable[[str], bool]:
    """``*`` matches anything, ``%`` anything but the delimiter (RFC 9051 §6.3.9).

    INBOX is case-insensitive in patterns too: ``inbox*`` matches ``INBOX`` and ``INBOX/x``
    (but not a mailbox named ``INBOXES``, which is not INBOX).
    """
    exact = _compile(pattern)
    if pattern[: len(INBOX)].upper() != INBOX or pattern.startswith(INBOX):
        return lambda name: exact.fullmatch(name) is not None
    inbox = _compile(INBOX + pattern[len(INBOX) :])

    def match(name: str) -> bool:
        if exact.fullmatch(name) is not None:
            return True
        in_inbox = name == INBOX or is_below(name, INBOX)
        return in_inbox and inbox.fullmatch(name) is not None

    return match


def _compile(pattern: str) -> re.Pattern[str]:
    parts: list[str] = []
    for ch in pattern:
        if ch == "*":
            parts.append(".*")
        elif ch == "%":
            parts.append(f"[^{re.escape(DELIMITER)}]*")
        else:
            parts.append(re.escape(ch))
    return re.compile("".join(parts), re.DOTALL)


# --------------------------------------------------------------------------- listing


@dataclass(frozen=True, slots=True)
class ListEntry:
    """One name in a LIST answer, with everything a front end may show about it."""

    name: str
    mailbox: Mailbox | None  # None: the name does not exist (\NonExistent)
    has_children: bool
    subscribed: bool
    childinfo: bool = False  # RECURSIVEMATCH: a descendant not in the answer meets the criteria

    @property
    def exists(self) -> bool:
        return self.mailbox is not None

    @property
    def special_use(self) -> str | None:
        return self.mailbox.special_use if self.mailbox is not None else None


def _sort_key(name: str) -> tuple[bool, list[str]]:
    return (name != INBOX and not is_below(name, INBOX), name.split(DELIMITER))


def _ancestors(names: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for name in names:
        out.update(parents(name))
    return out


def _cut_levels(names: Iterable[str], matches: Callable[[str], bool]) -> set[str]:
    """Ancestors that a pattern matches although a descendant of theirs it does not match:
    the level where a ``%`` stopped."""
    out: set[str] = set()
    for name in names:
        if not matches(name):
            out.update(p for p in parents(name) if matches(p))
    return out


# --------------------------------------------------------------------------- the service


class Mailboxes:
    """The mailbox operations of one store; stateless and cheap to make.

    Names in the shared namespace (``Shared/owner@domain/Folder``) reach other accounts'
    mailboxes through their access control lists (:mod:`pobox.service.acl`): every operation
    checks the right RFC 4314 §4 asks for, and a mailbox the account may not see does not
    exist for it."""

    def __init__(self, store: Store, acl: Acl | None = None, quotas: Quotas | None = None) -> None:
        self.store = store
        self.acl = acl if acl is not None else Acl(store, AclConfig())
        #: the mailbox-count limit of CREATE (pobox.service.quota); None: none
        self.quotas = quotas

    async def get(self, account: Account, name: str) -> Mailbox:
        return (await self.acl.access(account, normalise_name(name))).mailbox

    async def status(self, account: Account, name: str) -> tuple[Mailbox, MailboxStatus]:
        """STATUS needs the ``r`` right (RFC 4314 §4)."""
        access = await self.acl.access(account, normalise_name(name), "r")
        return access.mailbox, await self.store.mailbox_status(access.mailbox.id)

    async def _creatable(self, account: Account, name: str) -> Location:
        """Where a new name would go; in the shared namespace an unknown owner is refused as
        one without the k right, so CREATE cannot tell which accounts exist."""
        split = self.acl.split(name)
        if split is not None and not split[1]:
            raise NotAllowed(f"{self.acl.prefix} holds other accounts' shared mailboxes")
        try:
            return await self.acl.locate(account, name)
        except NotFound:
            raise NoPermission(f"no permission to create mailboxes in {name}") from None

    async def _nearest_parent(self, owner: Account, name: str) -> Mailbox | None:
        for parent in reversed(parents(name)):
            found = await self.store.get_mailbox(owner.id, parent)
            if found is not None:
                return found
        return None

    async def create(self, account: Account, name: str, use: Sequence[str] = ()) -> Mailbox:
        """Create *name* and any missing parents; *use* are RFC 6154 attributes. The new
        mailbox takes the access control list of its nearest existing parent; in another
        account's tree that parent must give the ``k`` right."""
        name = validate_name(name, trailing_delimiter=True)
        if name == INBOX:
            raise AlreadyExists("INBOX always exists")
        attribute = special_use(use)
        where = await self._creatable(account, name)
        if not where.shared and self.acl.is_shared_name(name):
            raise NotAllowed(f"{self.acl.prefix} holds other accounts' shared mailboxes")
        owner, local = where.owner, where.local
        if where.shared:
            local = validate_name(local)
        parent = await self._nearest_parent(owner, local)
        if where.shared:
            if parent is None:
                raise NoPermission(f"no permission to create mailboxes in {name}")
            shown = self.acl.shared_name(owner.address.lower(), parent.name)
            try:
                await self.acl.access_to(account, parent, shown, "k")
            except NotFound:
                raise NoPermission(f"no permission to create mailboxes in {name}") from None
        if await self.store.get_mailbox(owner.id, local) is not None:
            if where.shared:  # visible only with the l right
                await self.acl.access(account, name)
            raise AlreadyExists(f"mailbox {name} already exists")
        limits = None if self.quotas is None else await self.quotas.current_limits(owner.id)
        await self._create_parents(owner, local, limits)
        mailbox = await self.store.create_mailbox(owner.id, local, attribute, quota=limits)
        if parent is not None:
            await self.acl.inherit(parent, mailbox)
        return mailbox

    async def _create_parents(
        self, account: Account, name: str, limits: QuotaLimits | None = None
    ) -> None:
        for parent in parents(name):
            if await self.store.get_mailbox(account.id, parent) is None:
                try:
                    await self.store.create_mailbox(account.id, parent, quota=limits)
                except AlreadyExists:  # another session made it meanwhile
                    pass

    async def delete(self, account: Account, name: str) -> Mailbox:
        """Delete *name* with its messages; refuses INBOX and mailboxes with children. Needs
        the ``x`` right; the mailbox's access control list goes with it."""
        name = normalise_name(name)
        if name == INBOX:
            raise NotAllowed("INBOX cannot be deleted")
        access = await self.acl.access(account, name, "x")
        mailbox = access.mailbox
        if mailbox.name == INBOX:
            raise NotAllowed("INBOX cannot be deleted")
        existing = await self.store.list_mailboxes(mailbox.account_id)
        if any(is_below(m.name, mailbox.name) for m in existing):
            raise HasChildren(f"mailbox {name} has child mailboxes; delete them first")
        await self.store.delete_mailbox(mailbox.id)
        return mailbox

    async def rename(self, account: Account, old: str, new: str) -> Mailbox:
        """Rename *old* (and everything below it) to *new*, creating missing parents of *new*.

        Renaming INBOX moves its messages to a new mailbox *new* and leaves INBOX empty; its
        children stay where they are (RFC 9051 §6.3.6). In another account's tree it needs the
        ``x`` right on *old* and ``k`` on the new parent (RFC 4314 §4); a mailbox cannot move
        from one account to another.
        """
        old = normalise_name(old)
        new = validate_name(new)
        access = await self.acl.access(account, old, "x")
        source = access.mailbox
        target = await self._creatable(account, new)
        if not target.shared and self.acl.is_shared_name(new):
            raise NotAllowed(f"{self.acl.prefix} holds other accounts' shared mailboxes")
        if target.owner.id != source.account_id:
            raise NotAllowed("a mailbox cannot move to another account")
        owner = target.owner
        old_local, new_local = source.name, validate_name(target.local)
        if new_local == old_local:
            raise AlreadyExists(f"mailbox {new} already exists")
        if new_local == INBOX:
            raise AlreadyExists("INBOX always exists")
        if old_local != INBOX and is_below(new_local, old_local):
            raise InvalidInput(f"mailbox {old} cannot be moved below itself")
        if target.shared:
            parent = await self._nearest_parent(owner, new_local)
            if parent is None:
                raise NoPermission(f"no permission to create mailboxes for {new}")
            shown = self.acl.shared_name(owner.address.lower(), parent.name)
            try:
                await self.acl.access_to(account, parent, shown, "k")
            except NotFound:
                raise NoPermission(f"no permission to create mailboxes for {new}") from None
        existing = {m.name: m for m in await self.store.list_mailboxes(owner.id)}
        if new_local in existing:
            raise AlreadyExists(f"mailbox {new} already exists")
        if old_local == INBOX:
            return await self._rename_inbox(owner, source, new_local)
        moving = [n for n in existing if is_below(n, old_local)]
        for child in moving:
            renamed_child = new_local + child[len(old_local) :]
            if renamed_child in existing:
                raise AlreadyExists(f"mailbox {renamed_child} already exists")
            if len(renamed_child.encode("utf-8")) > MAX_NAME_OCTETS or renamed_child.count(
                DELIMITER
            ) >= (MAX_DEPTH):
                raise InvalidInput(f"the child mailbox {child} would get too long a name")
        await self._create_parents(owner, new_local)
        renamed = await self.store.rename_mailbox(source.id, new_local)
        await self._move_subscriptions(owner, old_local, new_local)
        if target.shared:
            await self._move_subscriptions(account, old, new)
        return renamed

    async def _rename_inbox(self, account: Account, inbox: Mailbox, new: str) -> Mailbox:
        await self._create_parents(account, new)
        target = await self.store.create_mailbox(account.id, new)
        uids: list[Uid] = [m.uid for m in await self.store.list_messages(inbox.id)]
        if uids:
            await self.store.copy(inbox.id, uids, target.id, move=True)
        return await self.store.get_mailbox_by_id(target.id) or target

    async def _move_subscriptions(self, account: Account, old: str, new: str) -> None:
        for name in await self.store.list_subscriptions(account.id):
            if name == old or is_below(name, old):
                await self.store.set_subscribed(account.id, name, False)
                await self.store.set_subscribed(account.id, new + name[len(old) :], True)

    async def visible(self, account: Account) -> dict[str, Mailbox]:
        """Every mailbox *account* may see, by the name it sees: its own, and the shared
        mailboxes of others it has the ``l`` right on."""
        mailboxes = {m.name: m for m in await self.store.list_mailboxes(account.id)}
        for name, (mailbox, _rights) in (await self.acl.shared_with(account)).items():
            mailboxes[name] = mailbox
        return mailboxes

    async def subscribe(self, account: Account, name: str) -> str:
        """Subscribe to *name*; the mailbox need not exist (RFC 9051 §6.3.7)."""
        name = validate_name(name)
        await self.store.set_subscribed(account.id, name, True)
        notify.subscriptions_changed(self.store, account.id)  # IMAP NOTIFY SubscriptionChange
        return name

    async def unsubscribe(self, account: Account, name: str) -> str:
        """Remove *name* from the subscriptions; not being subscribed is no error."""
        name = normalise_name(name)
        await self.store.set_subscribed(account.id, name, False)
        notify.subscriptions_changed(self.store, account.id)
        return name

    async def matching(
        self,
        account: Account,
        patterns: Sequence[str],
        *,
        subscribed_only: bool = False,
        special_use_only: bool = False,
        recursive_match: bool = False,
    ) -> list[ListEntry]:
        """The names matching any of *patterns* that meet the selection criteria (RFC 5258).

        Without a selection option, the existing mailboxes, plus — for names matched by ``%``
        at their level — hierarchy levels that only exist as parents (RFC 9051 §6.3.9).
        ``subscribed_only`` lists subscribed names, existing or not; ``special_use_only``
        mailboxes with a special use; ``recursive_match`` adds names that do not meet the
        criteria but have a descendant that does and that no pattern matched (CHILDINFO).
        """
        mailboxes = await self.visible(account)
        subscriptions = set(await self.store.list_subscriptions(account.id))
        matchers = [matcher(p) for p in patterns]

        def matches(name: str) -> bool:
            return any(m(name) for m in matchers)

        def meets(name: str) -> bool:
            if subscribed_only and name not in subscriptions:
                return False
            if special_use_only:
                mailbox = mailboxes.get(name)
                return mailbox is not None and mailbox.special_use is not None
            return subscribed_only or name in mailboxes

        candidates = set(subscriptions if subscribed_only else mailboxes)
        if special_use_only:
            candidates = {n for n in candidates if meets(n)}
        with_children = _ancestors(mailboxes)
        names = {n for n in candidates if matches(n)}
        childinfo: set[str] = set()
        if recursive_match:
            for name in candidates:
                if name in names:
                    continue
                for parent in parents(name):
                    if matches(parent):
                        childinfo.add(parent)
            names |= childinfo
        elif not subscribed_only and not special_use_only:
            # levels that exist only as parents, where "%" stops (RFC 9051 §6.3.9)
            names |= _cut_levels(mailboxes, matches) - set(mailboxes)
        return [
            ListEntry(
                name=name,
                mailbox=mailboxes.get(name),
                has_children=name in with_children,
                subscribed=name in subscriptions,
                childinfo=name in childinfo,
            )
            for name in sorted(names, key=_sort_key)
        ]

    async def lsub(self, account: Account, pattern: str) -> list[tuple[str, bool]]:
        """LSUB (RFC 3501 §6.3.9): subscribed names matching *pattern*, and whether each is
        selectable; a level matched by ``%`` whose descendants are subscribed is listed as not
        selectable."""
        match = matcher(pattern)
        mailboxes = set(await self.visible(account))
        subscriptions = set(await self.store.list_subscriptions(account.id))
        names = {n: n in mailboxes for n in subscriptions if match(n)}
        for parent in _cut_levels(subscriptions, match) - subscriptions:
            names[parent] = False
        return [(n, names[n]) for n in sorted(names, key=_sort_key)]
