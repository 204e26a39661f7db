"""Where a domain's mail goes (RFC 5321 §5.1), looked up with dnspython.

The MX records in order of preference (equal preferences shuffled, to spread the load); no MX
record at all: the domain itself is the one host (the "implicit MX", its A/AAAA records); a
"null MX" (RFC 7505: one record, preference 0, host ".") or a domain that does not exist: the
mail cannot be delivered. Lookups go through :class:`Resolver`, which tests replace.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import dns.asyncresolver
import dns.exception
import dns.rdatatype
import dns.resolver


class DnsTemporary(Exception):
    """The answer could not be had now (time-out, SERVFAIL): try again later."""


class DnsPermanent(Exception):
    """The answer says no: the domain does not exist, or accepts no mail (null MX)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class Resolver(Protocol):
    async def mx(self, domain: str) -> list[tuple[int, str]] | None:
        """(preference, host) pairs; None when the domain has no MX record. Raises
        DnsPermanent for a domain that does not exist, DnsTemporary for no answer."""
        ...

    async def addresses(self, host: str) -> list[str]:
        """The IPv6 and IPv4 addresses of *host* (empty: none). DnsTemporary for no
        answer."""
        ...


class DnsResolver:
    """The :class:`Resolver` of the system's name servers (dnspython)."""

    def __init__(self, resolver: dns.asyncresolver.Resolver | None = None) -> None:
        self._resolver = resolver or dns.asyncresolver.Resolver()

    async def mx(self, domain: str) -> list[tuple[int, str]] | None:
        try:
            answer = await self._resolver.resolve(domain, "MX")
        except dns.resolver.NXDOMAIN:
            raise DnsPermanent(f"5.1.2 domain {domain} does not exist") from None
        except dns.resolver.NoAnswer:
            return None
        except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.exception.DNSException):
            raise DnsTemporary(f"4.4.3 no DNS answer for the MX of {domain}") from None
        records: list[tuple[int, str]] = []
        for rdata in answer:
            records.append((int(rdata.preference), rdata.exchange.to_text(omit_final_dot=True)))
        return records

    async def addresses(self, host: str) -> list[str]:
        found: list[str] = []
        failures = 0
        for kind in ("AAAA", "A"):
            try:
                answer = await self._resolver.resolve(host, kind)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            except dns.exception.DNSException:
                failures += 1
                continue
            found.extend(rdata.address for rdata in answer)
        if not found and failures:
            raise DnsTemporary(f"4.4.3 no DNS answer for the address of {host}")
        return found


@dataclass(frozen=True, slots=True)
class Target:
    """One host to try, with its addresses in the order to try them."""

    name: str
    addresses: tuple[str, ...]


async def targets(
    domain: str, resolver: Resolver, rng: random.Random | None = None
) -> list[Target]:
    """The hosts to try for *domain*, best first, each with its addresses. Raises DnsPermanent
    (no delivery possible) or DnsTemporary (try later); hosts without an address are left out,
    and none left at all is temporary."""
    shuffle = (rng or random.Random()).random
    records = await resolver.mx(domain)
    if records is None:
        hosts: Sequence[str] = [domain]  # the implicit MX (RFC 5321 §5.1)
    else:
        if any(host in ("", ".") for _, host in records):
            if len(records) == 1:
                raise DnsPermanent(f"5.1.10 {domain} accepts no mail (null MX, RFC 7505)")
            records = [(p, h) for p, h in records if h not in ("", ".")]
        ordered = sorted(records, key=lambda record: (record[0], shuffle()))
        hosts = []
        for _, host in ordered:
            if host.lower() not in (h.lower() for h in hosts):
                hosts.append(host)
    found: list[Target] = []
    temporary: DnsTemporary | None = None
    for host in hosts:
        try:
            addresses = await resolver.addresses(host)
        except DnsTemporary as exc:
            temporary = exc
            continue
        if addresses:
            found.append(Target(host, tuple(addresses)))
    if not found:
        if temporary is not None:
            raise temporary
        if records is None:
            raise DnsPermanent(f"5.1.2 {domain} has neither an MX nor an address record")
        raise DnsTemporary(f"4.4.3 no address for the MX hosts of {domain}")
    return found
