"""The backend conformance suite runs every test here against every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pobox.store.api import Store
from pobox.store.factory import create_store

BACKENDS = ["sqlite"]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    backend = create_store(request.param, tmp_path / "data")
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()
