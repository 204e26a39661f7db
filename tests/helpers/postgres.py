"""PostgreSQL for tests: one throwaway database per test session, one schema per test.

The server comes from ``POBOX_TEST_PG`` (a DSN), else ``postgresql://postgres@127.0.0.1:5432/
postgres`` (``scripts/ensure-postgres.sh`` finds or starts one and prints its DSN). When no server
answers, PostgreSQL tests are skipped, unless ``POBOX_REQUIRE_POSTGRES=1`` (``make test`` and CI
set it): then they fail, so that CI never passes by skipping them.

A test gets a DSN whose ``search_path`` names a schema of its own
(``postgresql://…/pobox_test_…?search_path=t_…``); asyncpg passes unknown DSN parameters to the
server as settings, so every pobox connection, in this process or a ``pobox serve`` subprocess,
works in that schema.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import secrets
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import pytest

T = TypeVar("T")
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_dsn() -> str:
    return os.environ.get("POBOX_TEST_PG") or DEFAULT_DSN


def required() -> bool:
    return os.environ.get("POBOX_REQUIRE_POSTGRES", "") not in ("", "0")


def with_database(dsn: str, database: str, **params: str) -> str:
    parts = urlsplit(dsn)
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, query, ""))


def run_sync(fn: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from any context (even inside a running event loop)."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(fn()))  # type: ignore[arg-type]
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


async def _admin(dsn: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


class TestDatabase:
    """A database created for this test session, dropped at its end."""

    __test__ = False

    def __init__(self) -> None:
        self.server = server_dsn()
        self.name = f"pobox_test_{os.getpid()}_{secrets.token_hex(3)}"
        self.dsn = with_database(self.server, self.name)
        self.schemas = 0

    def create(self) -> None:
        run_sync(lambda: _admin(self.server, f'CREATE DATABASE "{self.name}"'))

    def drop(self) -> None:
        run_sync(lambda: _admin(self.server, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))

    def new_schema(self) -> tuple[str, str]:
        """A fresh, empty schema: (its name, a DSN that works in it)."""
        self.schemas += 1
        schema = f"t_{self.schemas}_{secrets.token_hex(3)}"
        run_sync(lambda: _admin(self.dsn, f'CREATE SCHEMA "{schema}"'))
        return schema, with_database(self.server, self.name, search_path=schema)

    def drop_schema(self, schema: str) -> None:
        run_sync(lambda: _admin(self.dsn, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))

    def new_database(self) -> tuple[str, str]:
        """A whole database of its own (for tests where nodes must share nothing else)."""
        name = f"{self.name}_{secrets.token_hex(3)}"
        run_sync(lambda: _admin(self.server, f'CREATE DATABASE "{name}"'))
        return name, with_database(self.server, name)

    def drop_database(self, name: str) -> None:
        run_sync(lambda: _admin(self.server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


_session: dict[str, Any] = {}


def session_database() -> TestDatabase:
    """The session's database, created on first use; skips (or fails) without a server."""
    if "error" in _session:
        _unavailable(_session["error"])
    if "db" not in _session:
        db = TestDatabase()
        try:
            db.create()
        except Exception as exc:
            _session["error"] = f"PostgreSQL at {db.server} is not usable: {exc}"
            _unavailable(_session["error"])
        _session["db"] = db
        atexit.register(drop_session_database)
    database: TestDatabase = _session["db"]
    return database


def drop_session_database() -> None:
    db: TestDatabase | None = _session.pop("db", None)
    if db is not None:
        db.drop()


def _unavailable(reason: str) -> None:
    if required():
        pytest.fail(f"{reason} (POBOX_REQUIRE_POSTGRES is set)")
    pytest.skip(reason)
