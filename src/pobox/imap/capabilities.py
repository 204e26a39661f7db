"""What pobox's IMAP server advertises, computed from state (never more than is implemented)."""

from __future__ import annotations

from pobox.sasl.mechanisms import MECHANISMS

#: Always listed: IMAP4rev1 next to IMAP4rev2 (clients that only know rev1 look for it).
BASE = ("IMAP4rev1", "IMAP4rev2", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE")

AFTER_LOGIN = (
    "NAMESPACE",
    "UNSELECT",
    "UIDPLUS",
    "MOVE",
    "CHILDREN",
    "SPECIAL-USE",
    "CREATE-SPECIAL-USE",
    "LIST-EXTENDED",
    "LIST-STATUS",
    "ESEARCH",
    "SEARCHRES",
    "STATUS=SIZE",
    "BINARY",
    "UTF8=ACCEPT",
)

#: What ENABLE can turn on.
ENABLEABLE = frozenset({"IMAP4REV2", "UTF8=ACCEPT"})


def capabilities(*, authenticated: bool, append_limit: int) -> tuple[str, ...]:
    if not authenticated:
        return (*BASE, *(f"AUTH={m}" for m in MECHANISMS))
    return (*BASE, *AFTER_LOGIN, f"APPENDLIMIT={append_limit}")
