"""The METADATA transcripts (tests/transcripts/imap/metadata) once more, on PostgreSQL: the
same conversations must give the same answers on both backends."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.conftest import make_config
from tests.helpers.postgres import session_database
from tests.transcripts.imap_runner import parse, run

from pobox.server import Running, start, stop
from pobox.service.mail import MailService

HERE = Path(__file__).parent / "imap" / "metadata"
TRANSCRIPTS = sorted(HERE.glob("*.txt"))


@pytest.fixture
async def on_postgres(tmp_path: Path) -> AsyncIterator[Running]:
    schema, dsn = session_database().new_schema()
    config = dataclasses.replace(make_config(tmp_path / "data"), store=dsn)
    service = await MailService.open(config)
    server = await start(config, service)
    try:
        yield server
    finally:
        await stop(server)
        session_database().drop_schema(schema)


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
async def test_metadata_transcript_on_postgres(path: Path, on_postgres: Running) -> None:
    await run(parse(path), on_postgres)
