"""`pobox store copy`: a SQLite installation moved into PostgreSQL looks the same to clients.

The source is built through the Store API (several folders, flags and keywords, copies sharing
content, expunges, POP3-hidden and recoverable messages, a recovered message with its UIDL
override, aliases, settings, subscriptions). After the copy, both stores are compared through the
Store API, then a `pobox serve` on the copy is asked over IMAP and POP3.
"""

from __future__ import annotations

import imaplib
import poplib
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.helpers.postgres import session_database
from tests.helpers.servers import LISTENERS, ServerProcess, free_port, pobox, write_config
from tests.store.util import append, message_bytes

from pobox.service.passwords import hash_password
from pobox.store.api import FlagOp, Store
from pobox.store.factory import create_store

pytestmark = pytest.mark.interop

PASSWORD = "secret"
USERS = ("alice@example.org", "bob@example.org")


async def _fill(store: Store) -> None:
    for index, address in enumerate(USERS):
        account = await store.create_account(address, hash_password(PASSWORD))
        await store.add_alias(f"alias{index}@example.org", account.id)
        await store.set_account_setting(account.id, "pop3.retention", "keep")
        await store.set_subscribed(account.id, "Lists/python", True)
        inbox = await store.get_mailbox(account.id, "INBOX")
        archive = await store.get_mailbox(account.id, "Archive")
        assert inbox is not None and archive is not None
        work = await store.create_mailbox(account.id, "Work")
        await store.create_mailbox(account.id, "Work/Reports")
        metas = []
        for n in range(12):
            flags = frozenset({"\\Seen"} if n % 2 else set()) | (
                frozenset({"$Label1", "\\Flagged"}) if n % 3 == 0 else frozenset()
            )
            when = datetime(2025, 6, 1 + n, 8, n, tzinfo=UTC)
            size = 400_000 if n == 5 else 0  # one message of two chunks
            metas.append(
                await append(
                    store, inbox.id, message_bytes(n, size=size), flags=flags, internal_date=when
                )
            )
        await store.copy(inbox.id, [m.uid for m in metas[:4]], archive.id)
        await store.copy(inbox.id, [m.uid for m in metas[4:6]], work.id, move=True)
        await store.set_flags(inbox.id, [metas[7].uid], FlagOp.ADD, frozenset({"\\Answered"}))
        await store.expunge(inbox.id, [metas[8].uid])
        await store.expunge(inbox.id, [metas[9].uid], keep_recoverable=True)
        await store.pop3_hide(inbox.id, [metas[10].uid], datetime(2026, 1, 2, tzinfo=UTC))
        await store.expunge(inbox.id, [metas[11].uid], keep_recoverable=True)
        items = await store.list_recoverable(account.id)
        (last,) = [i for i in items if i.uid == metas[11].uid]
        await store.recover(account.id, [last.id])  # a new UID, the old UIDL (an override)
        await store.claim_recent(archive.id)


async def _snapshot(store: Store) -> dict[str, object]:
    """Everything a client can observe, by address and mailbox name."""
    seen: dict[str, object] = {
        "accounts": [
            (a.address, a.password_hash, dict(a.settings)) for a in await store.list_accounts()
        ],
        "aliases": await store.list_aliases(),
    }
    for account in await store.list_accounts():
        seen[f"{account.address} subscriptions"] = await store.list_subscriptions(account.id)
        seen[f"{account.address} recoverable"] = [
            (r.id, r.mailbox_name, r.uid, r.uidl, r.deleted_at, r.size, r.still_present)
            for r in await store.list_recoverable(account.id)
        ]
        for mailbox in await store.list_mailboxes(account.id):
            key = f"{account.address} {mailbox.name}"
            seen[key] = mailbox
            seen[f"{key} status"] = await store.mailbox_status(mailbox.id)
            messages = await store.list_messages(mailbox.id)
            seen[f"{key} messages"] = messages
            seen[f"{key} changes"] = await store.changes_since(mailbox.id, 0)  # type: ignore[arg-type]
            seen[f"{key} fields"] = await store.search_fields(mailbox.id)
            for meta in messages:
                content = await store.open_content(meta.blob)
                try:
                    seen[f"{key} {meta.uid} content"] = content.read(0, content.size)
                finally:
                    content.close()
                seen[f"{key} {meta.uid} structure"] = await store.get_structure(meta.blob)
    return seen


@pytest.fixture
def target() -> tuple[str, str]:
    database = session_database()
    name, dsn = database.new_database()
    yield name, dsn  # type: ignore[misc]
    database.drop_database(name)


async def test_copy_keeps_what_clients_see(tmp_path: Path, target: tuple[str, str]) -> None:
    _, dsn = target
    data = tmp_path / "data"
    source = create_store("sqlite", data)
    await source.open()
    try:
        await _fill(source)
        before = await _snapshot(source)
    finally:
        await source.close()

    result = pobox("store", "copy", "--from", str(data), "--to", dsn, data=tmp_path / "unused")
    assert b"copied 2 account(s)" in result.stdout
    again = pobox(
        "store", "copy", "--from", str(data), "--to", dsn, data=tmp_path / "unused", check=False
    )
    assert again.returncode != 0 and b"not empty" in again.stderr

    copy = create_store(dsn, tmp_path / "pg-data")
    await copy.open()
    try:
        after = await _snapshot(copy)
        assert await copy.check() == []
        # and it keeps working: new UIDs continue above the copied UIDNEXT
        alice = await copy.get_account(USERS[0])
        assert alice is not None
        inbox = await copy.get_mailbox(alice.id, "INBOX")
        assert inbox is not None
        meta = await append(copy, inbox.id, message_bytes(99))
        assert meta.uid == inbox.uidnext
    finally:
        await copy.close()
    assert after.keys() == before.keys()
    for key in before:
        assert after[key] == before[key], key

    # a pobox server on the copy serves the same UIDs, UIDVALIDITY, flags and UIDLs
    ports = {listener: free_port() for listener in LISTENERS}
    config = write_config(tmp_path / "pobox.toml", tmp_path / "pg-data", ports)
    config.write_text(f'store = "{dsn}"\n' + config.read_text())
    server = ServerProcess(tmp_path / "pg-data", config, ports, tmp_path / "server.log")
    server.start()
    try:
        address = USERS[1]
        imap = imaplib.IMAP4("127.0.0.1", ports["imap"], timeout=30)
        try:
            imap.login(address, PASSWORD)
            for name in ("INBOX", "Archive", "Work"):
                mailbox = before[f"{address} {name}"]
                messages = before[f"{address} {name} messages"]
                status, data = imap.select(name, readonly=True)
                assert status == "OK"
                status, data = imap.response("UIDVALIDITY")
                assert data[0] is not None and int(data[0]) == mailbox.uidvalidity  # type: ignore[attr-defined]
                status, data = imap.uid("FETCH", "1:*", "(FLAGS)")
                assert status == "OK"
                served = {}
                for item in data:
                    line = item if isinstance(item, bytes) else item[0]  # type: ignore[index]
                    match = re.search(
                        rb"UID (\d+).*FLAGS \(([^)]*)\)|FLAGS \(([^)]*)\).*UID (\d+)", line
                    )
                    assert match is not None, line
                    if match.group(1):
                        uid, flags = int(match.group(1)), match.group(2)
                    else:
                        uid, flags = int(match.group(4)), match.group(3)
                    served[uid] = frozenset(flags.decode().split()) - {"\\Recent"}
                assert served == {m.uid: m.flags for m in messages}  # type: ignore[attr-defined]
                imap.close()
        finally:
            imap.logout()
        pop = poplib.POP3("127.0.0.1", ports["pop3"], timeout=30)
        try:
            pop.user(address)
            pop.pass_(PASSWORD)
            _resp, lines, _octets = pop.uidl()
            uidls = [line.split()[1].decode() for line in lines]
            inbox = before[f"{address} INBOX"]
            expected = [
                m.pop3_uidl or f"{m.uid:08x}{inbox.uidvalidity:08x}"  # type: ignore[attr-defined]
                for m in before[f"{address} INBOX messages"]  # type: ignore[attr-defined]
                if not m.pop3_hidden
            ]
            assert uidls == expected
            assert any(
                m.pop3_uidl
                for m in before[f"{address} INBOX messages"]  # type: ignore[attr-defined]
            )
        finally:
            pop.quit()
    finally:
        server.stop()
