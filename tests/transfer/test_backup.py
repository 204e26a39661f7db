"""`pobox backup`, `pobox backup verify` and `pobox restore` (docs/backup.md).

The store is filled through the Store API with everything a restore must bring back (folders,
flags and keywords, shared contents, expunges, POP3-hidden and recoverable messages, UIDL
overrides, aliases, settings, subscriptions); what the store holds is compared through
``Store.snapshot`` (contents by their bytes), and what clients see through a real `pobox serve`.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import zstandard
from tests.helpers.servers import POBOX, pobox
from tests.store.util import message_bytes, new_message
from tests.transfer.util import USERS, fill, observed

from pobox.store.factory import create_store


async def _filled(data: Path, messages: int = 12) -> list[Any]:
    store = create_store("sqlite", data)
    await store.open()
    try:
        await fill(store, messages)
        return await observed(store)
    finally:
        await store.close()


async def _observed_at(spec: str, data: Path) -> list[Any]:
    store = create_store(spec, data)
    await store.open()
    try:
        return await observed(store)
    finally:
        await store.close()


async def test_backup_verify_restore_into_sqlite_and_postgres(tmp_path: Path, pg_dsn: str) -> None:
    data = tmp_path / "data"
    before = await _filled(data)
    dest = tmp_path / "backup"
    first = pobox("backup", str(dest), data=data)
    assert b"2 account(s)" in first.stdout
    assert b"11 of 11 content(s) written" in first.stdout, first.stdout
    # incremental: a second run over unchanged mail writes nothing
    second = pobox("backup", str(dest), data=data)
    assert b"0 of 11 content(s) written" in second.stdout, second.stdout
    good = pobox("backup", "verify", str(dest), data=data)
    assert b"is good" in good.stdout
    # into an empty data directory
    restored = tmp_path / "restored"
    out = pobox("restore", str(dest), "--to", str(restored), data=data)
    assert b"restored the backup" in out.stdout
    assert await _observed_at("sqlite", restored) == before
    # into PostgreSQL
    pobox("restore", str(dest), "--to", pg_dsn, data=data)
    assert await _observed_at(pg_dsn, tmp_path / "pg-spool") == before
    # a second restore over existing accounts is refused, --replace replaces
    again = pobox("restore", str(dest), "--to", str(restored), data=data, check=False)
    assert again.returncode == 1 and b"--replace" in again.stderr
    pobox("restore", str(dest), "--to", pg_dsn, "--replace", data=data)
    assert await _observed_at(pg_dsn, tmp_path / "pg-spool") == before
    # one account out of a backup of the whole server
    single = tmp_path / "single"
    pobox("restore", str(dest), "--to", str(single), "--account", USERS[1], data=data)
    assert await _observed_at("sqlite", single) == [before[1]]
    missing = pobox(
        "restore", str(dest), "--to", str(single), "--account", "x@y.z", data=data, check=False
    )
    assert missing.returncode == 1 and b"no account x@y.z" in missing.stderr


async def test_backup_of_postgres_and_of_one_account(tmp_path: Path, pg_dsn: str) -> None:
    data = tmp_path / "data"
    before = await _filled(data)
    pobox("restore", str(_backup(tmp_path, data)), "--to", pg_dsn, data=data)
    # back up the PostgreSQL store (one account), restore that into SQLite
    config = tmp_path / "pg.toml"
    config.write_text(f'store = "{pg_dsn}"\n')
    dest = tmp_path / "from-pg"
    pobox("backup", "--account", USERS[0], str(dest), data=tmp_path / "pg", config=config)
    pobox("backup", "verify", str(dest), data=data)
    again = tmp_path / "again"
    pobox("restore", str(dest), "--to", str(again), data=data)
    assert await _observed_at("sqlite", again) == [before[0]]


def _backup(tmp_path: Path, data: Path) -> Path:
    dest = tmp_path / "backup"
    pobox("backup", str(dest), data=data)
    return dest


def _objects(dest: Path) -> list[Path]:
    return sorted((dest / "objects").rglob("*.zst"))


async def test_verify_finds_a_flipped_byte_and_a_missing_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    await _filled(data)
    dest = _backup(tmp_path, data)
    objects = _objects(dest)
    assert len(objects) == 11
    # a flipped byte in a message content (the compressed file still decompresses)
    victim = objects[3]
    raw = zstandard.ZstdDecompressor().decompress(victim.read_bytes())
    flipped = bytearray(raw)
    flipped[len(flipped) // 2] ^= 0x01
    victim.write_bytes(zstandard.ZstdCompressor().compress(bytes(flipped)))
    bad = pobox("backup", "verify", str(dest), data=data, check=False)
    assert bad.returncode == 1
    assert victim.stem.encode() in bad.stdout  # the content's SHA-256 names it
    assert b"SHA-256 differs" in bad.stdout and b"NOT good" in bad.stdout
    # a flipped byte in the compressed file itself
    packed = bytearray(victim.read_bytes())
    packed[-3] ^= 0x40
    victim.write_bytes(bytes(packed))
    assert pobox("backup", "verify", str(dest), data=data, check=False).returncode == 1
    # a missing one
    victim.write_bytes(zstandard.ZstdCompressor().compress(raw))
    assert pobox("backup", "verify", str(dest), data=data).returncode == 0
    objects[7].unlink()
    gone = pobox("backup", "verify", str(dest), data=data, check=False)
    assert gone.returncode == 1 and b"is missing" in gone.stdout
    # the next backup writes it again (it is not in contents.json's objects any more)
    pobox("backup", str(dest), data=data)
    assert pobox("backup", "verify", str(dest), data=data).returncode == 0
    # a damaged index
    index = next((dest / "indexes").iterdir())
    index.write_bytes(index.read_bytes()[:-1])
    broken = pobox("backup", "verify", str(dest), data=data, check=False)
    assert broken.returncode == 1 and b"index" in broken.stdout


async def _bulk(data: Path, count: int) -> None:
    store = create_store("sqlite", data)
    await store.open()
    try:
        account = await store.create_account("bulk@example.org", "h")
        inbox = await store.get_mailbox(account.id, "INBOX")
        assert inbox is not None
        for start in range(0, count, 500):
            batch = [
                await new_message(store, message_bytes(n, size=2000 + n))
                for n in range(start, min(count, start + 500))
            ]
            await store.append_many(inbox.id, batch)
    finally:
        await store.close()


def _kill_midway(dest: Path, data: Path, sig: int = signal.SIGKILL, after: int = 1) -> bytes:
    """Start `pobox backup`, send it *sig* once it has written some contents but not all;
    returns what it wrote on standard error. *after*: how many contents it writes first."""
    proc = subprocess.Popen(
        [*POBOX, "--data", str(data), "backup", "--quiet", str(dest)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        before = len(_objects(dest)) if (dest / "objects").exists() else 0
        while time.monotonic() < deadline:
            if (dest / "objects").exists() and len(_objects(dest)) >= before + after:
                break
            assert proc.poll() is None, "the backup finished before it could be stopped"
            time.sleep(0.002)
        os.kill(proc.pid, sig)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert not (dest / "pobox-backup.json").exists() or (dest / "INCOMPLETE").exists()
    return err


async def test_a_killed_backup_never_verifies_as_good(tmp_path: Path) -> None:
    data = tmp_path / "data"
    await _bulk(data, 6000)
    dest = tmp_path / "backup"
    _kill_midway(dest, data)
    verdict = pobox("backup", "verify", str(dest), data=data, check=False)
    assert verdict.returncode == 1, verdict.stdout
    assert b"did not finish" in verdict.stdout
    # a rerun completes it; a later run killed midway is reported again
    pobox("backup", str(dest), data=data)
    assert pobox("backup", "verify", str(dest), data=data).returncode == 0
    await _bulk_more(data)
    _kill_midway(dest, data)
    assert pobox("backup", "verify", str(dest), data=data, check=False).returncode == 1
    pobox("backup", str(dest), data=data)
    assert pobox("backup", "verify", str(dest), data=data).returncode == 0


async def _bulk_more(data: Path) -> None:
    store = create_store("sqlite", data)
    await store.open()
    try:
        account = await store.get_account("bulk@example.org")
        assert account is not None
        inbox = await store.get_mailbox(account.id, "INBOX")
        assert inbox is not None
        for start in range(0, 3000, 500):
            batch = [
                await new_message(store, message_bytes(10_000 + n, size=2000 + n))
                for n in range(start, start + 500)
            ]
            await store.append_many(inbox.id, batch)
    finally:
        await store.close()


async def test_ctrl_c_stops_a_backup_cleanly_and_a_rerun_completes_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    await _bulk(data, 6000)
    dest = tmp_path / "backup"
    err = _kill_midway(dest, data, signal.SIGINT, after=1000)
    assert b"backup: interrupted after" in err and b"Traceback" not in err
    assert pobox("backup", "verify", str(dest), data=data, check=False).returncode == 1
    rerun = pobox("backup", str(dest), data=data)
    # the rerun writes only what the interrupted run had not finished
    written = re.search(rb"(\d+) of 6000 content\(s\) written", rerun.stdout)
    assert written is not None and int(written[1]) <= 5500, rerun.stdout
    assert pobox("backup", "verify", str(dest), data=data).returncode == 0


def test_backup_refuses_a_directory_that_is_no_backup(tmp_path: Path) -> None:
    data = tmp_path / "data"
    pobox("init", data=data)
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"meow")
    result = pobox("backup", str(other), data=data, check=False)
    assert result.returncode == 1 and b"holds no pobox backup" in result.stderr
    none = pobox("backup", "verify", str(tmp_path / "nothing"), data=data, check=False)
    assert none.returncode == 1 and b"no pobox backup" in none.stdout
    for args in (["verify"], ["a", "b"], ["verify", "a", "b"]):
        usage = pobox("backup", *args, data=data, check=False)
        assert usage.returncode == 1 and b"usage: pobox backup DEST" in usage.stderr
