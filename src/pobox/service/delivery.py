"""The one delivery routine: SMTP, LMTP and `pobox deliver` all end here."""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

from pobox import metrics
from pobox.errors import NotFound, OverQuota, PoboxError, Temporary
from pobox.log import log_event
from pobox.service.accounts import Accounts
from pobox.service.content import describe, normalize_crlf, parse_pieces, write_spool
from pobox.service.quota import Quotas
from pobox.store.api import (
    Account,
    AccountId,
    MailboxId,
    NewMessage,
    Spool,
    Store,
    Uid,
)

log = logging.getLogger("pobox.delivery")

RESOLVE_TTL = 5.0
#: Messages up to this size are parsed on the event loop while a worker thread writes and
#: fsyncs them (no second thread hop); larger ones are parsed in a thread of their own.
PARSE_INLINE = 64 * 1024


@dataclass(frozen=True, slots=True)
class Envelope:
    """What the client told us around the message."""

    sender: str  # reverse-path without brackets; "" for the null sender
    recipients: tuple[str, ...]
    helo: str = ""
    peer: str = ""
    protocol: str = "LMTP"


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    recipient: str
    delivered: bool
    temporary: bool = False
    reason: str = ""
    uid: Uid | None = None
    over_quota: bool = False  # refused by the recipient's quota (temporary: [quota] says so)


def _clean(text: str) -> str:
    """Keep header text on one line and printable."""
    return "".join(ch for ch in text if 32 < ord(ch) < 127)[:200]


@functools.lru_cache(maxsize=2)
def _date_text(second: int) -> str:
    return format_datetime(datetime.fromtimestamp(second, UTC).astimezone())


def trace_headers(envelope: Envelope, hostname: str, recipient: str, queue_id: str) -> bytes:
    """Return-Path and Received (RFC 5321 §4.4), prepended to the stored message."""
    when = _date_text(int(time.time()))
    helo = _clean(envelope.helo) or "unknown"
    peer = _clean(envelope.peer) or "unknown"
    lines = [
        f"Return-Path: <{_clean(envelope.sender)}>",
        f"Received: from {helo} ({peer})",
        f"\tby {_clean(hostname)} (pobox) with {envelope.protocol} id {queue_id}",
        f"\tfor <{_clean(recipient)}>; {when}",
    ]
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


class Delivery:
    def __init__(self, store: Store, accounts: Accounts, hostname: str) -> None:
        self.store = store
        self.accounts = accounts
        self.hostname = hostname
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        # RCPT and DATA both need the recipient; a short-lived cache saves database trips
        # (an account deleted meanwhile is noticed within RESOLVE_TTL seconds)
        self._resolved: dict[str, tuple[float, Account | None]] = {}
        self._inboxes: dict[AccountId, tuple[float, MailboxId]] = {}
        #: the quota limits and warnings (pobox.service.quota); None: no quotas (tests)
        self.quotas: Quotas | None = None

    async def resolve(self, address: str) -> Account | None:
        now = time.monotonic()
        key = address.lower()
        cached = self._resolved.get(key)
        if cached is not None and now - cached[0] < RESOLVE_TTL:
            return cached[1]
        account = await self.accounts.resolve(address)
        if account is not None:  # never cache "unknown": a new account must get mail at once
            if len(self._resolved) > 10000:
                self._resolved.clear()
            self._resolved[key] = (now, account)
        return account

    async def _inbox(self, account: Account) -> MailboxId:
        now = time.monotonic()
        cached = self._inboxes.get(account.id)
        if cached is not None and now - cached[0] < RESOLVE_TTL:
            return cached[1]
        inbox = await self.store.get_mailbox(account.id, "INBOX")
        if inbox is None:
            raise NotFound(f"{account.address} has no INBOX")
        if len(self._inboxes) > 10000:
            self._inboxes.clear()
        self._inboxes[account.id] = (now, inbox.id)
        return inbox.id

    async def full(self, account: Account) -> bool:
        """The account is at a limit already: no message fits (SMTP refuses it at RCPT)."""
        if self.quotas is None:
            return False
        limits = await self.quotas.current_limits(account.id)
        if limits.storage is None and limits.messages is None:
            return False
        usage = await self.store.quota_usage(account.id)
        return limits.exceeded(usage.storage + 1, usage.messages + 1)

    async def wait_idle(self) -> None:
        """Wait until no delivery is in progress (graceful shutdown)."""
        await self._idle.wait()

    async def deliver(self, envelope: Envelope, content: bytes) -> list[DeliveryResult]:
        """Deliver *content* to every recipient's INBOX; one result per recipient, in order.

        A result is ``delivered`` only once the message is durable (file fsync'd, metadata
        committed).
        """
        self.in_flight += 1
        self._idle.clear()
        try:
            content = normalize_crlf(content)  # the stored form has CRLF line ends
            return [
                await self._deliver_one(envelope, content, rcpt) for rcpt in envelope.recipients
            ]
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.set()

    async def _deliver_one(
        self, envelope: Envelope, content: bytes, recipient: str
    ) -> DeliveryResult:
        started = time.monotonic()
        queue_id = ""
        kind = "ok"  # the reason in the metrics: a bounded label
        try:
            account = await self.resolve(recipient)
            if account is None:
                kind = "unknown_recipient"
                result = DeliveryResult(recipient, False, False, "no such user here")
            else:
                inbox = await self._inbox(account)
                queue_id = secrets.token_hex(6)
                trace = trace_headers(envelope, self.hostname, recipient, queue_id)
                message = await self._spool(trace, content)
                quotas = self.quotas
                limits = None if quotas is None else await quotas.current_limits(account.id)
                meta = await self.store.append(inbox, message, quota=limits)
                result = DeliveryResult(recipient, True, uid=meta.uid)
                if quotas is not None:
                    await quotas.after_write(account, limits, (meta.size, 1))
        except OverQuota as exc:
            kind = "over_quota"
            tempfail = self.quotas is not None and self.quotas.config.over_quota_tempfail
            result = DeliveryResult(recipient, False, tempfail, str(exc), over_quota=True)
        except Temporary as exc:
            log.warning("delivery to %s deferred: %s", recipient, exc)
            kind = metrics.reason_of(exc)
            result = DeliveryResult(recipient, False, True, str(exc))
        except PoboxError as exc:
            log.warning("delivery to %s failed: %s", recipient, exc)
            kind = metrics.reason_of(exc)
            result = DeliveryResult(recipient, False, True, str(exc))
        except Exception:
            log.exception("delivery to %s failed unexpectedly", recipient)
            kind = "internal_error"
            result = DeliveryResult(recipient, False, True, "internal error, try again later")
        log_event(
            log,
            "delivery",
            proto=envelope.protocol.lower().replace("esmtp", "smtp"),
            ip=envelope.peer,
            id=queue_id,
            **{"from": envelope.sender or "<>"},
            to=recipient,
            size=len(content),
            result=(
                "delivered" if result.delivered else "deferred" if result.temporary else "rejected"
            ),
            reason=result.reason,
            uid=result.uid,
            ms=round((time.monotonic() - started) * 1000),
        )
        metrics.delivery(
            "delivered" if result.delivered else "deferred" if result.temporary else "rejected",
            kind,
        )
        return result

    async def _spool(self, trace: bytes, content: bytes) -> NewMessage:
        """Write the message and parse it once.

        A message up to PARSE_INLINE is written (to the page cache) and parsed here; the store
        fsyncs the file in its writer's turn, just before the commit (``Spool`` in
        pobox.store.api), so the delivery waits for one hand-over to a thread, not two. A larger
        one is written and fsync'd by a worker thread while another parses it."""
        pieces = (trace, content)
        if len(trace) + len(content) <= PARSE_INLINE:
            spool = write_spool(self.store.new_spool, pieces, seal=False)
            try:
                return describe(spool, parse_pieces(pieces))
            except BaseException:
                spool.discard()
                raise
        loop = asyncio.get_running_loop()
        written = loop.run_in_executor(None, write_spool, self.store.new_spool, pieces)
        try:
            parsed = await asyncio.to_thread(parse_pieces, pieces)
            spool = await asyncio.shield(written)
        except BaseException:
            written.add_done_callback(_discard_written)
            raise
        return describe(spool, parsed)


def _discard_written(future: asyncio.Future[Spool]) -> None:
    """A spool that was written for a delivery that failed or was cancelled meanwhile."""
    if not future.cancelled() and future.exception() is None:
        future.result().discard()
