"""Connection accounting and command pacing shared by every listener (docs/security.md).

* :class:`ConnectionLimiter`: connections per client address and in total, one per listener.
  Stream listeners (IMAP, POP3) are wrapped by :func:`limit_stream_handler`; the aiosmtpd
  protocols (SMTP, LMTP) ask the limiter in ``connection_made``.
* :class:`SlotLimiter`: concurrent holders per key (IMAP sessions per account).
* :class:`CommandPacer`: a token bucket; a client over its command rate is slowed down, never
  dropped.

Everything here is per process: with several workers each counts its own connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

log = logging.getLogger("pobox.net")

StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def peer_ip(peername: Any) -> str:
    """The IP address of a transport's ``peername`` (a tuple for TCP), or ``"-"``."""
    if isinstance(peername, tuple) and peername and isinstance(peername[0], str):
        return peername[0]
    if isinstance(peername, str) and peername:
        return peername
    return "-"


class ConnectionLimiter:
    """Open connections of one listener, per client address and in total."""

    def __init__(self, name: str, max_total: int, max_per_ip: int) -> None:
        self.name = name
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self.total = 0
        self.by_ip: dict[str, int] = {}
        self.refused = 0

    def acquire(self, ip: str) -> str | None:
        """Count a new connection from *ip*; returns None, or why it must be refused."""
        if self.total >= self.max_total:
            reason = f"too many connections ({self.max_total})"
        elif self.by_ip.get(ip, 0) >= self.max_per_ip:
            reason = f"too many connections from {ip} ({self.max_per_ip})"
        else:
            self.total += 1
            self.by_ip[ip] = self.by_ip.get(ip, 0) + 1
            return None
        self.refused += 1
        log.warning("%s connection from %s refused: %s", self.name, ip, reason)
        return reason

    def release(self, ip: str) -> None:
        count = self.by_ip.get(ip, 0)
        if count <= 0:
            return
        self.total -= 1
        if count == 1:
            del self.by_ip[ip]
        else:
            self.by_ip[ip] = count - 1


def limit_stream_handler(
    handler: StreamHandler, limiter: ConnectionLimiter, refusal: Callable[[str], bytes]
) -> StreamHandler:
    """Wrap an ``asyncio.start_server`` callback: refuse (with *refusal*'s line) over the limit."""

    async def limited(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ip = peer_ip(writer.get_extra_info("peername"))
        reason = limiter.acquire(ip)
        if reason is not None:
            with contextlib.suppress(Exception):
                writer.write(refusal(reason))
                await asyncio.wait_for(writer.drain(), 5)
            writer.transport.abort()
            return
        try:
            await handler(reader, writer)
        finally:
            limiter.release(ip)

    return limited


class SlotLimiter:
    """At most *limit* concurrent holders per key."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held: dict[Hashable, int] = {}

    def acquire(self, key: Hashable) -> bool:
        count = self.held.get(key, 0)
        if count >= self.limit:
            return False
        self.held[key] = count + 1
        return True

    def release(self, key: Hashable) -> None:
        count = self.held.get(key, 0)
        if count <= 1:
            self.held.pop(key, None)
        else:
            self.held[key] = count - 1


class CommandPacer:
    """A token bucket of *rate* commands per second with a burst of ``2 * rate``.

    :meth:`delay` takes one token and returns how long to wait before running the command
    (0 when within the rate). The caller sleeps; the connection is never dropped for speed.
    """

    def __init__(
        self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else 2 * rate)
        self.clock = clock
        self.tokens = self.burst
        self.stamp = clock()

    def delay(self) -> float:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= 1.0
        if self.tokens >= 0:
            return 0.0
        return -self.tokens / self.rate

    async def pace(self) -> None:
        wait = self.delay()
        if wait > 0:
            await asyncio.sleep(wait)
