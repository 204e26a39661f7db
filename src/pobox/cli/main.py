"""``pobox``: the command line. Every command goes through the mail service.

Only ``pobox init`` (and ``pobox serve --init``) create a store: every other command stops with a
message naming the data directory when there is none, so that a mistyped ``--data`` cannot
quietly start an empty installation.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from pobox import __version__
from pobox.config import Config, config_from_environment
from pobox.errors import ConfigError, NotFound, PoboxError, Temporary
from pobox.service.accounts import ACCOUNT_SETTINGS
from pobox.service.mail import MailService

# sysexits.h values, as an MTA such as Postfix reads them from `pobox deliver`
EX_NOUSER = 67
EX_CANTCREAT = 73
EX_TEMPFAIL = 75
EX_USAGE = 64


EX_NOT_RUNNING = 3
T = TypeVar("T")
EX_INTERNAL = 70

EXIT_CODES = """\
exit codes:
  0    done
  1    failed: no such account, invalid input, no store (run `pobox init`), ...
  2    wrong command line (unknown command or option)
  3    status, auth blocks, auth unblock: no server is running on this store
  64   configuration error (the message names the file and the key)
  67   deliver: no such recipient (the MTA bounces the message)
  73   deliver: the recipient's mailbox is full (quota; the MTA bounces the message)
  70   internal error (a bug: please report it; POBOX_DEBUG=1 shows the traceback)
  75   temporary failure (store busy or unavailable, disk full, a full mailbox with
       [quota] over_quota_tempfail; try again later)
  130  interrupted (Ctrl-C)
"""

SETTING_HELP = {
    "pop3.retention": "what POP3 DELE + QUIT does for this account: delete, keep or keep-days:N",
    "quota.storage": "octets of mail, e.g. 2G (K, M, G, T: 1024-based); 0: no limit",
    "quota.messages": "number of messages; 0: no limit",
    "quota.mailboxes": "number of mailboxes; 0: no limit",
}


class CliError(PoboxError):
    pass


class NoStore(CliError):
    """The data directory holds no store: only ``pobox init`` creates one."""


def _has_store(config: Config) -> bool:
    """False when the configured store is SQLite and *data_dir* holds no ``pobox.db``.
    A PostgreSQL store is checked when it is opened (a database that does not exist is an
    error there)."""
    if config.store not in ("sqlite", ""):
        return True
    return (config.data_path / "pobox.db").is_file()


def require_store(config: Config) -> None:
    if not _has_store(config):
        where = config.data_path
        what = "does not exist" if not where.exists() else "holds no pobox store"
        raise NoStore(
            f"the data directory {where} {what}: run `pobox init` to create a store"
            f" (pobox --data {where} init), or check --data, POBOX_DATA and data_dir"
        )


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
    elif sys.stdin.isatty():
        try:
            password = getpass.getpass("Password: ")
            if getpass.getpass("Again: ") != password:
                raise CliError("the passwords do not match")
        except EOFError:
            print(file=sys.stderr)
            raise CliError("no password given (end of input); nothing changed") from None
    else:
        raise CliError("no password: use --password-stdin to read it from standard input")
    if not password:
        raise CliError("the password must not be empty")
    return password


async def _with_service(config: Config, action: Callable[[MailService], Awaitable[int]]) -> int:
    service = await MailService.open(config)
    try:
        return await action(service)
    finally:
        await service.close()


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


# commands -----------------------------------------------------------------------------------
def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


async def cmd_init(service: MailService, args: argparse.Namespace) -> int:
    print(f"store ready in {service.config.data_path.resolve()}")
    if args.demo:
        if await service.accounts.list():
            print("accounts exist already; no demo account created")
        else:
            await service.accounts.add("demo@localhost", "demo")
            print("created the account demo@localhost with password 'demo'")
        from pobox.net.tls import ensure_dev_certificate

        made = ensure_dev_certificate(service.config)
        if made is not None:
            print(f"created a self-signed development certificate in {made} (localhost, 127.0.0.1)")
    return 0


async def cmd_user_add(service: MailService, args: argparse.Namespace) -> int:
    account = await service.accounts.add(args.address, _read_password(args))
    print(f"created {account.address}")
    return 0


async def cmd_user_passwd(service: MailService, args: argparse.Namespace) -> int:
    await service.accounts.set_password(args.address, _read_password(args))
    print(f"password changed for {args.address}")
    return 0


async def cmd_user_del(service: MailService, args: argparse.Namespace) -> int:
    await service.accounts.delete(args.address)
    print(f"deleted {args.address} and all its mail")
    return 0


async def cmd_user_list(service: MailService, args: argparse.Namespace) -> int:
    aliases: dict[str, list[str]] = {}
    for alias, address in await service.store.list_aliases():
        aliases.setdefault(address, []).append(alias)
    accounts = await service.accounts.list()
    if args.json:
        _print_json(
            [
                {
                    "address": account.address,
                    "aliases": sorted(aliases.get(account.address, [])),
                    "settings": dict(account.settings),
                }
                for account in accounts
            ]
        )
        return 0
    for account in accounts:
        extra = ""
        if account.address in aliases:
            extra = "  aliases: " + ", ".join(aliases[account.address])
        settings = " ".join(f"{k}={v}" for k, v in sorted(account.settings.items()))
        print(f"{account.address}{extra}{'  ' + settings if settings else ''}")
    return 0


async def cmd_user_set(service: MailService, args: argparse.Namespace) -> int:
    for assignment in args.settings:
        key, sep, value = assignment.partition("=")
        if not sep:
            raise CliError(f"{assignment!r}: write settings as KEY=VALUE (KEY= to reset)")
        await service.accounts.set_setting(args.address, key.strip(), value.strip() or None)
        print(f"{args.address}: {key.strip()} = {value.strip() or '(server default)'}")
    return 0


async def cmd_alias_add(service: MailService, args: argparse.Namespace) -> int:
    await service.accounts.add_alias(args.alias, args.address)
    print(f"mail for {args.alias} now goes to {args.address}")
    return 0


async def cmd_alias_del(service: MailService, args: argparse.Namespace) -> int:
    await service.accounts.remove_alias(args.alias)
    print(f"removed alias {args.alias}")
    return 0


async def cmd_alias_list(service: MailService, args: argparse.Namespace) -> int:
    aliases = await service.store.list_aliases()
    if args.json:
        _print_json([{"alias": alias, "address": address} for alias, address in aliases])
        return 0
    for alias, address in aliases:
        print(f"{alias} -> {address}")
    return 0


async def cmd_mailbox_list(service: MailService, args: argparse.Namespace) -> int:
    summaries = await service.mailbox_summaries(args.address)
    if args.json:
        _print_json(
            [
                {
                    "mailbox": s.mailbox.name,
                    "messages": s.status.messages,
                    "unseen": s.status.unseen,
                    "size": s.status.size,
                }
                for s in summaries
            ]
        )
        return 0
    width = max((len(s.mailbox.name) for s in summaries), default=7)
    print(f"{'MAILBOX':{width}}  {'MESSAGES':>8}  {'UNSEEN':>6}  {'SIZE':>10}")
    for summary in summaries:
        status = summary.status
        print(
            f"{summary.mailbox.name:{width}}  {status.messages:>8}  {status.unseen:>6}"
            f"  {_human(status.size):>10}"
        )
    return 0


async def cmd_deliver(service: MailService, args: argparse.Namespace) -> int:
    from pobox.service.delivery import Envelope

    content = sys.stdin.buffer.read()
    limit = service.config.delivery.max_message_size
    if len(content) > limit:
        print(
            f"pobox: message of {len(content)} bytes exceeds the limit of {limit}", file=sys.stderr
        )
        return 1
    envelope = Envelope(sender=args.sender, recipients=(args.address,), protocol="local")
    (result,) = await service.delivery.deliver(envelope, content)
    if result.delivered:
        return 0
    print(f"pobox: {args.address}: {result.reason}", file=sys.stderr)
    if result.temporary:
        return EX_TEMPFAIL
    # over quota for good: "can't create output" (an MTA bounces it as a mailbox problem)
    return EX_CANTCREAT if result.over_quota else EX_NOUSER


async def cmd_pop3_deleted(service: MailService, args: argparse.Namespace) -> int:
    items = await service.recoverable(args.address, args.since)
    if args.json:
        _print_json(
            [
                {
                    "deleted_at": item.deleted_at.isoformat(),
                    "uidl": item.uidl,
                    "mailbox": item.mailbox_name,
                    "size": item.size,
                    "state": "hidden" if item.still_present else "expunged",
                }
                for item in items
            ]
        )
        return 0
    uidl = max((len(item.uidl) for item in items), default=4)
    box = max((len(item.mailbox_name) for item in items), default=7)
    uidl, box = max(uidl, 4), max(box, 7)
    print(f"{'DELETED':16}  {'UIDL':{uidl}}  {'MAILBOX':{box}}  {'SIZE':>10}  STATE")
    for item in items:
        where = "hidden from POP3" if item.still_present else "expunged"
        print(
            f"{item.deleted_at:%Y-%m-%d %H:%M}  {item.uidl:{uidl}}  {item.mailbox_name:{box}}"
            f"  {item.size:>10}  {where}"
        )
    print(f"{len(items)} recoverable message(s)")
    return 0


async def cmd_pop3_undelete(service: MailService, args: argparse.Namespace) -> int:
    count = await service.undelete(args.address, args.since)
    print(f"restored {count} message(s) for {args.address}")
    return 0


async def cmd_sweep(service: MailService, args: argparse.Namespace) -> int:
    expunged, purged = await service.policies.sweep()
    print(f"retention: expunged {expunged} message(s), dropped {purged} recovery copies")
    return 0


async def cmd_check(service: MailService, args: argparse.Namespace) -> int:
    problems = await service.store.check(repair=args.repair)
    for problem in problems:
        print(problem)
    if not problems:
        print("the store is consistent")
        return 0
    print(f"{len(problems)} problem(s){' (repaired what could be)' if args.repair else ''}")
    return 0 if args.repair else 1


# the parser -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pobox",
        description="pobox mail server",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pobox {__version__}")
    parser.add_argument("--config", metavar="FILE", help="TOML configuration (or POBOX_CONFIG)")
    parser.add_argument("--data", metavar="DIR", help="data directory (or POBOX_DATA)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="run every listener")
    serve.add_argument(
        "--workers",
        metavar="N|auto",
        help="worker processes, or auto for one per core (default: server.workers, auto)",
    )
    serve.add_argument(
        "--init",
        action="store_true",
        help="create the store first if there is none (like `pobox init`)",
    )
    serve.set_defaults(demo=False)

    status = commands.add_parser(
        "status", help="open connections of the running server, per listener and client address"
    )
    status.add_argument("--json", action="store_true", help="print the workers' raw counters")

    auth = commands.add_parser("auth", help="failed-login blocks of the running server")
    auth_cmds = auth.add_subparsers(dest="auth_command", metavar="ACTION", required=True)
    sub = auth_cmds.add_parser(
        "blocks", help="addresses and account names blocked now, in every worker"
    )
    sub.add_argument("--json", action="store_true", help="machine-readable output")
    sub = auth_cmds.add_parser(
        "unblock",
        help="lift the block on an IP address (its /64 for IPv6) or an account name, in every"
        " worker, and forget its failures",
    )
    sub.add_argument("target", metavar="ADDRESS|IP")

    init = commands.add_parser(
        "init",
        help="create a new store in the data directory (or the PostgreSQL database)",
        description="Create a new store (or bring an existing one up to date). The only"
        " command, with `serve --init`, that creates a store.",
    )
    init.add_argument(
        "--demo",
        action="store_true",
        help="create demo@localhost (password demo) if there is no account yet, and a"
        " self-signed development certificate",
    )
    init.set_defaults(action=cmd_init, creates=True)
    commands.add_parser(
        "migrate",
        help="upgrade an existing store's schema to this pobox version",
        description="Upgrade the schema of an existing store to this version of pobox (every"
        " command does this when it opens the store; run it after an upgrade to do it once, in"
        " advance). Never creates a store: see `pobox init`.",
    ).set_defaults(action=cmd_init, demo=False)

    user = commands.add_parser("user", help="accounts").add_subparsers(
        dest="user_command", metavar="ACTION", required=True
    )
    for name, action, helptext in (
        ("add", cmd_user_add, "create an account"),
        ("passwd", cmd_user_passwd, "change a password"),
    ):
        sub = user.add_parser(name, help=helptext)
        sub.add_argument("address")
        sub.add_argument(
            "--password-stdin",
            action="store_true",
            help="read the password from the first line of standard input",
        )
        sub.set_defaults(action=action)
    sub = user.add_parser("del", help="delete an account and all its mail")
    sub.add_argument("address")
    sub.set_defaults(action=cmd_user_del)
    sub = user.add_parser("list", help="list accounts with their aliases and settings")
    sub.add_argument("--json", action="store_true", help="machine-readable output")
    sub.set_defaults(action=cmd_user_list)
    keys = "\n".join(f"  {key:16} {SETTING_HELP.get(key, '')}" for key in sorted(ACCOUNT_SETTINGS))
    sub = user.add_parser(
        "set",
        help="set per-account settings, e.g. pop3.retention=keep",
        epilog=f"keys:\n{keys}\n\nKEY= (nothing after =) goes back to the server's default.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.add_argument("address")
    sub.add_argument("settings", nargs="+", metavar="KEY=VALUE")
    sub.set_defaults(action=cmd_user_set)
    from pobox.cli import logins  # `pobox user login add|list|del` (docs/app-passwords.md)

    logins.add_parser(user)

    alias = commands.add_parser("alias", help="addresses that deliver to an account")
    alias_cmds = alias.add_subparsers(dest="alias_command", metavar="ACTION", required=True)
    sub = alias_cmds.add_parser("add", help="add ALIAS for ADDRESS")
    sub.add_argument("alias")
    sub.add_argument("address")
    sub.set_defaults(action=cmd_alias_add)
    sub = alias_cmds.add_parser("del", help="remove an alias")
    sub.add_argument("alias")
    sub.set_defaults(action=cmd_alias_del)
    sub = alias_cmds.add_parser("list", help="list aliases")
    sub.add_argument("--json", action="store_true", help="machine-readable output")
    sub.set_defaults(action=cmd_alias_list)

    mailbox = commands.add_parser("mailbox", help="mailboxes of an account")
    mailbox_cmds = mailbox.add_subparsers(dest="mailbox_command", metavar="ACTION", required=True)
    sub = mailbox_cmds.add_parser("list", help="mailboxes with message count, unseen and size")
    sub.add_argument("address")
    sub.add_argument("--json", action="store_true", help="machine-readable output (size in bytes)")
    sub.set_defaults(action=cmd_mailbox_list)

    deliver = commands.add_parser("deliver", help="deliver one message from standard input")
    deliver.add_argument("address")
    deliver.add_argument("--from", dest="sender", default="", help="envelope sender")
    deliver.set_defaults(action=cmd_deliver)

    pop3 = commands.add_parser("pop3", help="POP3 recovery")
    pop3_cmds = pop3.add_subparsers(dest="pop3_command", metavar="ACTION", required=True)
    for name, action, helptext in (
        ("deleted", cmd_pop3_deleted, "list what POP3 clients deleted that can be recovered"),
        ("undelete", cmd_pop3_undelete, "put back what POP3 clients deleted"),
    ):
        sub = pop3_cmds.add_parser(name, help=helptext)
        sub.add_argument("address")
        sub.add_argument("--since", metavar="DATE", help="only what was deleted since DATE")
        if name == "deleted":
            sub.add_argument("--json", action="store_true", help="machine-readable output")
        sub.set_defaults(action=action)

    check = commands.add_parser("check", help="verify the store")
    check.add_argument("--repair", action="store_true", help="fix what can safely be fixed")
    check.set_defaults(action=cmd_check)

    commands.add_parser("sweep", help="apply retention policies now").set_defaults(action=cmd_sweep)

    from pobox.cli import reindex

    reindex.add_parser(commands)

    # `pobox store copy|migrate`: backend to backend, without opening the configured store
    from pobox.cli import store_copy

    store_copy.add_parser(commands)

    # `pobox backup`, `pobox backup verify`, `pobox restore` (docs/backup.md)
    from pobox.cli import backup

    backup.add_parser(commands)

    # `pobox export`, `pobox import` (docs/backup.md)
    from pobox.cli import transfer

    transfer.add_parser(commands)

    # `pobox queue …` and `pobox dkim …`: outbound mail (docs/relay.md)
    from pobox.cli import dkim, queue

    queue.add_parser(commands)
    dkim.add_parser(commands)

    # `pobox policy …`: folder policies (docs/policies.md)
    from pobox.cli import policy

    policy.add_parser(commands)

    # `pobox acl …`: shared folders (docs/sharing.md)
    from pobox.cli import acl

    acl.add_parser(commands)

    # `pobox metadata …`: IMAP METADATA entries (docs/imap.md)
    from pobox.cli import metadata

    metadata.add_parser(commands)
    return parser


def _serve(config: Config, args: argparse.Namespace) -> int:
    from pobox.config import resolve_workers
    from pobox.log import setup_logging
    from pobox.server import announce, run

    try:
        workers = resolve_workers(
            args.workers if args.workers is not None else config.server.workers
        )
    except ValueError as exc:
        raise CliError(f"--{exc}") from None
    if workers < 1:
        raise CliError("--workers must be at least 1")
    if args.init and not _has_store(config):
        asyncio.run(_with_service(config, lambda service: cmd_init(service, args)))
    require_store(config)
    setup_logging(
        config.server.log_level,
        log_format=config.server.log_format,
        log_file=config.server.log_file,
    )

    def ready(running: Any) -> None:
        print(announce(config, running), flush=True)

    run(config, workers, ready=ready)
    return 0


def _auth(config: Config, args: argparse.Namespace) -> int:
    """``pobox auth blocks|unblock``: the running workers of this node through their status and
    control files (pobox.status), every node through the blocks recorded in the store
    (docs/decisions/admin-control.md)."""
    from pobox.status import ControlTimeout, read_status, send_control

    if args.auth_command == "blocks":
        workers = read_status(config.data_path)
        if not workers:
            print("pobox is not running on this store (no status from any worker)")
            return EX_NOT_RUNNING
        blocks: list[dict[str, object]] = [
            {**block, "worker": document.get("worker", 0), "pid": document["pid"]}
            for document in workers
            for block in document.get("blocks", [])
        ]
        here = {(block["kind"], block["key"]) for block in blocks}
        for shared in _store_call(config, lambda service: service.auth.shared_blocks(), []):
            if (shared.kind, shared.key) not in here:  # started by another node
                blocks.append(
                    {
                        "kind": shared.kind,
                        "key": shared.key,
                        "failures": shared.failures,
                        "until": round(shared.until),
                        "worker": None,
                        "pid": None,
                    }
                )
        if args.json:
            _print_json(blocks)
            return 0
        if not blocks:
            print(f"no blocks in {len(workers)} worker(s) or in the store")
            return 0
        print(f"{'KIND':8} {'ADDRESS OR ACCOUNT':40} {'FAILURES':>8}  {'UNTIL (UTC)':19}  WORKER")
        from datetime import UTC, datetime

        for block in sorted(blocks, key=lambda b: (str(b["kind"]), str(b["key"]))):
            until = datetime.fromtimestamp(float(str(block["until"])), UTC)
            worker = "another node" if block["worker"] is None else block["worker"]
            print(
                f"{block['kind']:8} {block['key']!s:40} {block['failures']!s:>8}"
                f"  {until:%Y-%m-%d %H:%M:%S}  {worker}"
            )
        return 0
    target = args.target
    everywhere = _store_call(config, lambda service: service.auth.lift_shared(target), [])
    try:
        results = send_control(config.data_path, {"action": "unblock", "target": target})
    except ControlTimeout as exc:
        raise Temporary(str(exc)) from None
    if not results and not everywhere:
        print("pobox is not running on this store (no status from any worker)")
        return EX_NOT_RUNNING
    lifted = sorted({item for result in results.values() for item in result.get("lifted", [])})
    if lifted:
        print(f"lifted in {len(results)} worker(s): " + ", ".join(lifted))
    if everywhere:
        print("lifted on every node (recorded in the store): " + ", ".join(sorted(everywhere)))
    if not lifted and not everywhere:
        print(f"no block or failure count for {target} in {len(results)} worker(s)")
    return 0


def _store_call(
    config: Config, call: Callable[[MailService], Awaitable[list[T]]], default: list[T]
) -> list[T]:
    """*call* on the store, when there is one (a data directory without a store is left as
    it is)."""
    if not _has_store(config):
        return default

    async def run(service: MailService) -> list[T]:
        return await call(service)

    return _run_with_service(config, run)


def _run_with_service(config: Config, call: Callable[[MailService], Awaitable[T]]) -> T:
    async def main() -> T:
        service = await MailService.open(config)
        try:
            return await call(service)
        finally:
            await service.close()

    return asyncio.run(main())


def _status(config: Config, args: argparse.Namespace) -> int:
    """Reads the running server's status files; never opens the store."""
    from pobox.status import format_status, read_status

    workers = read_status(config.data_path)
    if args.json:
        print(json.dumps(workers, indent=2, sort_keys=True))
    else:
        print(format_status(workers))
    return 0 if workers else EX_NOT_RUNNING


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_environment(args.config, args.data)
        if args.command == "serve":
            return _serve(config, args)
        if args.command == "status":
            return _status(config, args)
        if args.command == "auth":
            return _auth(config, args)
        if args.command == "store":
            from pobox.cli import store_copy

            return store_copy.run(args)
        if args.command in ("backup", "restore"):
            from pobox.cli import backup

            return backup.run(config, args, lambda: require_store(config))
        if args.command in ("export", "import"):
            from pobox.cli import transfer

            return transfer.run(config, args, lambda: require_store(config))
        if not getattr(args, "creates", False):
            require_store(config)
        action: Callable[[MailService, argparse.Namespace], Awaitable[int]] = args.action
        return asyncio.run(_with_service(config, lambda service: action(service, args)))
    except NoStore as exc:
        print(f"pobox: {exc}", file=sys.stderr)
        # for an MTA running `pobox deliver`: defer the mail, do not bounce it
        return EX_TEMPFAIL if args.command == "deliver" else 1
    except ConfigError as exc:
        print(f"pobox: configuration error: {exc}", file=sys.stderr)
        return EX_USAGE
    except NotFound as exc:
        print(f"pobox: {exc}", file=sys.stderr)
        return 1
    except Temporary as exc:
        print(f"pobox: temporary failure: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    except PoboxError as exc:
        print(f"pobox: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"pobox: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # never a traceback to a user
        if os.environ.get("POBOX_DEBUG"):
            raise
        print(f"pobox: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EX_INTERNAL
