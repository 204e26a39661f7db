"""Fixtures of the backup, restore and import tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.helpers.postgres import session_database


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    """A fresh PostgreSQL database (a restore target), dropped afterwards."""
    database = session_database()
    name, dsn = database.new_database()
    yield dsn
    database.drop_database(name)
