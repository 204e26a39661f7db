"""The webmail in-process: the Starlette app on a MailService, driven by httpx in the test's
own event loop (the store's threads answer to that loop)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.conftest import make_config
from tests.helpers.postgres import session_database

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


@pytest.fixture(params=["sqlite", "postgres"])
async def web(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Web]:
    """The webmail on a fresh store of each backend, with ALICE and BOB."""
    config = make_config(tmp_path / "data")
    schema = None
    if request.param == "postgres":
        schema, dsn = session_database().new_schema()
        config = dataclasses.replace(config, store=dsn)
    service = await MailService.open(config)
    try:
        await service.accounts.add(ALICE, PASSWORD)
        await service.accounts.add(BOB, PASSWORD)
        app = WebApp(service)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as client:
            yield Web(service, app, client)
        app.close()
    finally:
        await service.close()
        if schema is not None:
            session_database().drop_schema(schema)
