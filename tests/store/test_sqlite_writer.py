"""The embedded store's writer (pobox.store.sqlite.db): prepare steps and the writers' lock."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import sqlite3
from pathlib import Path

import pytest

from pobox.errors import Temporary
from pobox.store.sqlite.db import Database, connect


def _insert(value: int):  # type: ignore[no-untyped-def]
    def run(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t (v) VALUES (?)", (value,))
        return value

    return run


@pytest.fixture
def db(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "store.db"
    conn = connect(path)
    conn.execute("CREATE TABLE t (v INTEGER)")
    conn.close()
    database = Database(path)
    database.start()
    yield database
    database.stop()


def _values(db: Database) -> list[int]:
    conn = connect(db.path)
    try:
        return [v for (v,) in conn.execute("SELECT v FROM t ORDER BY v")]
    finally:
        conn.close()


async def test_a_write_waits_while_another_writer_holds_the_lock(db: Database) -> None:
    """Writers of other processes (another worker, the CLI) take turns through an flock on
    ``<database>-writer.lock``: while one holds it, this process's write is not committed."""
    assert await db.write(_insert(1)) == 1  # the writer thread has opened its lock file
    # a separate open file description conflicts like another process's would
    other = os.open(f"{db.path}-writer.lock", os.O_RDWR)
    try:
        fcntl.flock(other, fcntl.LOCK_EX)
        pending = asyncio.ensure_future(db.write(_insert(2)))
        await asyncio.sleep(0.3)
        assert not pending.done()
        assert _values(db) == [1]
        fcntl.flock(other, fcntl.LOCK_UN)
        assert await asyncio.wait_for(pending, 10) == 2
    finally:
        os.close(other)
    assert _values(db) == [1, 2]


async def test_without_a_lock_file_writes_still_work(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    conn = connect(path)
    conn.execute("CREATE TABLE t (v INTEGER)")
    conn.close()
    (tmp_path / "store.db-writer.lock").mkdir()  # cannot be opened as a file
    database = Database(path)
    database.start()
    try:
        assert await database.write(_insert(5)) == 5
        assert _values(database) == [5]
    finally:
        database.stop()


async def test_prepare_runs_before_the_write_and_its_error_is_the_callers(db: Database) -> None:
    order: list[str] = []

    def prepare() -> None:
        order.append("prepare")

    def run(conn: sqlite3.Connection) -> None:
        order.append("write")
        conn.execute("INSERT INTO t (v) VALUES (3)")

    await db.write(run, prepare=prepare)
    assert order == ["prepare", "write"]

    def full() -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(Temporary):
        await db.write(_insert(4), prepare=full)
    # the other writes of the same moment are not affected
    results = await asyncio.gather(
        db.write(_insert(6)),
        db.write(_insert(7), prepare=full),
        db.write(_insert(8), prepare=lambda: None),
        return_exceptions=True,
    )
    assert results[0] == 6 and results[2] == 8
    assert isinstance(results[1], Temporary)
    assert _values(db) == [3, 6, 8]
