"""Opening the stores a transfer reads from or writes to (the CLI may not name backends)."""

from __future__ import annotations

from pathlib import Path

from pobox.store.api import Store
from pobox.store.factory import POSTGRES_SCHEMES, create_store


def is_dsn(target: str) -> bool:
    return target.startswith(POSTGRES_SCHEMES)


def store_id(spec: str, data_dir: Path) -> str:
    """How a backup's ``contents.json`` names a store: the data directory of an embedded
    store, the DSN (without its password) of a PostgreSQL one."""
    if is_dsn(spec):
        head, sep, tail = spec.partition("@")
        if sep and ":" in head.split("//", 1)[-1]:
            scheme, _, user = head.partition("//")
            return f"{scheme}//{user.split(':', 1)[0]}@{tail}"
        return spec
    return f"sqlite:{data_dir.resolve()}"


async def open_store(spec: str, data_dir: Path) -> Store:
    store = create_store(spec, data_dir)
    await store.open()
    return store
