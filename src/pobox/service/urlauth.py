"""URLAUTH (RFC 4467): mailbox access keys, authorization tokens, and who may use a URL.

Protocol-neutral: the IMAP layer (pobox.imap.imapurl, pobox.imap.handlers.urlauth) reads the
URL; this module is given its parts. Each account has one secret key per mailbox it authorized
URLs of (:meth:`Store.mailbox_key`, 256 random bits, made at the first GENURLAUTH). The INTERNAL
mechanism's token is ``01`` (the algorithm's number) and HMAC-SHA256 of the URL rump (the URL
exactly as written, up to and including the access identifier) under that key, 66 lower-case
hex digits. RESETKEY replaces
a key or removes them all, which makes every URL signed with the old ones invalid.

A URL is used with the rights of its owner (the user in its server part), not those of the
session that presents it (RFC 4467 §7 URLFETCH): the owner must still be able to read the
mailbox. Everything that makes a URL unusable gives the same answer (None): RFC 4467 §8 sends
NIL for any invalid URL, and a mailbox that cannot be found still costs an HMAC under a random
key, so that timing does not tell which names exist (§6).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pobox.errors import InvalidInput, NotAllowed, PoboxError
from pobox.service.accounts import normalise_address
from pobox.service.acl import Access, Acl
from pobox.service.mailboxes import normalise_name
from pobox.store.api import Account, Store

#: The only mechanism (RFC 4467 §2.4.1).
INTERNAL = "INTERNAL"
#: Octets of a mailbox access key (RFC 4467 §10: at least 128 bits).
KEY_SIZE = 32


#: The first two hex digits of a token name the algorithm that made it (RFC 4467 §10 SHOULD):
#: 01 is HMAC-SHA256. A later algorithm gets another number, and tokens of both can be checked.
ALGORITHM = "01"


def token(key: bytes, rump: str) -> str:
    """The INTERNAL mechanism's authorization token of *rump* under *key*."""
    return ALGORITHM + hmac.new(key, rump.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class UrlClaim:
    """What a URLAUTH-authorized URL says, as the front end read it."""

    owner: str  # the userid of the URL's server part
    mailbox: str  # the owner's name of the mailbox
    rump: str
    access: str  # "submit", "user", "authuser" or "anonymous"
    access_user: str | None
    expire: _dt.datetime | None
    mechanism: str | None = None
    token: str | None = None


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


class UrlAuth:
    """Key management and URL verification for every front end (today IMAP: GENURLAUTH,
    RESETKEY, URLFETCH and CATENATE)."""

    def __init__(
        self,
        store: Store,
        acl: Acl,
        submitters: Sequence[str] = (),
        clock: Callable[[], _dt.datetime] = _now,
    ) -> None:
        self.store = store
        self.acl = acl
        #: accounts authorized as message submission entities (``submit+`` URLs)
        self.submitters = tuple(submitters)
        self.clock = clock

    def is_submitter(self, account: Account) -> bool:
        return account.address.lower() in {a.lower() for a in self.submitters}

    def permits(self, session: Account, access: str, access_user: str | None) -> bool:
        """The session's user may use a URL with this access identifier (RFC 4467 §3)."""
        if access == "user":
            return access_user is not None and access_user.lower() == session.address.lower()
        if access == "submit":
            # the submission entity checks the userid itself; pobox checks it is one
            return self.is_submitter(session)
        # pobox has no anonymous sessions: "anonymous" is any logged-in user, as "authuser"
        return access in ("authuser", "anonymous")

    async def _access(self, account: Account, name: str) -> Access:
        return await self.acl.access(account, normalise_name(name), "r")

    async def generate(self, account: Account, claim: UrlClaim, mechanism: str) -> str:
        """The URL-full of *claim*'s rump for *account* (GENURLAUTH); InvalidInput when the
        URL cannot be authorized: another owner, a mailbox that is not there, a bad access
        identifier, an unknown mechanism (RFC 4467 §7: BAD)."""
        if mechanism.upper() != INTERNAL:
            raise InvalidInput(f"unknown URLAUTH mechanism {mechanism}")
        if claim.owner.lower() != account.address.lower():
            raise InvalidInput("the URL's user is not the logged-in user")
        if claim.expire is not None and claim.expire < self.clock():
            raise InvalidInput("the URL has expired already (;EXPIRE=)")
        if claim.access in ("submit", "user"):
            try:
                normalise_address(claim.access_user or "")
            except InvalidInput:
                raise InvalidInput("the access identifier names no valid userid") from None
        try:
            access = await self._access(account, claim.mailbox)
            key = await self.store.mailbox_key(
                account.id, access.mailbox.id, secrets.token_bytes(KEY_SIZE)
            )
        except PoboxError:
            raise InvalidInput(f"no mailbox {claim.mailbox} to authorize URLs of") from None
        assert key is not None  # a new key was offered
        return f"{claim.rump}:{INTERNAL.lower()}:{token(key, claim.rump)}"

    async def verify(self, session: Account, claim: UrlClaim) -> Access | None:
        """The owner's access to the mailbox of a URL-full *session* presents, or None when
        the URL may not be used (expired, not for this session, a wrong token, or a mailbox
        the owner can no longer read)."""
        if claim.mechanism != INTERNAL or claim.token is None:
            return None
        if claim.expire is not None and claim.expire < self.clock():  # the last valid time
            return None
        if not self.permits(session, claim.access, claim.access_user):
            return None
        key: bytes | None = None
        access: Access | None = None
        try:
            owner = await self.store.get_account(normalise_address(claim.owner))
            if owner is not None:
                access = await self._access(owner, claim.mailbox)
                key = await self.store.mailbox_key(owner.id, access.mailbox.id)
        except PoboxError:
            access = None
        # a "plausible" key where there is none: the same work either way (RFC 4467 §6)
        expected = token(key if key is not None else secrets.token_bytes(KEY_SIZE), claim.rump)
        if not hmac.compare_digest(expected, claim.token) or key is None:
            return None
        return access

    async def reset(
        self, account: Account, mailbox: str | None, mechanisms: Sequence[str] = ()
    ) -> None:
        """RESETKEY: a new key for *mailbox* of *account*, or (None) no keys at all.
        NotAllowed for a mechanism other than INTERNAL, NotFound (or NoPermission) for a
        mailbox the account cannot read."""
        for name in mechanisms:
            if name.upper() != INTERNAL:
                raise NotAllowed(f"unsupported URLAUTH mechanism {name}")
        if mailbox is None:
            await self.store.reset_mailbox_keys(account.id, None)
            return
        access = await self._access(account, mailbox)
        await self.store.reset_mailbox_keys(
            account.id, access.mailbox.id, secrets.token_bytes(KEY_SIZE)
        )
