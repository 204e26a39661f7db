"""``pobox dkim …``: the DKIM signing keys of the domains pobox sends for (docs/relay.md).

``generate DOMAIN [--selector S]`` makes an RSA 2048 key, keeps it in the store (every node of a
PostgreSQL cluster signs with it) and prints the TXT record to publish; ``show DOMAIN`` prints
the record again. Outgoing mail is signed as soon as the key exists: publish the record first.
"""

from __future__ import annotations

import argparse

from pobox.errors import AlreadyExists, NotFound
from pobox.relay import dkim
from pobox.service.mail import MailService
from pobox.store.api import DkimKey


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser("dkim", help="DKIM signing keys for outgoing mail")
    actions = group.add_subparsers(dest="dkim_command", metavar="ACTION", required=True)
    generate = actions.add_parser(
        "generate", help="make a signing key for a domain and print its DNS record"
    )
    generate.add_argument("domain", metavar="DOMAIN")
    generate.add_argument(
        "--selector",
        default=dkim.DEFAULT_SELECTOR,
        help=f"the DNS selector (default {dkim.DEFAULT_SELECTOR})",
    )
    generate.add_argument(
        "--force", action="store_true", help="replace the domain's key (publish the new record)"
    )
    generate.set_defaults(action=cmd_generate)
    show = actions.add_parser("show", help="print a domain's DNS record")
    show.add_argument("domain", metavar="DOMAIN")
    show.set_defaults(action=cmd_show)


def _print_record(key: DkimKey) -> None:
    print(f"DKIM key of {key.domain}, selector {key.selector}. Publish this TXT record:")
    print()
    print(f"  name:  {dkim.record_name(key)}")
    print(f"  value: {dkim.public_key_text(key)}")
    print()
    print("as a zone-file line:")
    print(dkim.zone_record(key))


async def cmd_generate(service: MailService, args: argparse.Namespace) -> int:
    domain = dkim.check_domain(args.domain)
    selector = dkim.check_selector(args.selector)
    existing = await service.store.get_dkim_key(domain)
    if existing is not None and not args.force:
        raise AlreadyExists(
            f"{domain} has a DKIM key already (selector {existing.selector}); `pobox dkim show"
            f" {domain}` prints its record, --force replaces it"
        )
    key = dkim.generate_key(domain, selector)
    await service.store.save_dkim_key(key)
    _print_record(key)
    return 0


async def cmd_show(service: MailService, args: argparse.Namespace) -> int:
    domain = dkim.check_domain(args.domain)
    key = await service.store.get_dkim_key(domain)
    if key is None:
        raise NotFound(f"{domain} has no DKIM key (pobox dkim generate {domain} makes one)")
    _print_record(key)
    return 0
