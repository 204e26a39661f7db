"""IMAP transcripts: every tests/transcripts/imap/**/*.txt replayed against the in-process server.

The file format is described in :mod:`tests.transcripts.imap_runner`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.transcripts.imap_runner import TranscriptError, _pattern, parse, run

from pobox.server import Running

HERE = Path(__file__).parent / "imap"
TRANSCRIPTS = sorted(HERE.glob("**/*.txt"))


@pytest.mark.parametrize(
    "path", TRANSCRIPTS, ids=[str(p.relative_to(HERE).with_suffix("")) for p in TRANSCRIPTS]
)
async def test_transcript(path: Path, running: Running) -> None:
    await run(parse(path), running)


def test_the_runner_matches_exactly_and_captures() -> None:
    captures: dict[str, str] = {}
    pattern = _pattern("* OK [UIDVALIDITY $uv] ...", captures)
    match = pattern.fullmatch("* OK [UIDVALIDITY 1234] UIDs valid")
    assert match is not None and match.group("uv") == "1234"
    assert _pattern("a1 OK done", {}).fullmatch("a1 ok done") is None
    assert _pattern("* FLAGS ($Forwarded $$label1)", {}).fullmatch("* FLAGS ($Forwarded $label1)")
    assert (
        _pattern("* STATUS x (UIDVALIDITY $uv)", {"uv": "7"}).fullmatch(
            "* STATUS x (UIDVALIDITY 8)"
        )
        is None
    )


def test_the_runner_refuses_dots_after_data(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text('C: a1 LIST "" *\nS: * LIST ...\n')
    with pytest.raises(TranscriptError):
        parse(bad)
