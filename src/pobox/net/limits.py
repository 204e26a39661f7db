"""Connection accounting and command pacing shared by every listener (docs/security.md).

* :class:`ConnectionLimiter`: connections per client address and in total, one per listener.
  A connection holds a :class:`Slot` from the moment it is counted until it ends; the slot is
  given back in exactly one place per kind of listener, one that runs however the connection
  ends. Stream listeners (IMAP, POP3) are wrapped by :func:`limit_stream_handler` (taken when
  the session's coroutine starts, given back in its ``finally``); the aiosmtpd protocols (SMTP,
  LMTP) take it in ``connection_made`` and give it back in ``connection_lost``
  (pobox.delivery.handlers). docs/decisions/connection-accounting.md says why.
* :class:`SlotLimiter`: concurrent holders per key (IMAP sessions per account).
* :class:`CommandPacer`: a token bucket; a client over its command rate is slowed down, never
  dropped.

Everything here is per process: with several workers each counts its own connections. The
same counts go to the metrics (pobox.metrics), which add the workers up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from pobox import metrics

log = logging.getLogger("pobox.net")

#: Seconds a refused client gets to take the refusal line before the connection is cut.
REFUSAL_DRAIN = 5.0
#: Seconds a closing connection gets to flush what was written to it.
CLOSE_TIMEOUT = 5.0

StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def peer_ip(peername: Any) -> str:
    """The IP address of a transport's ``peername`` (a tuple for TCP), or ``"-"``."""
    if isinstance(peername, tuple) and peername and isinstance(peername[0], str):
        return peername[0]
    if isinstance(peername, str) and peername:
        return peername
    return "-"


class Slot:
    """One counted connection: taken by :meth:`ConnectionLimiter.acquire`, given back by
    :meth:`release`, which may be called any number of times and counts once. Holding the
    token is the only way to give a slot back, so no path can release someone else's."""

    __slots__ = ("_limiter", "ip", "opened")

    def __init__(self, limiter: ConnectionLimiter, ip: str) -> None:
        self._limiter: ConnectionLimiter | None = limiter
        self.ip = ip
        self.opened = time.monotonic()

    @property
    def held(self) -> bool:
        return self._limiter is not None

    def release(self) -> None:
        limiter, self._limiter = self._limiter, None
        if limiter is not None:
            limiter._give_back(self)


class ConnectionLimiter:
    """Open connections of one listener, per client address and in total."""

    def __init__(self, name: str, max_total: int, max_per_ip: int) -> None:
        self.name = name
        self.label = name.lower()  # in the metrics (pobox.metrics)
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self.total = 0
        self.by_ip: dict[str, int] = {}
        self.accepted = 0
        self.refused = 0

    def acquire(self, ip: str) -> Slot | str:
        """Count a new connection from *ip*: its :class:`Slot`, or why it must be refused."""
        if self.total >= self.max_total:
            reason = f"too many connections ({self.max_total})"
        elif self.by_ip.get(ip, 0) >= self.max_per_ip:
            reason = f"too many connections from {ip} ({self.max_per_ip})"
        else:
            self.total += 1
            self.accepted += 1
            self.by_ip[ip] = self.by_ip.get(ip, 0) + 1
            metrics.connection_opened(self.label)
            return Slot(self, ip)
        self.refused += 1
        metrics.connection_refused(self.label)
        log.warning("%s connection from %s refused: %s", self.name, ip, reason)
        return reason

    def _give_back(self, slot: Slot) -> None:
        count = self.by_ip.get(slot.ip, 0)
        if count <= 0:  # pragma: no cover - a Slot releases once; this would be a bug
            log.error("%s: slot of %s released twice", self.name, slot.ip)
            return
        self.total -= 1
        metrics.connection_closed(self.label)
        if count == 1:
            del self.by_ip[slot.ip]
        else:
            self.by_ip[slot.ip] = count - 1

    def snapshot(self) -> dict[str, Any]:
        """What ``pobox status`` shows of this listener."""
        return {
            "open": self.total,
            "accepted": self.accepted,
            "refused": self.refused,
            "max": self.max_total,
            "max_per_ip": self.max_per_ip,
            "by_ip": dict(sorted(self.by_ip.items(), key=lambda item: (-item[1], item[0]))),
        }


def limit_stream_handler(
    handler: StreamHandler, limiter: ConnectionLimiter, refusal: Callable[[str], bytes]
) -> StreamHandler:
    """Wrap an ``asyncio.start_server`` callback: refuse (with *refusal*'s line) over the limit.

    The slot is taken when the callback starts and given back in its ``finally``, which runs
    however the session ends (EOF, reset, timeout, an exception, cancellation at shutdown)."""

    async def limited(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ip = peer_ip(writer.get_extra_info("peername"))
        slot = limiter.acquire(ip)
        if isinstance(slot, str):
            await refuse(writer, refusal(slot))
            return
        try:
            await handler(reader, writer)
        finally:
            slot.release()
            if not writer.is_closing():
                # the handler left the connection open (it should not): end it here
                writer.transport.abort()

    return limited


async def close_stream(writer: asyncio.StreamWriter, timeout: float = CLOSE_TIMEOUT) -> None:
    """Close a connection: flush what is written, within *timeout*, else cut it off.

    Never waits without a bound. ``StreamWriter.wait_closed`` alone can wait for ever: for a
    client that does not read, and after a failed STARTTLS handshake, whose transport never
    reports its end to the stream (a task left waiting so, with nothing else referring to it,
    is even collected as garbage before its ``finally`` runs)."""
    try:
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), timeout)
    except TimeoutError:
        writer.transport.abort()
    except (OSError, RuntimeError):
        writer.transport.abort()


async def refuse(writer: asyncio.StreamWriter, line: bytes) -> None:
    """Say why, then close; a client that does not read is cut off after a few seconds."""
    try:
        writer.write(line)
        await asyncio.wait_for(writer.drain(), REFUSAL_DRAIN)
    except (OSError, TimeoutError):
        pass
    finally:
        writer.transport.abort()
    # collect the end of the connection (a reset's error included), or asyncio logs it as an
    # exception nobody retrieved
    with contextlib.suppress(OSError, TimeoutError, RuntimeError):
        await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT)


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

    def snapshot(self) -> dict[str, Any]:
        return {"open": sum(self.held.values()), "keys": len(self.held), "max": self.limit}


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
