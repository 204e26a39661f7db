"""The backend conformance suite runs every test here against every backend.

``postgres`` runs against the server of ``POBOX_TEST_PG`` (see tests/helpers/postgres.py): one
database per test session, a fresh schema per test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.helpers.postgres import session_database

from pobox.store.api import Store
from pobox.store.factory import create_store

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    schema: str | None = None
    spec = request.param
    if request.param == "postgres":
        database = session_database()
        schema, spec = database.new_schema()
    backend = create_store(spec, tmp_path / "data")
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()
        if schema is not None:
            session_database().drop_schema(schema)
