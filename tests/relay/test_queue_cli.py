"""`pobox queue list|show|retry|delete|bounce` and `pobox dkim generate|show`, as an
administrator runs them (subprocesses on a data directory)."""

from __future__ import annotations

import asyncio
import email
import json
from pathlib import Path

import pytest
from tests.helpers.servers import pobox

from pobox.relay.queue import OutboundQueue
from pobox.store.api import QUEUE_PENDING, RecipientResult
from pobox.store.factory import create_store

START = 1_900_000_000.0

pytestmark = pytest.mark.interop  # a real pobox process


async def _fill(data: Path) -> list[str]:
    store = create_store("sqlite", data)
    await store.open()
    try:
        ticks = iter(range(10))
        queue = OutboundQueue(store, clock=lambda: START + next(ticks))  # listed in this order
        first = await queue.enqueue(
            "alice@localhost",
            ["bob@x.example", "carol@y.example"],
            b"From: alice@localhost\r\nSubject: first\r\n\r\nbody\r\n",
        )
        await store.queue_claim("test", START, 600, 10)
        await store.queue_record(
            first,
            [RecipientResult("bob@x.example", QUEUE_PENDING, "451 4.2.0 busy", START + 300)],
            START,
        )
        second = await queue.enqueue("", ["dave@z.example"], b"Subject: a bounce\r\n\r\nx\r\n")
        third = await queue.enqueue("alice@localhost", ["eve@z.example"], b"Subject: 3\r\n\r\n")
        return [first, second, third]
    finally:
        await store.close()


async def _state(data: Path) -> tuple[int, list[email.message.Message]]:
    store = create_store("sqlite", data)
    await store.open()
    try:
        account = await store.get_account("alice@localhost")
        assert account is not None
        inbox = await store.get_mailbox(account.id, "INBOX")
        assert inbox is not None
        found = []
        for meta in await store.list_messages(inbox.id):
            content = await store.open_content(meta.blob)
            found.append(email.message_from_bytes(content.read(0, content.size)))
            content.close()
        return await store.queue_length(), found
    finally:
        await store.close()


def test_queue_commands(tmp_path: Path) -> None:
    data = tmp_path / "data"
    pobox("user", "add", "alice@localhost", "--password-stdin", data=data, stdin=b"pw\n")
    assert pobox("queue", "list", data=data).stdout.decode() == "the outbound queue is empty\n"
    first, second, third = asyncio.run(_fill(data))

    listing = pobox("queue", "list", data=data).stdout.decode()
    assert first in listing and second in listing and third in listing
    assert "<alice@localhost> -> bob@x.example, carol@y.example" in listing
    assert "(451 4.2.0 busy)" in listing
    assert "3 message(s)" in listing
    rows = json.loads(pobox("queue", "list", "--json", data=data).stdout)
    assert [r["id"] for r in rows] == [first, second, third]
    assert rows[0]["recipients"][0] == {
        "address": "bob@x.example",
        "state": "pending",
        "attempts": 1,
        "next_attempt": "2030-03-17 17:51:40Z",
        "last_error": "451 4.2.0 busy",
    }

    shown = pobox("queue", "show", first.lower(), data=data).stdout.decode()
    assert "sender:     <alice@localhost>" in shown
    assert "<bob@x.example>  pending, 1 attempt(s)" in shown
    assert "451 4.2.0 busy" in shown
    assert "Subject: first" in shown and "body" not in shown

    missing = pobox("queue", "show", "NOSUCHID", data=data, check=False)
    assert missing.returncode == 1
    assert missing.stderr.decode() == (
        "pobox: no message NOSUCHID in the outbound queue (see pobox queue list)\n"
    )
    assert pobox("queue", "delete", "NOSUCHID", data=data, check=False).returncode == 1
    assert pobox("queue", "retry", "NOSUCHID", data=data, check=False).returncode == 1

    assert pobox("queue", "retry", first, data=data).stdout == b"1 message(s) due now\n"
    assert pobox("queue", "retry", data=data).stdout == b"3 message(s) due now\n"
    rows = json.loads(pobox("queue", "show", first, "--json", data=data).stdout)
    assert rows["next_attempt"] < "2030"  # due now, not at START + 300

    assert pobox("queue", "delete", third, data=data).stdout.decode() == f"deleted {third}\n"
    # a bounce of a bounce tells nobody
    out = pobox("queue", "bounce", second, data=data).stdout.decode()
    assert out == f"{second}: gave up on 1 recipient(s); null sender: no bounce\n"
    out = pobox("queue", "bounce", first, data=data).stdout.decode()
    assert out == f"{first}: gave up on 2 recipient(s); bounce sent to <alice@localhost>\n"
    length, inbox = asyncio.run(_state(data))
    assert length == 0
    [dsn] = inbox
    assert dsn.get_content_type() == "multipart/report"
    status = dsn.get_payload()[1].get_payload()
    finals = sorted(str(group["Final-Recipient"]) for group in status[1:])
    assert finals == ["rfc822; bob@x.example", "rfc822; carol@y.example"]
    assert {str(group["Status"]) for group in status[1:]} == {"5.0.0"}


def test_dkim_commands(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shown = pobox("dkim", "show", "example.org", data=data, check=False)
    assert shown.returncode == 1
    assert b"example.org has no DKIM key (pobox dkim generate example.org" in shown.stderr
    bad = pobox("dkim", "generate", "not a domain", data=data, check=False)
    assert bad.returncode == 1
    assert b"'not a domain' is not a domain name" in bad.stderr
    bad = pobox("dkim", "generate", "example.org", "--selector", "a b", data=data, check=False)
    assert b"'a b' is not a DKIM selector" in bad.stderr

    made = pobox("dkim", "generate", "Example.ORG", "--selector", "s2030", data=data)
    text = made.stdout.decode()
    assert "name:  s2030._domainkey.example.org" in text
    value = next(line for line in text.splitlines() if line.startswith("  value: "))
    assert value.startswith("  value: v=DKIM1; k=rsa; p=MII")
    assert "s2030._domainkey.example.org. IN TXT ( " in text
    assert pobox("dkim", "show", "example.org", data=data).stdout == made.stdout
    again = pobox("dkim", "generate", "example.org", data=data, check=False)
    assert again.returncode == 1
    assert b"--force replaces it" in again.stderr
    replaced = pobox("dkim", "generate", "example.org", "--force", data=data).stdout.decode()
    assert "selector pobox." in replaced and value not in replaced
