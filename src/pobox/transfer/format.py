"""The backup format, version 1 (docs/backup.md, docs/decisions/backup-format.md).

A backup directory holds::

    pobox-backup.json                 the manifest: written last, atomically (the backup is good)
    indexes/<stamp>.json.zst          the index of one run: accounts, mailboxes, messages (JSON)
    objects/<2 hex>/<sha256>.zst      message contents, one zstandard frame each, named by the
                                      SHA-256 of the uncompressed bytes
    contents.json                     which store contents are in objects/ (incremental runs)
    INCOMPLETE                        while a run is under way (a killed run leaves it behind)

The index is logical and backend-neutral: restore writes it into either backend. Readers ignore
keys they do not know, so later versions can add (app passwords, quotas, shares) without
breaking older backups; an incompatible change raises ``version``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pobox.errors import InvalidInput
from pobox.store.api import (
    AccountImage,
    Expunged,
    LoginImage,
    MailboxImage,
    MessageImage,
    ModSeq,
    RecoverableImage,
    SearchFields,
    Uid,
)

FORMAT = "pobox-backup"
VERSION = 1
MANIFEST = "pobox-backup.json"
INCOMPLETE = "INCOMPLETE"
CONTENTS = "contents.json"
OBJECTS = "objects"
INDEXES = "indexes"
ZSTD_LEVEL = 3
#: The level of message contents: zstandard's fastest, about twice level 3's speed for a
#: few percent in size on mail (docs/decisions/backup-speed.md).
OBJECT_ZSTD_LEVEL = 1


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_HEX = frozenset("0123456789abcdef")


def object_file(root: str | os.PathLike[str], digest: str) -> str:
    """Where the content named *digest* is in the backup at *root* (a string: a restore opens
    one per message and needs no Path object for it)."""
    if len(digest) != 64 or not _HEX.issuperset(digest):
        raise InvalidInput(f"not a SHA-256 content name: {digest!r}")
    return f"{os.fspath(root)}/{OBJECTS}/{digest[:2]}/{digest}.zst"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes, *, sync: bool = True) -> None:
    """*data* under *path*, whole or not at all: a temporary file renamed over it (fsync'd
    first, and the directory after, with *sync*)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as fp:
            fp.write(data)
            if sync:
                fp.flush()
                os.fsync(fp.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    if sync:
        fsync_dir(path.parent)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except ValueError as exc:
        raise InvalidInput(f"{path} is not valid JSON: {exc}") from None


def dumps(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


# -- images <-> JSON --------------------------------------------------------------------------
# Messages are compact lists (a store of 100,000 messages has as many); everything else is
# objects with named keys.

MESSAGE_FIELDS = (
    "uid",
    "modseq",
    "flags",
    "internal_date",
    "internal_tz",
    "save_date",
    "size",
    "sha256",
    "pop3_uidl",
    "pop3_hidden_at",
)


def message_json(m: MessageImage, digest: str) -> list[Any]:
    return [
        m.uid,
        m.modseq,
        sorted(m.flags),
        m.internal_date,
        m.internal_tz,
        m.save_date,
        m.size,
        digest,
        m.pop3_uidl,
        m.pop3_hidden_at,
    ]


def account_json(image: AccountImage, digests: Mapping[str, str]) -> dict[str, Any]:
    """*image* (content keys of the store) as the index keeps it (content by SHA-256)."""
    return {
        "address": image.address,
        "password_hash": image.password_hash,
        "created": image.created,
        "settings": dict(image.settings),
        "policies": [list(policy) for policy in image.policies],
        "logins": [
            {
                "label": x.label,
                "password_hash": x.password_hash,
                "created": x.created,
                "last_used": x.last_used,
                "last_address": x.last_address,
            }
            for x in image.logins
        ],
        "aliases": list(image.aliases),
        "subscriptions": list(image.subscriptions),
        "annotations": _annotations_json(image.annotations),
        "mailboxes": [
            {
                "name": mb.name,
                "uidvalidity": mb.uidvalidity,
                "uidnext": mb.uidnext,
                "highest_modseq": mb.highest_modseq,
                "recent_floor": mb.recent_floor,
                "special_use": mb.special_use,
                "expunged": [[e.uid, e.modseq] for e in mb.expunged],
                "acl": [[who, rights] for who, rights in mb.acl],
                "annotations": _annotations_json(mb.annotations),
                "message_fields": list(MESSAGE_FIELDS),
                "messages": [message_json(m, digests[m.content]) for m in mb.messages],
            }
            for mb in image.mailboxes
        ],
        "recoverable": [
            {
                "mailbox": r.mailbox_name,
                "uid": r.uid,
                "uidl": r.uidl,
                "deleted_at": r.deleted_at,
                "still_present": r.still_present,
                "sha256": None if r.content is None else digests[r.content],
                "flags": sorted(r.flags),
                "internal_date": r.internal_date,
                "internal_tz": r.internal_tz,
                "size": r.size,
            }
            for r in image.recoverable
        ],
    }


def _annotations_json(entries: tuple[tuple[str, bytes], ...]) -> list[list[str]]:
    """METADATA entries as [name, base64 of the value] (values are bytes, NUL included)."""
    return [[name, base64.b64encode(value).decode("ascii")] for name, value in entries]


def _annotations(rows: Any) -> tuple[tuple[str, bytes], ...]:
    return tuple((str(name), base64.b64decode(value, validate=True)) for name, value in rows)


def _message(fields: list[str], row: list[Any]) -> MessageImage:
    item = dict(zip(fields, row, strict=False))
    return MessageImage(
        uid=int(item["uid"]),
        modseq=int(item["modseq"]),
        flags=frozenset(item["flags"]),
        internal_date=float(item["internal_date"]),
        internal_tz=int(item["internal_tz"]),
        save_date=float(item["save_date"]),
        size=int(item["size"]),
        content=str(item["sha256"]),
        pop3_uidl=item.get("pop3_uidl"),
        pop3_hidden_at=item.get("pop3_hidden_at"),
    )


def account_image(document: Mapping[str, Any]) -> AccountImage:
    """An index's account as an image whose content keys are SHA-256 names."""
    try:
        mailboxes = []
        for mb in document["mailboxes"]:
            fields = list(mb.get("message_fields", MESSAGE_FIELDS))
            mailboxes.append(
                MailboxImage(
                    name=mb["name"],
                    uidvalidity=int(mb["uidvalidity"]),
                    uidnext=int(mb["uidnext"]),
                    highest_modseq=int(mb["highest_modseq"]),
                    recent_floor=int(mb.get("recent_floor", 1)),
                    special_use=mb.get("special_use"),
                    messages=tuple(_message(fields, row) for row in mb["messages"]),
                    expunged=tuple(Expunged(Uid(u), ModSeq(s)) for u, s in mb["expunged"]),
                    acl=tuple((str(w), str(r)) for w, r in mb.get("acl", ())),
                    annotations=_annotations(mb.get("annotations", ())),
                )
            )
        return AccountImage(
            address=document["address"],
            password_hash=document["password_hash"],
            created=float(document["created"]),
            settings=dict(document.get("settings", {})),
            policies=tuple((f, k, v) for f, k, v in document.get("policies", ())),
            logins=tuple(
                LoginImage(
                    label=x["label"],
                    password_hash=x["password_hash"],
                    created=float(x["created"]),
                    last_used=None if x.get("last_used") is None else float(x["last_used"]),
                    last_address=x.get("last_address"),
                )
                for x in document.get("logins", ())
            ),
            aliases=tuple(document.get("aliases", ())),
            subscriptions=tuple(document.get("subscriptions", ())),
            annotations=_annotations(document.get("annotations", ())),
            mailboxes=tuple(mailboxes),
            recoverable=tuple(
                RecoverableImage(
                    mailbox_name=r["mailbox"],
                    uid=int(r["uid"]),
                    uidl=r["uidl"],
                    deleted_at=float(r["deleted_at"]),
                    still_present=bool(r["still_present"]),
                    content=r.get("sha256"),
                    flags=frozenset(r["flags"]),
                    internal_date=float(r["internal_date"]),
                    internal_tz=int(r["internal_tz"]),
                    size=int(r["size"]),
                )
                for r in document.get("recoverable", ())
            ),
        )
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise InvalidInput(f"the backup index has a malformed account: {exc!r}") from None


def digests_of(image: AccountImage) -> Iterator[str]:
    """Every content an (index) image names."""
    for mb in image.mailboxes:
        for m in mb.messages:
            yield m.content
    for r in image.recoverable:
        if r.content is not None:
            yield r.content


# -- what was parsed of each content ----------------------------------------------------------
# The index carries, for each content, what pobox.mail parsed of it when the store took it in
# (the store's ``structure`` and search columns), so that a restore stores it again without
# parsing every message (docs/decisions/backup-parsed.md). A record is used only when its
# structure is of the format this pobox reads; otherwise (and for backups without records) the
# restore parses the content, as it did before.

#: A content's parse: pobox.mail's serialised ParsedMessage and the search fields.
Parsed = tuple[bytes, SearchFields]
#: The SearchFields this pobox has, in order (the index names the ones it carries).
SEARCH_FIELDS = tuple(f.name for f in dataclasses.fields(SearchFields))
_NULLABLE = {f.name for f in dataclasses.fields(SearchFields) if f.default is None}


@runtime_checkable
class ParsedSource(Protocol):
    """A store snapshot that can hand over what was parsed of its contents."""

    async def read_parsed(self, keys: list[str]) -> dict[str, Parsed]:
        """The parse of each content named by *keys* (store content keys) that has one."""
        ...


def _structure_prefix() -> bytes:
    from pobox.mail.parse import parse_message

    packed = parse_message(io.BytesIO(b"\r\n")).to_bytes()  # b"[<format>,[..."
    return packed[: packed.index(b",") + 1]


#: How a serialised structure of the format this pobox reads begins.
STRUCTURE_PREFIX = _structure_prefix()


def parsed_json(parsed: Parsed) -> list[Any] | None:
    """A parse as the index carries it (the fields named by SEARCH_FIELDS after the structure),
    or None when it cannot be carried (a structure that is not ASCII JSON)."""
    structure, fields = parsed
    try:
        text = structure.decode("ascii")
    except UnicodeDecodeError:
        return None
    row: list[Any] = [text]
    for name in SEARCH_FIELDS:
        value = getattr(fields, name)
        row.append(value.timestamp() if isinstance(value, datetime) else value)
    return row


def parsed_record(names: list[str], row: Any) -> Parsed | None:
    """A carried parse back (see parsed_json), or None when it is not usable here: not of the
    structure format this pobox reads, malformed, or missing a search field this pobox stores
    (then the content is parsed again)."""
    if not isinstance(row, list) or len(row) != len(names) + 1 or not isinstance(row[0], str):
        return None
    structure = row[0].encode("ascii", "replace")
    if not structure.startswith(STRUCTURE_PREFIX):
        return None
    values = dict(zip(names, row[1:], strict=True))
    if any(name not in values for name in SEARCH_FIELDS):
        return None
    kwargs: dict[str, Any] = {}
    for name in SEARCH_FIELDS:
        value = values[name]
        if name == "sent_date":
            try:
                kwargs[name] = None if value is None else datetime.fromtimestamp(float(value), UTC)
            except (TypeError, ValueError, OverflowError, OSError):
                return None
        elif isinstance(value, str) or (value is None and name in _NULLABLE):
            kwargs[name] = value
        else:
            return None
    fields = SearchFields(**kwargs)
    return structure, fields


def parsed_index(records: Mapping[str, Parsed]) -> dict[str, Any]:
    """The index's ``parsed`` section: the records of *records* (by SHA-256)."""
    rows = {}
    for digest, parsed in records.items():
        row = parsed_json(parsed)
        if row is not None:
            rows[digest] = row
    return {"fields": list(SEARCH_FIELDS), "records": rows}


class Carried:
    """An index's ``parsed`` section, each record made usable (``parsed_record``) when it is
    asked for: a restore asks for each in its worker threads, as it writes the content, instead
    of converting every record (100,000 of them in a second) before it writes the first."""

    def __init__(self, names: list[str], rows: Mapping[str, Any]) -> None:
        self.names = names
        self.rows = rows

    def get(self, digest: str) -> Parsed | None:
        row = self.rows.get(digest)
        return None if row is None else parsed_record(self.names, row)


def carried_of(document: Mapping[str, Any]) -> Carried:
    """The records of an index's ``parsed`` section (none in backups made before it)."""
    section = document.get("parsed")
    if not isinstance(section, dict):
        return Carried([], {})
    names = section.get("fields")
    rows = section.get("records")
    if not isinstance(names, list) or not isinstance(rows, dict):
        return Carried([], {})
    return Carried([str(n) for n in names], rows)


def parsed_of(document: Mapping[str, Any]) -> dict[str, Parsed]:
    """The usable records of an index's ``parsed`` section (none in backups made before it)."""
    carried = carried_of(document)
    out = {}
    for digest in carried.rows:
        parsed = carried.get(digest)
        if parsed is not None:
            out[str(digest)] = parsed
    return out


# -- reading a backup -------------------------------------------------------------------------


def read_manifest(root: Path) -> dict[str, Any]:
    """The manifest of the backup in *root*; InvalidInput when there is no complete backup."""
    path = root / MANIFEST
    if not path.is_file():
        if (root / INCOMPLETE).exists():
            raise InvalidInput(f"{root} holds no complete backup (a run did not finish)")
        raise InvalidInput(f"{root} holds no pobox backup (no {MANIFEST})")
    manifest = read_json(path)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InvalidInput(f"{path} is not a pobox backup manifest")
    version = manifest.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise InvalidInput(
            f"{path} has format version {version!r}; this pobox reads up to {VERSION}"
        )
    return manifest


def read_index(root: Path, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The index the manifest names, checked against its SHA-256 and decompressed."""
    import zstandard

    name = str(manifest.get("index", ""))
    path = root / name
    if not name.startswith(f"{INDEXES}/") or "/.." in name or not path.is_file():
        raise InvalidInput(f"the index {name!r} the manifest names is missing")
    packed = path.read_bytes()
    if sha256_hex(packed) != manifest.get("index_sha256"):
        raise InvalidInput(f"the index {name} does not match the manifest's SHA-256")
    try:
        document = json.loads(zstandard.ZstdDecompressor().decompress(packed))
    except (zstandard.ZstdError, ValueError) as exc:
        raise InvalidInput(f"the index {name} cannot be read: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("accounts"), list):
        raise InvalidInput(f"the index {name} is not a pobox backup index")
    return document


_local = threading.local()


def _decompressor() -> Any:
    """This thread's zstandard decompressor (making one costs about as much as decompressing
    a small message)."""
    decompressor = getattr(_local, "decompressor", None)
    if decompressor is None:
        import zstandard

        decompressor = _local.decompressor = zstandard.ZstdDecompressor()
    return decompressor


def read_object(root: Path, digest: str) -> bytes:
    """The content named *digest*, checked: InvalidInput when it is missing or damaged."""
    import zstandard

    path = object_file(root, digest)
    try:
        with open(path, "rb", buffering=0) as fp:  # no buffer: one read of the whole file
            packed = fp.readall()
    except FileNotFoundError:
        raise InvalidInput(f"message content {digest} is missing ({path})") from None
    try:
        data: bytes = _decompressor().decompress(packed)
    except zstandard.ZstdError as exc:
        raise InvalidInput(f"message content {digest} is damaged: {exc}") from None
    if sha256_hex(data) != digest:
        raise InvalidInput(f"message content {digest} is damaged (its SHA-256 differs)")
    return data
