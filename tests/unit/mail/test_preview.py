"""pobox.mail.preview (RFC 8970 previews) and the FETCH grammar of PREVIEW [(LAZY)]."""

from __future__ import annotations

import pytest

from pobox.imap.commands import Fetch, FetchSimple
from pobox.imap.grammar import CommandError, parse_command
from pobox.mail.parse import parse_bytes
from pobox.mail.preview import PREVIEW_CHARS, preview_text, shorten


def preview(data: bytes) -> str:
    return preview_text(parse_bytes(data), lambda offset, length: data[offset : offset + length])


def test_shorten_collapses_drops_quotes_and_controls() -> None:
    assert shorten("a \x01 b\r\n\r\n> quoted\r\n\tc\u00a0d  ") == "a b c d"
    assert shorten("x" * 300) == "x" * PREVIEW_CHARS
    assert shorten("word " * 60) == ("word " * 40).rstrip()  # no trailing space after the cut
    assert shorten("> only quoted\n>> text") == ""


def test_first_text_part_not_an_attachment() -> None:
    message = (
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=a.txt\r\n"
        b"\r\nattached\r\n"
        b"--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner text\r\n"
        b"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>caf&eacute;</p><p>ok</p>\r\n"
        b"--b--\r\n"
    )
    assert preview(message) == "caf\u00e9 ok"


def test_a_message_without_text_has_the_empty_preview() -> None:
    assert preview(b"Subject: x\r\n\r\n") == ""
    assert preview(b"MIME-Version: 1.0\r\nContent-Type: image/gif\r\n\r\nGIF89a\r\n") == ""


def test_a_long_part_is_read_only_in_part() -> None:
    reads: list[tuple[int, int]] = []
    data = b"Subject: big\r\n\r\n" + b"long line of text\r\n" * 200_000

    def read(offset: int, length: int) -> bytes:
        reads.append((offset, length))
        return data[offset : offset + length]

    assert preview_text(parse_bytes(data), read).startswith("long line of text long")
    assert sum(length for _, length in reads) <= 128 * 1024


def _atts(line: bytes) -> Fetch:
    command = parse_command([line], [])
    assert isinstance(command, Fetch)
    return command


def test_fetch_preview_grammar() -> None:
    assert _atts(b"a FETCH 1 PREVIEW").attributes == (FetchSimple("PREVIEW"),)
    lazy = _atts(b"a FETCH 1:4 (PREVIEW (LAZY) UID)")
    assert lazy.attributes == (FetchSimple("PREVIEW"), FetchSimple("UID"))
    assert _atts(b"a FETCH 1 (preview (lazy))").attributes == (FetchSimple("PREVIEW"),)
    # after a lone PREVIEW, a parenthesis that is not LAZY is the command's fetch modifiers
    changed = _atts(b"a FETCH 1 PREVIEW (CHANGEDSINCE 5)")
    assert changed.attributes == (FetchSimple("PREVIEW"),)
    assert [m.name for m in changed.modifiers] == ["CHANGEDSINCE"]


@pytest.mark.parametrize(
    "line",
    [b"a FETCH 1 (PREVIEW (LAZY EAGER))", b"a FETCH 1 (PREVIEW (LAZY)", b"a FETCH 1 (PREVIEW ())"],
)
def test_bad_preview_modifiers(line: bytes) -> None:
    with pytest.raises(CommandError):
        parse_command([line], [])
