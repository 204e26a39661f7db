"""UNAUTHENTICATE (RFC 8437): the connection goes back to the not authenticated state.

Everything the login took is given back: the selected mailbox is released without expunging
(as UNSELECT), an APPEND never finishes, NOTIFY stops watching, the per-account session slot is
freed, the app password's revocation hook is unhooked, and what ENABLE turned on is off again
(RFC 8437 §3: a new login starts as on a fresh connection). TLS and COMPRESS stay: they belong
to the connection, not to the user.
"""

from __future__ import annotations

from typing import Any

from pobox import metrics
from pobox.imap import commands as c
from pobox.imap.handlers import append as append_handler
from pobox.imap.handlers import notify as notify_handler
from pobox.imap.session import AUTH, CommandSpec, ImapSession, State


async def release_login(session: ImapSession) -> None:
    """Give back what a login took (the session stays connected, not authenticated)."""
    await append_handler.abort(session)
    notify_handler.close(session)  # NOTIFY SET is the user's (RFC 5465)
    if session.selected is not None:
        await session.select(None)
    account = session.account
    if account is not None:
        if session.holds_slot and session.account_slots is not None:
            session.account_slots.release(account.id)
        metrics.session_closed("imap")
    session.holds_slot = False
    credential = session.credential
    if credential is not None and credential.handle is not None:
        credential.handle.on_revoke = None
    session.account = None
    session.credential = None
    session.enabled.clear()
    session.protocol.utf8 = False
    session.auth_failures = 0
    session.state = State.NOT_AUTHENTICATED


async def unauthenticate(session: ImapSession, cmd: c.Unauthenticate) -> None:
    await release_login(session)
    session.tagged(cmd.tag, "OK", "UNAUTHENTICATE completed")


SPECS: dict[type[Any], CommandSpec] = {
    c.Unauthenticate: CommandSpec(unauthenticate, AUTH),
}
