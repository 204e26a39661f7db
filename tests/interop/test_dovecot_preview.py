"""Differential test: FETCH PREVIEW (RFC 8970) against Dovecot, text for text.

Every message of tests/data/messages, and a few made for previews (quoted lines, HTML with
styles and entities, whitespace runs, long and non-ASCII text, an attachment before the text,
no text at all), is APPENDed to a private Dovecot; its PREVIEW answer must equal
pobox.mail.preview's for the same bytes, and be sent the same way (quoted or literal).
"""

from __future__ import annotations

import imaplib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from tools.anchor_dovecot import DovecotInstance, dovecot_binary, start_dovecot

from pobox.imap import responses as r
from pobox.mail.parse import parse_bytes
from pobox.mail.preview import PREVIEW_CHARS, preview_text

pytestmark = pytest.mark.interop

CORPUS = Path(__file__).resolve().parent.parent / "data" / "messages"
USER, PASSWORD = "diff", "diff-pass"

MADE: dict[str, bytes] = {
    "quoted": b"Subject: q\r\n\r\nHello   world,\r\n  this is\ta test.\r\n"
    b"> quoted line\r\n>> deeper\r\nafter quote\r\n",
    "html": b"Subject: h\r\nContent-Type: text/html\r\n\r\n<html><head><style>p{}</style>"
    b"<title>t</title></head><body><p>Hi &amp; there</p><div>second<br>line</div>"
    b"<script>x()</script></body></html>\r\n",
    "long": b"Subject: l\r\n\r\n" + b"word " * 100 + b"\r\n",
    "long-word": b"Subject: w\r\n\r\n" + b"x" * 300 + b"\r\n",
    "accents": b"Subject: a\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\nCaf=C3=A9 cr=C3=A8me\r\n",
    "many-accents": b"Subject: m\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    + "\u00e9t\u00e9 ".encode() * 80
    + b"\r\n",
    "latin1": b"Subject: 1\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\nna\xefve\r\n",
    "image-first": b"Subject: i\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n"
    b"Content-Type: image/png\r\n\r\nxx\r\n--x\r\nContent-Type: text/plain\r\n\r\n"
    b"second part text\r\n--x--\r\n",
    "empty": b"Subject: e\r\n\r\n",
    "specials": b'Subject: s\r\n\r\nHe said "hi" \\ ok\r\n',
    "base64": b"Subject: b\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"SGVsbG8gdGhlcmUK\r\n",
}


def _corpus() -> dict[str, bytes]:
    messages = {p.name: p.read_bytes() for p in sorted(CORPUS.glob("*.eml"))}
    messages.update(MADE)
    return messages


MESSAGES = _corpus()

#: Where pobox answers otherwise, on purpose: the name, pobox's answer, and why.
DIFFERENT = {
    # Dovecot replaces a run of undecodable octets with one U+FFFD, Python each octet
    "14-8bit-header-junk.eml": "body with 8-bit \ufffd\ufffd",
    # Dovecot shows the header of the first encapsulated message of a digest; a preview is
    # made from the message's own text, and this one has none
    "21-digest.eml": "",
    # Dovecot gives up at a Content-Type without subtype; pobox takes the first text/plain
    "27-empty-params.eml": "quoted",
    # Dovecot shows what <title> holds; a reader of the HTML does not see it (pobox.mail.text)
    "html": "Hi & there second line",
}


@pytest.fixture(scope="module")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotInstance]:
    # No skip: CI installs Dovecot, so its absence is a failure.
    assert dovecot_binary() is not None, "dovecot is not installed"
    instance = start_dovecot(tmp_path_factory.mktemp("dovecot-preview"), {USER: PASSWORD})
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="module")
def imap(dovecot: DovecotInstance) -> Iterator[tuple[imaplib.IMAP4, dict[str, bytes]]]:
    conn = imaplib.IMAP4(dovecot.host, dovecot.imap_port)
    conn.login(USER, PASSWORD)
    uids: dict[str, bytes] = {}
    for name, data in MESSAGES.items():
        typ, answer = conn.append("INBOX", None, None, data)
        assert typ == "OK", answer
        m = re.search(rb"APPENDUID \d+ (\d+)", answer[0] or b"")
        assert m is not None, answer
        uids[name] = m.group(1)
    conn.select("INBOX", readonly=True)
    try:
        yield conn, uids
    finally:
        conn.logout()


def _dovecot_preview(conn: imaplib.IMAP4, uid: bytes) -> bytes:
    """Dovecot's answer after ``PREVIEW ``, as sent (a literal as ``{n}\\r\\n`` + octets)."""
    typ, data = conn.uid("FETCH", uid.decode(), "(PREVIEW)")
    assert typ == "OK", data
    raw = b""
    for item in data:
        if isinstance(item, tuple):
            raw += item[0] + b"\r\n" + item[1]
        elif isinstance(item, bytes):
            raw += item
    m = re.search(rb"PREVIEW (.*)\)$", raw, re.DOTALL)
    assert m is not None, raw
    return m.group(1)


@pytest.mark.parametrize("name", list(MESSAGES))
def test_preview_matches_dovecot(imap: tuple[imaplib.IMAP4, dict[str, bytes]], name: str) -> None:
    conn, uids = imap
    data = MESSAGES[name]
    ours = preview_text(parse_bytes(data), lambda offset, length: data[offset : offset + length])
    assert len(ours) <= PREVIEW_CHARS
    theirs = _dovecot_preview(conn, uids[name])
    if name in DIFFERENT:
        assert ours == DIFFERENT[name]
        assert r.string(ours.encode()) != theirs  # still different: revisit this entry
    else:
        assert r.string(ours.encode()) == theirs
