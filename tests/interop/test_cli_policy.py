"""`pobox policy set|del|list|run` as an administrator runs them (docs/policies.md)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.helpers.servers import pobox
from tests.store.util import append, message_bytes

from pobox.store.factory import create_store

pytestmark = pytest.mark.interop

ADDRESS = "tidy@example.org"


def fill(data: Path) -> None:
    """Six old messages in INBOX (2019 and 2020) and one new one, straight into the store."""

    async def run() -> None:
        store = create_store("sqlite", data)
        await store.open()
        try:
            account = await store.get_account(ADDRESS)
            assert account is not None
            inbox = await store.get_mailbox(account.id, "INBOX")
            assert inbox is not None
            for n, year in enumerate([2019, 2019, 2020, 2020, 2020, 2019, 2099]):
                when = datetime(year, 3, 1, tzinfo=UTC)
                await append(store, inbox.id, message_bytes(n), internal_date=when)
        finally:
            await store.close()

    asyncio.run(run())


def test_set_list_run(tmp_path: Path) -> None:
    data = tmp_path / "data"
    pobox("user", "add", ADDRESS, "--password-stdin", data=data, stdin=b"pw\n")
    fill(data)
    pobox("policy", "set", ADDRESS, "INBOX", "archive-after=365d", "archive-by=year", data=data)
    pobox("policy", "set", ADDRESS, "*", "expunge-after=3650d", data=data)
    listing = pobox("policy", "list", ADDRESS, data=data).stdout.decode()
    lines = {line.split()[0]: line for line in listing.splitlines() if line[:1] != " "}
    assert "archive-after=365d (folder)" in lines["INBOX"]
    assert "archive-by=year (folder)" in lines["INBOX"]
    assert "expunge-after=3650d (account *)" in lines["INBOX"]
    assert "expunge-after=3650d (account *)" in lines["Trash"]  # the account beats the server
    assert "* expunge-after=3650d" in listing
    as_json = json.loads(pobox("policy", "list", ADDRESS, "--json", data=data).stdout)
    assert as_json["folders"]["Junk"]["expunge-after"] == {"value": "3650d", "from": "account *"}

    dry = pobox("policy", "run", "--dry-run", data=data).stdout.decode()
    assert f"{ADDRESS} INBOX: would archive 3 into Archive/2019" in dry
    assert f"{ADDRESS} INBOX: would archive 3 into Archive/2020" in dry
    assert "would expunge 0 messages, would archive 6" in dry
    mailboxes = pobox("mailbox", "list", ADDRESS, "--json", data=data).stdout
    assert b"Archive/2019" not in mailboxes  # a dry run changes nothing

    run = pobox("policy", "run", ADDRESS, data=data)
    out = run.stdout.decode()
    assert "expunged 0 messages, archived 6" in out
    assert "policy run: done, 6/6 messages" in run.stderr.decode()  # the progress summary
    listed = {
        m["mailbox"]: m
        for m in json.loads(pobox("mailbox", "list", ADDRESS, "--json", data=data).stdout)
    }
    assert listed["INBOX"]["messages"] == 1
    assert listed["Archive/2019"]["messages"] == 3
    assert listed["Archive/2020"]["messages"] == 3
    again = pobox("policy", "run", data=data).stdout.decode()
    assert "expunged 0 messages, archived 0" in again

    pobox("policy", "del", ADDRESS, "*", data=data)
    listing = pobox("policy", "list", ADDRESS, data=data).stdout.decode()
    assert "expunge-after=30d (server \\Trash)" in listing
    assert "account settings" not in listing


def test_mistakes_are_named(tmp_path: Path) -> None:
    data = tmp_path / "data"
    pobox("user", "add", ADDRESS, "--password-stdin", data=data, stdin=b"pw\n")
    for args, words in [
        (("INBOX", "expunge-after=30"), "expunge-after: '30' is not a duration"),
        (("INBOX", "archive-after=soon"), "archive-after: 'soon' is not a duration"),
        (("INBOX", "archive-by=month"), "use archive-by=year or archive-by=none"),
        (("INBOX", "expunge-after"), "'expunge-after' is not KEY=VALUE"),
        (("INBOX", "keep=1d"), "unknown policy setting 'keep'"),
        (("\\Bin", "expunge-after=1d"), "\\Bin is no special-use attribute"),
    ]:
        result = pobox("policy", "set", ADDRESS, *args, data=data, check=False)
        assert result.returncode == 1, (args, result)
        assert words in result.stderr.decode(), (args, result.stderr)
        assert b"Traceback" not in result.stderr
    result = pobox("policy", "list", "nobody@example.org", data=data, check=False)
    assert result.returncode == 1 and b"no account nobody@example.org" in result.stderr
    result = pobox("policy", "del", ADDRESS, "INBOX", data=data, check=False)
    assert result.returncode == 1 and b"no stored policy for INBOX" in result.stderr
    assert pobox("policy", "set", ADDRESS, "Later", "expunge-after=1w", data=data).stdout == (
        f"note: {ADDRESS} has no folder Later (yet)\n".encode()
    )
