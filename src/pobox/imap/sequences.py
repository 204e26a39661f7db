"""IMAP sequence sets (RFC 9051 §9 ``sequence-set``), sans-IO.

A sequence set is kept as the client wrote it: ranges in either order, ``*`` as ``None``,
or the SEARCHRES marker ``$`` (RFC 5182). :meth:`SequenceSet.resolve` turns it into sorted,
merged, concrete ranges once the session knows the largest message number or UID.

:func:`format_uid_set` compresses a list of numbers into ``1:3,7`` form (COPYUID, APPENDUID,
VANISHED, ESEARCH ``ALL``) while keeping the given order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["SequenceSet", "SequenceSetError", "format_uid_set"]

# A bound is a positive number or None for "*" (the largest number in use).
Bound = int | None

_MAX_NUMBER = 0xFFFFFFFF  # nz-number is a 32-bit unsigned value


class SequenceSetError(ValueError):
    """The text is not a valid ``sequence-set``."""


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """A parsed ``sequence-set``: ``ranges`` as written (``(n, n)`` for a single number)."""

    ranges: tuple[tuple[Bound, Bound], ...] = ()
    saved: bool = False  # "$": the result saved by SEARCH RETURN (SAVE)

    @classmethod
    def parse(cls, text: bytes | str) -> SequenceSet:
        raw = text.decode("ascii", "replace") if isinstance(text, bytes) else text
        if raw == "$":
            return cls((), saved=True)
        if not raw:
            raise SequenceSetError("empty sequence set")
        ranges: list[tuple[Bound, Bound]] = []
        for item in raw.split(","):
            first, sep, last = item.partition(":")
            lo = _parse_bound(first)
            hi = _parse_bound(last) if sep else lo
            ranges.append((lo, hi))
        return cls(tuple(ranges))

    @classmethod
    def single(cls, number: int) -> SequenceSet:
        return cls(((number, number),))

    @classmethod
    def from_numbers(cls, numbers: Iterable[int]) -> SequenceSet:
        """Build a compressed set from concrete numbers (order kept, runs merged)."""
        return cls(tuple((lo, hi) for lo, hi in _runs(numbers)))

    def format(self) -> str:
        if self.saved:
            return "$"
        parts = []
        for lo, hi in self.ranges:
            if lo == hi:
                parts.append(_format_bound(lo))
            else:
                parts.append(f"{_format_bound(lo)}:{_format_bound(hi)}")
        return ",".join(parts)

    def __str__(self) -> str:
        return self.format()

    @property
    def uses_star(self) -> bool:
        return any(lo is None or hi is None for lo, hi in self.ranges)

    def largest_explicit(self) -> int:
        """The largest number written out (0 if only ``*``); MSN sets check it against EXISTS."""
        return max((b for r in self.ranges for b in r if b is not None), default=0)

    def resolve(self, max_value: int) -> list[tuple[int, int]]:
        """Concrete, sorted, merged ``(first, last)`` ranges within ``1..max_value``.

        ``*`` stands for ``max_value``. A range is taken in either order, so ``n:*`` with
        ``n > max_value`` still contains ``max_value`` (RFC 9051 §6.4.9). Numbers above
        ``max_value`` are dropped. Raises :class:`SequenceSetError` for ``$``, which the
        session must substitute itself.
        """
        if self.saved:
            raise SequenceSetError("'$' must be resolved by the session")
        if max_value <= 0:
            return []
        spans: list[tuple[int, int]] = []
        for lo, hi in self.ranges:
            a = max_value if lo is None else lo
            b = max_value if hi is None else hi
            if a > b:
                a, b = b, a
            if a > max_value:
                continue
            spans.append((a, min(b, max_value)))
        spans.sort()
        merged: list[tuple[int, int]] = []
        for a, b in spans:
            if merged and a <= merged[-1][1] + 1:
                if b > merged[-1][1]:
                    merged[-1] = (merged[-1][0], b)
            else:
                merged.append((a, b))
        return merged

    def iter_numbers(self, max_value: int) -> Iterator[int]:
        """Every number of :meth:`resolve`, ascending, without duplicates."""
        for a, b in self.resolve(max_value):
            yield from range(a, b + 1)

    def contains(self, number: int, max_value: int) -> bool:
        return any(a <= number <= b for a, b in self.resolve(max_value))


def _parse_bound(text: str) -> Bound:
    if text == "*":
        return None
    if not text.isascii() or not text.isdigit() or text[0] == "0":
        raise SequenceSetError(f"invalid sequence number {text!r}")
    value = int(text)
    if value > _MAX_NUMBER:
        raise SequenceSetError(f"sequence number {text} is too large")
    return value


def _format_bound(bound: Bound) -> str:
    return "*" if bound is None else str(bound)


def _runs(numbers: Iterable[int]) -> Iterator[tuple[int, int]]:
    start: int | None = None
    prev = 0
    for n in numbers:
        if start is not None and n == prev + 1:
            prev = n
            continue
        if start is not None:
            yield start, prev
        start = prev = n
    if start is not None:
        yield start, prev


def format_uid_set(numbers: Iterable[int]) -> str:
    """``[1, 2, 3, 7, 9, 10]`` → ``"1:3,7,9:10"``; order is kept, only ascending runs merge."""
    return ",".join(str(a) if a == b else f"{a}:{b}" for a, b in _runs(numbers))
