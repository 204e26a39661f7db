"""Fake next hops for the relay tests: aiosmtpd servers that answer as a script says, and a
resolver that answers MX and address queries from a table (no network, no real DNS)."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from tests.helpers.servers import free_port

from pobox.config import Config
from pobox.relay.mx import DnsPermanent


@dataclasses.dataclass
class Received:
    sender: str
    recipients: list[str]
    content: bytes


class ScriptedHop:
    """An aiosmtpd handler. ``rcpt`` maps an address to the replies its next RCPTs get, in
    order (then 250); ``mail`` and ``data`` are lists of replies for the next MAIL and DATA
    commands (then 250)."""

    def __init__(self) -> None:
        self.rcpt: dict[str, list[str]] = {}
        self.mail: list[str] = []
        self.data: list[str] = []
        self.received: list[Received] = []
        self.rcpt_seen: list[str] = []
        #: when set, every RCPT gets this reply
        self.defer_all: str | None = None
        #: when set, the reply to DATA waits until this is set (a slow next hop)
        self.data_gate: threading.Event | None = None
        self.in_data = threading.Event()
        self.lock = threading.Lock()

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        with self.lock:
            if self.mail:
                return self.mail.pop(0)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        with self.lock:
            self.rcpt_seen.append(address)
            if self.defer_all is not None:
                return self.defer_all
            planned = self.rcpt.get(address)
            if planned:
                return planned.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.in_data.set()
        if self.data_gate is not None:
            while not self.data_gate.is_set():
                await asyncio.sleep(0.01)
        with self.lock:
            if self.data:
                return self.data.pop(0)
            self.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
            )
        return "250 2.0.0 queued"

    def delivered_to(self) -> list[str]:
        return sorted(r for message in self.received for r in message.recipients)


@contextmanager
def fake_hop(
    port: int | None = None, address: str = "127.0.0.1", **options: Any
) -> Iterator[tuple[ScriptedHop, int]]:
    """A scripted SMTP server on *address* (any 127.x.y.z works on Linux) and *port*;
    *options* go to aiosmtpd's Controller (``ssl_context``, ``tls_context``, ``authenticator``,
    ``require_starttls``, ...)."""
    handler = ScriptedHop()
    port = port or free_port()
    controller = Controller(handler, hostname=address, port=port, **options)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


class TableResolver:
    """MX and address answers from dicts; a domain in neither table does not exist."""

    def __init__(
        self,
        mx: dict[str, list[tuple[int, str]] | None],
        addresses: dict[str, list[str]],
    ) -> None:
        self.mx_table = mx
        self.address_table = addresses
        self.asked: list[str] = []

    async def mx(self, domain: str) -> list[tuple[int, str]] | None:
        self.asked.append(domain)
        if domain not in self.mx_table:
            raise DnsPermanent(f"5.1.2 domain {domain} does not exist")
        return self.mx_table[domain]

    async def addresses(self, host: str) -> list[str]:
        return self.address_table.get(host, [])


def relay_config(data: Path, **relay: object) -> Config:
    config = Config(data_dir=str(data), hostname="mail.example.org")
    return dataclasses.replace(config, relay=dataclasses.replace(config.relay, **relay))  # type: ignore[arg-type]
