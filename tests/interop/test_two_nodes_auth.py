"""Failed-login blocks across two `pobox serve` nodes on one PostgreSQL store: a block started
on one node is listed by `pobox auth blocks` on the other, and `pobox auth unblock` on either
lifts it everywhere at once (docs/decisions/admin-control.md)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from tests.helpers.postgres import session_database
from tests.helpers.servers import imap_login, postgres_nodes

pytestmark = pytest.mark.interop

USER = "shared@localhost"
PASSWORD = "secret"
EXTRA = "\n[auth]\nmax_failures = 3\nblock_seconds = 300\npenalty_max = 0.0\n"


def test_a_block_on_one_node_is_listed_and_lifted_from_the_other(tmp_path: Path) -> None:
    database = session_database()
    schema, dsn = database.new_schema()
    try:
        with postgres_nodes(tmp_path, dsn, {USER: PASSWORD}, EXTRA) as (a, b):
            port_a = a.ports["imap"]
            # wrong passwords for names that do not exist: node A blocks 127.0.0.1
            for n in range(3):
                assert imap_login(port_a, f"nobody{n}@localhost", "wrong") != "OK"
            assert "UNAVAILABLE" in imap_login(port_a, USER, PASSWORD)
            assert imap_login(b.ports["imap"], USER, PASSWORD) == "OK"  # node B counts apart

            listing = json.loads(b.cli("auth", "blocks", "--json").stdout)
            assert [(x["kind"], x["key"], x["worker"]) for x in listing] == [
                ("address", "127.0.0.1", None)
            ], listing
            assert "another node" in b.cli("auth", "blocks").stdout.decode()

            lifted = b.cli("auth", "unblock", "127.0.0.1").stdout.decode()
            assert "lifted on every node (recorded in the store): address 127.0.0.1" in lifted
            assert imap_login(port_a, USER, PASSWORD) == "OK"  # at once, on node A
            assert "lifted on another node" in a.log.read_text()
            # each node's status file follows within its half-second tick
            for node in (a, b):
                deadline = time.monotonic() + 10
                while json.loads(node.cli("auth", "blocks", "--json").stdout) != []:
                    assert time.monotonic() < deadline, node.cli("auth", "blocks").stdout
                    time.sleep(0.2)
    finally:
        database.drop_schema(schema)
