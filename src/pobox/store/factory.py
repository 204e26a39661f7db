"""Choose a storage backend from the ``store`` setting."""

from __future__ import annotations

from pathlib import Path

from pobox.errors import ConfigError
from pobox.store.api import Store

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def create_store(spec: str, data_dir: Path) -> Store:
    """``"sqlite"`` (the default) keeps everything under *data_dir*; a ``postgresql://`` DSN
    keeps everything in that PostgreSQL database (*data_dir* only holds spool files)."""
    if spec in ("sqlite", ""):
        from pobox.store.sqlite.store import SqliteStore

        return SqliteStore(data_dir)
    if spec.startswith(POSTGRES_SCHEMES):
        from pobox.store.postgres.store import PostgresStore

        return PostgresStore(spec, data_dir)
    raise ConfigError(
        f"store {spec!r} is not a storage backend this pobox knows"
        " (use 'sqlite' or a 'postgresql://user@host/database' DSN)"
    )
