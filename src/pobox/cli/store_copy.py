"""``pobox store …``: moving an installation between storage backends.

``pobox store copy --from DATA_DIR --to postgresql://…`` copies a whole SQLite installation into
an empty PostgreSQL database, keeping UIDVALIDITY, UIDs, MODSEQs, flags and POP3 UIDLs, so that
clients see the same mailboxes afterwards (docs/postgresql.md). ``pobox store migrate DSN``
creates or upgrades the schema of a PostgreSQL store (``pobox migrate`` does the same for the
store of the configuration).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from pobox.errors import ConfigError, NotFound

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    store = commands.add_parser("store", help="copy or upgrade a storage backend")
    actions = store.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    copy = actions.add_parser(
        "copy", help="copy a whole SQLite installation into an empty PostgreSQL store"
    )
    copy.add_argument(
        "--from", dest="source", required=True, metavar="DATA_DIR", help="the SQLite data directory"
    )
    copy.add_argument(
        "--to", dest="target", required=True, metavar="DSN", help="postgresql://user@host/database"
    )
    copy.add_argument("--quiet", action="store_true", help="print only the summary")
    migrate = actions.add_parser("migrate", help="create or upgrade a PostgreSQL store's schema")
    migrate.add_argument("dsn", metavar="DSN")


def _require_dsn(dsn: str) -> str:
    if not dsn.startswith(POSTGRES_SCHEMES):
        raise ConfigError(f"{dsn!r} is not a PostgreSQL DSN (postgresql://user@host/database)")
    return dsn


async def _copy(args: argparse.Namespace) -> int:
    from pobox.store.postgres.copy import copy_sqlite_to_postgres

    def progress(text: str) -> None:
        if not args.quiet:
            print(text, flush=True)

    from pobox.status import no_server

    source = Path(args.source)
    if not (source / "pobox.db").is_file():
        raise NotFound(f"no pobox SQLite store in {source} (no pobox.db)")
    with no_server(source):  # the copy is one consistent snapshot only of a stopped store
        report = await copy_sqlite_to_postgres(source, _require_dsn(args.target), progress=progress)
    counts = report.counts
    print(
        f"copied {counts.get('accounts', 0)} account(s), {counts.get('mailboxes', 0)} mailbox(es),"
        f" {counts.get('messages', 0)} message(s), {report.bytes} bytes of content"
    )
    return 0


async def _migrate(args: argparse.Namespace) -> int:
    from pobox.store.postgres.copy import migrate_postgres

    version = await migrate_postgres(_require_dsn(args.dsn))
    print(f"schema version {version}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run a ``pobox store`` action (errors are reported by the caller, pobox.cli.main)."""
    if args.store_command == "copy":
        return asyncio.run(_copy(args))
    if args.store_command == "migrate":
        return asyncio.run(_migrate(args))
    print(f"pobox: unknown store action {args.store_command}", file=sys.stderr)
    return 64
