"""pobox.cli.progress: plain periodic lines off a terminal, a bar on one, a summary at the end."""

from __future__ import annotations

import io

import pytest

from pobox.cli.progress import Progress, format_bytes, format_duration


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_every_interval_and_a_summary() -> None:
    out = io.StringIO()
    clock = Clock()
    with Progress("backup", total=10, unit="messages", stream=out, clock=clock) as p:
        for _ in range(10):
            clock.now += 1.0
            p.advance(1, nbytes=1024)
    lines = out.getvalue().splitlines()
    # every 5 s of 10 s: two lines, then the summary
    assert lines[0] == "backup: 5/10 messages (50%), 5.0 KiB, 1.0 KiB/s, ETA 5.0s"
    assert lines[1].startswith("backup: 10/10 messages (100%), 10.0 KiB")
    assert lines[-1] == "backup: done, 10/10 messages (100%), 10.0 KiB (1.0 KiB/s) in 10.0s"
    assert len(lines) == 3


def test_interrupted_summary_and_skipped() -> None:
    out = io.StringIO()
    clock = Clock()
    with pytest.raises(KeyboardInterrupt), Progress("restore", stream=out, clock=clock) as p:
        p.advance(3, skipped=2)
        clock.now += 2
        raise KeyboardInterrupt
    assert out.getvalue() == "restore: interrupted after 3 items (2 already there) in 2.0s\n"


def test_quiet_prints_only_the_summary() -> None:
    out = io.StringIO()
    clock = Clock()
    with Progress("x", total=2, stream=out, quiet=True, clock=clock) as p:
        clock.now += 60
        p.advance(2)
    assert out.getvalue() == "x: done, 2/2 items (100%) in 1m00s\n"


def test_live_bar_ends_with_the_summary() -> None:
    out = io.StringIO()
    with Progress("export", total=3, unit="messages", stream=out, live=True) as p:
        p.advance(3, nbytes=10)
    assert out.getvalue().rstrip().splitlines()[-1].startswith("export: done, 3/3 messages")


def test_formats() -> None:
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(3 * 1024**3) == "3.0 GiB"
    assert format_duration(4.25) == "4.2s"
    assert format_duration(3725) == "1h02m05s"
