"""A smarthost with STARTTLS required and AUTH, and one with implicit TLS (RFC 8314): the
runner checks the certificate, logs in, and defers (never bounces) when the login is refused or
STARTTLS is missing."""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from tests.helpers.clock import Time
from tests.relay.fakes import fake_hop, relay_config

from pobox.config import Config
from pobox.net.tls import generate_certificate
from pobox.relay.queue import OutboundQueue
from pobox.relay.runner import Runner
from pobox.service.mail import MailService

START = 1_900_000_000.0
MESSAGE = b"From: alice@example.org\r\nSubject: tls\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    yield generate_certificate(tmp_path_factory.mktemp("certs"))


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def client_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


class Logins:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, bool]] = []

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        user, password = (
            value.decode() if isinstance(value, bytes) else str(value)
            for value in (data.login, data.password)
        )
        self.seen.append((user, mechanism, session.ssl is not None))
        # handled=False: aiosmtpd answers (235, or 535 for a failure) itself
        ok = (user, password) == ("relay-user", "relay-secret")
        return AuthResult(success=ok, handled=False)


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[MailService]:
    svc = await MailService.open(relay_config(tmp_path / "data"))
    try:
        yield svc
    finally:
        await svc.close()


def runner_for(
    service: MailService, holder: list[Config], clock: Time, certificate: tuple[Path, Path]
) -> tuple[Runner, OutboundQueue]:
    queue = OutboundQueue(service.store, clock=clock)
    runner = Runner(
        service.store,
        lambda: holder[0],
        queue,
        service.delivery,
        clock=clock,
        tls_context=client_context(certificate),
    )
    return runner, queue


async def test_starttls_and_auth(
    service: MailService, certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    clock = Time()
    clock.now = START
    logins = Logins()
    with fake_hop(
        tls_context=server_context(certificate),
        require_starttls=True,
        authenticator=logins,
        auth_require_tls=True,
        auth_required=True,
    ) as (hop, port):
        config = relay_config(
            tmp_path,
            host="127.0.0.1",
            port=port,
            tls="starttls",
            username="relay-user",
            password="wrong",
        )
        holder = [config]
        runner, queue = runner_for(service, holder, clock, certificate)
        queue_id = await queue.enqueue("alice@example.org", ["bob@x.example"], MESSAGE)
        await runner.run_once()
        item = await service.store.queue_get(queue_id)
        assert item is not None  # deferred, not bounced
        error = item.recipients[0].last_error
        assert error.startswith("4.7.0 login at 127.0.0.1:") and "535" in error
        assert logins.seen and all(tls for _, _, tls in logins.seen)
        holder[0] = dataclasses.replace(
            config, relay=dataclasses.replace(config.relay, password="relay-secret")
        )
        clock.now = item.next_attempt
        await runner.run_once()
        assert hop.delivered_to() == ["bob@x.example"]
        assert await service.store.queue_length() == 0


async def test_implicit_tls(
    service: MailService, certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    clock = Time()
    clock.now = START
    with fake_hop(ssl_context=server_context(certificate)) as (hop, port):
        config = relay_config(tmp_path, host="127.0.0.1", port=port, tls="implicit")
        runner, queue = runner_for(service, [config], clock, certificate)
        await queue.enqueue("alice@example.org", ["bob@x.example"], MESSAGE)
        await runner.run_once()
        assert hop.delivered_to() == ["bob@x.example"]


async def test_required_starttls_missing_or_untrusted_defers(
    service: MailService, certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    clock = Time()
    clock.now = START
    with fake_hop() as (hop, port):  # no STARTTLS offered
        config = relay_config(tmp_path, host="127.0.0.1", port=port, tls="starttls")
        runner, queue = runner_for(service, [config], clock, certificate)
        queue_id = await queue.enqueue("alice@example.org", ["bob@x.example"], MESSAGE)
        await runner.run_once()
        item = await service.store.queue_get(queue_id)
        assert item is not None
        assert item.recipients[0].last_error == (f"4.7.0 127.0.0.1:{port} does not offer STARTTLS")
        assert hop.received == []
    with fake_hop(tls_context=server_context(certificate)) as (hop, port):
        config = relay_config(tmp_path, host="127.0.0.1", port=port, tls="starttls")
        # the default trust store does not know the test's certificate
        runner = Runner(service.store, lambda: config, queue, service.delivery, clock=clock)
        await service.store.queue_retry(None, clock.now)
        await runner.run_once()
        item = await service.store.queue_get(queue_id)
        assert item is not None and item.recipients[0].state == "pending"
        assert "CERTIFICATE_VERIFY_FAILED" in item.recipients[0].last_error
        assert hop.received == []
