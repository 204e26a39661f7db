"""Protocol-neutral errors.

Storage and service code raise these; every front end maps them to its own words once
(IMAP ``NO [CODE]``, POP3 ``-ERR [CODE]``, SMTP ``4xx``/``5xx``, CLI exit codes).
"""

from __future__ import annotations


class PoboxError(Exception):
    """Base of every error pobox means to report to a user (never shown as a traceback)."""


class NotFound(PoboxError):
    """An account, mailbox or message that does not exist."""


class AlreadyExists(PoboxError):
    """Creating something whose name is taken."""


class InvalidInput(PoboxError):
    """A value that is not acceptable (bad address, bad mailbox name, bad setting)."""


class NotAllowed(PoboxError):
    """The operation is understood but not permitted (e.g. deleting INBOX)."""


class NoPermission(PoboxError):
    """The access control list of a mailbox does not give the user the right (RFC 4314)."""


class InUse(PoboxError):
    """An exclusive resource (the POP3 maildrop) is held by another session."""


class TooBig(PoboxError):
    """A message or literal exceeds a configured limit."""


class OverQuota(PoboxError):
    """The account's quota would be exceeded."""


class Expunged(PoboxError):
    """The message was expunged by another session."""


class Temporary(PoboxError):
    """Temporary trouble (disk full, database busy): try again later; nothing was lost."""


class ConfigError(PoboxError):
    """A configuration file or command-line value that pobox cannot use."""
