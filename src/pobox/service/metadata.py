"""Annotations of mailboxes and of the server (IMAP METADATA, RFC 5464; LIST-METADATA, RFC 9590).

Every front end asks this module; the rules (docs/decisions/metadata.md):

* An entry name is ``/private/...`` or ``/shared/...`` (§3.2): no ``*`` or ``%``, nothing
  outside ASCII, no octet from 0x00 to 0x19, no ``//``, no ``/`` at the end. Names are
  case-insensitive; pobox keeps and answers them in lower case. A bad name is
  :class:`BadEntry` (IMAP answers BAD).
* ``/private`` entries belong to the account that sets them, ``/shared`` ones are seen by
  everyone who may see the mailbox. Reading and writing a mailbox's entries needs ``l`` and one
  of ``r s w i p`` (§3.3); a ``/shared`` write on another account's mailbox needs ``w`` as well
  (one person's shared entry is what every reader sees, like a shared flag).
* Server entries (mailbox name ``""``): each account's ``/private`` ones; ``/shared`` ones are
  written only by ``[metadata] admins``; ``/shared/admin`` comes from ``[metadata] admin`` when
  that is set.
* ``/private/specialuse`` of an account's own mailbox is its RFC 6154 special use (RFC 6154 §4):
  reading it reads the attribute, setting it (one attribute, or NIL) changes the attribute.
* Limits: a value's size (:class:`ValueTooLarge`), entries per mailbox and per account
  (:class:`~pobox.store.api.TooManyAnnotations`); with ``private_entries = false``
  :class:`NoPrivate`. A write is all or nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pobox.config import MetadataConfig
from pobox.errors import InvalidInput, NoPermission, NotAllowed, TooBig
from pobox.service import notify
from pobox.service.acl import Access, Acl
from pobox.service.mailboxes import special_use
from pobox.store.api import PRIVATE_PREFIX, Account, AnnotationLimits, Mailbox, MailboxId, Store

SHARED_PREFIX = "/shared/"
SPECIALUSE = "/private/specialuse"
SERVER_ADMIN = "/shared/admin"
#: rights any one of which (with ``l``) lets an account read and write entries (§3.3)
ACCESS_RIGHTS = frozenset("rswip")
#: DEPTH infinity
INFINITY = -1


class BadEntry(InvalidInput):
    """An entry name RFC 5464 §3.2 does not allow (the command gets BAD)."""


class ValueTooLarge(TooBig):
    """A value longer than ``[metadata] max_value_size`` (``[METADATA MAXSIZE n]``)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"metadata values are limited to {limit} octets")
        self.limit = limit


class NoPrivate(NotAllowed):
    """Private entries are switched off (``[METADATA NOPRIVATE]``)."""


def entry_name(text: str, *, scope: bool = False) -> str:
    """A client's entry name, checked (§3.2) and in lower case; with *scope*, ``/private``
    and ``/shared`` themselves are names too (GETMETADATA with DEPTH asks for what is below)."""
    if not text.startswith("/") or not text.isascii():
        raise BadEntry(f"{_shown(text)} is not a metadata entry name")
    lowered = text.lower()
    if scope and lowered in (PRIVATE_PREFIX[:-1], SHARED_PREFIX[:-1]):
        return lowered
    if not lowered.startswith((PRIVATE_PREFIX, SHARED_PREFIX)):
        raise BadEntry(f"{_shown(text)}: an entry name begins with /private/ or /shared/")
    if any(c in "*%" or ord(c) <= 0x19 for c in lowered):
        raise BadEntry(f"{_shown(text)}: no '*', '%' or control characters in an entry name")
    if "//" in lowered or lowered.endswith("/"):
        raise BadEntry(f"{_shown(text)}: an entry name has no empty component")
    return lowered


def _shown(text: str) -> str:
    return repr(text[:60])


def _is_private(name: str) -> bool:
    return name.startswith(PRIVATE_PREFIX)


def select(
    stored: Sequence[tuple[str, bytes]], wanted: Sequence[str], depth: int
) -> list[tuple[str, bytes]]:
    """The stored entries that *wanted* names (with DEPTH 0, 1 or :data:`INFINITY`, §4.2.2),
    each once, in the order asked for and then by name."""
    out: dict[str, bytes] = {}
    for entry in wanted:
        below = entry + "/"
        for name, value in stored:
            child = name.startswith(below) and (
                depth == INFINITY or (depth == 1 and "/" not in name[len(below) :])
            )
            if name == entry or child:
                out.setdefault(name, value)
    return list(out.items())


@dataclass(frozen=True, slots=True)
class Found:
    """What GETMETADATA answers: the entries, and the size of the largest value left out by
    MAXSIZE (None: none was)."""

    entries: Sequence[tuple[str, bytes | None]]
    longest: int | None


def _cut(entries: Iterable[tuple[str, bytes]], maxsize: int | None) -> Found:
    kept: list[tuple[str, bytes]] = []
    longest: int | None = None
    for name, value in entries:
        if maxsize is not None and len(value) > maxsize:
            longest = max(longest or 0, len(value))
        else:
            kept.append((name, value))
    return Found(kept, longest)


class Metadata:
    """GETMETADATA, SETMETADATA and the entries LIST returns."""

    def __init__(self, store: Store, acl: Acl, config: MetadataConfig) -> None:
        self.store = store
        self.acl = acl
        self.config = config

    @property
    def limits(self) -> AnnotationLimits:
        return AnnotationLimits(
            per_mailbox=self.config.max_entries_per_mailbox,
            per_account=self.config.max_entries_per_account,
        )

    # -- rights -----------------------------------------------------------------------------
    @staticmethod
    def may_access(rights: str) -> bool:
        """§3.3: ``l`` and any one of ``r s w i p``."""
        return "l" in rights and any(r in ACCESS_RIGHTS for r in rights)

    async def _mailbox(self, account: Account, name: str) -> Access:
        access = await self.acl.access(account, name)
        if not self.may_access(access.rights):
            raise NoPermission(f"no permission to read or write the metadata of {name}")
        return access

    def _is_admin(self, account: Account) -> bool:
        address = account.address.lower()
        return any(address == a.lower() for a in self.config.admins)

    # -- reading ----------------------------------------------------------------------------
    def _virtual(self, account: Account, mailbox: Mailbox | None) -> list[tuple[str, bytes]]:
        """Entries pobox makes up rather than stores."""
        if mailbox is None:
            if self.config.admin:
                return [(SERVER_ADMIN, self.config.admin.encode("utf-8"))]
            return []
        if mailbox.account_id == account.id and mailbox.special_use:
            return [(SPECIALUSE, mailbox.special_use.encode("ascii"))]
        return []

    def _merged(
        self, account: Account, mailbox: Mailbox | None, stored: list[tuple[str, bytes]]
    ) -> list[tuple[str, bytes]]:
        virtual = self._virtual(account, mailbox)
        names = {n for n, _ in virtual}
        return sorted([*virtual, *((n, v) for n, v in stored if n not in names)])

    async def get(
        self,
        account: Account,
        name: str,
        entries: Sequence[str],
        *,
        depth: int = 0,
        maxsize: int | None = None,
    ) -> Found:
        """GETMETADATA of a mailbox (*name* ``""``: the server)."""
        wanted = [entry_name(e, scope=True) for e in entries]
        mailbox = None if name == "" else (await self._mailbox(account, name)).mailbox
        key: MailboxId | None = None if mailbox is None else mailbox.id
        stored = (await self.store.get_annotations(account.id, [key]))[key]
        return _cut(select(self._merged(account, mailbox, stored), wanted, depth), maxsize)

    async def for_list(
        self,
        account: Account,
        mailboxes: Sequence[tuple[Mailbox, str]],
        entries: Sequence[str],
        *,
        depth: int = 0,
        maxsize: int | None = None,
    ) -> dict[MailboxId, Found]:
        """LIST RETURN (METADATA ...) (RFC 9590): for each mailbox (given with the account's
        rights on it) whose entries the account may read, every entry asked for, one the
        mailbox does not have with the value None (NIL); one store read for all."""
        wanted = [entry_name(e, scope=True) for e in entries]
        readable = [m for m, rights in mailboxes if self.may_access(rights)]
        stored = await self.store.get_annotations(account.id, [m.id for m in readable])
        out: dict[MailboxId, Found] = {}
        for mailbox in readable:
            merged = self._merged(account, mailbox, stored[mailbox.id])
            answer: list[tuple[str, bytes | None]] = []
            longest: int | None = None
            for entry in dict.fromkeys(wanted):
                found = _cut(select(merged, [entry], depth), maxsize)
                if found.longest is not None:
                    longest = max(longest or 0, found.longest)
                names = {n for n, _ in select(merged, [entry], 0)}
                if entry not in names:
                    answer.append((entry, None))
                answer.extend((n, v) for n, v in found.entries if n not in dict(answer))
            out[mailbox.id] = Found(answer, longest)
        return out

    # -- writing ----------------------------------------------------------------------------
    async def set(
        self,
        account: Account,
        name: str,
        changes: Sequence[tuple[str, bytes | None]],
        *,
        admin: bool = False,
    ) -> None:
        """SETMETADATA: all of *changes* or none (§4.3). A later value for the same entry
        wins. *admin*: the server's administrator acts (``pobox metadata``), who may set the
        server's ``/shared`` entries as ``[metadata] admins`` may."""
        todo: dict[str, bytes | None] = {}
        for entry, value in changes:
            todo[entry_name(entry)] = value
        for entry, value in todo.items():
            if _is_private(entry) and not self.config.private_entries:
                raise NoPrivate("this server keeps no private metadata entries")
            if value is not None and len(value) > self.config.max_value_size:
                raise ValueTooLarge(self.config.max_value_size)
        use_change: tuple[bool, str | None] = (False, None)
        mailbox: Mailbox | None = None
        if name == "":
            shared = any(not _is_private(e) for e in todo)
            if shared and not (admin or self._is_admin(account)):
                raise NoPermission("only the server's administrators set its /shared entries")
            if SERVER_ADMIN in todo and self.config.admin:
                raise NotAllowed(f"{SERVER_ADMIN} is set by [metadata] admin in the configuration")
        else:
            access = await self._mailbox(account, name)
            mailbox = access.mailbox
            if any(not _is_private(e) for e in todo):
                access.require("w")
            if SPECIALUSE in todo:
                value = todo.pop(SPECIALUSE)
                if not access.own:
                    raise NotAllowed("the special use of a mailbox is its owner's to set")
                words = value.decode("ascii", "replace").split() if value else []
                use_change = (True, special_use(words))
        key: MailboxId | None = None if mailbox is None else mailbox.id
        if todo:
            await self.store.set_annotations(account.id, key, list(todo.items()), self.limits)
        if use_change[0] and mailbox is not None:
            await self.store.set_special_use(mailbox.id, use_change[1])
        changed = (*todo, *((SPECIALUSE,) if use_change[0] else ()))
        notify.metadata_changed(self.store, account.id, key, changed)  # IMAP NOTIFY (RFC 5465)
