"""Grammar of RFC 5267 (CONTEXT=SEARCH, CONTEXT=SORT) and RFC 9394 (PARTIAL), sans-IO.

``partial-range`` (RFC 9394 §4) is ``nz-number ":" nz-number`` (from the first match on) or
``"-" nz-number ":" "-" nz-number`` (from the last one back); ``500:400`` is ``400:500``. It is
kept as a pair of signed ints, the smaller magnitude first: ``(1, 100)`` or ``(-1, -100)``.
CANCELUPDATE takes one or more quoted tags (RFC 5267 §5).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from pobox.imap.commands import Command
from pobox.imap.lexer import ParseError, Reader

__all__ = [
    "CONTEXT_COMMANDS",
    "CancelUpdate",
    "apply_partial",
    "format_partial",
    "parse_partial",
    "partial_from_text",
]

_RANGE = re.compile(rb"(-?)([1-9][0-9]*):(-?)([1-9][0-9]*)")
_NZ_MAX = 0xFFFFFFFF
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CancelUpdate(Command):
    """``CANCELUPDATE "tag" *(SP "tag")`` (RFC 5267 §4.3)."""

    NAME: ClassVar[str] = "CANCELUPDATE"
    tags: tuple[str, ...]


def partial_from_text(raw: bytes) -> tuple[int, int]:
    """A ``partial-range`` as (first, last), signed, smaller magnitude first."""
    match = _RANGE.fullmatch(raw)
    if match is None or match.group(1) != match.group(3):
        raise ParseError("PARTIAL needs a range n:m or -n:-m of non-zero numbers")
    a, b = int(match.group(2)), int(match.group(4))
    if a > _NZ_MAX or b > _NZ_MAX:
        raise ParseError("PARTIAL range is out of range")
    low, high = min(a, b), max(a, b)
    return (-low, -high) if match.group(1) else (low, high)


def parse_partial(r: Reader) -> tuple[int, int]:
    """After ``PARTIAL SP``: the range (an atom: no quoted string, no ``*``)."""
    return partial_from_text(r.atom("a PARTIAL range"))


def format_partial(partial: tuple[int, int]) -> str:
    return f"{partial[0]}:{partial[1]}"


def apply_partial(items: Sequence[T], partial: tuple[int, int]) -> list[T]:
    """The items at positions *partial* (1-based; negative ones counted from the end)."""
    first, last = partial
    n = len(items)
    if first > 0:
        return list(items[first - 1 : last])
    start = max(n + last, 0)  # last is the larger magnitude: the earliest position
    end = n + first + 1
    return list(items[start:end]) if end > 0 else []


def _cancelupdate(r: Reader, tag: str, uid: bool) -> Command:
    tags: list[str] = []
    while True:
        r.sp()
        if r.peek() != 0x22:
            raise ParseError("CANCELUPDATE takes quoted tags")
        tags.append(r.quoted().decode("ascii", "replace"))
        if r.at_end():
            break
    r.end()
    return CancelUpdate(tag, tuple(tags))


CONTEXT_COMMANDS: dict[str, Callable[[Reader, str, bool], Command]] = {
    "CANCELUPDATE": _cancelupdate,
}
