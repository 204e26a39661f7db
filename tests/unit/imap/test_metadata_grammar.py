"""GETMETADATA, SETMETADATA and LIST RETURN (METADATA ...) (RFC 5464 §5, RFC 9590)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pobox.imap.commands import List
from pobox.imap.grammar import CommandError, parse_command
from pobox.imap.metadata_grammar import (
    INFINITY,
    GetMetadata,
    ListMetadata,
    MetadataOptions,
    SetMetadata,
)


def parse(line: bytes, literals: tuple[bytes, ...] = ()) -> object:
    lines = line.split(b"\r\n") if literals else [line]
    return parse_command(lines, list(literals))


def test_getmetadata_forms() -> None:
    assert parse(b'a GETMETADATA "" /shared/comment') == GetMetadata("a", b"", ("/shared/comment",))
    assert parse(b"a GETMETADATA inbox (/shared/comment /private/comment)") == GetMetadata(
        "a", b"INBOX", ("/shared/comment", "/private/comment")
    )
    assert parse(b'a getmetadata (DEPTH infinity MAXSIZE 1024) "Lists/x" "/private"') == (
        GetMetadata("a", b"Lists/x", ("/private",), MetadataOptions(1024, INFINITY))
    )
    assert parse(b"a GETMETADATA (depth 1) INBOX /p") == GetMetadata(
        "a", b"INBOX", ("/p",), MetadataOptions(None, 1)
    )


@pytest.mark.parametrize(
    "line",
    [
        b"a GETMETADATA",
        b"a GETMETADATA INBOX",
        b"a GETMETADATA () INBOX /shared/comment",
        b"a GETMETADATA (MAXSIZE) INBOX /shared/comment",
        b"a GETMETADATA (MAXSIZE -1) INBOX /shared/comment",
        b"a GETMETADATA (DEPTH 2) INBOX /shared/comment",
        b"a GETMETADATA (DEPTH 1 DEPTH 0) INBOX /shared/comment",
        b"a GETMETADATA (SIZE 1) INBOX /shared/comment",
        b"a GETMETADATA INBOX (MAXSIZE 10) /shared/comment",  # options after the name
        b"a GETMETADATA INBOX /shared/comment extra",
        b"a GETMETADATA INBOX ()",
    ],
)
def test_getmetadata_errors(line: bytes) -> None:
    with pytest.raises(CommandError) as caught:
        parse(line)
    assert caught.value.tag == "a"


def test_setmetadata_values() -> None:
    cmd = parse(
        b'a SETMETADATA INBOX (/shared/comment "x \\"y\\"" /private/a NIL /private/b {3}\r\n)',
        (b"a\r\n",),
    )
    assert cmd == SetMetadata(
        "a",
        b"INBOX",
        (("/shared/comment", b'x "y"'), ("/private/a", None), ("/private/b", b"a\r\n")),
    )
    binary = parse(b"a SETMETADATA INBOX (/private/b ~{3}\r\n)", (b"\x00\x01\x02",))
    assert binary == SetMetadata("a", b"INBOX", (("/private/b", b"\x00\x01\x02"),))


@pytest.mark.parametrize(
    "line",
    [
        b"a SETMETADATA INBOX ()",
        b"a SETMETADATA INBOX (/shared/comment)",
        b"a SETMETADATA INBOX (/shared/comment atom)",
        b"a SETMETADATA INBOX /shared/comment NIL",
        b'a SETMETADATA INBOX (/shared/comment "x") extra',
    ],
)
def test_setmetadata_errors(line: bytes) -> None:
    with pytest.raises(CommandError):
        parse(line)


def test_list_return_metadata() -> None:
    cmd = parse(b'a LIST "" * RETURN (SUBSCRIBED METADATA (/shared/comment MAXSIZE 9) CHILDREN)')
    assert isinstance(cmd, List)
    assert cmd.return_options == ("SUBSCRIBED", "CHILDREN")
    assert cmd.metadata == ListMetadata(("/shared/comment",), MetadataOptions(9, 0))
    cmd = parse(b'a LIST "" % RETURN (METADATA ("/private/comment" DEPTH 1 /x))')
    assert isinstance(cmd, List)
    assert cmd.metadata == ListMetadata(("/private/comment", "/x"), MetadataOptions(None, 1))
    for bad in (
        b'a LIST "" % RETURN (METADATA ())',
        b'a LIST "" % RETURN (METADATA (MAXSIZE 5))',
        b'a LIST "" % RETURN (METADATA /shared/comment)',
        b'a LIST "" % RETURN (METADATA (/a) METADATA (/b))',
    ):
        with pytest.raises(CommandError):
            parse(bad)


@given(st.binary(max_size=60))
def test_any_bytes_give_a_command_or_a_command_error(tail: bytes) -> None:
    for head in (b"a GETMETADATA ", b"a SETMETADATA ", b'a LIST "" % RETURN (METADATA '):
        line = (head + tail).replace(b"\r", b"").replace(b"\n", b"")
        try:
            parse_command([line], [])
        except CommandError:
            pass
