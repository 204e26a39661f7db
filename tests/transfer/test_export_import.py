"""`pobox export` and `pobox import`: a Maildir export imported into a new account keeps every
mailbox's UIDVALIDITY and UIDs, flags and keywords, internal dates, POP3 UIDLs and the bytes of
every message; an mbox export comes back with the same bytes, flags and dates (new UIDs); an
interrupted import goes on where it stopped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.helpers.servers import pobox
from tests.transfer.util import USERS, fill

from pobox.store.api import Store
from pobox.store.factory import create_store
from pobox.store.rows import uidl_for
from pobox.transfer.importer import uidl_from_format


async def _view(data: Path, address: str, *, uids: bool = True) -> dict[str, Any]:
    """Per mailbox: UIDVALIDITY, and per message UID (or position), flags, date, UIDL, bytes."""
    store: Store = create_store("sqlite", data)
    await store.open()
    out: dict[str, Any] = {}
    try:
        account = await store.get_account(address)
        assert account is not None
        for mailbox in await store.list_mailboxes(account.id):
            messages = []
            for meta in await store.list_messages(mailbox.id):
                content = await store.open_content(meta.blob)
                try:
                    data_ = content.read(0, content.size)
                finally:
                    content.close()
                messages.append(
                    (
                        meta.uid if uids else None,
                        meta.flags,
                        int(meta.internal_date.timestamp()),
                        meta.pop3_uidl or uidl_for(meta.uid, mailbox.uidvalidity) if uids else None,
                        data_,
                    )
                )
            if uids:
                out[mailbox.name] = (mailbox.uidvalidity, mailbox.uidnext, messages)
            else:
                out[mailbox.name] = sorted(messages, key=lambda m: (m[2], m[4]))
    finally:
        await store.close()
    return out


async def _filled(data: Path) -> None:
    store = create_store("sqlite", data)
    await store.open()
    try:
        await fill(store)
    finally:
        await store.close()


def _add_user(data: Path, address: str) -> None:
    pobox("user", "add", address, "--password-stdin", data=data, stdin=b"pw\n")


async def test_maildir_export_import_round_trip(tmp_path: Path) -> None:
    data = tmp_path / "data"
    await _filled(data)
    maildir = tmp_path / "maildir"
    out = pobox("export", USERS[0], "--format", "maildir", str(maildir), data=data)
    assert b"exported" in out.stdout
    assert (maildir / "cur").is_dir() and (maildir / ".Work.Reports" / "cur").is_dir()
    header = (maildir / "dovecot-uidlist").read_text().splitlines()[0]
    assert header.startswith("3 V") and " N" in header
    assert "$Label1" in (maildir / "dovecot-keywords").read_text()
    # a second export into the same place is refused
    again = pobox("export", USERS[0], "--format", "maildir", str(maildir), data=data, check=False)
    assert again.returncode == 1 and b"not empty" in again.stderr

    _add_user(data, "copy@example.org")
    # an interrupted import: one mailbox's files arrive first, the rest on the rerun
    held = maildir / ".Work"
    aside = tmp_path / "aside"
    held.rename(aside)
    pobox("import", "maildir", str(maildir), "--to", "copy@example.org", data=data)
    aside.rename(held)
    result = pobox("import", "maildir", str(maildir), "--to", "copy@example.org", data=data)
    assert b"were there already" in result.stdout
    assert b"UIDVALIDITY and UIDs kept in: INBOX" in result.stdout
    original = await _view(data, USERS[0])
    copy = await _view(data, "copy@example.org")
    assert copy == original


async def test_mbox_export_import_round_trip(tmp_path: Path) -> None:
    data = tmp_path / "data"
    await _filled(data)
    dest = tmp_path / "mbox"
    pobox("export", USERS[1], "--format", "mbox", str(dest), data=data)
    assert (dest / "INBOX.mbox").is_file() and (dest / "Work" / "Reports.mbox").is_file()
    assert (dest / "INBOX.mbox").read_bytes().startswith(b"From MAILER-DAEMON ")
    _add_user(data, "mbox@example.org")
    pobox("import", "mbox", str(dest), "--to", "mbox@example.org", data=data)
    original = await _view(data, USERS[1], uids=False)
    copy = await _view(data, "mbox@example.org", uids=False)
    assert copy == original
    # a single file goes into INBOX
    _add_user(data, "one@example.org")
    pobox("import", "mbox", str(dest / "Archive.mbox"), "--to", "one@example.org", data=data)
    assert (await _view(data, "one@example.org", uids=False))["INBOX"] == original["Archive"]


def test_import_refuses_bad_input(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _add_user(data, "a@example.org")
    (tmp_path / "empty").mkdir()
    for args, text in (
        (["maildir", str(tmp_path / "empty")], b"is not a Maildir"),
        (["mbox", str(tmp_path / "nothing")], b"neither an mbox file nor a directory"),
        (["ftp://x@y"], b"usage: pobox import"),
        (["imap://host-without-user"], b"names no user"),
    ):
        result = pobox("import", *args, "--to", "a@example.org", data=data, check=False)
        assert result.returncode == 1 and text in result.stderr, (args, result.stderr)
    (tmp_path / "m" / "cur").mkdir(parents=True)
    missing = pobox(
        "import", "maildir", str(tmp_path / "m"), "--to", "b@example.org", data=data, check=False
    )
    assert missing.returncode == 1 and b"no account b@example.org" in missing.stderr
    bad = pobox(
        "import",
        "maildir",
        str(tmp_path / "m"),
        "--to",
        "a@example.org",
        "--pop3-uidl-format",
        "%08Xm",
        data=data,
        check=False,
    )
    assert bad.returncode == 1 and b"only %u" in bad.stderr


def test_uidl_formats() -> None:
    assert uidl_from_format("%08Xu%08Xv", 26, 1_700_000_000) == "0000001a6553f100"
    assert uidl_from_format("%u.%v", 7, 9) == "7.9"
    assert uidl_from_format("%xu-%%", 255, 1) == "ff-%"
