"""Lenient RFC 5322 date parsing (for SEARCH SENTBEFORE/SENTON/… and SORT DATE)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

__all__ = ["parse_date"]

_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    )
}
_ZONES = {
    "ut": 0, "utc": 0, "gmt": 0, "z": 0,
    "est": -5, "edt": -4, "cst": -6, "cdt": -5, "mst": -7, "mdt": -6, "pst": -8, "pdt": -7,
}  # fmt: skip

_DATE = re.compile(
    r"""
    ^\s*(?:[A-Za-z]+\s*,?\s*)?          # optional day of week
    (?P<day>\d{1,2})\s*[-\s]\s*
    (?P<mon>[A-Za-z]{3})[A-Za-z]*\s*[-\s]\s*
    (?P<year>\d{2,4})\s+
    (?P<h>\d{1,2}):(?P<m>\d{2})(?::(?P<s>\d{2}))?(?:\.\d+)?
    \s*(?P<zone>[+-]\d{4}|[A-Za-z]+)?
    """,
    re.VERBOSE,
)


def _strip_comments(s: str) -> str:
    out: list[str] = []
    depth = 0
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif not depth:
            out.append(ch)
    return "".join(out)


def parse_date(value: bytes | str | None) -> datetime | None:
    """Parse an RFC 5322 date-time (with the obsolete forms). Returns an aware datetime, or None
    when the value cannot be understood. Unknown zones are taken as UTC (RFC 5322 §4.3)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    m = _DATE.match(_strip_comments(value.replace("\r", "").replace("\n", "")))
    if m is None:
        return None
    mon = _MONTHS.get(m.group("mon").lower())
    if mon is None:
        return None
    year = int(m.group("year"))
    if len(m.group("year")) <= 2:
        year += 2000 if year < 50 else 1900
    elif len(m.group("year")) == 3:
        year += 1900
    zone = m.group("zone")
    offset = 0
    if zone:
        if zone[0] in "+-":
            minutes = int(zone[1:3]) * 60 + int(zone[3:5])
            offset = -minutes if zone[0] == "-" else minutes
        else:
            offset = _ZONES.get(zone.lower(), 0) * 60
    try:
        tz = timezone(timedelta(minutes=offset))
        return datetime(
            year,
            mon,
            int(m.group("day")),
            int(m.group("h")),
            int(m.group("m")),
            int(m.group("s") or 0),
            tzinfo=tz,
        )
    except ValueError:
        return None
