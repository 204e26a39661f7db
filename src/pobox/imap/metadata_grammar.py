"""The METADATA commands (RFC 5464 §4, §5): GETMETADATA and SETMETADATA, and the METADATA
return option of LIST (RFC 9590).

Sans-IO like the rest of the grammar. Entry names are astrings kept as text; whether a name is
a valid entry is :mod:`pobox.service.metadata`'s business (the handler answers BAD). The
mailbox ``""`` means the server. GETMETADATA's options come before the mailbox name, as RFC
5464's grammar has them (erratum 2785 fixed the examples that had them after it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from pobox.imap.commands import Command
from pobox.imap.lexer import ParseError, Reader

#: DEPTH infinity
INFINITY = -1


@dataclass(frozen=True, slots=True)
class MetadataOptions:
    """MAXSIZE and DEPTH (§4.2.1, §4.2.2); depth 0, 1 or :data:`INFINITY`."""

    maxsize: int | None = None
    depth: int = 0


@dataclass(frozen=True, slots=True)
class GetMetadata(Command):
    NAME: ClassVar[str] = "GETMETADATA"
    mailbox: bytes
    entries: tuple[str, ...]
    options: MetadataOptions = MetadataOptions()


@dataclass(frozen=True, slots=True)
class SetMetadata(Command):
    NAME: ClassVar[str] = "SETMETADATA"
    mailbox: bytes
    values: tuple[tuple[str, bytes | None], ...]


@dataclass(frozen=True, slots=True)
class ListMetadata:
    """LIST ... RETURN (METADATA (...)) (RFC 9590): the entries, with the options."""

    entries: tuple[str, ...]
    options: MetadataOptions = MetadataOptions()


def _mailbox(r: Reader) -> bytes:
    raw = r.astring("a mailbox name")
    return b"INBOX" if raw.upper() == b"INBOX" else raw


def _entry(r: Reader) -> str:
    return r.astring("a metadata entry name").decode("utf-8", "replace")


def _option(r: Reader, name: str, seen: dict[str, int]) -> None:
    if name in seen:
        raise ParseError(f"{name} given twice")
    r.sp()
    if name == "MAXSIZE":
        seen[name] = r.number(0xFFFFFFFF)
    elif name == "DEPTH":
        if r.try_expect(b"infinity"):
            seen[name] = INFINITY
        else:
            depth = r.number(9)
            if depth not in (0, 1):
                raise ParseError("DEPTH is 0, 1 or infinity")
            seen[name] = depth
    else:  # pragma: no cover - callers pass known names only
        raise ParseError(f"unknown option {name}")


def _options(seen: dict[str, int]) -> MetadataOptions:
    return MetadataOptions(maxsize=seen.get("MAXSIZE"), depth=seen.get("DEPTH", 0))


def _getmetadata(r: Reader, tag: str, uid: bool) -> Command:
    r.sp()
    seen: dict[str, int] = {}
    if r.peek() == 0x28:  # "(" getmetadata-option *(SP getmetadata-option) ")"
        r.pos += 1
        while True:
            name = r.keyword("a GETMETADATA option")
            if name not in ("MAXSIZE", "DEPTH"):
                raise ParseError(f"unknown GETMETADATA option {name}")
            _option(r, name, seen)
            if r.peek() == 0x29:
                r.pos += 1
                break
            r.sp()
        r.sp()
    mailbox = _mailbox(r)
    r.sp()
    listed = r.peek() == 0x28  # entries = entry / "(" entry *(SP entry) ")"
    entries = tuple(r.paren_list(lambda: _entry(r))) if listed else (_entry(r),)
    r.end()
    return GetMetadata(tag, mailbox, entries, _options(seen))


def _setmetadata(r: Reader, tag: str, uid: bool) -> Command:
    r.sp()
    mailbox = _mailbox(r)
    r.sp()

    def entry_value() -> tuple[str, bytes | None]:
        entry = _entry(r)
        r.sp()
        if r.try_nil():
            return entry, None
        if r.peek() not in (0x22, 0x7B, 0x7E):
            raise r.fail("expected a string, a literal or NIL as the value")
        return entry, r.string(binary_ok=True)

    values = tuple(r.paren_list(entry_value))
    r.end()
    return SetMetadata(tag, mailbox, values)


def parse_list_metadata(r: Reader) -> ListMetadata:
    """The argument of LIST's METADATA return option: ``(`` entries and the options MAXSIZE n
    and DEPTH d, in any order ``)``; an entry name begins with ``/``, so it is never taken for
    an option."""
    r.expect(b"(")
    seen: dict[str, int] = {}
    entries: list[str] = []
    while r.peek() != 0x29:
        start = r.pos
        word = ""
        if r.peek() not in (0x22, 0x2F, 0x7B, 0x7E):
            word = r.keyword("a metadata entry or option")
        if word in ("MAXSIZE", "DEPTH"):
            _option(r, word, seen)
        else:
            r.pos = start
            entries.append(_entry(r))
        if r.peek() != 0x29:
            r.sp()
    r.pos += 1
    if not entries:
        raise ParseError("METADATA needs at least one entry name")
    return ListMetadata(tuple(entries), _options(seen))


METADATA_COMMANDS: dict[str, Callable[[Reader, str, bool], Command]] = {
    "GETMETADATA": _getmetadata,
    "SETMETADATA": _setmetadata,
}
