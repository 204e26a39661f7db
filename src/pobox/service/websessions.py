"""Webmail login sessions (docs/decisions/webmail-sessions.md).

A session id is 32 random octets the browser keeps in a cookie; the store keeps only its SHA-256,
so a copy of the store (or a backup) logs nobody in. Sessions live in the store so that every
worker process and every node agree on them: a login on one, a request on another, a logout
anywhere. A session ends after ``[web] session_idle`` seconds without a request and at the latest
``[web] session_max`` seconds after its login. The CSRF token of a session is derived from its id
(an HMAC), so it is never stored either and cannot be guessed from the hash.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from pobox.config import WebConfig
from pobox.errors import AlreadyExists
from pobox.store.api import Account, Store, WebSession

#: A session's last use is written at most this often (seconds): a request is a read, not a
#: write, and the idle timeout is at least a minute.
TOUCH_INTERVAL = 30.0

Clock = Callable[[], float]


def session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "surrogateescape")).hexdigest()


def csrf_token(session_id: str) -> str:
    """The token a session's forms carry (the session id never appears in a page)."""
    key = session_id.encode("utf-8", "surrogateescape")
    return hmac.new(key, b"pobox-webmail-csrf", hashlib.sha256).hexdigest()


def same_token(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode())


@dataclass(frozen=True, slots=True)
class Login:
    """A session that is in force: its account and the token its forms must carry."""

    account: Account
    session_id: str
    csrf: str


class WebSessions:
    def __init__(
        self, store: Store, config: Callable[[], WebConfig], clock: Clock = time.time
    ) -> None:
        self.store = store
        #: the ``[web]`` settings in force (a reload, SIGHUP, changes them for every session)
        self.settings = config
        self.clock = clock

    @property
    def config(self) -> WebConfig:
        return self.settings()

    async def start(self, account: Account, login_id: int | None = None) -> str:
        """A new session for *account* (logged in with the app password *login_id*, None: with
        the account's password); returns its id (for the cookie only)."""
        now = self.clock()
        for _ in range(3):
            session_id = secrets.token_urlsafe(32)
            try:
                await self.store.web_session_add(
                    WebSession(session_hash(session_id), account.id, now, now, login_id)
                )
            except AlreadyExists:  # a collision (never), or the account or app password went
                continue
            return session_id
        raise AlreadyExists("no session could be started for this account")

    async def find(self, session_id: str) -> Login | None:
        """The session's login while it is in force; None when it is unknown or ran out."""
        if not session_id or len(session_id) > 100:
            return None
        id_hash = session_hash(session_id)
        session = await self.store.web_session_get(id_hash)
        if session is None:
            return None
        now = self.clock()
        if (
            now - session.last_seen > self.config.session_idle
            or now - session.created > self.config.session_max
        ):
            await self.store.web_session_delete(id_hash)
            return None
        account = await self.store.get_account_by_id(session.account_id)
        if account is None:
            return None
        if now - session.last_seen >= TOUCH_INTERVAL:
            await self.store.web_session_touch(id_hash, now)
        return Login(account, session_id, csrf_token(session_id))

    async def end(self, session_id: str) -> None:
        await self.store.web_session_delete(session_hash(session_id))

    async def end_all(self, account: Account) -> int:
        """Log the account out everywhere: every browser, every worker, every node."""
        return await self.store.web_session_delete_account(account.id)

    async def purge(self) -> int:
        """Drop sessions that ran out (the server does it now and then)."""
        now = self.clock()
        return await self.store.web_session_purge(
            now - self.config.session_idle, now - self.config.session_max
        )
