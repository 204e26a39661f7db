"""The parse a backup carries (docs/decisions/backup-parsed.md): what the store parsed of each
content comes back with it without parsing it again, and backups without it (made before)
still restore, parsed as before, with the same result."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import zstandard
from tests.transfer.util import fill, observed

from pobox.store.api import SearchFields, Store
from pobox.store.factory import create_store
from pobox.transfer import format as fmt
from pobox.transfer.backup import backup
from pobox.transfer.restore import restore


async def _open(spec: str, data: Path) -> Store:
    store = create_store(spec, data)
    await store.open()
    return store


async def parsed_by_digest(store: Store) -> dict[str, fmt.Parsed]:
    """What the store keeps parsed of each of its contents, by the SHA-256 of the content."""
    async with store.snapshot() as snap:
        keys = sorted(
            {m.content for i in await snap.accounts() for mb in i.mailboxes for m in mb.messages}
            | {
                r.content
                for i in await snap.accounts()
                for r in i.recoverable
                if r.content is not None
            }
        )
        assert isinstance(snap, fmt.ParsedSource)
        parsed = await snap.read_parsed(keys)
        datas = await snap.read_contents(keys)
    assert set(parsed) == set(keys)
    return {hashlib.sha256(d).hexdigest(): parsed[k] for k, d in zip(keys, datas, strict=True)}


async def _source(tmp_path: Path) -> tuple[Path, list[Any], dict[str, fmt.Parsed]]:
    """A filled SQLite store backed up: (the backup, what the store held, its parse)."""
    store = await _open("sqlite", tmp_path / "data")
    try:
        await fill(store)
        dest = tmp_path / "backup"
        await backup(store, dest, store_id="test")
        return dest, await observed(store), await parsed_by_digest(store)
    finally:
        await store.close()


def _edit_index(dest: Path, edit: Any) -> None:
    """Rewrite the backup's index through *edit* (document → None), manifest updated."""
    manifest = json.loads((dest / fmt.MANIFEST).read_bytes())
    path = dest / manifest["index"]
    document = json.loads(zstandard.ZstdDecompressor().decompress(path.read_bytes()))
    edit(document)
    packed = zstandard.ZstdCompressor().compress(json.dumps(document).encode())
    path.write_bytes(packed)
    manifest["index_sha256"] = hashlib.sha256(packed).hexdigest()
    (dest / fmt.MANIFEST).write_text(json.dumps(manifest))


async def _restored(spec: str, data: Path, dest: Path) -> tuple[list[Any], dict[str, Any]]:
    store = await _open(spec, data)
    try:
        await restore(store, dest)
        return await observed(store), await parsed_by_digest(store)
    finally:
        await store.close()


async def test_the_backup_carries_the_parse_and_restores_it(tmp_path: Path, pg_dsn: str) -> None:
    dest, before, parsed = await _source(tmp_path)
    manifest = fmt.read_manifest(dest)
    carried = fmt.parsed_of(fmt.read_index(dest, manifest))
    assert carried == parsed  # every content's, as the store had it
    assert all(fields.subject for _, fields in carried.values())
    for spec, data in (("sqlite", tmp_path / "restored"), (pg_dsn, tmp_path / "pg-spool")):
        held, again = await _restored(spec, data, dest)
        assert held == before
        assert again == parsed
    # a backup of the PostgreSQL store carries the same
    store = await _open(pg_dsn, tmp_path / "pg-spool")
    try:
        await backup(store, tmp_path / "from-pg", store_id="pg")
    finally:
        await store.close()
    from_pg = fmt.read_index(tmp_path / "from-pg", fmt.read_manifest(tmp_path / "from-pg"))
    assert fmt.parsed_of(from_pg) == parsed


async def test_a_backup_without_the_parse_still_restores(tmp_path: Path, pg_dsn: str) -> None:
    """A backup made before the index carried the parse: every content is parsed again, to
    the same result."""
    dest, before, parsed = await _source(tmp_path)
    _edit_index(dest, lambda document: document.pop("parsed"))
    assert fmt.parsed_of(fmt.read_index(dest, fmt.read_manifest(dest))) == {}
    for spec, data in (("sqlite", tmp_path / "restored"), (pg_dsn, tmp_path / "pg-spool")):
        held, again = await _restored(spec, data, dest)
        assert held == before
        assert again == parsed


async def test_a_carried_record_is_used_unless_this_pobox_cannot_read_it(tmp_path: Path) -> None:
    dest, before, parsed = await _source(tmp_path)
    first, second, third = sorted(parsed)[:3]

    def edit(document: dict[str, Any]) -> None:
        section = document["parsed"]
        subject = 1 + section["fields"].index("subject")
        records = section["records"]
        records[first][subject] = "carried, not parsed"
        records[second][0] = "[99" + records[second][0][2:]  # a structure format from later
        del records[third]  # not carried

    _edit_index(dest, edit)
    held, again = await _restored("sqlite", tmp_path / "restored", dest)
    assert held == before
    assert again[first][1].subject == "carried, not parsed"
    assert again[first][0] == parsed[first][0]
    assert again[second] == parsed[second]  # parsed again
    assert again[third] == parsed[third]
    assert {k: v for k, v in again.items() if k != first} == {
        k: v for k, v in parsed.items() if k != first
    }


def test_parsed_records_are_checked() -> None:
    names = list(fmt.SEARCH_FIELDS)
    structure = fmt.STRUCTURE_PREFIX.decode() + "[]]"
    fields = SearchFields(subject="s", from_="f", message_id="<m@x>")
    row = fmt.parsed_json((structure.encode(), fields))
    assert row is not None
    assert fmt.parsed_record(names, row) == (structure.encode(), fields)
    # a field this pobox stores that the backup does not name: parse again
    assert fmt.parsed_record(names[:-1], row[:-1]) is None
    # wrong types, wrong lengths, another structure format
    bad_subject = list(row)
    bad_subject[1 + names.index("subject")] = None
    assert fmt.parsed_record(names, bad_subject) is None
    bad_date = list(row)
    bad_date[1 + names.index("sent_date")] = "yesterday"
    assert fmt.parsed_record(names, bad_date) is None
    assert fmt.parsed_record(names, row[:-1]) is None
    assert fmt.parsed_record(names, ["[0," + row[0][3:], *row[1:]]) is None
    assert fmt.parsed_record(names, "not a list") is None
    # a structure that is not ASCII is not carried
    assert fmt.parsed_json(("[1,é".encode(), fields)) is None
    # names the backup adds that this pobox does not know are ignored
    assert fmt.parsed_record([*names, "later"], [*row, 1]) == (structure.encode(), fields)
