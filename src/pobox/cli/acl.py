"""``pobox acl …``: who may use which of an account's folders (RFC 4314 rights; docs/sharing.md).

The administrator acts for the owner: the same rules as the owner's SETACL over IMAP, checked by
:mod:`pobox.service.acl`. A rights argument or identifier that starts with ``-`` (remove rights,
negative rights) goes after ``--``: ``pobox acl set anna@example.org Team -- ben@example.org -w``.
"""

from __future__ import annotations

import argparse

from pobox.service.acl import ALL_RIGHTS, shown
from pobox.service.mail import MailService
from pobox.service.mailboxes import normalise_name


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser("acl", help="shared folders: rights of other accounts")
    actions = group.add_subparsers(dest="acl_command", metavar="ACTION", required=True)
    put = actions.add_parser(
        "set",
        help="give IDENTIFIER rights on FOLDER of ADDRESS (RIGHTS: lrswipkxtea, +add, -remove)",
    )
    put.add_argument("address", metavar="ADDRESS", help="the folder's owner")
    put.add_argument("folder", metavar="FOLDER")
    put.add_argument(
        "identifier", metavar="IDENTIFIER", help="an account address, anyone or authenticated"
    )
    put.add_argument("rights", metavar="RIGHTS")
    put.set_defaults(action=cmd_set)
    drop = actions.add_parser("del", help="remove IDENTIFIER's entry from FOLDER of ADDRESS")
    drop.add_argument("address", metavar="ADDRESS")
    drop.add_argument("folder", metavar="FOLDER")
    drop.add_argument("identifier", metavar="IDENTIFIER")
    drop.set_defaults(action=cmd_del)
    show = actions.add_parser(
        "list", help="the access lists of ADDRESS's folders, and what is shared with ADDRESS"
    )
    show.add_argument("address", metavar="ADDRESS")
    show.add_argument("folder", metavar="FOLDER", nargs="?")
    show.set_defaults(action=cmd_list)


async def cmd_set(service: MailService, args: argparse.Namespace) -> int:
    owner = await service.accounts.require(args.address)
    folder = normalise_name(args.folder)
    _access, rights = await service.acl.set_acl(owner, folder, args.identifier, args.rights)
    who = await service.acl.identifier(args.identifier)
    if rights:
        print(f"{who} has {shown(rights)} on {folder} of {owner.address}")
    else:
        print(f"{who} has no entry on {folder} of {owner.address} any more")
    return 0


async def cmd_del(service: MailService, args: argparse.Namespace) -> int:
    owner = await service.accounts.require(args.address)
    folder = normalise_name(args.folder)
    await service.acl.delete_acl(owner, folder, args.identifier)
    print(f"removed {args.identifier} from {folder} of {owner.address}")
    return 0


async def cmd_list(service: MailService, args: argparse.Namespace) -> int:
    owner = await service.accounts.require(args.address)
    if args.folder is not None:
        folders = [(await service.acl.access(owner, normalise_name(args.folder))).mailbox]
    else:
        folders = await service.store.list_mailboxes(owner.id)
    shared = False
    for mailbox in folders:
        entries = await service.acl.acl_of(mailbox)
        if not entries and args.folder is None:
            continue
        shared = True
        print(f"{mailbox.name}")
        print(f"  {owner.address.lower()}  {shown(ALL_RIGHTS)}  (owner)")
        for identifier, rights in entries:
            print(f"  {identifier}  {shown(rights)}")
    if args.folder is None:
        if not shared:
            print(f"{owner.address} shares no folder")
        visible = await service.acl.shared_with(owner)
        if visible:
            print(f"shared with {owner.address}:")
            for name, (_mailbox, rights) in sorted(visible.items()):
                print(f"  {name}  {shown(rights)}")
    return 0
