"""Shared fixtures: a mail service on a fresh store, servers in-process and as subprocesses."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from tests.helpers.servers import ServerProcess, server_process

from pobox.config import Config
from pobox.server import Running, start, stop
from pobox.service.mail import MailService

# One hypothesis profile for the suite: no per-example deadline (CI machines are loaded, a slow
# example is not a bug) and, on CI, derandomized so that a run is reproducible.
settings.register_profile(
    "pobox",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=bool(os.environ.get("CI")),
    database=None,  # no example cache: under python -bb its byte/int comparisons can warn
)
settings.load_profile("pobox")


class FakeClock:
    """A clock the test moves by hand (retention windows, sweeper)."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime(2026, 1, 15, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def make_config(data: Path, **sections: dict[str, object]) -> Config:
    config = Config(data_dir=str(data))
    replacements = {}
    for name in ("imap", "pop3", "smtp", "lmtp", "web", "submission", "submissions"):
        section = getattr(config, name)
        values: dict[str, object] = {"port": 0}
        values.update(sections.pop(name, {}))
        replacements[name] = dataclasses.replace(section, **values)  # type: ignore[arg-type]
    # no indexer process per in-process server (tests that want one say so; the `pobox serve`
    # subprocesses of tests/helpers/servers.py run with the defaults)
    sections.setdefault("search", {"index": False})
    for name, values in sections.items():
        replacements[name] = dataclasses.replace(getattr(config, name), **values)  # type: ignore[arg-type]
    return dataclasses.replace(config, **replacements)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path / "data")


@pytest.fixture
async def service(config: Config, clock: FakeClock) -> AsyncIterator[MailService]:
    svc = await MailService.open(config, clock=clock)
    try:
        yield svc
    finally:
        await svc.close()


@pytest.fixture
async def running(config: Config, clock: FakeClock) -> AsyncIterator[Running]:
    """Every listener in this event loop, on ports the OS chose (``running.port("pop3")``)."""
    svc = await MailService.open(config, clock=clock)
    srv = await start(config, svc)
    try:
        yield srv
    finally:
        await stop(srv)


@pytest.fixture
def pobox_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A real `pobox serve` subprocess with the account demo@localhost / demo."""
    with server_process(tmp_path, {"demo@localhost": "demo"}) as server:
        yield server
