"""The queue runner: claims due messages, sends them, records each recipient's result.

One runner per server (worker 0 of ``pobox serve``); with PostgreSQL one per node, and the
store's lease (``Store.queue_claim``) makes sure only one of them sends a given message at a
time. A round:

1. claim up to ``batch`` due messages (leased for ``lease`` seconds; a full claim starts the
   next round at once, up to ``ROUNDS`` rounds at work together);
2. group their pending recipients by destination: everything to the smarthost when ``[relay]
   host`` is set, else one group per recipient domain (its MX hosts, :mod:`pobox.relay.mx`);
3. per group, one connection (:mod:`pobox.relay.smtp`, in a worker thread) carries every message
   of the group, each with its recipients of that group, replies honoured per recipient;
4. per message: 2xx delivered, 5xx failed, anything else deferred with exponential backoff
   (``retry_min`` doubling up to ``retry_max``) until ``queue_lifetime`` has passed since the
   message was queued, then failed (status 4.4.7);
5. a bounce (:mod:`pobox.relay.dsn`) for the failed recipients and, once, a delay notice after
   ``delay_warning``, to the sender (never for a message with the null sender); then the results
   are recorded (``Store.queue_record``), which releases the lease.

A notice for a local sender goes straight into their INBOX through the delivery service; one for
a remote sender is queued with the null sender. The notice is made durable before the results
are recorded: a crash in between sends a second notice, never none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pobox import metrics
from pobox.config import Config
from pobox.log import log_event
from pobox.relay import dkim
from pobox.relay.dsn import ACTION_DELAYED, ACTION_FAILED, RecipientReport, build_report
from pobox.relay.mx import DnsPermanent, DnsResolver, DnsTemporary, Resolver, targets
from pobox.relay.queue import OutboundQueue
from pobox.relay.smtp import TLS_OPPORTUNISTIC, Connection, Hop, HopError
from pobox.service.delivery import Delivery, Envelope
from pobox.service.mail import MailService
from pobox.store.api import (
    QUEUE_DELIVERED,
    QUEUE_FAILED,
    QUEUE_PENDING,
    DkimKey,
    QueuedMessage,
    RecipientResult,
    Store,
)

log = logging.getLogger("pobox.relay")

#: seconds between looks at the queue when nothing woke the runner
POLL_INTERVAL = 2.0
#: seconds a claimed message stays leased to this runner
LEASE = 900.0
#: messages claimed per round
BATCH = 50
#: rounds at work at the same time (each with its own connection per destination)
ROUNDS = 4
#: groups (destinations) sent to at the same time
PARALLEL = 8
#: seconds a stopping runner waits for the round under way
STOP_GRACE = 30.0
#: addresses of a domain's MX hosts tried in one round, at most
MAX_ADDRESSES = 10
#: seconds between counts of the queue for the metrics
COUNT_INTERVAL = 10.0


@dataclass(slots=True)
class _Entry:
    """One message of a group, with its recipients in that group."""

    item: QueuedMessage
    recipients: list[str]


@dataclass(slots=True)
class _Round:
    contents: dict[str, bytes] = field(default_factory=dict)
    #: (queue id, recipient) -> reply or problem text
    replies: dict[tuple[str, str], str] = field(default_factory=dict)
    #: (queue id, recipient) -> the host that answered
    hosts: dict[tuple[str, str], str] = field(default_factory=dict)


def backoff(attempts: int, retry_min: float, retry_max: float) -> float:
    """Seconds to wait after the *attempts*-th failed attempt: retry_min, doubling, capped."""
    return float(min(retry_max, retry_min * 2 ** max(0, min(attempts - 1, 30))))


def node_owner(config: Config) -> str:
    """The lease owner of this node's runner: the same after a restart (so that the new runner
    frees what the old one held), different for every node (host name and data directory)."""
    return f"{socket.gethostname()}:{config.data_path.resolve()}"


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


class Runner:
    """Sends what is queued. *config* is read afresh each round (a SIGHUP applies)."""

    def __init__(
        self,
        store: Store,
        config: Callable[[], Config],
        queue: OutboundQueue,
        local: Delivery | None = None,
        *,
        resolver: Resolver | None = None,
        clock: Callable[[], float] = time.time,
        owner: str | None = None,
        tls_context: ssl.SSLContext | None = None,
        batch: int = BATCH,
        lease: float = LEASE,
    ) -> None:
        self.store = store
        self.config = config
        self.queue = queue
        self.local = local
        self.resolver: Resolver = resolver or DnsResolver()
        self.clock = clock
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"  # see node_owner
        self.tls_context = tls_context
        self.batch = batch
        self.lease = lease
        self.wake = asyncio.Event()
        self._counted = -COUNT_INTERVAL
        queue.add_waker(self.wake)

    @classmethod
    def for_service(cls, service: MailService) -> Runner:
        """The runner of ``pobox serve``: the service's store and configuration (as reloaded),
        notices to local senders through its delivery."""
        return cls(
            service.store,
            lambda: service.config,
            OutboundQueue(service.store),
            service.delivery,
            owner=node_owner(service.config),
        )

    # the loop ------------------------------------------------------------------------------
    async def serve(self, poll: float = POLL_INTERVAL) -> None:
        """Claim and run rounds until cancelled: up to ROUNDS at a time while full rounds keep
        coming, else one look every *poll* seconds (or when a message is enqueued here). A
        cancel lets the rounds under way finish (up to STOP_GRACE seconds) so that their results
        are recorded."""
        try:  # what this node's runner held when its process died is free again
            freed = await self.store.queue_release(self.owner)
        except Exception as exc:
            log.warning("cannot free the outbound queue's leases of %s: %s", self.owner, exc)
        else:
            if freed:
                log.info("outbound queue: %d message(s) a stopped runner held are due", freed)
        rounds: set[asyncio.Task[None]] = set()
        slots = asyncio.Semaphore(ROUNDS)
        try:
            while True:
                await slots.acquire()
                self.wake.clear()
                try:
                    items = await self._claim()
                except Exception:
                    slots.release()
                    log.exception("outbound queue claim failed; trying again")
                    await asyncio.sleep(1.0)
                    continue
                if items:
                    task = asyncio.ensure_future(self._safe_process(items))
                    rounds.add(task)
                    task.add_done_callback(rounds.discard)
                    task.add_done_callback(lambda _: slots.release())
                else:
                    slots.release()
                await self._count()
                if len(items) >= self.batch:
                    continue  # a full round: more may be due at once (another round starts)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), poll)
        finally:
            # a stop lets the rounds under way record their results (up to STOP_GRACE)
            if rounds:
                with contextlib.suppress(BaseException):
                    await asyncio.wait(set(rounds), timeout=STOP_GRACE)

    async def _count(self) -> None:
        """The queue's length for the metrics, at most every COUNT_INTERVAL seconds."""
        now = time.monotonic()
        if now - self._counted < COUNT_INTERVAL:
            return
        self._counted = now
        try:
            metrics.queue_length(await self.store.queue_length())
        except Exception as exc:
            log.debug("cannot count the outbound queue: %s", exc)

    async def _safe_process(self, items: list[QueuedMessage]) -> None:
        try:
            await self._process(items)
        except Exception:  # the leases run out and another round tries again
            log.exception("outbound queue round failed")

    async def _claim(self) -> list[QueuedMessage]:
        return await self.store.queue_claim(self.owner, self.clock(), self.lease, self.batch)

    async def run_once(self) -> int:
        """One round (claim, send, record); returns the number of messages claimed."""
        items = await self._claim()
        if items:
            await self._process(items)
        return len(items)

    async def _process(self, items: list[QueuedMessage]) -> None:
        """Send claimed *items* and record the results."""
        config = self.config()
        work = _Round()
        keys: dict[str, DkimKey | None] = {}
        contents = await asyncio.gather(
            *(self.store.queue_content(item.id) for item in items), return_exceptions=True
        )
        for item, content in zip(items, contents, strict=True):
            if isinstance(content, BaseException):
                log.warning("queued message %s cannot be read: %s", item.id, content)
                continue
            work.contents[item.id] = await self._signed(content, item.sender, keys)
        groups: dict[str, list[_Entry]] = {}
        for item in items:
            if item.id not in work.contents:
                continue
            for rcpt in item.recipients:
                if rcpt.state != QUEUE_PENDING:
                    continue
                key = "" if config.relay.host else domain_of(rcpt.address)
                entries = groups.setdefault(key, [])
                if not entries or entries[-1].item.id != item.id:
                    entries.append(_Entry(item, []))
                entries[-1].recipients.append(rcpt.address)
        limit = asyncio.Semaphore(PARALLEL)

        async def send(key: str, entries: list[_Entry]) -> None:
            async with limit:
                await self._send_group(config, key, entries, work)

        renewer = asyncio.ensure_future(self._renew([item.id for item in items]))
        try:
            await asyncio.gather(*(send(key, entries) for key, entries in groups.items()))
            # concurrently: the store commits the results of the round together
            await asyncio.gather(
                *(self._finish(config, item, work) for item in items if item.id in work.contents)
            )
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer

    async def _renew(self, queue_ids: list[str]) -> None:
        """While a round is at work (slow next hops), keep its leases from running out."""
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await self.store.queue_renew(self.owner, queue_ids, self.clock() + self.lease)
            except Exception as exc:
                log.warning("cannot renew the outbound queue's leases: %s", exc)

    async def _signed(self, content: bytes, sender: str, keys: dict[str, DkimKey | None]) -> bytes:
        domain = dkim.signing_domain(content, sender)
        if not domain:
            return content
        if domain not in keys:
            keys[domain] = await self.store.get_dkim_key(domain)
        key = keys[domain]
        if key is None:
            return content
        return await asyncio.to_thread(dkim.sign, content, key)

    # sending -------------------------------------------------------------------------------
    def _smarthost(self, config: Config) -> list[Hop]:
        relay = config.relay
        return [
            Hop(
                relay.host,
                relay.host,
                relay.port,
                relay.tls,
                relay.username,
                relay.password,
                float(relay.timeout),
                self.tls_context,
            )
        ]

    async def _mx_hops(self, config: Config, domain: str) -> list[Hop]:
        found = await targets(domain, self.resolver)
        relay = config.relay
        return [
            Hop(
                target.name,
                address,
                relay.mx_port,
                TLS_OPPORTUNISTIC,
                timeout=float(relay.timeout),
            )
            for target in found
            for address in target.addresses
        ][:MAX_ADDRESSES]

    async def _send_group(
        self, config: Config, key: str, entries: list[_Entry], work: _Round
    ) -> None:
        def everyone(text: str) -> None:
            for entry in entries:
                for rcpt in entry.recipients:
                    work.replies[entry.item.id, rcpt] = text

        try:
            hops = self._smarthost(config) if key == "" else await self._mx_hops(config, key)
        except DnsPermanent as exc:
            everyone(exc.text)
            return
        except DnsTemporary as exc:
            everyone(str(exc))
            return
        jobs = [
            (entry.item.id, entry.item.sender, entry.recipients, work.contents[entry.item.id])
            for entry in entries
        ]
        replies, host = await asyncio.to_thread(_converse, hops, config.hostname, jobs)
        for (queue_id, rcpt), text in replies.items():
            work.replies[queue_id, rcpt] = text
            if host:
                work.hosts[queue_id, rcpt] = host

    # results -------------------------------------------------------------------------------
    async def _finish(self, config: Config, item: QueuedMessage, work: _Round) -> None:
        relay = config.relay
        now = self.clock()
        deadline = item.created + relay.queue_lifetime
        expired = now >= deadline
        results: list[RecipientResult] = []
        failed: list[RecipientReport] = []
        delayed: list[RecipientReport] = []
        for rcpt in item.recipients:
            if rcpt.state != QUEUE_PENDING:
                continue
            text = work.replies.get((item.id, rcpt.address))
            if text is None:
                continue
            host = work.hosts.get((item.id, rcpt.address), "")
            outcome = "deferred"
            if text.startswith("2"):
                results.append(RecipientResult(rcpt.address, QUEUE_DELIVERED, text))
                outcome = "delivered"
            elif text.startswith("5"):
                results.append(RecipientResult(rcpt.address, QUEUE_FAILED, text))
                failed.append(RecipientReport(rcpt.address, ACTION_FAILED, text, remote_mta=host))
                outcome = "bounced"
            elif expired:
                results.append(RecipientResult(rcpt.address, QUEUE_FAILED, text))
                failed.append(
                    RecipientReport(
                        rcpt.address, ACTION_FAILED, text, status="4.4.7", remote_mta=host
                    )
                )
                outcome = "expired"
            else:
                wait = backoff(rcpt.attempts + 1, relay.retry_min, relay.retry_max)
                results.append(
                    RecipientResult(rcpt.address, QUEUE_PENDING, text, min(now + wait, deadline))
                )
                delayed.append(RecipientReport(rcpt.address, ACTION_DELAYED, text, remote_mta=host))
            log_event(
                log,
                "relay",
                id=item.id,
                **{"from": item.sender or "<>"},
                to=rcpt.address,
                result=outcome,
                reply=text,
                host=host,
                attempt=rcpt.attempts + 1,
            )
        warn = (
            bool(delayed)
            and not item.warned
            and relay.delay_warning > 0
            and now >= item.created + relay.delay_warning
        )
        content = work.contents[item.id]
        if item.sender:  # never a notice about a notice (the null sender)
            if failed:
                await self.notify(config, item, failed, content, now)
            if warn:
                await self.notify(config, item, delayed, content, now, retry_until=deadline)
        await self.store.queue_record(item.id, results, now, warned=warn)

    async def notify(
        self,
        config: Config,
        item: QueuedMessage,
        reports: Sequence[RecipientReport],
        content: bytes,
        now: float,
        retry_until: float | None = None,
    ) -> None:
        """Send a bounce or delay notice about *item* to its sender (never raises)."""
        if not item.sender:
            return
        report = build_report(
            hostname=config.hostname,
            original_sender=item.sender,
            reports=reports,
            content=content,
            arrival=item.created,
            now=now,
            retry_until=retry_until,
            queue_id=item.id,
        )
        try:
            await deliver_notice(self.store, self.queue, self.local, item.sender, report)
        except Exception:
            log.exception("notice to %s about %s could not be sent", item.sender, item.id)


async def deliver_notice(
    store: Store, queue: OutboundQueue, local: Delivery | None, sender: str, report: bytes
) -> None:
    """A notice to *sender*: into their INBOX when they are local, else (or when that fails)
    queued with the null sender."""
    if local is not None and await store.resolve_address(sender) is not None:
        envelope = Envelope("", (sender,), protocol="local")
        results = await local.deliver(envelope, report)
        if all(r.delivered for r in results):
            return
        log.warning(
            "notice to %s not delivered locally (%s); queued instead", sender, results[0].reason
        )
    await queue.enqueue("", [sender], report)


def _converse(
    hops: Sequence[Hop], helo: str, jobs: Sequence[tuple[str, str, list[str], bytes]]
) -> tuple[dict[tuple[str, str], str], str]:
    """In a worker thread: the first hop that takes a connection carries every job. Returns
    the reply per (queue id, recipient) and the host that answered ("" when none did)."""
    replies: dict[tuple[str, str], str] = {}
    problem = "4.4.1 no host to send to"
    for hop in hops:
        connection = Connection(hop, helo)
        try:
            connection.open()
        except HopError as exc:
            problem = exc.text
            log.info("relay: %s", exc.text)
            continue
        try:
            for number, (queue_id, sender, recipients, content) in enumerate(jobs):
                try:
                    answered = connection.send(sender, recipients, content)
                except HopError as exc:  # the connection is gone: this job and the rest wait
                    for later_id, _, later_rcpts, _ in jobs[number:]:
                        for rcpt in later_rcpts:
                            replies[later_id, rcpt] = exc.text
                    break
                for rcpt, text in answered.items():
                    replies[queue_id, rcpt] = text
        finally:
            connection.close()
        return replies, hop.name
    for queue_id, _, recipients, _ in jobs:
        for rcpt in recipients:
            replies[queue_id, rcpt] = problem
    return replies, ""
