"""The command table: which handler runs each command, in which states (Dovecot's idea).

Each family of commands lives in its own module and exports ``SPECS``: a mapping from the
command's type (pobox.imap.commands) to a :class:`~pobox.imap.session.CommandSpec`.
"""

from __future__ import annotations

from typing import Any

from pobox.imap.handlers import (
    acl,
    append,
    auth,
    basic,
    context,
    mailboxes,
    messages,
    metadata,
    notify,
    quota,
    search,
    select,
    unauthenticate,
    urlauth,
)
from pobox.imap.session import CommandSpec

COMMANDS: dict[type[Any], CommandSpec] = {}
for _module in (
    basic,
    auth,
    select,
    append,
    messages,
    search,
    mailboxes,
    acl,
    quota,
    metadata,
    unauthenticate,
    context,
    notify,
    urlauth,
):
    COMMANDS.update(_module.SPECS)
