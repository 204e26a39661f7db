"""Golden tests for ENVELOPE / BODY / BODYSTRUCTURE / section ranges.

The expected values are Dovecot 2.3.19's answers for the same bytes (the interop test checks
the whole corpus live; these keep the rules checked without a Dovecot).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pobox.imap.bodystructure import (
    astring_for_humans,
    nstring,
    render_bodystructure,
    render_envelope,
    section_range,
)
from pobox.mail.parse import parse_bytes
from pobox.mail.structure import ParsedMessage

CORPUS = Path(__file__).resolve().parents[2] / "data" / "messages"


def _msg(name: str) -> tuple[bytes, ParsedMessage]:
    raw = (CORPUS / name).read_bytes()
    return raw, parse_bytes(raw)


def test_strings() -> None:
    assert nstring(None) == b"NIL"
    assert nstring(b'a"b\\c') == b'"a\\"b\\\\c"'
    assert nstring(b"caf\xc3\xa9") == b"{5}\r\ncaf\xc3\xa9"
    assert nstring("x") == b'"x"'
    assert astring_for_humans(b"plain") == b'"plain"'
    assert astring_for_humans(b"a  b") == b"{3}\r\na b"
    assert astring_for_humans(b"fold\r\n\tx") == b"{6}\r\nfold x"
    assert astring_for_humans(b"trail  ") == b"{5}\r\ntrail"
    assert astring_for_humans(b"back\\slash") == b"{10}\r\nback\\slash"
    assert astring_for_humans(b"") == b'""'


def test_plain_message() -> None:
    msg = parse_bytes(b"Subject: hi\r\n\r\nhello\r\n")
    assert render_bodystructure(msg, True) == (
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 7 1 NIL NIL NIL NIL)'
    )
    assert render_bodystructure(msg, False) == (
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 7 1)'
    )
    assert render_envelope(msg.envelope) == b'(NIL "hi" NIL NIL NIL NIL NIL NIL NIL NIL)'


def test_mixed_attachments() -> None:
    _, msg = _msg("05-mixed-attachments.eml")
    assert render_envelope(msg.envelope) == (
        b'("Thu, 16 Mar 2023 12:00:00 +0000" "Report attached" (("Grace" NIL "grace" '
        b'"example.org")) (("Grace" NIL "grace" "example.org")) (("Grace" NIL "grace" '
        b'"example.org")) (("Heidi" NIL "heidi" "example.org")("Ivan" NIL "ivan" '
        b'"example.org")) ((NIL NIL "team" "example.org")) NIL NIL NIL)'
    )
    assert render_bodystructure(msg, True) == (
        b'(("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" 48 0 NIL NIL NIL NIL)'
        b'("application" "pdf" ("name" "report.pdf") NIL NIL "base64" 1050 NIL ("attachment" '
        b'("filename" "report.pdf" "size" "768")) NIL NIL)("text" "csv" ("charset" "us-ascii" '
        b'"name" "data.csv") NIL NIL "quoted-printable" 16 2 NIL ("inline" ("filename" '
        b'"data.csv")) NIL NIL) "mixed" ("boundary" "mix42") NIL NIL NIL)'
    )


def test_rfc822_attachment() -> None:
    _, msg = _msg("08-rfc822-attachment.eml")
    assert render_bodystructure(msg, True) == (
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 29 0 NIL NIL NIL NIL)'
        b'("message" "rfc822" NIL NIL NIL "7bit" 357 ("Mon, 13 Mar 2023 09:00:00 +0000" '
        b'"original" (("Walter" NIL "walter" "example.org")) (("Walter" NIL "walter" '
        b'"example.org")) (("Walter" NIL "walter" "example.org")) (("Trent" NIL "trent" '
        b'"example.org")) NIL NIL NIL "<orig@example.org>") (("text" "plain" ("charset" '
        b'"us-ascii") NIL NIL "7bit" 13 0 NIL NIL NIL NIL)("text" "html" ("charset" '
        b'"us-ascii") NIL NIL "7bit" 20 0 NIL NIL NIL NIL) "alternative" ("boundary" '
        b'"orig-b") NIL NIL NIL) 17 NIL ("attachment" ("filename" "original.eml")) NIL NIL) '
        b'"mixed" ("boundary" "fwd") NIL NIL NIL)'
    )


def test_groups_and_odd_addresses() -> None:
    _, msg = _msg("10-groups.eml")
    assert render_envelope(msg.envelope).endswith(
        b'((NIL NIL "project-team" NIL)(NIL NIL "rupert" "example.org")("Sybil S." NIL '
        b'"sybil" "example.org")(NIL NIL NIL NIL)(NIL NIL "outside" "example.net")) ((NIL NIL '
        b'"undisclosed-recipients" NIL)(NIL NIL NIL NIL)) ((NIL NIL "secret" NIL)(NIL NIL NIL '
        b"NIL)) NIL NIL)"
    )
    _, msg = _msg("13-odd-addresses.eml")
    env = render_envelope(msg.envelope)
    assert b'((NIL "@relay1.example,@relay2.example" "route" "example.org"))' in env
    assert b'({13}\r\nQuoted "Name" NIL "q" "example.org")' in env
    assert b'(NIL NIL "MISSING_MAILBOX" "MISSING_DOMAIN")' in env
    assert b'({11}\r\nspaced name NIL "s" "example.org")' in env


def test_rfc2231_params() -> None:
    _, msg = _msg("06-rfc2231-filename.eml")
    bs = render_bodystructure(msg, True)
    assert b'("name" "a very long file name that goes on and on.bin")' in bs
    assert b'("filename*" "utf-8\'\'%E2%82%AC%20price%20list.txt")' in bs
    assert b'("filename*" "iso-8859-1\'de\'F%FC%DFe.txt")' in bs


def test_multipart_without_boundary_gets_empty_text_child() -> None:
    _, msg = _msg("25-multipart-no-boundary.eml")
    assert render_bodystructure(msg, False) == (
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0) "mixed")'
    )
    assert section_range(msg, (1,), "") is None


def test_extension_fields() -> None:
    _, msg = _msg("19-content-extras.eml")
    assert render_bodystructure(msg, True) == (
        b'(("text" "plain" ("charset" "us-ascii") "<readme@example.org>" "The read-me file" '
        b'"7bit" 7 0 "Q2hlY2sgSW50ZWdyaXR5IQ==" NIL ("en-GB" "fr") '
        b'"http://example.org/docs/readme.txt")("text" "plain" ("charset" "us-ascii") NIL NIL '
        b'"7bit" 1 0 NIL ("inline" ("filename" "x.txt" "creation-date" "Wed, 12 Feb 1997 '
        b'16:29:51 -0500")) ("de") NIL) "mixed" ("boundary" "ex") NIL NIL NIL)'
    )


def _section(raw: bytes, msg: ParsedMessage, part: tuple[int, ...], kind: str) -> bytes | None:
    rng = section_range(msg, part, kind)
    return None if rng is None else raw[rng[0] : rng[0] + rng[1]]


def test_sections_nested() -> None:
    raw, msg = _msg("08-rfc822-attachment.eml")
    assert _section(raw, msg, (), "") == raw
    assert _section(raw, msg, (), "HEADER") == raw[: raw.index(b"\r\n\r\n") + 4]
    assert _section(raw, msg, (1,), "") == b"Forwarding the message below."
    assert _section(raw, msg, (1,), "MIME") == b"Content-Type: text/plain\r\n\r\n"
    assert _section(raw, msg, (1, 1), "") == b"Forwarding the message below."
    assert _section(raw, msg, (1, 1, 1), "") is None
    hdr = _section(raw, msg, (2,), "HEADER")
    assert hdr is not None and hdr.startswith(b"From: Walter") and hdr.endswith(b"\r\n\r\n")
    assert _section(raw, msg, (2,), "HEADER.FIELDS") == hdr
    assert _section(raw, msg, (2, 1), "") == b"original text"
    assert _section(raw, msg, (2, 2), "MIME") == b"Content-Type: text/html\r\n\r\n"
    assert _section(raw, msg, (2, 3), "") is None
    assert _section(raw, msg, (1,), "HEADER") is None
    assert _section(raw, msg, (3,), "") is None
    assert _section(raw, msg, (0,), "") is None


def test_sections_single_part() -> None:
    raw = b"Subject: x\r\n\r\nbody\r\n"
    msg = parse_bytes(raw)
    assert _section(raw, msg, (1,), "") == b"body\r\n"
    assert _section(raw, msg, (1,), "MIME") == b"Subject: x\r\n\r\n"
    assert _section(raw, msg, (1, 1), "") is None
    assert _section(raw, msg, (), "TEXT") == b"body\r\n"
    assert _section(raw, msg, (2,), "") is None


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.eml")), ids=lambda p: p.name)
def test_corpus_renders(path: Path) -> None:
    msg = parse_bytes(path.read_bytes())
    body = render_bodystructure(msg, False)
    full = render_bodystructure(msg, True)
    assert body.startswith(b"(") and body.endswith(b")")
    assert len(full) >= len(body)
    assert render_envelope(msg.envelope).count(b"(") >= 1
