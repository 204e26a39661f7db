"""``pobox export`` and ``pobox import``: an account's mail out as Maildir or mbox, and mail in
from a Maildir (Dovecot's layout included), mbox files, or a live IMAP or POP3 server
(docs/backup.md). Errors are reported by pobox.cli.main like every command's."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Callable
from pathlib import Path

from pobox.cli.progress import Progress, format_bytes
from pobox.config import Config
from pobox.errors import InvalidInput

URL_SCHEMES = ("imap://", "imaps://", "pop3://", "pop3s://")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = commands.add_parser(
        "export",
        help="an account's mail as a Maildir (Dovecot-compatible) or mbox files",
        description="Write every mailbox of ADDRESS into the new directory DEST: a Maildir++"
        " tree with dovecot-uidlist (UIDVALIDITY, UIDs, POP3 UIDLs) and dovecot-keywords, or"
        " one mboxrd file per mailbox (NAME.mbox).",
    )
    export.add_argument("address", metavar="ADDRESS")
    export.add_argument("--format", required=True, choices=("maildir", "mbox"))
    export.add_argument("dest", metavar="DEST")
    export.add_argument("--quiet", action="store_true", help="print only the summary")
    imp = commands.add_parser(
        "import",
        help="mail from a Maildir, mbox files, or an IMAP or POP3 server into an account",
        description="pobox import maildir PATH | mbox PATH | imap[s]://USER@HOST[:PORT] |"
        " pop3[s]://USER@HOST[:PORT] --to ADDRESS. UIDVALIDITY and UIDs are kept where the"
        " target mailbox is new; the server's password is read from standard input; a rerun"
        " after an interruption goes on where it stopped.",
    )
    imp.add_argument("source", nargs="+", metavar="SOURCE", help="maildir PATH, mbox PATH or URL")
    imp.add_argument(
        "--to", dest="address", required=True, metavar="ADDRESS", help="the account (it must exist)"
    )
    imp.add_argument(
        "--pop3-uidl-format",
        default="%08Xu%08Xv",
        metavar="FORMAT",
        help="POP3 UIDLs of messages that come without one (Maildir, IMAP), in Dovecot's"
        " notation (%%u UID, %%v UIDVALIDITY; default %%08Xu%%08Xv, Dovecot's); '' for pobox's",
    )
    imp.add_argument(
        "--insecure-tls",
        action="store_true",
        help="do not verify the server's certificate (a self-signed one)",
    )
    imp.add_argument("--quiet", action="store_true", help="print only the summary")


def _progress(args: argparse.Namespace, label: str) -> Progress:
    return Progress(label, unit="messages", quiet=bool(args.quiet))


async def _export(config: Config, args: argparse.Namespace) -> int:
    from pobox.transfer.export import export
    from pobox.transfer.stores import open_store

    store = await open_store(config.store, config.data_path)
    try:
        with _progress(args, "export") as progress:
            report = await export(
                store, args.address, Path(args.dest), form=args.format, progress=progress
            )
    finally:
        await store.close()
    print(
        f"exported {report.messages} message(s) ({format_bytes(report.bytes)}) of"
        f" {args.address} in {report.mailboxes} mailbox(es) to {args.dest} ({args.format})"
    )
    if report.vanished:
        print(f"{report.vanished} message(s) were expunged during the export and left out")
    if report.dropped_keywords:
        print(f"{report.dropped_keywords} keyword(s) beyond Maildir's 26 letters were left out")
    return 0


def _password() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("password of the server: ")
    return sys.stdin.readline().rstrip("\r\n")


async def _import(config: Config, args: argparse.Namespace) -> int:
    from pobox.transfer import importer, maildir, mbox
    from pobox.transfer.stores import open_store

    source: list[str] = args.source
    closer: Callable[[], None] | None = None
    if len(source) == 2 and source[0] in ("maildir", "mbox"):
        reader = maildir.read_tree if source[0] == "maildir" else mbox.read_tree
        mailboxes = await asyncio.to_thread(reader, Path(source[1]))
        label = source[0]
    elif len(source) == 1 and source[0].startswith(URL_SCHEMES):
        from pobox.transfer import live

        url = live.parse_url(source[0])
        password = _password()
        verify = not args.insecure_tls
        if url.scheme.startswith("imap"):
            client = await asyncio.to_thread(live.ImapSource, url, password, verify_tls=verify)
            closer = client.close
            folders = await asyncio.to_thread(client.folders)
            mailboxes = [
                await asyncio.to_thread(client.mailbox, raw, name) for raw, name in folders
            ]
        else:
            pop = await asyncio.to_thread(live.Pop3Source, url, password, verify_tls=verify)
            closer = pop.close
            mailboxes = [await asyncio.to_thread(pop.mailbox)]
        label = url.scheme
    else:
        raise InvalidInput(
            "usage: pobox import maildir PATH | mbox PATH | imap://USER@HOST | pop3://USER@HOST"
            " --to ADDRESS"
        )
    store = await open_store(config.store, config.data_path)
    try:
        with _progress(args, f"import ({label})") as progress:
            report = await importer.import_mailboxes(
                store,
                args.address,
                mailboxes,
                progress,
                uidl_format=args.pop3_uidl_format or None,
            )
    finally:
        await store.close()
        if closer is not None:
            await asyncio.to_thread(closer)
    print(
        f"imported {report.messages} message(s) ({format_bytes(report.bytes)}) into"
        f" {report.mailboxes} mailbox(es) of {args.address}"
        + (f"; {report.skipped} were there already" if report.skipped else "")
    )
    if report.kept_uids:
        print("UIDVALIDITY and UIDs kept in: " + ", ".join(report.kept_uids))
    if report.appended:
        print(
            "new UIDs in (the mailbox had mail, or the source has no UIDs): "
            + ", ".join(report.appended)
        )
    return 0


def run(config: Config, args: argparse.Namespace, require_store: Callable[[], None]) -> int:
    """Run ``pobox export`` or ``pobox import``."""
    require_store()
    if args.command == "export":
        return asyncio.run(_export(config, args))
    return asyncio.run(_import(config, args))
