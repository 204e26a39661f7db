"""Differential test: pobox.mail + pobox.imap.bodystructure against Dovecot, byte for byte.

Every message of tests/data/messages is APPENDed to a private Dovecot; its FETCH ENVELOPE,
BODYSTRUCTURE and BODY answers must equal what we render for the same bytes, and a set of
BODY.PEEK[section] answers must equal the slices section_range() gives. Dovecot's raw answer is
reassembled from imaplib's data (a literal comes back as (prefix-with-{n}, octets)), so quoting
and literal decisions are compared too. Nothing is normalised.
"""

from __future__ import annotations

import imaplib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from tools.anchor_dovecot import DovecotInstance, dovecot_binary, start_dovecot

from pobox.imap.bodystructure import render_bodystructure, render_envelope, section_range
from pobox.mail.parse import parse_bytes

pytestmark = pytest.mark.interop

CORPUS = Path(__file__).resolve().parent.parent / "data" / "messages"
MESSAGES = sorted(p.name for p in CORPUS.glob("*.eml"))
SECTIONS = [
    "HEADER",
    "TEXT",
    "1",
    "1.MIME",
    "1.HEADER",
    "1.TEXT",
    "1.1",
    "1.1.MIME",
    "1.2",
    "1.2.MIME",
    "2",
    "2.MIME",
    "2.HEADER",
    "2.TEXT",
    "2.1",
    "2.1.MIME",
    "2.2",
    "2.1.1",
    "3",
    "3.MIME",
    "4",
    "4.MIME",
]
USER, PASSWORD = "diff", "diff-pass"


@pytest.fixture(scope="module")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotInstance]:
    # No skip: CI installs Dovecot, so its absence is a failure.
    assert dovecot_binary() is not None, "dovecot is not installed"
    instance = start_dovecot(tmp_path_factory.mktemp("dovecot-bs"), {USER: PASSWORD})
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="module")
def imap(dovecot: DovecotInstance) -> Iterator[tuple[imaplib.IMAP4, dict[str, bytes]]]:
    conn = imaplib.IMAP4(dovecot.host, dovecot.imap_port)
    conn.login(USER, PASSWORD)
    uids: dict[str, bytes] = {}
    for name in MESSAGES:
        typ, data = conn.append("INBOX", None, None, (CORPUS / name).read_bytes())
        assert typ == "OK", data
        m = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
        assert m is not None, data
        uids[name] = m.group(1)
    conn.select("INBOX", readonly=True)
    try:
        yield conn, uids
    finally:
        conn.logout()


def _raw(data: list[object]) -> bytes:
    out = b""
    for item in data:
        if isinstance(item, tuple):
            out += item[0] + b"\r\n" + item[1]
        elif isinstance(item, bytes):
            out += item
    return out


def _fetch_section(conn: imaplib.IMAP4, uid: bytes, section: str) -> bytes:
    typ, data = conn.uid("FETCH", uid.decode(), f"(BODY.PEEK[{section}])")
    assert typ == "OK", data
    for item in data:
        if isinstance(item, tuple):
            return bytes(item[1])
    raw = _raw(data)
    m = re.search(rb'BODY\[[^\]]*\] (NIL|"")', raw)
    assert m is not None, raw
    return b""


@pytest.mark.parametrize("name", MESSAGES)
def test_structure_matches_dovecot(imap: tuple[imaplib.IMAP4, dict[str, bytes]], name: str) -> None:
    conn, uids = imap
    uid = uids[name]
    typ, data = conn.uid("FETCH", uid.decode(), "(ENVELOPE BODYSTRUCTURE BODY)")
    assert typ == "OK", data
    theirs = _raw(data)
    msg = parse_bytes((CORPUS / name).read_bytes())
    ours = b"UID %s ENVELOPE %s BODYSTRUCTURE %s BODY %s)" % (
        uid,
        render_envelope(msg.envelope),
        render_bodystructure(msg, True),
        render_bodystructure(msg, False),
    )
    # strip the leading "<seq> (" that only Dovecot knows
    theirs = theirs.split(b" (", 1)[1]
    assert ours == theirs


@pytest.mark.parametrize("name", MESSAGES)
def test_sections_match_dovecot(imap: tuple[imaplib.IMAP4, dict[str, bytes]], name: str) -> None:
    conn, uids = imap
    raw = (CORPUS / name).read_bytes()
    msg = parse_bytes(raw)
    mismatches = []
    for section in SECTIONS:
        theirs = _fetch_section(conn, uids[name], section)
        parts: list[int] = []
        kind = ""
        for tok in section.split("."):
            if tok.isdigit():
                parts.append(int(tok))
            else:
                kind = tok
        rng = section_range(msg, tuple(parts), kind)
        ours = b"" if rng is None else raw[rng[0] : rng[0] + rng[1]]
        if ours != theirs:
            mismatches.append((section, ours, theirs))
    assert mismatches == []
