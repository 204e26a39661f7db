"""pobox on PostgreSQL in a benchmark: a fresh database per run, and the servers started with it.

    with postgres_store("postgresql://postgres@127.0.0.1:5432/postgres"):
        ...  # every common.start_pobox() in here runs pobox with store = <a new database>

The database is created on the server of the DSN (its user must be allowed to create
databases; the development machine's PostgreSQL trusts local connections) and dropped after
the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import common


async def _execute(dsn: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _with_database(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/" + name))


@contextlib.contextmanager
def postgres_store(server_dsn: str, keep: bool = False) -> Iterator[str]:
    """A new database on *server_dsn*'s server; pobox servers started inside use it as their
    store (``store = "…"`` at the top of the configuration common.start_pobox writes)."""
    name = f"pobox_bench_{os.getpid()}_{int(time.time())}"
    asyncio.run(_execute(server_dsn, f'CREATE DATABASE "{name}"'))
    dsn = _with_database(server_dsn, name)
    original = common.listener_config

    def listener_config() -> tuple[dict[str, int], str]:
        ports, text = original()
        return ports, f'store = "{dsn}"\n' + text  # a top-level key: before the first table

    common.listener_config = listener_config  # type: ignore[assignment]
    try:
        yield dsn
    finally:
        common.listener_config = original  # type: ignore[assignment]
        if keep:
            print(f"  (kept database {name})")
        else:
            asyncio.run(_execute(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
