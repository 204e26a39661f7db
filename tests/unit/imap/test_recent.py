"""A session's \\Recent UIDs as runs (pobox.imap.recent): bounded memory, the same answers as
a set of every UID."""

from __future__ import annotations

import bisect
import sys
from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from pobox.imap.recent import RecentUids


def _between(uids: list[int]) -> Callable[[int, int], int]:
    def count(low: int, high: int) -> int:
        return bisect.bisect_left(uids, high) - bisect.bisect_left(uids, low)

    return count


def test_a_million_messages_are_one_range() -> None:
    recent = RecentUids()
    recent.add_range(1, 1_000_001)  # SELECT of a mailbox no session has seen
    for uid in range(1_000_001, 1_000_101):  # arrivals, one at a time, each claimed
        recent.add_range(uid, uid + 1)
    assert recent.ranges() == [(1, 1_000_101)]
    size = sys.getsizeof(recent) + sum(sys.getsizeof(x) for x in (recent._lows, recent._highs))
    assert size < 1_000  # octets; a set of a million UIDs is tens of megabytes
    assert 1 in recent and 1_000_100 in recent
    assert 0 not in recent and 1_000_101 not in recent


def test_runs_merge_when_they_touch_or_overlap() -> None:
    recent = RecentUids()
    recent.add_range(10, 20)
    recent.add_range(30, 40)
    recent.add_range(50, 50)  # empty: nothing
    assert recent.ranges() == [(10, 20), (30, 40)]
    recent.add_range(20, 25)  # touches the first
    recent.add_range(5, 8)
    assert recent.ranges() == [(5, 8), (10, 25), (30, 40)]
    recent.add_range(7, 35)  # spans three
    assert recent.ranges() == [(5, 40)]
    assert RecentUids.of([3, 1, 2, 7]).ranges() == [(1, 4), (7, 8)]
    assert not RecentUids() and RecentUids([(1, 2)])
    assert "1" not in RecentUids([(1, 2)])


def test_a_frozen_copy_does_not_follow() -> None:
    recent = RecentUids([(1, 5)])
    frozen = recent.frozen()
    recent.add_range(5, 9)
    assert 6 in recent and 6 not in frozen


def test_count_is_over_the_view_only() -> None:
    # messages 5 and 7 were expunged: the range still spans them, the count does not
    view = [1, 2, 3, 4, 6, 8, 9, 12]
    recent = RecentUids([(3, 10), (12, 13)])
    assert recent.count(_between(view)) == 6  # 3 4 6 8 9 12


def test_ranges_of_expunged_messages_are_dropped_when_counted() -> None:
    """A session that claimed every other arrival of a busy mailbox: one range per message,
    and only those still in the view are kept (UIDs are not reused)."""
    recent = RecentUids([(uid, uid + 1) for uid in range(1, 2001, 2)])
    view = [1995, 1996, 1997, 1999, 2000]
    assert recent.count(_between(view)) == 3
    assert recent.ranges() == [(1995, 1996), (1997, 1998), (1999, 2000)]
    assert all((uid in recent) == (uid % 2 == 1) for uid in view)
    assert recent.count(_between(view)) == 3


@given(
    st.lists(st.tuples(st.integers(1, 200), st.integers(0, 30)), max_size=30),
    st.lists(st.integers(1, 240), max_size=60, unique=True),
)
def test_the_same_answers_as_a_set(claims: list[tuple[int, int]], view: list[int]) -> None:
    recent, model = RecentUids(), set()
    for low, length in claims:
        recent.add_range(low, low + length)
        model.update(range(low, low + length))
    assert all((uid in recent) == (uid in model) for uid in range(260))
    view.sort()
    assert recent.count(_between(view)) == len(model.intersection(view))
    lows = [low for low, _ in recent.ranges()]
    highs = [high for _, high in recent.ranges()]
    assert all(h < next_low for h, next_low in zip(highs, lows[1:], strict=False))  # disjoint


@given(
    st.lists(st.integers(1, 400), unique=True, min_size=1, max_size=120).map(sorted),
    st.lists(st.tuples(st.integers(1, 420), st.integers(0, 40)), max_size=6),
)
def test_recent_spans_are_the_positions_of_recent_uids(
    uids: list[int], runs: list[tuple[int, int]]
) -> None:
    """FETCH of a run of messages marks \\Recent by slices of its FLAGS column: the spans are
    exactly the positions whose UIDs are recent (chunks of the index start anywhere)."""
    from pobox.imap.handlers.messages import _recent_spans

    recent = RecentUids([(low, low + length) for low, length in runs if length])
    covered = {i for a, b in _recent_spans(recent, uids) for i in range(a, b)}
    assert covered == {i for i, uid in enumerate(uids) if uid in recent}
