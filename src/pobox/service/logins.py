"""App passwords: several people (or devices) on one account, each with a credential of their own.

An account has its main password and up to :data:`MAX_LOGINS` *logins*: a label unique in the
account ("Anna's phone") and a generated password, shown once when it is made and kept only as
an Argon2id hash. Each works for IMAP, POP3 and submission through the one authentication
routine (:mod:`pobox.service.auth`), which tells the front end which credential was used, so
that the session log names its label. Deleting a login revokes it: new logins with it fail at
once (every login reads the account's credentials from the store), and the sessions it opened
end: IMAP sessions at once when they wait for a command, others at their next command.

Generated passwords are 16 characters from ``a-z0-9`` in four groups of four (``abcd-efgh-
ijkl-mnop``, about 82 bits). Clients are forgiving about how it is typed: spaces, hyphens and
upper case are ignored when a password is checked against the app passwords (:func:`canonical`).

Revocation mid-session costs no store round trip per command. :class:`LoginWatch` (one per
process, owned by the :class:`~pobox.service.auth.Authenticator`) keeps a handle for every live
session opened with an app password. A store announces a deleted login as the change of
``logins_changed(account id)``, through the change watcher every process already runs (SQLite:
the change journal poll; PostgreSQL: LISTEN/NOTIFY, on every node). The watch then reads the
account's logins once and marks the handles of deleted ones revoked; a session looks at its
handle's flag before each command.

The last use of a login (time and remote address) is written at most once a minute per login
and process, or sooner when the address changes (:class:`UsageRecorder`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from pobox.errors import AlreadyExists, InvalidInput, NotFound
from pobox.service.accounts import normalise_address
from pobox.service.passwords import argon2_executor, hash_password
from pobox.store.api import Account, AccountId, Login, MailboxId, Store

log = logging.getLogger("pobox.logins")

#: App passwords per account: a wrong password in their form is checked against each of them.
MAX_LOGINS = 16
#: Longest label, in characters.
MAX_LABEL = 100
#: Seconds between two writes of one login's last use by one process (same address).
USE_INTERVAL = 60.0

ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
GROUPS = 4
GROUP_LENGTH = 4
_CANONICAL = re.compile(rf"[a-z0-9]{{{GROUPS * GROUP_LENGTH}}}")
_SEPARATORS = re.compile(r"[\s-]+")


def generate_password() -> str:
    """A new app password: four groups of four lowercase letters and digits, by hyphens."""
    groups = ("".join(secrets.choice(ALPHABET) for _ in range(GROUP_LENGTH)) for _ in range(GROUPS))
    return "-".join(groups)


def canonical(password: str) -> str | None:
    """*password* as app passwords are hashed (no spaces or hyphens, lower case), or None when
    it cannot be one (then no app password is checked against it)."""
    text = _SEPARATORS.sub("", password).lower()
    return text if _CANONICAL.fullmatch(text) else None


def normalise_label(label: str) -> str:
    """A label with its runs of white space made one space; InvalidInput when it is empty,
    too long, or holds control characters."""
    text = " ".join(label.split())
    if not text:
        raise InvalidInput("the label must not be empty")
    if len(text) > MAX_LABEL:
        raise InvalidInput(f"the label is longer than {MAX_LABEL} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise InvalidInput("the label must not hold control characters")
    return text


@dataclass(frozen=True, slots=True)
class NewLogin:
    """A login just made, with its password (shown once, never stored)."""

    login: Login
    password: str


class Logins:
    """Adding, listing and deleting app passwords (``pobox user login …``, later the webmail)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def _account(self, address: str) -> Account:
        account = await self.store.get_account(normalise_address(address))
        if account is None:
            raise NotFound(f"no account {address}")
        return account

    async def add(self, address: str, label: str) -> NewLogin:
        """Make an app password labelled *label*; AlreadyExists for a label in use."""
        account = await self._account(address)
        label = normalise_label(label)
        if len(await self.store.list_logins(account.id)) >= MAX_LOGINS:
            raise InvalidInput(
                f"{account.address} has {MAX_LOGINS} app passwords already (the most allowed);"
                " delete one first"
            )
        password = generate_password()
        secret = canonical(password)
        assert secret is not None
        loop = asyncio.get_running_loop()
        hashed = await loop.run_in_executor(argon2_executor(), hash_password, secret)
        try:
            login = await self.store.add_login(account.id, label, hashed, time.time())
        except AlreadyExists:
            raise AlreadyExists(
                f"{account.address} already has an app password labelled {label!r}"
            ) from None
        log.info("app password added user=%s login=%r", account.address, label)
        return NewLogin(login, password)

    async def list(self, address: str) -> list[Login]:
        account = await self._account(address)
        return await self.store.list_logins(account.id)

    async def delete(self, address: str, label: str) -> Login:
        """Revoke the app password *label*; NotFound when the account has none by that label."""
        account = await self._account(address)
        deleted = await self.store.delete_login(account.id, " ".join(label.split()))
        if deleted is None:
            raise NotFound(f"{account.address} has no app password labelled {label!r}")
        log.info("app password deleted user=%s login=%r", account.address, deleted.label)
        return deleted


class LoginHandle:
    """A live session opened with an app password: its flag says whether it was revoked."""

    __slots__ = ("__weakref__", "account_id", "label", "login_id", "on_revoke", "revoked")

    def __init__(self, account_id: AccountId, login_id: int, label: str) -> None:
        self.account_id = account_id
        self.login_id = login_id
        self.label = label
        self.revoked = False
        #: called once when the login is revoked (a session waiting in IDLE may end at once)
        self.on_revoke: Callable[[], None] | None = None

    def revoke(self) -> None:
        if self.revoked:
            return
        self.revoked = True
        if self.on_revoke is not None:
            try:
                self.on_revoke()
            except Exception:  # a session's callback must not break the watch
                log.exception("revocation callback failed")


class LoginWatch:
    """The live app-password sessions of this process, and how they learn of revocations."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._handles: dict[AccountId, weakref.WeakSet[LoginHandle]] = {}
        self._listening = False
        #: revocation announcements heard so far (see :meth:`changed_since`)
        self.epoch = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def listen(self) -> None:
        """Start hearing of revocations (the first login attempt calls it; idempotent)."""
        if not self._listening:
            self.store.add_listener(self._on_change)
            self._listening = True

    def close(self) -> None:
        if self._listening:
            self.store.remove_listener(self._on_change)
            self._listening = False
        for task in list(self._tasks):
            task.cancel()

    async def settle(self) -> None:
        """Wait for the revocation checks under way (for tests and an orderly shutdown)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def open(self, account_id: AccountId, login: Login) -> LoginHandle:
        """A handle for a session that has just logged in with *login*."""
        handle = LoginHandle(account_id, login.id, login.label)
        self._handles.setdefault(account_id, weakref.WeakSet()).add(handle)
        return handle

    def live(self, account_id: AccountId) -> int:
        """How many sessions of the account logged in with an app password are open here."""
        handles = self._handles.get(account_id)
        return 0 if handles is None else sum(1 for h in handles if not h.revoked)

    def _on_change(self, mailbox_id: MailboxId) -> None:
        if mailbox_id >= 0:
            return
        account_id = AccountId(-mailbox_id)
        self.epoch += 1
        handles = self._handles.get(account_id)
        if handles is None:
            return
        if not handles:
            del self._handles[account_id]
            return
        task = asyncio.get_running_loop().create_task(self._check(account_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _check(self, account_id: AccountId) -> None:
        """Read the account's logins once; revoke the handles of those that are gone."""
        for attempt in range(5):
            try:
                alive = {login.id for login in await self.store.list_logins(account_id)}
                break
            except Exception as exc:  # the store is busy or away: try again shortly
                log.warning("cannot read the app passwords of account %d: %s", account_id, exc)
                await asyncio.sleep(0.5 * (attempt + 1))
        else:
            return
        for handle in list(self._handles.get(account_id, ())):
            if handle.login_id not in alive and not handle.revoked:
                log.info(
                    "app password revoked account=%d login=%r: its session ends",
                    account_id,
                    handle.label,
                )
                handle.revoke()


class UsageRecorder:
    """Writes a login's last use at most once every :data:`USE_INTERVAL` seconds per process
    (sooner when the remote address changes): a busy client costs no write per login."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.clock = clock
        self._written: dict[int, tuple[float, str]] = {}

    async def used(self, login: Login, remote: str) -> None:
        now = self.clock()
        last = self._written.get(login.id)
        if last is not None and now - last[0] < USE_INTERVAL and last[1] == remote:
            return
        if len(self._written) >= 10_000:
            self._written.clear()
        self._written[login.id] = (now, remote)
        try:
            await self.store.record_login_use([(login.id, time.time(), remote)])
        except Exception as exc:  # a lost usage record must not fail a login
            log.warning("cannot record the use of app password %r: %s", login.label, exc)
