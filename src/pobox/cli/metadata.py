"""``pobox metadata …``: IMAP METADATA entries (RFC 5464; docs/imap.md) as an administrator sees
them.

The administrator acts for an account, with the account's rights (its own mailboxes: all), by
the rules of :mod:`pobox.service.metadata`; ``""`` as the mailbox means the server, whose
``/shared`` entries (a message of the day in ``/shared/comment``) only an administrator sets —
here, or over IMAP as one of ``[metadata] admins``.
"""

from __future__ import annotations

import argparse

from pobox.errors import InvalidInput
from pobox.service.mail import MailService
from pobox.service.mailboxes import normalise_name
from pobox.service.metadata import INFINITY


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser("metadata", help="IMAP METADATA entries of mailboxes and server")
    actions = group.add_subparsers(dest="metadata_command", metavar="ACTION", required=True)
    show = actions.add_parser(
        "get", help='the entries ADDRESS sees on MAILBOX ("" for the server), or those named'
    )
    show.add_argument("address", metavar="ADDRESS")
    show.add_argument("mailbox", metavar="MAILBOX")
    show.add_argument("entries", metavar="ENTRY", nargs="*", help="default: every entry")
    show.set_defaults(action=cmd_get)
    put = actions.add_parser(
        "set", help='set ENTRY of MAILBOX ("" for the server) to VALUE, as ADDRESS'
    )
    put.add_argument("address", metavar="ADDRESS")
    put.add_argument("mailbox", metavar="MAILBOX")
    put.add_argument("entry", metavar="ENTRY", help="/shared/... or /private/... (ADDRESS's)")
    put.add_argument("value", metavar="VALUE", nargs="?", help="text (UTF-8)")
    put.add_argument("--delete", action="store_true", help="remove the entry instead")
    put.set_defaults(action=cmd_set)


def _mailbox(name: str) -> str:
    return "" if name == "" else normalise_name(name)


def _shown(value: bytes) -> str:
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return repr(value)
    return text if text.isprintable() else repr(text)


async def cmd_get(service: MailService, args: argparse.Namespace) -> int:
    account = await service.accounts.require(args.address)
    wanted = args.entries or ["/private", "/shared"]
    found = await service.metadata.get(
        account, _mailbox(args.mailbox), wanted, depth=0 if args.entries else INFINITY
    )
    for name, value in found.entries:
        print(f"{name}  {_shown(value or b'')}")
    if not found.entries:
        print("no entries")
    return 0


async def cmd_set(service: MailService, args: argparse.Namespace) -> int:
    account = await service.accounts.require(args.address)
    if args.delete == (args.value is not None):
        raise InvalidInput("give either a VALUE or --delete")
    value = None if args.delete else args.value.encode("utf-8")
    mailbox = _mailbox(args.mailbox)
    await service.metadata.set(account, mailbox, [(args.entry, value)], admin=True)
    where = "the server" if mailbox == "" else mailbox
    done = "removed" if value is None else "set"
    print(f"{done} {args.entry.lower()} of {where} for {account.address}")
    return 0
