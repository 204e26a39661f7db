from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from pobox.mail.dates import parse_date


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            b"Mon, 7 Feb 1994 21:52:25 -0800",
            datetime(1994, 2, 7, 21, 52, 25, tzinfo=timezone(timedelta(hours=-8))),
        ),
        ("7 Feb 1994 21:52 GMT", datetime(1994, 2, 7, 21, 52, tzinfo=UTC)),
        (b"Fri, 24 Mar 2023\r\n 10:00:00 +0000 (UTC)", datetime(2023, 3, 24, 10, tzinfo=UTC)),
        (b"1 Jan 99 00:00:00 EST", datetime(1999, 1, 1, tzinfo=timezone(timedelta(hours=-5)))),
        (b"1 Jan 20 00:00:00 +0130", datetime(2020, 1, 1, tzinfo=timezone(timedelta(minutes=90)))),
        (b"Tue, 14 March 2023 10:15:00 XYZ", datetime(2023, 3, 14, 10, 15, tzinfo=UTC)),
    ],
)
def test_parse_date(value: bytes | str, expected: datetime) -> None:
    assert parse_date(value) == expected


@pytest.mark.parametrize(
    "value", [None, b"", b"garbage date", b"31 Feb 2023 10:00:00 +0000", b"1 Foo 2020 1:00"]
)
def test_parse_date_invalid(value: bytes | None) -> None:
    assert parse_date(value) is None
