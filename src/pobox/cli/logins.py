"""``pobox user login add|list|del``: app passwords, one per person or device.

docs/app-passwords.md describes them.

``add`` prints the generated password once (it is kept only as a hash); ``list`` shows each
label with when it was made and last used, and from where; ``del`` revokes one: new logins with
it fail at once, and the sessions it opened end (docs/app-passwords.md), in every worker and on
every node. These work on the store, so they work while the server runs.
"""

from __future__ import annotations

import argparse
import json
import shlex
from datetime import UTC, datetime

from pobox.service.logins import Logins
from pobox.service.mail import MailService
from pobox.store.api import Login


def add_parser(user: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    login = user.add_parser(
        "login",
        help="app passwords: one per person or device, revocable one at a time",
        description="App passwords: several people or devices on one account, each with a"
        " password of its own that can be revoked alone. The account's password keeps working.",
    )
    actions = login.add_subparsers(dest="login_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="make an app password and print it (shown once)")
    add.add_argument("address")
    add.add_argument("--label", required=True, help='who or what uses it, e.g. "Anna\'s phone"')
    add.set_defaults(action=cmd_add)
    listing = actions.add_parser("list", help="labels, created, last used, last address")
    listing.add_argument("address")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(action=cmd_list)
    delete = actions.add_parser("del", help="revoke an app password (its sessions end)")
    delete.add_argument("address")
    delete.add_argument("label")
    delete.set_defaults(action=cmd_del)


def _when(moment: float | None) -> str:
    if moment is None:
        return "never"
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _as_json(login: Login) -> dict[str, object]:
    return {
        "label": login.label,
        "created": _when(login.created),
        "last_used": None if login.last_used is None else _when(login.last_used),
        "last_address": login.last_address,
    }


async def cmd_add(service: MailService, args: argparse.Namespace) -> int:
    made = await Logins(service.store).add(args.address, args.label)
    print(f"app password for {args.address} labelled {made.login.label!r}:")
    print()
    print(f"    {made.password}")
    print()
    print("It is shown only now: enter it in the mail client as the password (with or without")
    revoke = shlex.join(["pobox", "user", "login", "del", args.address, made.login.label])
    print(f"the hyphens). Revoke it with: {revoke}")
    return 0


async def cmd_list(service: MailService, args: argparse.Namespace) -> int:
    logins = await Logins(service.store).list(args.address)
    if args.json:
        print(json.dumps([_as_json(x) for x in logins], indent=2, sort_keys=True))
        return 0
    if not logins:
        print(f"{args.address} has no app passwords (only its account password)")
        return 0
    width = max(5, *(len(x.label) for x in logins))
    print(f"{'LABEL':{width}}  {'CREATED':20}  {'LAST USED':20}  LAST ADDRESS")
    for login in logins:
        print(
            f"{login.label:{width}}  {_when(login.created):20}  {_when(login.last_used):20}"
            f"  {login.last_address or '-'}"
        )
    return 0


async def cmd_del(service: MailService, args: argparse.Namespace) -> int:
    deleted = await Logins(service.store).delete(args.address, args.label)
    print(f"revoked the app password {deleted.label!r} of {args.address}")
    return 0
