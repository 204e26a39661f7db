"""The webmail in-process: the Starlette app on a MailService, driven by httpx in the test's
own event loop (the store's threads answer to that loop)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from pobox.service.delivery import Envelope
from pobox.service.mail import MailService
from pobox.web.app import WebApp

ALICE = "alice@example.org"
BOB = "bob@example.org"
PASSWORD = "correct horse"


@dataclass
class Web:
    service: MailService
    app: WebApp
    client: httpx.AsyncClient

    async def deliver(self, to: str, message: bytes, sender: str = "carol@example.net") -> None:
        (result,) = await self.service.delivery.deliver(Envelope(sender, (to,)), message)
        assert result.delivered

    async def login(
        self,
        address: str = ALICE,
        password: str = PASSWORD,
        client: httpx.AsyncClient | None = None,
    ) -> httpx.Response:
        client = client or self.client
        form = await client.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert token is not None
        return await client.post(
            "/login", data={"csrf": token.group(1), "address": address, "password": password}
        )

    async def csrf(self, path: str = "/settings", client: httpx.AsyncClient | None = None) -> str:
        page = await (client or self.client).get(path)
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token is not None, page.text
        return token.group(1)

    async def folder_id(self, address: str, name: str) -> int:
        account = await self.service.accounts.require(address)
        mailbox = await self.service.store.get_mailbox(account.id, name)
        assert mailbox is not None
        return int(mailbox.id)

    def other_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://testserver"
        )


@pytest.fixture
async def web(service: MailService) -> AsyncIterator[Web]:
    await service.accounts.add(ALICE, PASSWORD)
    await service.accounts.add(BOB, PASSWORD)
    app = WebApp(service)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        yield Web(service, app, client)
    app.close()
