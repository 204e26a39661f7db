"""A session's ``\\Recent`` messages (RFC 3501 §2.3.2), in memory bounded by their runs.

The messages a session holds as recent are UIDs it claimed: at SELECT every message from the
mailbox's recent floor up (a million of them for a mailbox never selected before), later each
batch of arrivals it claims, and what its own APPEND claimed. Each claim is a run of
consecutive UIDs, so :class:`RecentUids` keeps sorted, disjoint half-open ranges ``[low, high)``
and merges a range that touches or overlaps another: a SELECT and the arrivals after it are one
range, two integers, however many messages. A range may span UIDs that are not in the view
(expunged, or never numbered: UIDs are not reused and arrive in order, so none of them can
appear later). Membership is only asked of messages in the view, and :meth:`count` counts the
view's UIDs in each range, so an expunge needs no change here.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

__all__ = ["RecentUids"]


class RecentUids:
    """Sorted disjoint ranges ``[low, high)`` of UIDs; see the module's docstring."""

    __slots__ = ("_highs", "_lows")

    def __init__(self, ranges: Sequence[tuple[int, int]] = ()) -> None:
        self._lows: list[int] = []
        self._highs: list[int] = []
        for low, high in ranges:
            self.add_range(low, high)

    @classmethod
    def of(cls, uids: Sequence[int]) -> RecentUids:
        """The UIDs given (each one a range of one, merged where they follow each other)."""
        out = cls()
        for uid in sorted(uids):
            out.add_range(uid, uid + 1)
        return out

    def add_range(self, low: int, high: int) -> None:
        """Make UIDs low..high-1 recent."""
        if low >= high:
            return
        lows, highs = self._lows, self._highs
        # the ranges that touch or overlap [low, high): first with high >= low, last with
        # low <= high
        first = bisect.bisect_left(highs, low)
        last = bisect.bisect_right(lows, high)
        if first < last:
            low = min(low, lows[first])
            high = max(high, highs[last - 1])
        lows[first:last] = [low]
        highs[first:last] = [high]

    def __contains__(self, uid: object) -> bool:
        if not isinstance(uid, int):
            return False
        at = bisect.bisect_right(self._lows, uid) - 1
        return at >= 0 and uid < self._highs[at]

    def __bool__(self) -> bool:
        return bool(self._lows)

    def ranges(self) -> list[tuple[int, int]]:
        return list(zip(self._lows, self._highs, strict=True))

    def count(self, between: Callable[[int, int], int]) -> int:
        """How many messages are recent, given *between(low, high)*: how many of the view's
        UIDs are in low..high-1 (``MailboxView.count_between``).

        A range with none of the view's messages is dropped: its messages were expunged, and
        UIDs are not reused, so it can never count again. Without that, a session that claims
        every other arrival of a busy mailbox would keep a range for each, and count them all
        at every EXISTS."""
        total = 0
        lows: list[int] = []
        highs: list[int] = []
        for low, high in zip(self._lows, self._highs, strict=True):
            found = between(low, high)
            if found:
                total += found
                lows.append(low)
                highs.append(high)
        if len(lows) != len(self._lows):
            self._lows, self._highs = lows, highs
        return total

    def frozen(self) -> RecentUids:
        """A copy that later additions do not change (for a search that may outlive them)."""
        return RecentUids(self.ranges())

    def __repr__(self) -> str:
        return f"RecentUids({self.ranges()!r})"
