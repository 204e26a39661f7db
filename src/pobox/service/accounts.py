"""Accounts, aliases and per-account settings."""

from __future__ import annotations

import re
from collections.abc import Callable

from pobox.config import parse_count, parse_retention, parse_size
from pobox.errors import InvalidInput, NotFound
from pobox.service.passwords import hash_password
from pobox.store.api import Account, Store

# local@domain: no spaces, no controls, no path or quoting tricks.
_ADDRESS = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9.-]{1,253}$")

#: Per-account settings a user or administrator may set, with their validators.
ACCOUNT_SETTINGS: dict[str, Callable[[str], object]] = {
    "pop3.retention": parse_retention,
    # quotas (docs/quota.md): the account's own limits instead of [quota]'s; 0: unlimited
    "quota.storage": parse_size,
    "quota.messages": parse_count,
    "quota.mailboxes": parse_count,
}


def normalise_address(address: str) -> str:
    """Validate an address and lower-case its domain (local parts are kept as given)."""
    address = address.strip()
    if not _ADDRESS.match(address) or ".." in address or address.startswith("."):
        raise InvalidInput(f"{address!r} is not a valid mail address (local@domain)")
    local, _, domain = address.rpartition("@")
    if domain.startswith((".", "-")) or domain.endswith("."):
        raise InvalidInput(f"{address!r} has an invalid domain")
    return f"{local}@{domain.lower()}"


class Accounts:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def add(self, address: str, password: str) -> Account:
        address = normalise_address(address)
        if not password:
            raise InvalidInput("the password must not be empty")
        return await self.store.create_account(address, hash_password(password))

    async def require(self, address: str) -> Account:
        account = await self.store.get_account(normalise_address(address))
        if account is None:
            raise NotFound(f"no account {address}")
        return account

    async def set_password(self, address: str, password: str) -> None:
        if not password:
            raise InvalidInput("the password must not be empty")
        account = await self.require(address)
        await self.store.set_password_hash(account.id, hash_password(password))

    async def delete(self, address: str) -> None:
        account = await self.require(address)
        await self.store.delete_account(account.id)
        # its entries go from other accounts' access control lists: a new account with the
        # same address must not inherit them (docs/decisions/shared-folders.md)
        lowered = account.address.lower()
        await self.store.drop_acl_identifiers([lowered, "-" + lowered])

    async def list(self) -> list[Account]:
        return await self.store.list_accounts()

    async def add_alias(self, alias: str, address: str) -> None:
        account = await self.require(address)
        await self.store.add_alias(normalise_address(alias), account.id)

    async def remove_alias(self, alias: str) -> None:
        await self.store.remove_alias(normalise_address(alias))

    async def set_setting(self, address: str, key: str, value: str | None) -> None:
        validator = ACCOUNT_SETTINGS.get(key)
        if validator is None:
            known = ", ".join(sorted(ACCOUNT_SETTINGS))
            raise InvalidInput(f"unknown account setting {key!r} (known: {known})")
        if value is not None:
            try:
                validator(value)
            except ValueError as exc:
                raise InvalidInput(f"{key}: {exc}") from None
        account = await self.require(address)
        await self.store.set_account_setting(account.id, key, value)

    async def resolve(self, address: str) -> Account | None:
        """The account that receives mail for *address* (an account address or an alias)."""
        try:
            address = normalise_address(address)
        except InvalidInput:
            return None
        return await self.store.resolve_address(address)
