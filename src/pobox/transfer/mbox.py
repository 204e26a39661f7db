"""mboxrd files: writing an export, reading an import.

Each message starts with a ``From `` line (sender and date in asctime form) and ends with a
blank line; a body line that starts with ``From `` after any number of ``>`` gets one more ``>``
(mboxrd), which reading takes away again, so every message comes back byte for byte. Flags go
in ``Status:`` (R: \\Seen, O: old), ``X-Status:`` (A: \\Answered, F: \\Flagged, T: \\Draft,
D: \\Deleted) and ``X-Keywords:`` header lines added at the end of the header (as mutt and
Dovecot write them); reading takes them out. Line ends are LF in the file, CRLF in pobox.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import BinaryIO

from pobox.errors import InvalidInput
from pobox.store.api import DELIMITER
from pobox.transfer.importer import SourceMailbox, SourceMessage
from pobox.transfer.maildir import to_lf

_QUOTED_FROM = re.compile(rb"^(>*From )", re.MULTILINE)
_UNQUOTE_FROM = re.compile(rb"^>(>*From )", re.MULTILINE)
X_STATUS = {"\\Answered": "A", "\\Flagged": "F", "\\Draft": "T", "\\Deleted": "D"}
_OUR_HEADERS = (b"status:", b"x-status:", b"x-keywords:")


def mbox_path(root: Path, name: str) -> Path:
    parts = name.split(DELIMITER)
    if any(part in ("", ".", "..") for part in parts):
        raise InvalidInput(f"mailbox {name!r} cannot be a file name")
    return root.joinpath(*parts[:-1], parts[-1] + ".mbox")


def from_line(internal_date: float) -> bytes:
    return f"From MAILER-DAEMON {time.asctime(time.gmtime(internal_date))}\n".encode()


def write_message(fp: BinaryIO, data: bytes, flags: frozenset[str], internal_date: float) -> int:
    body = to_lf(data)
    head, sep, rest = body.partition(b"\n\n")
    if not sep:  # a message without a body
        head = body.rstrip(b"\n")
    extra = ["Status: RO" if "\\Seen" in flags else "Status: O"]
    x_status = "".join(letter for flag, letter in X_STATUS.items() if flag in flags)
    if x_status:
        extra.append(f"X-Status: {x_status}")
    keywords = sorted(f for f in flags if not f.startswith("\\"))
    if keywords:
        extra.append(f"X-Keywords: {' '.join(keywords)}")
    text = head + b"\n" + "\n".join(extra).encode() + b"\n" + (b"\n" + rest if sep else b"")
    text = _QUOTED_FROM.sub(rb">\1", text)
    if not text.endswith(b"\n"):
        text += b"\n"
    fp.write(from_line(internal_date) + text + b"\n")
    return len(text)


def _date(line: bytes) -> float | None:
    parts = line.decode("latin-1").split(None, 2)
    if len(parts) < 3:
        return None
    try:
        return time.mktime(time.strptime(parts[2].strip(), "%a %b %d %H:%M:%S %Y")) - time.timezone
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(parts[2]).timestamp()
    except (TypeError, ValueError):
        return None


def _split(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(From line, message) pairs of an mbox file."""
    if not data.startswith(b"From "):
        raise InvalidInput("not an mbox file (it does not start with a From line)")
    # a message ends with its own last line end and a blank line; the next From line follows
    starts = [0] + [m.start() + 2 for m in re.finditer(rb"\n\nFrom ", data)] + [len(data)]
    for a, b in itertools.pairwise(starts):
        line, _, message = data[a:b].partition(b"\n")
        if message.endswith(b"\n\n"):
            message = message[:-1]
        yield line, message


def parse_message(from_: bytes, message: bytes) -> tuple[bytes, frozenset[str], float | None]:
    """The message's bytes (CRLF), its flags and its date from the From line."""
    message = _UNQUOTE_FROM.sub(rb"\1", message)
    head, sep, rest = message.partition(b"\n\n")
    flags: set[str] = set()
    kept = []
    for line in head.split(b"\n"):
        lower = line.lower()
        if lower.startswith(b"status:"):
            if b"R" in line[7:]:
                flags.add("\\Seen")
        elif lower.startswith(b"x-status:"):
            letters = line[9:].decode("latin-1")
            flags.update(f for f, letter in X_STATUS.items() if letter in letters)
        elif lower.startswith(b"x-keywords:"):
            flags.update(k for k in line[11:].decode("utf-8", "replace").replace(",", " ").split())
        else:
            kept.append(line)
    body = b"\n".join(kept) + sep + rest
    return body.replace(b"\n", b"\r\n"), frozenset(flags), _date(from_)


def read_file(path: Path, name: str) -> SourceMailbox:
    data = path.read_bytes()
    messages = []
    for line, raw in _split(data) if data else ():
        content, flags, when = parse_message(line, raw)
        messages.append(
            SourceMessage(
                load=lambda content=content: content,  # type: ignore[misc]
                flags=flags,
                internal_date=when,
                size=len(content),
            )
        )
    return SourceMailbox(name=name, messages=messages)


def read_tree(path: Path) -> list[SourceMailbox]:
    """An mbox file (imported into INBOX), or a directory of ``*.mbox`` files (as an export
    writes them: ``Work/Reports.mbox`` is the mailbox ``Work/Reports``)."""
    if path.is_file():
        return [read_file(path, "INBOX")]
    if not path.is_dir():
        raise InvalidInput(f"{path} is neither an mbox file nor a directory")
    boxes = []
    for file in sorted(path.rglob("*.mbox")):
        relative = file.relative_to(path).with_suffix("")
        name = DELIMITER.join(relative.parts)
        boxes.append(read_file(file, "INBOX" if name.upper() == "INBOX" else name))
    if not boxes:
        raise InvalidInput(f"{path} holds no *.mbox file")
    return boxes
