"""Progress of a long command (backup, restore, import, export, reindex, check).

On a terminal it is a live bar with the count done of the total, the bytes moved, the rate and
the time left (rich draws it on standard error). Otherwise (a pipe, a log file, cron) it is one
plain line every *interval* seconds, so that logs stay readable. Either way a one-line summary
follows at the end::

    with Progress("backup", total=len(messages), unit="messages") as p:
        for message in messages:
            ...
            p.advance(1, nbytes=len(data))

The summary says whether the job finished or was interrupted (an exception, Ctrl-C) and with how
much done; it is printed on the same stream as the lines (standard error by default, so that a
command's own output on standard output stays clean).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress

__all__ = ["Progress", "format_bytes", "format_duration"]


def format_bytes(n: float) -> str:
    """1536 → '1.5 KiB' (binary units, one decimal)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    """75.2 → '1m15s'; 3725 → '1h02m05s'; 4.25 → '4.2s'."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class Progress:
    """Counts, bytes and time of one job; a context manager that prints a summary on exit.

    *total* may be None (unknown: no bar length, no ETA) and may be raised later with
    ``set_total``. *stream* defaults to standard error; *live* forces the terminal bar on or off
    (default: on when *stream* is a terminal). *quiet* prints only the summary. *clock* is for
    tests.
    """

    def __init__(
        self,
        label: str,
        total: int | None = None,
        unit: str = "items",
        *,
        stream: TextIO | None = None,
        live: bool | None = None,
        interval: float = 5.0,
        quiet: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.done = 0
        self.nbytes = 0
        self.skipped = 0
        self.stream: TextIO = stream if stream is not None else sys.stderr
        self.interval = interval
        self.quiet = quiet
        self._clock = clock
        self._started = clock()
        self._last_line = self._started
        self._finished = False
        is_tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._live = (is_tty if live is None else live) and not quiet
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None

    # -- the API ------------------------------------------------------------------------------

    def __enter__(self) -> Progress:
        self._started = self._clock()
        self._last_line = self._started
        if self._live:
            self._bar = RichProgress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[unit]}"),
                TextColumn("{task.fields[bytes]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(
                self.label, total=self.total, unit=self.unit, bytes=format_bytes(0)
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(interrupted=exc_type is not None)

    def set_total(self, total: int | None) -> None:
        self.total = total
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, total=total)

    def advance(self, count: int = 1, *, nbytes: int = 0, skipped: int = 0) -> None:
        """*count* more items done, *nbytes* more bytes moved; *skipped* of them needed no work
        (an incremental backup's contents already there: counted as done, reported apart)."""
        self.done += count
        self.nbytes += nbytes
        self.skipped += skipped
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, advance=count, bytes=format_bytes(self.nbytes))
            return
        now = self._clock()
        if not self.quiet and now - self._last_line >= self.interval:
            self._last_line = now
            self._print(self.line(now))

    def line(self, now: float | None = None) -> str:
        """The plain progress line: 'backup: 120/1000 messages (12%), 3.1 MiB, 2.0 MiB/s,
        ETA 7.3s'."""
        now = self._clock() if now is None else now
        elapsed = max(now - self._started, 1e-9)
        parts = [f"{self.label}: {self._count()}"]
        if self.nbytes:
            parts.append(f"{format_bytes(self.nbytes)}, {format_bytes(self.nbytes / elapsed)}/s")
        if self.total and self.done and self.done < self.total:
            left = elapsed * (self.total - self.done) / self.done
            parts.append(f"ETA {format_duration(left)}")
        return ", ".join(parts)

    def summary(self, *, interrupted: bool = False) -> str:
        elapsed = max(self._clock() - self._started, 1e-9)
        text = f"{self.label}: {'interrupted after' if interrupted else 'done,'} {self._count()}"
        if self.skipped:
            text += f" ({self.skipped} already there)"
        if self.nbytes:
            text += f", {format_bytes(self.nbytes)} ({format_bytes(self.nbytes / elapsed)}/s)"
        return text + f" in {format_duration(elapsed)}"

    def close(self, *, interrupted: bool = False) -> None:
        if self._finished:
            return
        self._finished = True
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        self._print(self.summary(interrupted=interrupted))

    # -- inside -------------------------------------------------------------------------------

    def _count(self) -> str:
        if self.total is None:
            return f"{self.done} {self.unit}"
        percent = 100 * self.done // self.total if self.total else 100
        return f"{self.done}/{self.total} {self.unit} ({percent}%)"

    def _print(self, text: str) -> None:
        try:
            print(text, file=self.stream, flush=True)
        except (BrokenPipeError, ValueError):  # the reader went away; the job goes on
            pass
