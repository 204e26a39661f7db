"""``pobox backup DEST``, ``pobox backup verify DEST`` and ``pobox restore DEST``.

Backups are online (the server keeps serving), consistent (one moment for the whole store) and
incremental (a second run writes only new contents); see docs/backup.md. Errors are reported by
pobox.cli.main like every command's.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from pathlib import Path

from pobox.cli.progress import Progress, format_bytes
from pobox.config import Config
from pobox.errors import InvalidInput, PoboxError

#: Exit status of ``pobox backup verify`` when it found a problem.
EX_BAD_BACKUP = 1


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backup = commands.add_parser(
        "backup",
        help="back up the store (online, consistent, incremental); `backup verify DEST` checks",
        description="pobox backup DEST: back up every account (or --account ADDRESS) into the"
        " directory DEST while the server keeps running; a second run into the same DEST"
        " writes only what is new. pobox backup verify DEST: check every message's hash and"
        " the index; exits 1 on any problem.",
    )
    backup.add_argument(
        "target", nargs="+", metavar="DEST", help="DEST, or `verify DEST` to check a backup"
    )
    backup.add_argument(
        "--account",
        action="append",
        metavar="ADDRESS",
        help="back up only this account (repeatable)",
    )
    backup.add_argument("--quiet", action="store_true", help="print only the summary")
    restore = commands.add_parser(
        "restore",
        help="restore accounts from a backup, UIDs and all",
        description="Restore every account of the backup in DEST (or --account ADDRESS) into"
        " the configured store, or into --to DATA_DIR or --to postgresql://…. An account that"
        " exists there is refused unless --replace (which deletes its mail there first).",
    )
    restore.add_argument("source", metavar="DEST", help="the backup directory")
    restore.add_argument(
        "--account", action="append", metavar="ADDRESS", help="restore only this account"
    )
    restore.add_argument(
        "--to",
        dest="target",
        metavar="DATA_DIR|DSN",
        help="restore into this data directory (created if need be) or PostgreSQL store",
    )
    restore.add_argument(
        "--replace", action="store_true", help="replace accounts that exist in the target"
    )
    restore.add_argument("--quiet", action="store_true", help="print only the summary")


def _progress(args: argparse.Namespace, label: str, unit: str) -> Progress:
    return Progress(label, unit=unit, quiet=bool(args.quiet))


async def _backup(config: Config, dest: Path, args: argparse.Namespace) -> int:
    from pobox.transfer.backup import backup
    from pobox.transfer.stores import open_store, store_id

    store = await open_store(config.store, config.data_path)
    try:
        with _progress(args, "backup", "messages") as progress:
            report = await backup(
                store,
                dest,
                store_id=store_id(config.store, config.data_path),
                addresses=args.account,
                progress=progress,
            )
    finally:
        await store.close()
    print(
        f"backup of {report.created} in {dest}: {report.accounts} account(s),"
        f" {report.mailboxes} mailbox(es), {report.messages} message(s);"
        f" {report.written} of {report.contents} content(s) written"
        f" ({format_bytes(report.bytes_written)}, {format_bytes(report.stored_bytes)}"
        " compressed)"
    )
    return 0


def _verify(dest: Path, args: argparse.Namespace) -> int:
    from pobox.transfer.verify import verify

    with _progress(args, "verify", "contents") as progress:
        report = verify(dest, progress)
    for problem in report.problems:
        print(f"problem: {problem}")
    if report.problems:
        print(f"backup in {dest} is NOT good: {len(report.problems)} problem(s)")
        return EX_BAD_BACKUP
    print(
        f"backup of {report.created} in {dest} is good: {report.accounts} account(s),"
        f" {report.messages} message(s), {report.contents} content(s)"
        f" ({format_bytes(report.bytes)}) checked"
    )
    return 0


async def _restore(config: Config, args: argparse.Namespace) -> int:
    from pobox.transfer.restore import restore
    from pobox.transfer.stores import is_dsn, open_store

    source = Path(args.source)
    spec, data_dir = config.store, config.data_path
    if args.target:
        if is_dsn(args.target):
            spec = args.target
        else:
            spec, data_dir = "sqlite", Path(args.target)
    elif spec in ("sqlite", "") and not (data_dir / "pobox.db").is_file():
        raise InvalidInput(
            f"the data directory {data_dir} holds no pobox store: restore into it with"
            f" --to {data_dir}, or check --data"
        )
    store = await open_store(spec, data_dir)
    try:
        with _progress(args, "restore", "messages") as progress:
            report = await restore(
                store, source, addresses=args.account, replace=args.replace, progress=progress
            )
    finally:
        await store.close()
    print(
        f"restored the backup of {report.created}: {report.accounts} account(s),"
        f" {report.mailboxes} mailbox(es), {report.messages} message(s)"
        f" ({format_bytes(report.bytes)})"
    )
    return 0


def run(config: Config, args: argparse.Namespace, require_store: Callable[[], None]) -> int:
    """Run ``pobox backup`` or ``pobox restore`` (errors are reported by pobox.cli.main)."""
    if args.command == "restore":
        return asyncio.run(_restore(config, args))
    target: list[str] = args.target
    if target[0] == "verify" and len(target) == 2:
        return _verify(Path(target[1]), args)
    if len(target) != 1 or target[0] == "verify":  # `verify` alone: its DEST is missing
        raise PoboxError(
            "usage: pobox backup DEST | pobox backup verify DEST (a DEST named verify: ./verify)"
        )
    require_store()
    return asyncio.run(_backup(config, Path(target[0]), args))
