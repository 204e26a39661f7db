"""A mailbox's messages as packed columns, straight from PostgreSQL (``message_columns``).

The first load of a large mailbox's index reads every message. Fetched as rows, each row
becomes a record and a dozen Python objects, several seconds for a million messages; here the
server aggregates each column into one ``bytea`` of fixed-width big-endian values
(``int8send``, ``float8send``), and each becomes an ``array`` with one ``frombytes`` and one
``byteswap``: no Python object per message. Keywords come as one text (a keyword is an atom:
no line feed in it), split once; so do the few stored POP3 UIDLs, and the UIDs of the messages
hidden from POP3 as one more packed column; all in one scan of the mailbox's messages.
"""

from __future__ import annotations

import itertools
import operator
import sys
from array import array
from typing import Any

from pobox.store.api import Mailbox, MessageColumns

#: (typecode, SQL that sends one value of the column in network byte order)
_COLUMNS = (
    ("I", "substr(int8send(uid), 5)"),  # UIDs are 32-bit (RFC 9051 §2.3.1.1)
    ("Q", "int8send(modseq)"),
    ("Q", "int8send(flags::bigint)"),
    ("d", "float8send(internal_date)"),
    ("h", "int2send(internal_tz::smallint)"),
    ("d", "float8send(save_date)"),
    ("Q", "int8send(size)"),
    ("Q", "int8send(blob)"),
)

# the aggregates read the rows in the subquery's order (one ordered scan of the primary key);
# the result is checked to be in UID order all the same
_PACKED = (
    "SELECT count(*), "
    + ", ".join(f"coalesce(string_agg({sql}, ''), '')" for _, sql in _COLUMNS)
    + ", coalesce(string_agg(keywords, E'\\n'), '')"
    # POP3 UIDLs (no space, no line feed: RFC 1939 §7) and the hidden, of the few that have them
    + ", string_agg(uid || ' ' || pop3_uidl, E'\\n') FILTER (WHERE pop3_uidl IS NOT NULL)"
    + ", string_agg(substr(int8send(uid), 5), '') FILTER (WHERE pop3_hidden_at IS NOT NULL)"
    + " FROM (SELECT * FROM messages WHERE mailbox_id = $1 ORDER BY uid) m"
)
_SWAP = sys.byteorder == "little"


def _unpack(typecode: str, data: bytes) -> array[Any]:
    column = array(typecode)
    column.frombytes(data)
    if _SWAP:
        column.byteswap()
    return column


async def packed_columns(conn: Any, mailbox: Mailbox) -> MessageColumns:
    """*conn* inside a snapshot (repeatable read) that read *mailbox*."""
    row = await conn.fetchrow(_PACKED, mailbox.id)
    count = int(row[0])
    packed = row[1 : len(_COLUMNS) + 1]
    cols = [_unpack(code, bytes(data)) for (code, _), data in zip(_COLUMNS, packed, strict=True)]
    keywords: list[str] = row[len(_COLUMNS) + 1].split("\n") if count else []
    if any(len(c) != count for c in cols) or len(keywords) != count:
        raise RuntimeError("packed message columns of unequal length")
    uids = cols[0]
    if not all(map(operator.lt, uids, itertools.islice(uids, 1, None))):
        order = sorted(range(count), key=uids.__getitem__)
        cols = [array(c.typecode, [c[i] for i in order]) for c in cols]
        keywords = [keywords[i] for i in order]
    uids, modseqs, flags, dates, zones, saved, sizes, blobs = cols
    uidls: dict[int, str] = {}
    if row[-2]:
        for line in row[-2].split("\n"):
            uid, uidl = line.split(" ", 1)
            uidls[int(uid)] = uidl
    hidden = set(_unpack("I", bytes(row[-1]))) if row[-1] else set()
    return MessageColumns(
        mailbox,
        uids,
        modseqs,
        flags,
        keywords,
        dates,
        zones,
        saved,
        sizes,
        blobs,
        uidls,
        frozenset(hidden),
    )
