"""A monotonic clock for the authentication tests: time moves only when the code sleeps."""

from __future__ import annotations


class Time:
    """A monotonic clock and a sleep that only moves the clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
