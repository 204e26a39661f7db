"""The one authentication routine for every protocol."""

from __future__ import annotations

import asyncio
import logging

from pobox.errors import InvalidInput
from pobox.service.accounts import normalise_address
from pobox.service.passwords import hash_password, needs_rehash, verify_password
from pobox.store.api import Account, Store

log = logging.getLogger("pobox.auth")


class Authenticator:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def authenticate(
        self, username: str, password: str, *, remote: str = ""
    ) -> Account | None:
        """The account if the credentials are right, else None (in the same time either way)."""
        account: Account | None = None
        try:
            account = await self.store.get_account(normalise_address(username))
        except InvalidInput:
            account = None
        ok = await asyncio.to_thread(
            verify_password, account.password_hash if account else None, password
        )
        if not ok or account is None:
            log.info("authentication failed user=%r remote=%s", username[:100], remote)
            return None
        if needs_rehash(account.password_hash):
            new_hash = await asyncio.to_thread(hash_password, password)
            await self.store.set_password_hash(account.id, new_hash)
        return account
