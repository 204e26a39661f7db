"""Maildir in Dovecot's layout (Maildir++): writing an export, reading an import.

::

    ROOT/                     INBOX: cur/ new/ tmp/, dovecot-uidlist, dovecot-keywords
    ROOT/.Work/               the mailbox "Work"
    ROOT/.Work.Reports/       "Work/Reports" (names in modified UTF-7, '.' as the separator)

``dovecot-uidlist`` (version 3): a header ``3 V<uidvalidity> N<next uid> G<guid>``, then one
line per message, ``<uid> [<key><value> ...] :<file name>``, where pobox writes and reads ``P``
(the POP3 UIDL), ``W`` (the size with CRLF line ends) and ``S`` (the file's size).
``dovecot-keywords``: ``<index> <keyword>`` per line; keyword *n* is the letter ``a`` + n in
file names. File names end in ``:2,`` and the flags: D (\\Draft), F (\\Flagged), R (\\Answered),
S (\\Seen), T (\\Deleted), then keyword letters. Files have LF line ends; their modification
time is the message's internal date.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from pobox.errors import InvalidInput
from pobox.imap import mutf7
from pobox.store.api import DELIMITER
from pobox.transfer.importer import SourceMailbox, SourceMessage

FLAG_LETTERS = {
    "\\Draft": "D",
    "\\Flagged": "F",
    "\\Answered": "R",
    "\\Seen": "S",
    "\\Deleted": "T",
}
LETTER_FLAGS = {letter: flag for flag, letter in FLAG_LETTERS.items()}
MAX_KEYWORDS = 26


def folder_dir(root: Path, name: str) -> Path:
    if name.upper() == "INBOX":
        return root
    encoded = mutf7.encode(name).decode("ascii")
    if "." in encoded:
        raise InvalidInput(f"mailbox {name!r} has a '.', which Maildir++ cannot name")
    return root / ("." + encoded.replace(DELIMITER, "."))


def folder_name(entry: str) -> str:
    """'.Work.Reports' → 'Work/Reports'."""
    return mutf7.decode(entry[1:].replace(".", DELIMITER).encode("ascii"))


def to_lf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n")


@dataclass
class MaildirMessage:
    uid: int
    flags: frozenset[str]
    internal_date: float
    data: bytes  # CRLF, as stored
    pop3_uidl: str


class MaildirWriter:
    """One mailbox of an export (blocking)."""

    def __init__(self, root: Path, name: str, uidvalidity: int, uidnext: int) -> None:
        self.dir = folder_dir(root, name)
        for sub in ("cur", "new", "tmp"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.uidvalidity = uidvalidity
        self.uidnext = uidnext
        self.keywords: dict[str, int] = {}
        self.lines: list[str] = []
        self.dropped: set[str] = set()

    def _letters(self, flags: frozenset[str]) -> str:
        system = "".join(sorted(FLAG_LETTERS[f] for f in flags if f in FLAG_LETTERS))
        letters = []
        for keyword in sorted(f for f in flags if f not in FLAG_LETTERS):
            if keyword not in self.keywords:
                if len(self.keywords) >= MAX_KEYWORDS:
                    self.dropped.add(keyword)
                    continue
                self.keywords[keyword] = len(self.keywords)
            letters.append(chr(ord("a") + self.keywords[keyword]))
        return system + "".join(sorted(letters))

    def add(self, message: MaildirMessage) -> int:
        body = to_lf(message.data)
        base = (
            f"{int(message.internal_date)}.P{message.uid}Q{self.uidvalidity}.pobox"
            f",S={len(body)},W={len(message.data)}"
        )
        path = self.dir / "cur" / f"{base}:2,{self._letters(message.flags)}"
        tmp = self.dir / "tmp" / base
        with open(tmp, "wb") as fp:
            fp.write(body)
        os.utime(tmp, (message.internal_date, message.internal_date))
        os.replace(tmp, path)
        self.lines.append(
            f"{message.uid} P{message.pop3_uidl} W{len(message.data)} S{len(body)} :{base}"
        )
        return len(body)

    def finish(self) -> None:
        header = f"3 V{self.uidvalidity} N{self.uidnext} G{secrets.token_hex(16)}"
        (self.dir / "dovecot-uidlist").write_text("\n".join([header, *self.lines]) + "\n")
        keywords = "".join(
            f"{i} {k}\n" for k, i in sorted(self.keywords.items(), key=lambda x: x[1])
        )
        (self.dir / "dovecot-keywords").write_text(keywords)


# -- reading ----------------------------------------------------------------------------------


def _read_keywords(path: Path) -> dict[str, str]:
    letters: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            index, _, keyword = line.partition(" ")
            if index.isdigit() and keyword and int(index) < MAX_KEYWORDS:
                letters[chr(ord("a") + int(index))] = keyword
    return letters


def _read_uidlist(path: Path) -> tuple[int | None, int | None, dict[str, tuple[int, str | None]]]:
    """(UIDVALIDITY, next UID, file base name → (UID, stored POP3 UIDL)) of a dovecot-uidlist."""
    if not path.is_file():
        return None, None, {}
    lines = path.read_text(errors="replace").splitlines()
    if not lines:
        return None, None, {}
    head = lines[0].split()
    uidvalidity = nextuid = None
    version = head[0] if head else ""
    if version == "1" and len(head) >= 3:
        uidvalidity, nextuid = int(head[1]), int(head[2])
    elif version in ("2", "3"):
        for field in head[1:]:
            if field[:1] == "V" and field[1:].isdigit():
                uidvalidity = int(field[1:])
            elif field[:1] == "N" and field[1:].isdigit():
                nextuid = int(field[1:])
    else:
        raise InvalidInput(f"{path}: not a dovecot-uidlist this pobox reads (version {version!r})")
    records: dict[str, tuple[int, str | None]] = {}
    for line in lines[1:]:
        if version == "1":
            uid, _, name = line.partition(" ")
            if uid.isdigit() and name:
                records[name.split(":2,")[0]] = (int(uid), None)
            continue
        before, sep, name = line.partition(" :")
        if not sep:
            continue
        parts = before.split()
        if not parts or not parts[0].isdigit():
            continue
        uidl = next((p[1:] for p in parts[1:] if p.startswith("P")), None)
        records[name.split(":2,")[0]] = (int(parts[0]), uidl or None)
    return uidvalidity, nextuid, records


def _flags(name: str, letters: dict[str, str]) -> frozenset[str]:
    _, sep, info = name.partition(":2,")
    if not sep:
        return frozenset()
    flags = set()
    for ch in info:
        if ch in LETTER_FLAGS:
            flags.add(LETTER_FLAGS[ch])
        elif ch in letters:
            flags.add(letters[ch])
    return frozenset(flags)


def read_folder(path: Path, name: str) -> SourceMailbox:
    """One Maildir folder as a source mailbox; files the uidlist does not know get UIDs after
    its next UID, in name order (as Dovecot would give them)."""
    letters = _read_keywords(path / "dovecot-keywords")
    uidvalidity, nextuid, records = _read_uidlist(path / "dovecot-uidlist")
    files: list[Path] = []
    for sub in ("cur", "new"):
        if (path / sub).is_dir():
            files += [
                p for p in (path / sub).iterdir() if p.is_file() and not p.name.startswith(".")
            ]
    messages: list[SourceMessage] = []
    unknown: list[Path] = []
    for file in sorted(files, key=lambda p: p.name):
        record = records.get(file.name.split(":2,")[0])
        if record is None:
            unknown.append(file)
            continue
        messages.append(_message(file, letters, record[0], record[1]))
    next_free = max([nextuid or 1, *(m.uid or 0 for m in messages)]) if messages else nextuid or 1
    for file in unknown:
        if uidvalidity is not None:
            messages.append(_message(file, letters, next_free, None))
            next_free += 1
        else:
            messages.append(_message(file, letters, None, None))
    return SourceMailbox(
        name=name,
        messages=messages,
        uidvalidity=uidvalidity,
        uidnext=max(nextuid or 1, next_free) if uidvalidity is not None else None,
    )


def _message(
    file: Path, letters: dict[str, str], uid: int | None, uidl: str | None
) -> SourceMessage:
    stat = file.stat()
    return SourceMessage(
        load=file.read_bytes,
        flags=_flags(file.name, letters),
        internal_date=stat.st_mtime,
        uid=uid,
        pop3_uidl=uidl,
        size=stat.st_size,
    )


def read_tree(root: Path) -> list[SourceMailbox]:
    """Every folder of a Maildir++ tree (ROOT itself is INBOX)."""
    if not root.is_dir():
        raise InvalidInput(f"{root} is not a directory")
    if not any((root / sub).is_dir() for sub in ("cur", "new")):
        raise InvalidInput(f"{root} is not a Maildir (no cur/ or new/)")
    folders = [read_folder(root, "INBOX")]
    subscribed = _subscriptions(root)
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry.is_dir() and entry.name.startswith(".") and entry.name not in (".", ".."):
            if not any((entry / sub).is_dir() for sub in ("cur", "new")):
                continue
            folder = read_folder(entry, folder_name(entry.name))
            if subscribed is not None:
                folder.subscribed = folder.name in subscribed
            folders.append(folder)
    return folders


def _subscriptions(root: Path) -> set[str] | None:
    """Dovecot's ``subscriptions`` file (one name per line, after a ``V\\t2`` header in newer
    versions; hierarchy by '.' in older ones, by tab in newer); None without one."""
    path = root / "subscriptions"
    if not path.is_file():
        return None
    names = set()
    for line in path.read_text(errors="replace").splitlines():
        if not line or line.startswith("V\t"):
            continue
        names.add(line.replace("\t", DELIMITER).replace(".", DELIMITER))
    return names
