"""The verified-credentials cache through real servers: imaplib against `pobox serve`.

A password changed (or an account deleted) with the CLI while the server runs is refused at once
by every worker (SQLite, `--workers 2`) and by every node (two `pobox serve` on one PostgreSQL
schema), although each of them had just cached the old password: the cache is keyed on the stored
hash, which every login reads from the store (docs/decisions/credential-cache.md).
"""

from __future__ import annotations

import imaplib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers.postgres import session_database
from tests.helpers.servers import ServerProcess, postgres_nodes, server_process

pytestmark = pytest.mark.interop

USER = "carol@localhost"
OLD = "old password"
NEW = "new password"
# no failure delays and no blocks: this file is about the cache, not the penalties
AUTH = "\n[auth]\npenalty_max = 0.0\nmax_failures = 1000\n"
TRIES = 40  # connections per phase: SO_REUSEPORT spreads them over both workers


def _login(server: ServerProcess, password: str) -> bool:
    client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=60)
    try:
        client.login(USER, password)
    except imaplib.IMAP4.error:
        return False
    finally:
        client.logout()
    return True


def _workers_logging(server: ServerProcess, pattern: str) -> set[str]:
    """The workers (w0, w1 …) whose log lines after the last mark match *pattern*."""
    text = server.log.read_text(errors="replace").rsplit("--mark--", 1)[-1]
    return set(re.findall(rf" (w\d+) \S+ [^\n]*{pattern}", text))


def _mark(server: ServerProcess) -> None:
    with open(server.log, "a") as log:
        log.write("--mark--\n")


def _until_every_worker(server: ServerProcess, password: str, expected: bool, pattern: str) -> int:
    """Log in until both workers have answered; every answer must be *expected*."""
    _mark(server)
    for tries in range(1, TRIES + 1):
        assert _login(server, password) is expected, f"try {tries}"
        if tries >= 4 and _workers_logging(server, pattern) == {"w0", "w1"}:
            return tries
    raise AssertionError(f"one worker got no connection in {TRIES} tries")


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[ServerProcess]:
    with server_process(tmp_path, {USER: OLD}, extra_config=AUTH, workers=2) as server:
        yield server


def test_cli_password_change_is_seen_at_once_by_every_worker(two_workers: ServerProcess) -> None:
    server = two_workers
    ok = f"event=session proto=imap user={re.escape(USER)} "
    failed = f"authentication failed user='{re.escape(USER)}'"
    # both workers verify the old password, then remember it
    _until_every_worker(server, OLD, True, ok)
    server.cli("user", "passwd", USER, "--password-stdin", stdin=NEW.encode() + b"\n")
    _until_every_worker(server, OLD, False, failed)
    _until_every_worker(server, NEW, True, ok)
    server.cli("user", "del", USER)
    _until_every_worker(server, NEW, False, failed)


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    database = session_database()
    schema, dsn = database.new_schema()
    try:
        with postgres_nodes(tmp_path, dsn, {USER: OLD}, AUTH) as (a, b):
            yield a, b
    finally:
        database.drop_schema(schema)


def test_cli_password_change_is_seen_at_once_by_every_node(
    two_nodes: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = two_nodes
    for node in (a, b, a, b):  # verified, then found in each node's cache
        assert _login(node, OLD)
    a.cli("user", "passwd", USER, "--password-stdin", stdin=NEW.encode() + b"\n")
    for node in (b, a, b, a):
        assert not _login(node, OLD)
    for node in (b, a, b, a):
        assert _login(node, NEW)
    b.cli("user", "del", USER)
    for node in (a, b, a, b):
        assert not _login(node, NEW)
