"""``pobox policy …``: folder policies, mailboxes that tidy themselves (docs/policies.md).

``set ADDRESS FOLDER KEY=VALUE…`` stores settings (FOLDER: a mailbox name, a special-use
attribute such as ``\\Trash``, or ``*`` for every folder of the account), ``del`` removes them,
``list`` shows the effective policy of every folder and where each setting comes from, ``run``
applies the policies now (the server's sweeper does it every ``[policy] interval``).
"""

from __future__ import annotations

import argparse
import json
import sys

from pobox.cli.progress import Progress
from pobox.config import POLICY_KEYS
from pobox.errors import InvalidInput, Temporary
from pobox.service.folder_policy import EVERY_FOLDER, Outcome
from pobox.service.mail import MailService
from pobox.store.api import SPECIAL_USES, Account


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    policy = commands.add_parser(
        "policy", help="folder policies: expunge or archive old mail (docs/policies.md)"
    )
    actions = policy.add_subparsers(dest="policy_command", metavar="ACTION", required=True)
    keys = ", ".join(f"{k}=…" for k in POLICY_KEYS)
    sub = actions.add_parser(
        "set",
        help=f"set a folder's policy ({keys})",
        description="Durations are a number followed by h, d or w (30d), or off; "
        "archive-by is year or none. FOLDER is a mailbox name, a special-use attribute "
        "such as '\\Trash', or '*' for every folder of the account.",
    )
    sub.add_argument("address", metavar="ADDRESS")
    sub.add_argument("folder", metavar="FOLDER")
    sub.add_argument("settings", metavar="KEY=VALUE", nargs="+")
    sub.set_defaults(action=cmd_set)
    sub = actions.add_parser("del", help="remove a folder's stored settings (all, or KEYs)")
    sub.add_argument("address", metavar="ADDRESS")
    sub.add_argument("folder", metavar="FOLDER")
    sub.add_argument("keys", metavar="KEY", nargs="*")
    sub.set_defaults(action=cmd_del)
    sub = actions.add_parser(
        "list", help="the effective policy of every folder and where it comes from"
    )
    sub.add_argument("address", metavar="ADDRESS")
    sub.add_argument("--json", action="store_true", help="machine-readable output")
    sub.set_defaults(action=cmd_list)
    sub = actions.add_parser("run", help="apply the folder policies now")
    sub.add_argument("address", metavar="ADDRESS", nargs="?", help="only this account")
    sub.add_argument("--dry-run", action="store_true", help="say what would go, change nothing")
    sub.add_argument("--quiet", action="store_true", help="print only the summary")
    sub.set_defaults(action=cmd_run)


def _folder(folder: str) -> str:
    folder = folder.strip()
    if folder.startswith("\\"):
        canonical = {use.lower(): use for use in SPECIAL_USES}.get(folder.lower())
        if canonical is None:
            uses = ", ".join(sorted(SPECIAL_USES))
            raise InvalidInput(f"{folder} is no special-use attribute (one of {uses})")
        return canonical
    return folder


async def _account(service: MailService, address: str) -> Account:
    return await service.accounts.require(address)


async def cmd_set(service: MailService, args: argparse.Namespace) -> int:
    account = await _account(service, args.address)
    settings: dict[str, str | None] = {}
    for word in args.settings:
        key, equals, value = word.partition("=")
        if not equals or not value:
            raise InvalidInput(f"{word!r} is not KEY=VALUE (e.g. expunge-after=30d)")
        settings[key.strip().lower()] = value
    folder = _folder(args.folder)
    await service.folder_policies.set_policy(account, folder, settings)
    if folder != EVERY_FOLDER and not folder.startswith("\\"):
        names = {m.name for m in await service.store.list_mailboxes(account.id)}
        if folder not in names:
            print(f"note: {account.address} has no folder {folder} (yet)")
    return 0


async def cmd_del(service: MailService, args: argparse.Namespace) -> int:
    account = await _account(service, args.address)
    removed = await service.folder_policies.delete_policy(
        account, _folder(args.folder), [k.lower() for k in args.keys]
    )
    if not removed:
        print(f"pobox: {account.address} has no stored policy for {args.folder}", file=sys.stderr)
        return 1
    return 0


async def cmd_list(service: MailService, args: argparse.Namespace) -> int:
    account = await _account(service, args.address)
    effective = await service.folder_policies.effective(account)
    stored = await service.folder_policies.stored(account)
    if args.json:
        print(
            json.dumps(
                {
                    "folders": {
                        e.mailbox.name: {
                            k: {"value": s.value, "from": s.source}
                            for k, s in sorted(e.settings.items())
                        }
                        for e in effective
                    },
                    "stored": [{"folder": p.folder, p.key: p.value} for p in stored],
                },
                indent=2,
            )
        )
        return 0
    width = max((len(e.mailbox.name) for e in effective), default=6)
    for e in effective:
        parts = [
            f"{key}={e.settings[key].value} ({e.settings[key].source})"
            for key in POLICY_KEYS
            if key in e.settings
        ]
        print(f"{e.mailbox.name:<{width}}  {', '.join(parts) or '-'}")
    general = [p for p in stored if p.folder == EVERY_FOLDER or p.folder.startswith("\\")]
    if general:
        print("account settings:")
        for p in general:
            print(f"  {p.folder} {p.key}={p.value}")
    return 0


def _report(outcome: Outcome, dry_run: bool) -> None:
    gone, moved = ("would expunge", "would archive") if dry_run else ("expunged", "archived")
    for (address, mailbox), count in sorted(outcome.expunged.items()):
        print(f"{address} {mailbox}: {gone} {count}")
    for (address, mailbox, target), count in sorted(outcome.archived.items()):
        print(f"{address} {mailbox}: {moved} {count} into {target}")
    print(f"{gone} {outcome.total_expunged} messages, {moved} {outcome.total_archived}")
    for address, error in sorted(outcome.failed.items()):
        print(f"pobox: the policies of {address} failed: {error}", file=sys.stderr)


async def cmd_run(service: MailService, args: argparse.Namespace) -> int:
    accounts = None if args.address is None else [await _account(service, args.address)]
    policies = service.folder_policies
    if args.dry_run:
        planned = await policies.sweep(accounts, dry_run=True)
        assert planned is not None  # a dry run takes no lock
        _report(planned, True)
        return 1 if planned.failed else 0
    with Progress("policy run", unit="messages", quiet=args.quiet) as bar:
        planned = await policies.sweep(accounts, dry_run=True)
        assert planned is not None
        bar.set_total(planned.total_expunged + planned.total_archived)
        outcome = await policies.sweep(accounts, progress=bar.advance)
    if outcome is None:
        raise Temporary("another process is applying the folder policies; try again later")
    _report(outcome, False)
    return 1 if outcome.failed else 0
