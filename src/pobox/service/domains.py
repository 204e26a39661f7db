"""The mail domains pobox serves: where inbound mail is accepted and what is not a relay.

A domain is served when an account or an alias has an address in it, or when ``[delivery]
domains`` names it (a domain whose accounts are not created yet, or one that only has a
catch-all elsewhere). Inbound SMTP/LMTP refuses recipients in any other domain with
``554 5.7.1`` (relay access denied); submission sends mail for them to the outbound queue.

The list of accounts and aliases is read at most every :data:`DOMAINS_TTL` seconds, and only
for addresses that are not an account or alias already (an unknown recipient), so a busy MX
does not read it per message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from pobox.store.api import Store

#: Seconds the domains read from the store are trusted
DOMAINS_TTL = 5.0


class ServedDomains:
    def __init__(
        self,
        store: Store,
        configured: Iterable[str] = (),
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.configured = frozenset(d.strip().lower().rstrip(".") for d in configured)
        self.clock = clock
        self._read_at: float | None = None
        self._stored: frozenset[str] = frozenset()

    def reconfigure(self, configured: Iterable[str]) -> None:
        self.configured = frozenset(d.strip().lower().rstrip(".") for d in configured)

    async def domains(self) -> frozenset[str]:
        """Every served domain, lower-cased."""
        now = self.clock()
        if self._read_at is None or now - self._read_at >= DOMAINS_TTL:
            found = {a.address.rpartition("@")[2].lower() for a in await self.store.list_accounts()}
            found |= {
                alias.rpartition("@")[2].lower() for alias, _ in await self.store.list_aliases()
            }
            self._stored = frozenset(found)
            self._read_at = now
        return self._stored | self.configured

    async def serves(self, address: str) -> bool:
        """Whether the domain of *address* (``local@domain``) is one of ours."""
        domain = address.rpartition("@")[2].lower().rstrip(".")
        if domain in self.configured:
            return True
        return domain in await self.domains()
