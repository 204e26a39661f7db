"""Dates given on the command line."""

from __future__ import annotations

from datetime import UTC, date, datetime

from pobox.errors import InvalidInput


def parse_day(text: str) -> datetime:
    """``YYYY-MM-DD`` (UTC midnight) or a full ISO 8601 timestamp."""
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{text!r} is not a date (use YYYY-MM-DD)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
