"""OBJECTID (RFC 8474): the identifiers IMAP shows for mailboxes and message contents.

``objectid = 1*255(ALPHA / DIGIT / "_" / "-")``. A MAILBOXID stays with the mailbox through
RENAME and is never used again for another mailbox: it joins the mailbox's row id and its
UIDVALIDITY, which the store draws from a counter that never goes back. An EMAILID names the
stored content, which COPY and MOVE share and which a new message never reuses (the content's
id comes from a counter too), so copies of one message have one EMAILID and different messages
never share one. THREADID is NIL: pobox keeps no threads yet (RFC 8474 §5.2 allows that).
Identifiers start with a letter, as the RFC recommends, and are unique per store; restoring or
copying a store to another backend gives new ones.
"""

from __future__ import annotations

import re

_EMAIL = re.compile(r"M([0-9]{1,18})\Z")


def mailbox_id(row_id: int, uidvalidity: int) -> str:
    return f"F{row_id}-{uidvalidity}"


def email_id(blob: int) -> str:
    return f"M{blob}"


def email_blob(objectid: str) -> int | None:
    """The content an EMAILID names, or None for one pobox never gave out."""
    match = _EMAIL.match(objectid)
    return int(match.group(1)) if match else None
