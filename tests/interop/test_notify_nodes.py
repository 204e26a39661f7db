"""NOTIFY (RFC 5465) across nodes: a session on one `pobox serve` hears of a mailbox made and a
message delivered through another node on the same PostgreSQL store. The news travels through
the store's LISTEN/NOTIFY watcher, one per node (docs/decisions/notify.md)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers.postgres import session_database
from tests.helpers.servers import ServerProcess, postgres_nodes
from tests.interop.test_dovecot_context import Client

pytestmark = pytest.mark.interop

USER = "notify@localhost"
PASSWORD = "secret"


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    database = session_database()
    schema, dsn = database.new_schema()
    try:
        with postgres_nodes(tmp_path, dsn, {USER: PASSWORD}) as nodes:
            yield nodes
    finally:
        database.drop_schema(schema)


def test_notify_hears_the_other_node(two_nodes: list[ServerProcess]) -> None:
    a_node, b_node = two_nodes
    a = Client(a_node.ports["imap"])
    b = Client(b_node.ports["imap"])
    try:
        assert a.command(f"LOGIN {USER} {PASSWORD}")[-1] == "OK"
        assert b.command(f"LOGIN {USER} {PASSWORD}")[-1] == "OK"
        assert a.command("NOTIFY SET (PERSONAL (MessageNew MessageExpunge MailboxName))") == ["OK"]
        assert b.command("CREATE Work")[-1] == "OK"
        assert a.wait_for('* LIST () "/" Work') == ['* LIST () "/" Work']
        message = b"Subject: across\r\n\r\nhello\r\n"
        assert b.command("APPEND Work", message)[-1] == "OK"
        status = a.wait_for("* STATUS Work")
        assert len(status) == 1
        assert re.fullmatch(
            r"\* STATUS Work \(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \d+ UNSEEN 1\)", status[0]
        ), status
        assert b.command("DELETE Work")[-1] == "OK"
        assert a.wait_for('* LIST (\\NonExistent) "/" Work') == ['* LIST (\\NonExistent) "/" Work']
    finally:
        a.close()
        b.close()
