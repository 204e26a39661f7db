"""``pobox reindex [ADDRESS]``: rebuild the full-text index (docs/decisions/full-text-search.md).

The server keeps the index current by itself; this is for an index that should be rebuilt (a
content that could not be read when it was indexed, or after a restore from elsewhere). SEARCH
stays exact meanwhile: what is not indexed (again) yet is scanned.
"""

from __future__ import annotations

import argparse

from pobox.cli.progress import Progress
from pobox.errors import NotFound
from pobox.service.fulltext import reindex
from pobox.service.mail import MailService


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub = commands.add_parser(
        "reindex", help="rebuild the full-text search index of one account or of all"
    )
    sub.add_argument("address", nargs="?", help="only this account's messages")
    sub.add_argument(
        "--missing",
        action="store_true",
        help="only index what is not indexed yet (to finish an interrupted run)",
    )
    sub.add_argument("--quiet", action="store_true", help="print only the summary")
    sub.set_defaults(action=cmd_reindex)


async def cmd_reindex(service: MailService, args: argparse.Namespace) -> int:
    account_id = None
    if args.address:
        account = await service.store.get_account(args.address)
        if account is None:
            raise NotFound(f"no account {args.address}")
        account_id = account.id
    with Progress("reindex", unit="messages", quiet=args.quiet) as bar:
        await reindex(
            service.store,
            account_id,
            missing_only=args.missing,
            started=bar.set_total,
            progress=lambda count, octets: bar.advance(count, nbytes=octets),
        )
    return 0
