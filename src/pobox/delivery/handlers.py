"""aiosmtpd handlers for SMTP and LMTP: address checks and DATA, all through the service."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import typing
from collections.abc import Awaitable, Callable
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session, TLSSetupException, syntax

from pobox import metrics
from pobox.delivery import replies
from pobox.delivery.commands import Commands
from pobox.delivery.data import WholeData
from pobox.errors import PoboxError
from pobox.log import log_event
from pobox.net.drain import Drain
from pobox.net.limits import ConnectionLimiter, Slot, peer_ip
from pobox.service.delivery import Delivery
from pobox.service.delivery import Envelope as DeliveryEnvelope
from pobox.service.domains import ServedDomains
from pobox.store.api import Account

log = logging.getLogger("pobox.delivery")


def _strip(address: str) -> str:
    return address.strip().removeprefix("<").removesuffix(">")


class DeliveryHandler:
    """The aiosmtpd handler hooks (``handle_RCPT``, ``handle_DATA``) for one protocol."""

    def __init__(
        self,
        delivery: Delivery,
        protocol: str,
        max_recipients: int,
        domains: ServedDomains | None = None,
    ) -> None:
        self.delivery = delivery
        self.protocol = protocol
        self.max_recipients = max_recipients
        #: the domains served: an unknown address elsewhere is a relay attempt (554 5.7.1)
        self.domains = domains

    # aiosmtpd calls its hooks by these names
    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if len(envelope.rcpt_tos) >= self.max_recipients:
            metrics.delivery("deferred", "too_many_recipients")
            return replies.TOO_MANY_RECIPIENTS
        address = _strip(address)
        try:
            account = await self.delivery.resolve(address)
        except PoboxError as exc:
            log.warning("recipient lookup of %s failed: %s", address, exc)
            metrics.delivery("deferred", metrics.reason_of(exc))
            return replies.TEMPORARY
        if account is None:
            try:
                ours = self.domains is None or await self.domains.serves(address)
            except PoboxError as exc:
                log.warning("domain lookup for %s failed: %s", address, exc)
                metrics.delivery("deferred", metrics.reason_of(exc))
                return replies.TEMPORARY
            if not ours:
                metrics.delivery("rejected", "relay_denied")
                log.info("refused relaying to %s from %s", address[:200], session.peer)
                return replies.RELAY_DENIED.format(address[:200])
            metrics.delivery("rejected", "unknown_recipient")
            log.info("rejected unknown recipient %s from %s", address[:200], session.peer)
            return replies.NO_SUCH_USER.format(address[:200])
        if self.protocol != "LMTP" and await self._full(account):  # SMTP: one DATA reply
            tempfail = self._tempfail()
            metrics.delivery("deferred" if tempfail else "rejected", "over_quota")
            log.info("refused %s from %s: mailbox full", address[:200], session.peer)
            full = replies.MAILBOX_FULL_TEMPORARY if tempfail else replies.MAILBOX_FULL
            return full.format(address[:200])
        envelope.rcpt_tos.append(address)
        return replies.RCPT_OK

    async def _full(self, account: Account) -> bool:
        try:
            return await self.delivery.full(account)
        except PoboxError as exc:  # DATA checks again
            log.warning("quota lookup of %s failed: %s", account.address, exc)
            return False

    def _tempfail(self) -> bool:
        quotas = self.delivery.quotas
        return quotas is not None and quotas.config.over_quota_tempfail

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        if isinstance(envelope.content, bytes) and not content:
            content = envelope.content
        peer = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer)
        request = DeliveryEnvelope(
            sender=_strip(envelope.mail_from or ""),
            recipients=tuple(envelope.rcpt_tos),
            helo=session.host_name or "",
            peer=peer,
            protocol=self.protocol,
        )
        results = await self.delivery.deliver(request, content)
        if self.protocol == "LMTP":
            return replies.lmtp_data(results)
        return replies.smtp_data(results)

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, TLSSetupException):  # the client failed the STARTTLS handshake
            log.info("%s STARTTLS handshake failed: %s", self.protocol, error.__cause__)
            return "421 4.7.0 TLS handshake failed, closing connection"
        log.exception("%s session error", self.protocol, exc_info=error)
        # a fault of pobox, not of the client's input (which gets its 5xx before this): the
        # session goes on, and the client may try again
        return "451 4.3.0 internal error, please try again later"


#: What a session hears when the server shuts down (RFC 3463 4.3.2: system not accepting
#: network messages)
SHUTTING_DOWN = b"421 4.3.2 Server shutting down, try again later\r\n"


class _LoggedSession:
    """One log line per connection (``event=session``, pobox.log); the listener's connection
    accounting; the graceful shutdown (pobox.net.drain).

    The connection's :class:`Slot` is taken in ``connection_made`` and given back in
    ``connection_lost``, which asyncio calls exactly once for every transport that was made,
    however it ends. What makes sure it ends: a peer's close (EOF) closes the transport at once
    (aiosmtpd would keep a half-closed connection open until the idle timeout when the EOF
    arrives before its session coroutine has started), and the idle timeout closes it too.
    """

    protocol_name = "SMTP"
    _started: float
    _peer: Any
    _slot: Slot | None = None
    _refused = False
    _in_data = False
    _end = "closed"
    _octets_in = 0
    _octets_out = 0
    _transactions = 0
    _tls = False
    _logged = False
    transport: Any
    _smtp_methods: dict[str, Any]
    #: the protocol in the metrics ("" while they are off), the command being answered
    _metric = ""
    _running: tuple[str, float] | None = None

    def __init__(
        self,
        *args: Any,
        limiter: ConnectionLimiter | None = None,
        drain: Drain | None = None,
        **kwargs: Any,
    ) -> None:
        self._limiter = limiter
        self._drain = drain
        super().__init__(*args, **kwargs)
        if metrics.enabled():
            self._metric = self.protocol_name.lower()
            self._smtp_methods = {
                name: self._metered(name, method) for name, method in self._smtp_methods.items()
            }

    # the metrics (pobox.metrics): each command is counted by the class of its reply ---------
    def _metered(
        self, name: str, method: Callable[[str | None], Awaitable[None]]
    ) -> Callable[[str | None], Awaitable[None]]:
        @functools.wraps(method)  # keeps the HELP texts aiosmtpd attaches to the method
        async def metered(arg: str | None) -> None:
            self._running = (name, time.perf_counter())
            try:
                await method(arg)
            finally:
                self._running = None

        return metered

    def _count_reply(self, status: str | bytes) -> None:
        text = status.decode("ascii", "replace") if isinstance(status, bytes) else status
        # LMTP answers DATA with a line per recipient: the worst one counts
        worst = max(line[:1] for line in text.split("\r\n"))
        if worst not in ("2", "4", "5"):
            return  # 354 (DATA goes on), or no status
        running, self._running = self._running, None
        if running is not None:
            metrics.command(
                self._metric, running[0], worst + "xx", time.perf_counter() - running[1]
            )
        elif worst == "5":  # not dispatched: an unknown command, a bad line
            metrics.command(self._metric, metrics.INVALID, "5xx", None)

    def _on_shutdown(self, force: bool) -> None:
        """SIGTERM: a DATA under way is finished and answered first (:meth:`_transaction_done`);
        any other moment gets 421 4.3.2 and the connection is closed."""
        if self._in_data and not force:
            return
        self._end = "shutdown"
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if force:
            transport.abort()
            return
        transport.write(SHUTTING_DOWN)
        self._octets_out += len(SHUTTING_DOWN)
        transport.close()

    def _transaction_done(self) -> None:
        """Called by WholeData once a DATA has been answered."""
        self._transactions += 1
        if self._drain is not None and self._drain.draining:
            self._on_shutdown(False)

    #: the authenticated user, for the session's log line (submission)
    _user = ""
    #: the label of the app password it logged in with ("": the main password)
    _login_label = ""

    async def push(self, status: str | bytes) -> None:
        status = self.enhanced(status)  # type: ignore[attr-defined]  # pobox.delivery.commands
        if self._metric:
            self._count_reply(status)
        self._octets_out += len(status) + 2
        if isinstance(status, str) and status.startswith("221"):
            self._end = "quit"
        await super().push(status)  # type: ignore[misc]

    def _timeout_cb(self) -> None:
        self._end = "timeout"
        super()._timeout_cb()  # type: ignore[misc]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = not hasattr(self, "_started")  # STARTTLS calls this again with the TLS transport
        if not first:
            self._tls = True
        if first:
            self._tls = transport.get_extra_info("ssl_object") is not None  # implicit TLS
            self._started = time.monotonic()
            self._peer = transport.get_extra_info("peername")
            if self._limiter is not None:
                slot = self._limiter.acquire(peer_ip(self._peer))
                if isinstance(slot, str):
                    self._refused = True
                    # uvloop's transports are not asyncio.WriteTransport instances
                    writer = typing.cast(asyncio.WriteTransport, transport)
                    writer.write(f"421 4.7.0 {slot}, try again later\r\n".encode())
                    writer.close()  # flushes the line, then connection_lost
                    return
                self._slot = slot
            if self._drain is not None:
                self._drain.register(self, self._on_shutdown)
        try:
            super().connection_made(transport)  # type: ignore[misc]
        except Exception:
            log.exception("%s connection from %s could not start", self.protocol_name, self._peer)
            transport.abort()  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            self._octets_in += len(data)
            super().data_received(data)  # type: ignore[misc]

    def eof_received(self) -> bool | None:
        if not self._refused:
            if self._end == "closed":
                self._end = "eof"
            super().eof_received()  # type: ignore[misc]  # stops the session coroutine
        return False  # the peer is gone: close the transport now, not at the idle timeout

    def connection_lost(self, error: Exception | None) -> None:
        if self._slot is not None:
            self._slot.release()
        if self._drain is not None:
            self._drain.unregister(self)
        if self._refused:
            return
        if not self._logged:  # aiosmtpd calls this again after a failed STARTTLS
            self._logged = True
            self._log_session(error)
        super().connection_lost(error)  # type: ignore[misc]
        # asyncio keeps *error* on the close waiter for a ``wait_closed()`` that aiosmtpd never
        # makes; when the protocol is collected in a reference cycle, the waiter can be
        # finalized first and logs "Future exception was never retrieved". Fetch it here.
        waiter: asyncio.Future[None] | None = getattr(self, "_closed", None)
        if waiter is not None and waiter.done() and not waiter.cancelled():
            waiter.exception()

    def _log_session(self, error: Exception | None) -> None:
        """The session's line of facts (docs/configuration.md, "The log")."""
        session = getattr(self, "session", None)
        log_event(
            log,
            "session",
            proto=self.protocol_name.lower(),
            ip=peer_ip(self._peer),
            helo=getattr(session, "host_name", None) or "",
            **({"user": self._user} if self.protocol_name == "SUBMISSION" else {}),
            **({"login": self._login_label} if self._login_label else {}),
            duration=time.monotonic() - self._started,
            transactions=self._transactions,
            tls=self._tls,
            **{"in": self._octets_in, "out": self._octets_out},
            end="error" if error is not None and self._end == "closed" else self._end,
        )


class SmtpServer(_LoggedSession, Commands, WholeData, SMTP):
    """Inbound SMTP (an MX): no AUTH, mail only for the domains served."""

    protocol_name = "SMTP"

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str | None) -> None:
        await self._greet(hostname)


class LmtpServer(_LoggedSession, Commands, WholeData, LMTP):
    protocol_name = "LMTP"
    greeting = "LHLO"

    @syntax("LHLO hostname")
    async def smtp_LHLO(self, hostname: str | None) -> None:
        await self._greet(hostname)

    async def smtp_HELO(self, hostname: str | None) -> None:  # RFC 2033 §4.1: LHLO only
        await self.push('500 5.5.1 Error: command "HELO" not recognized')

    async def smtp_EHLO(self, hostname: str | None) -> None:
        await self.push('500 5.5.1 Error: command "EHLO" not recognized')
