"""MX lookups through dnspython (pobox.relay.mx.DnsResolver) against a tiny DNS server in the
test (UDP on 127.0.0.1, answers from a table): preference order, the implicit MX, null MX,
a domain that does not exist, SERVFAIL; then a whole delivery found through it."""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import dns.asyncresolver
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from tests.helpers.clock import Time
from tests.relay.fakes import fake_hop, relay_config

from pobox.relay.mx import DnsPermanent, DnsResolver, DnsTemporary, Target, targets
from pobox.relay.queue import OutboundQueue
from pobox.relay.runner import Runner
from pobox.service.mail import MailService

ZONE: dict[tuple[str, str], list[str]] = {
    ("x.example.", "MX"): ["20 mx2.x.example.", "10 mx1.x.example.", "10 mx1b.x.example."],
    ("mx1.x.example.", "A"): ["127.0.0.3"],
    ("mx1b.x.example.", "AAAA"): ["::1"],
    ("mx2.x.example.", "A"): ["127.0.0.2"],
    ("plain.example.", "A"): ["127.0.0.2"],
    ("nomail.example.", "MX"): ["0 ."],
    ("broken.example.", "SERVFAIL"): [],
}
NAMES = {name for name, _ in ZONE}


class FakeDns:
    """Answers UDP queries from ZONE: NXDOMAIN for unknown names, NOERROR with no answer for
    a known name without records of the asked type."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)  # so that serve() sees `running` go false
        self.port = int(self.sock.getsockname()[1])
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.running = True

    def serve(self) -> None:
        while self.running:
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA
            question = query.question[0]
            name = question.name.to_text()
            kind = dns.rdatatype.to_text(question.rdtype)
            if (name, "SERVFAIL") in ZONE:
                response.set_rcode(dns.rcode.SERVFAIL)
            elif name not in NAMES:
                response.set_rcode(dns.rcode.NXDOMAIN)
            elif (name, kind) in ZONE:
                response.answer.append(
                    dns.rrset.from_text_list(name, 300, "IN", kind, ZONE[name, kind])
                )
            self.sock.sendto(response.to_wire(), peer)

    def resolver(self) -> DnsResolver:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.port
        resolver.timeout = resolver.lifetime = 20.0  # a loaded machine answers late, not wrong
        return DnsResolver(resolver)


@pytest.fixture
def fake_dns() -> Iterator[FakeDns]:
    server = FakeDns()
    server.thread.start()
    try:
        yield server
    finally:
        server.running = False
        server.thread.join(5)
        server.sock.close()


async def test_targets_through_dnspython(fake_dns: FakeDns) -> None:
    resolver = fake_dns.resolver()
    found = await targets("x.example", resolver, random.Random(1))
    # preference 10 first (the two in either order), then 20; each with its addresses
    assert {t.name for t in found[:2]} == {"mx1.x.example", "mx1b.x.example"}
    assert found[2] == Target("mx2.x.example", ("127.0.0.2",))
    assert Target("mx1b.x.example", ("::1",)) in found
    # no MX record: the domain itself (RFC 5321 §5.1)
    assert await targets("plain.example", resolver) == [Target("plain.example", ("127.0.0.2",))]
    with pytest.raises(DnsPermanent, match=r"^5\.1\.10 nomail\.example accepts no mail"):
        await targets("nomail.example", resolver)
    with pytest.raises(DnsPermanent, match=r"^5\.1\.2 domain gone\.example does not exist"):
        await targets("gone.example", resolver)
    with pytest.raises(DnsTemporary, match=r"^4\.4\.3 "):
        await targets("broken.example", resolver)


async def test_delivery_found_through_dns(fake_dns: FakeDns, tmp_path: Path) -> None:
    clock = Time()
    clock.now = 1_900_000_000.0
    service = await MailService.open(relay_config(tmp_path / "data"))
    try:
        with fake_hop(address="127.0.0.2") as (hop, port):
            config = relay_config(tmp_path / "data", mx_port=port)
            queue = OutboundQueue(service.store, clock=clock)
            runner = Runner(
                service.store,
                lambda: config,
                queue,
                service.delivery,
                resolver=fake_dns.resolver(),
                clock=clock,
            )
            await queue.enqueue(
                "a@example.org", ["bob@x.example", "carol@plain.example"], b"Subject: s\r\n\r\n"
            )
            await runner.run_once()
            # mx1 (127.0.0.3) and mx1b (::1) take no connection on that port; mx2 does
            assert hop.delivered_to() == ["bob@x.example", "carol@plain.example"]
            assert await service.store.queue_length() == 0
    finally:
        await service.close()
