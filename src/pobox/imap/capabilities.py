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
    "SORT",
    "SORT=DISPLAY",
    "ESORT",
    # RFC 5267 (docs/imap.md): RETURN (UPDATE), CANCELUPDATE; RFC 9394 paged SEARCH and FETCH
    "CONTEXT=SEARCH",
    "CONTEXT=SORT",
    "PARTIAL",
    "NOTIFY",  # RFC 5465 (docs/imap.md)
    "THREAD=ORDEREDSUBJECT",
    "THREAD=REFERENCES",
    "STATUS=SIZE",
    "BINARY",
    "UTF8=ACCEPT",
    "COMPRESS=DEFLATE",
    "MULTIAPPEND",
    "CATENATE",
    "URLAUTH",  # RFC 4467 (docs/imap.md): INTERNAL, HMAC-SHA256
    "WITHIN",
    "SAVEDATE",
    "OBJECTID",
    "CONDSTORE",
    "QRESYNC",
    "ACL",
    "RIGHTS=texk",
    "LIST-MYRIGHTS",
    # RFC 5464 (server and mailbox annotations) and RFC 9590 (docs/imap.md)
    "METADATA",
    "LIST-METADATA",
    # RFC 9208 (docs/quota.md); SETQUOTA answers NO [NOPERM] but to [quota] admins
    "QUOTA",
    "QUOTA=RES-STORAGE",
    "QUOTA=RES-MESSAGE",
    "QUOTA=RES-MAILBOX",
    "QUOTASET",
    "UNAUTHENTICATE",
    "PREVIEW",
    "REPLACE",
)

#: What ENABLE can turn on.
ENABLEABLE = frozenset({"IMAP4REV2", "UTF8=ACCEPT", "CONDSTORE", "QRESYNC"})


def capabilities(
    *,
    authenticated: bool,
    append_limit: int,
    starttls: bool = False,
    login_disabled: bool = False,
) -> tuple[str, ...]:
    """``starttls``: TLS can still be started; ``login_disabled``: passwords may not cross this
    connection (RFC 9051 §6.2.3), so LOGINDISABLED and no plaintext SASL mechanism."""
    if not authenticated:
        tls = ("STARTTLS",) if starttls else ()
        if login_disabled:
            return (*BASE, *tls, "LOGINDISABLED")
        return (*BASE, *tls, *(f"AUTH={m}" for m in MECHANISMS))
    return (*BASE, *AFTER_LOGIN, f"APPENDLIMIT={append_limit}")
