"""Sequence sets: parsing, formatting, resolving against the largest number."""

from __future__ import annotations

import pytest

from pobox.imap.sequences import SequenceSet, SequenceSetError, format_uid_set


def test_parse_and_format() -> None:
    s = SequenceSet.parse(b"1,3:7,9:*,*,12:10")
    assert s.ranges == ((1, 1), (3, 7), (9, None), (None, None), (12, 10))
    assert s.format() == "1,3:7,9:*,*,12:10"
    assert str(SequenceSet.parse("$")) == "$"
    assert SequenceSet.parse("$").saved


@pytest.mark.parametrize(
    "bad", ["", "0", "1:0", "a", "1,,2", "1:", ":2", "01", "4294967296", "$,1"]
)
def test_invalid(bad: str) -> None:
    with pytest.raises(SequenceSetError):
        SequenceSet.parse(bad)


def test_resolve_merges_sorts_and_clips() -> None:
    s = SequenceSet.parse("9:7,1,2,3,20,*")
    assert s.resolve(10) == [(1, 3), (7, 10)]
    assert list(s.iter_numbers(10)) == [1, 2, 3, 7, 8, 9, 10]


def test_star_range_above_max_still_contains_max() -> None:
    # RFC 9051 §6.4.9: "UID FETCH <uidmax+1>:*" returns the highest message
    assert SequenceSet.parse("5001:*").resolve(4000) == [(4000, 4000)]
    assert SequenceSet.parse("*:*").resolve(7) == [(7, 7)]
    assert SequenceSet.parse("1:*").resolve(0) == []
    assert SequenceSet.parse("5").resolve(3) == []


def test_helpers() -> None:
    s = SequenceSet.parse("3,9:*")
    assert s.uses_star
    assert s.largest_explicit() == 9
    assert s.contains(12, 20)
    assert not s.contains(4, 20)
    assert SequenceSet.single(4).format() == "4"
    assert SequenceSet.from_numbers([1, 2, 3, 5]).format() == "1:3,5"
    with pytest.raises(SequenceSetError):
        SequenceSet.parse("$").resolve(5)


def test_format_uid_set_keeps_order() -> None:
    assert format_uid_set([1, 2, 3, 7, 9, 10]) == "1:3,7,9:10"
    assert format_uid_set([304, 319, 320]) == "304,319:320"
    assert format_uid_set([5, 4, 3]) == "5,4,3"
    assert format_uid_set([]) == ""
