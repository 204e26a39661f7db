"""The queue runner against fake next hops (aiosmtpd): retries, exactly one delivery per
recipient, per-recipient replies, MX order and fallback, bounces and delay notices (RFC 3464),
DKIM signatures that verify. Time is a clock the test moves (tests/helpers/clock.py)."""

from __future__ import annotations

import asyncio
import email
import email.message
import email.policy
import threading
import warnings
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import dkim as dkimpy
import pytest
from tests.helpers.clock import Time
from tests.relay.fakes import TableResolver, fake_hop, relay_config

from pobox.config import Config
from pobox.relay import dkim
from pobox.relay.queue import OutboundQueue
from pobox.relay.runner import Runner
from pobox.service.mail import MailService
from pobox.store.api import QUEUE_PENDING

START = 1_900_000_000.0


def message(subject: str, sender: str = "alice@example.org", to: str = "bob@x.example") -> bytes:
    return (
        f"From: Alice <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Date: Thu, 17 Mar 2030 10:00:00 +0000\r\nMessage-ID: <{subject}@example.org>\r\n"
        f"\r\nHello, {subject}.\r\n"
    ).encode()


@pytest.fixture
def clock() -> Time:
    time = Time()
    time.now = START
    return time


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[MailService]:
    svc = await MailService.open(relay_config(tmp_path / "data"))
    try:
        await svc.accounts.add("alice@example.org", "secret")
        yield svc
    finally:
        await svc.close()


def make_runner(
    service: MailService,
    config: Config,
    clock: Time,
    resolver: TableResolver | None = None,
    owner: str = "test",
) -> tuple[Runner, OutboundQueue]:
    queue = OutboundQueue(service.store, clock=clock)
    runner = Runner(
        service.store,
        lambda: config,
        queue,
        service.delivery,
        resolver=resolver,
        clock=clock,
        owner=owner,
    )
    return runner, queue


def smarthost(service: MailService, port: int, **relay: object) -> Config:
    return relay_config(service.config.data_path, host="127.0.0.1", port=port, tls="none", **relay)


async def inbox_messages(service: MailService, address: str) -> list[email.message.Message]:
    account = await service.store.get_account(address)
    assert account is not None
    inbox = await service.store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    found = []
    for meta in await service.store.list_messages(inbox.id):
        content = await service.store.open_content(meta.blob)
        try:
            data = content.read(0, content.size)
        finally:
            content.close()
        found.append(email.message_from_bytes(data, policy=email.policy.compat32))
    return found


def report_fields(dsn: email.message.Message) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The per-message fields and each recipient's fields of a delivery-status report."""
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    parts = dsn.get_payload()
    assert isinstance(parts, list) and len(parts) == 3
    assert parts[0].get_content_type() == "text/plain"
    assert parts[1].get_content_type() == "message/delivery-status"
    assert parts[2].get_content_type() == "text/rfc822-headers"
    groups = parts[1].get_payload()
    assert isinstance(groups, list)
    blocks = [{k.lower(): str(v) for k, v in group.items()} for group in groups]
    return blocks[0], blocks[1:]


async def test_smarthost_451_then_accepts_delivers_once_per_recipient(
    service: MailService, clock: Time
) -> None:
    with fake_hop() as (hop, port):
        config = smarthost(service, port)
        runner, queue = make_runner(service, config, clock)
        hop.rcpt["bob@x.example"] = ["451 4.3.0 try again later"]
        first = await queue.enqueue(
            "alice@example.org", ["bob@x.example", "carol@x.example"], message("one")
        )
        await queue.enqueue("alice@example.org", ["dave@y.example"], message("two"))
        assert await runner.run_once() == 2
        # one connection carried both messages; bob was deferred, the others delivered
        assert hop.delivered_to() == ["carol@x.example", "dave@y.example"]
        left = await service.store.queue_get(first)
        assert left is not None
        bob = next(r for r in left.recipients if r.address == "bob@x.example")
        assert bob.state == QUEUE_PENDING and bob.attempts == 1
        assert bob.last_error == "451 4.3.0 try again later"
        assert bob.next_attempt == START + 300
        assert await service.store.queue_length() == 1
        # not due yet: nothing is sent again
        clock.now = START + 299
        assert await runner.run_once() == 0
        clock.now = START + 300
        assert await runner.run_once() == 1
        assert hop.delivered_to() == ["bob@x.example", "carol@x.example", "dave@y.example"]
        assert await service.store.queue_length() == 0
        clock.now += 86400
        assert await runner.run_once() == 0
        assert len(hop.received) == 3
        assert hop.received[0].sender == "alice@example.org"
        assert b"Subject: one" in hop.received[0].content


async def test_smarthost_421_and_no_connection_are_retried_with_backoff(
    service: MailService, clock: Time
) -> None:
    with fake_hop() as (hop, port):
        hop.mail = ["421 4.3.2 too busy, come back later"]
        config = smarthost(service, port)
        runner, queue = make_runner(service, config, clock)
        queue_id = await queue.enqueue("alice@example.org", ["bob@x.example"], message("m"))
        await runner.run_once()
        item = await service.store.queue_get(queue_id)
        assert item is not None and item.recipients[0].last_error.startswith("421 4.3.2")
        assert hop.received == []
    # the smarthost is gone now: no connection
    clock.now = item.next_attempt
    await runner.run_once()
    item = await service.store.queue_get(queue_id)
    assert item is not None
    assert item.recipients[0].last_error.startswith("4.4.1 no connection to 127.0.0.1")
    assert item.next_attempt == clock.now + 600  # doubled
    with fake_hop(port) as (hop, _):
        clock.now = item.next_attempt
        await runner.run_once()
        assert hop.delivered_to() == ["bob@x.example"]
    assert await service.store.queue_get(queue_id) is None


async def test_mx_order_fallback_and_per_recipient_bounce(
    service: MailService, clock: Time
) -> None:
    with fake_hop(address="127.0.0.2") as (hop, port):
        resolver = TableResolver(
            {
                "x.example": [(20, "mx2.x.example"), (10, "mx1.x.example")],
                "nomail.example": [(0, ".")],
            },
            # mx1 takes no connection (nothing listens on 127.0.0.3), mx2 is the fake MX
            {"mx1.x.example": ["127.0.0.3"], "mx2.x.example": ["127.0.0.2"]},
        )
        config = relay_config(service.config.data_path, mx_port=port)
        runner, queue = make_runner(service, config, clock, resolver)
        hop.rcpt["nobody@x.example"] = ["550 5.1.1 <nobody@x.example>: no such user"]
        queue_id = await queue.enqueue(
            "alice@example.org",
            ["bob@x.example", "nobody@x.example", "carol@nomail.example", "eve@gone.example"],
            message("mx"),
        )
        await runner.run_once()
        assert hop.delivered_to() == ["bob@x.example"]
        assert hop.rcpt_seen.count("nobody@x.example") == 1
    assert await service.store.queue_get(queue_id) is None  # nothing left to retry
    # one bounce, in the local sender's INBOX, for the three that failed
    bounces = await inbox_messages(service, "alice@example.org")
    assert len(bounces) == 1
    dsn = bounces[0]
    assert dsn["From"] == "Mail Delivery System <MAILER-DAEMON@mail.example.org>"
    assert dsn["To"] == "<alice@example.org>"
    assert dsn["Auto-Submitted"] == "auto-replied"
    per_message, recipients = report_fields(dsn)
    assert per_message["reporting-mta"] == "dns; mail.example.org"
    by_rcpt = {r["final-recipient"]: r for r in recipients}
    assert set(by_rcpt) == {
        "rfc822; nobody@x.example",
        "rfc822; carol@nomail.example",
        "rfc822; eve@gone.example",
    }
    nobody = by_rcpt["rfc822; nobody@x.example"]
    assert nobody["action"] == "failed"
    assert nobody["status"] == "5.1.1"
    assert nobody["diagnostic-code"] == "smtp; 550 5.1.1 <nobody@x.example>: no such user"
    assert nobody["remote-mta"] == "dns; mx2.x.example"
    assert by_rcpt["rfc822; carol@nomail.example"]["status"] == "5.1.10"
    assert by_rcpt["rfc822; eve@gone.example"]["status"] == "5.1.2"
    headers = dsn.get_payload()[2].get_payload()
    assert "Subject: mx" in headers and "Hello" not in headers


async def test_delay_notice_then_bounce_on_expiry_to_a_remote_sender(
    service: MailService, clock: Time
) -> None:
    with fake_hop() as (hop, port):
        config = smarthost(service, port, queue_lifetime=86400, delay_warning=4 * 3600)
        runner, queue = make_runner(service, config, clock)
        hop.rcpt["bob@x.example"] = ["451 4.2.0 mailbox busy"] * 100
        queue_id = await queue.enqueue("sender@remote.example", ["bob@x.example"], message("e"))
        attempts = 0
        while True:
            item = await service.store.queue_get(queue_id)
            if item is None:
                break
            clock.now = max(clock.now, item.next_attempt)
            await runner.run_once()
            attempts += 1
            assert attempts < 50
        # notices are queued with the null sender; the runner sends them on
        for _ in range(5):
            clock.now += 3600
            await runner.run_once()
        assert await service.store.queue_length() == 0
        notices = [m for m in hop.received if m.recipients == ["sender@remote.example"]]
        assert [m.sender for m in notices] == ["<>", "<>"]  # MAIL FROM:<>
        delayed, failed = (email.message_from_bytes(m.content) for m in notices)
        assert delayed["Subject"] == "Delayed Mail (still being retried)"
        _, [rcpt] = report_fields(delayed)
        assert rcpt["action"] == "delayed" and rcpt["status"] == "4.2.0"
        assert "will-retry-until" in rcpt
        assert failed["Subject"] == "Undelivered Mail Returned to Sender"
        _, [rcpt] = report_fields(failed)
        assert rcpt["action"] == "failed" and rcpt["status"] == "4.4.7"
        assert rcpt["diagnostic-code"] == "smtp; 451 4.2.0 mailbox busy"
        # retried with backoff until the lifetime ran out: 300, 600, 1200, 2400, then hourly
        assert 20 <= attempts <= 30
        assert hop.delivered_to() == ["sender@remote.example", "sender@remote.example"]


async def test_a_bounce_is_never_bounced(service: MailService, clock: Time) -> None:
    with fake_hop() as (hop, port):
        config = smarthost(service, port)
        runner, queue = make_runner(service, config, clock)
        hop.rcpt["gone@remote.example"] = ["550 5.1.1 no such user"]
        await queue.enqueue("<>", ["gone@remote.example"], message("bounce"))
        await runner.run_once()
        assert await service.store.queue_length() == 0
        clock.now += 3600
        assert await runner.run_once() == 0
        assert hop.received == []
    assert await inbox_messages(service, "alice@example.org") == []


async def test_two_runners_send_each_message_once(service: MailService, clock: Time) -> None:
    with fake_hop() as (hop, port):
        config = smarthost(service, port)
        runners = [make_runner(service, config, clock, owner=f"node{n}")[0] for n in range(3)]
        queue = OutboundQueue(service.store, clock=clock)
        for n in range(30):
            await queue.enqueue("alice@example.org", [f"r{n}@x.example"], message(f"m{n}"))
        for runner in runners:
            runner.batch = 7
        while await service.store.queue_length():
            await asyncio.gather(*(runner.run_once() for runner in runners))
        assert hop.delivered_to() == sorted(f"r{n}@x.example" for n in range(30))


async def test_dkim_signature_verifies_against_the_published_key(
    service: MailService, clock: Time
) -> None:
    key = dkim.generate_key("example.org", "s2030")
    await service.store.save_dkim_key(key)
    published = dkim.public_key_text(key).encode()

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return published if name.rstrip(b".") == b"s2030._domainkey.example.org" else None

    with fake_hop() as (hop, port):
        config = smarthost(service, port)
        runner, queue = make_runner(service, config, clock)
        await queue.enqueue("alice@example.org", ["bob@x.example"], message("signed"))
        plain_message = message("plain", sender="other@unsigned.example")
        await queue.enqueue("other@unsigned.example", ["bob@x.example"], plain_message)
        await runner.run_once()
        signed, plain = sorted(hop.received, key=lambda m: b"signed" not in m.content)
    assert signed.content.startswith(b"DKIM-Signature: ")
    assert b"d=example.org" in signed.content and b"s=s2030" in signed.content
    tampered = signed.content.replace(b"Hello, signed.", b"Hello, forged.")
    with warnings.catch_warnings():
        # dkimpy's verifier formats bytes into its debug text: a BytesWarning under python -bb
        warnings.simplefilter("ignore", BytesWarning)
        assert dkimpy.verify(signed.content, dnsfunc=dns)
        assert not dkimpy.verify(tampered, dnsfunc=dns)
    assert b"DKIM-Signature" not in plain.content


async def test_a_slow_round_keeps_its_lease(
    service: MailService, clock: Time, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round still at work renews its leases, so another node does not send the same
    message meanwhile (the lease here is 0.3 s of the test's clock, renewed every 0.1 s)."""
    renewals: list[float] = []
    renew = service.store.queue_renew

    async def spy(owner: str, ids: Sequence[str], until: float) -> int:
        renewals.append(until)
        return await renew(owner, ids, until)

    monkeypatch.setattr(service.store, "queue_renew", spy)
    with fake_hop() as (hop, port):
        hop.data_gate = threading.Event()
        config = smarthost(service, port)
        slow, queue = make_runner(service, config, clock, owner="slow")
        slow.lease = 0.3
        other, _ = make_runner(service, config, clock, owner="other")
        await queue.enqueue("alice@example.org", ["bob@x.example"], message("slow"))
        round_task = asyncio.ensure_future(slow.run_once())
        await wait_for(hop.in_data.is_set)  # the slow round is in the middle of DATA
        clock.now += 1  # its first lease has run out by this clock...
        await wait_for(lambda: any(until > clock.now for until in renewals))  # ...renewed
        assert await other.run_once() == 0
        hop.data_gate.set()
        assert await round_task == 1
        assert hop.delivered_to() == ["bob@x.example"]
        assert await service.store.queue_length() == 0


async def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Until *condition* holds (a behaviour, not a duration: *timeout* only ends a hang)."""
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")
