"""Differential test: pobox.imap.fetch against Dovecot for the same stored bytes.

Every message of tests/data/messages (and a few transfer-encoding oddities below) is APPENDed
to a private Dovecot; FETCH answers for many item combinations are compared with what
``render_fetch`` produces from ``parse_bytes`` of the same bytes. The raw responses of both are
split into (label, value) pairs; the only normalisations are the ones the RFCs leave open:
item order, quoted string vs literal vs literal8 for the same octets, flag order, and the
values that are Dovecot's own (MODSEQ, SAVEDATE, \\Recent).

Known divergences, asserted as such so a change on either side is noticed:
* BINARY.SIZE of base64 parts: Dovecot's number can differ from the length of its own BINARY
  answer; ours is that length.
* Dovecot answers some BINARY fetches of broken parts with BYE (internal error); there is
  nothing to compare those with, they are listed in DOVECOT_FAILS.
"""

from __future__ import annotations

import imaplib
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import pytest
from tools.anchor_dovecot import DovecotInstance, dovecot_binary, start_dovecot

from pobox.imap.fetch import (
    FetchError,
    FetchItem,
    Section,
    materialize,
    render_fetch,
)
from pobox.mail.parse import parse_bytes
from pobox.store.api import BlobId, MailboxId, MessageMeta, ModSeq, Uid

pytestmark = pytest.mark.interop

CORPUS = Path(__file__).resolve().parent.parent / "data" / "messages"
EXTRA: dict[str, bytes] = {
    "x-uuencode": (
        b"From: a@b\r\nSubject: uu\r\nContent-Type: text/plain\r\n"
        b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\nend\r\n"
    ),
    "bad-base64": (
        b"From: a@b\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nAAEC!!AwQF\r\nBgcI=\r\n"
    ),
    "split-padding-base64": (
        b"From: a@b\r\nContent-Transfer-Encoding: base64\r\n\r\nQUJD\r\nRA=\r\n=\r\n"
    ),
    "qp-soft-breaks": (
        b"From: a@b\r\nContent-Transfer-Encoding: Quoted-Printable\r\n\r\n"
        b"trail   \r\na=3d=\r\nb\r\na\tb =  \r\nc\r\nl=C3=A9=\r\n\r\nx=\r\n"
    ),
    "qp-invalid": (b"From: a@b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\na=ZZb\r\n"),
    "multipart-encoded": (
        b"From: a@b\r\nSubject: mp\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\npre\r\n--b1\r\n'
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"aMOpbGxvIHdvcmxkCg==\r\n--b1\r\nContent-Type: text/plain\r\n\r\nplain part\r\n"
        b"--b1\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: BASE64\r\n\r\nAAECAwQ=\r\n--b1--\r\n"
    ),
}
MESSAGES: dict[str, bytes] = {p.name: p.read_bytes() for p in sorted(CORPUS.glob("*.eml"))}
MESSAGES.update(EXTRA)
NAMES = list(MESSAGES)
USER, PASSWORD = "fetch", "fetch-pass"
INTERNALDATE = datetime(2020, 1, 1, 0, 0, 0, tzinfo=UTC)

COMBINATIONS = [
    "UID RFC822.SIZE FLAGS INTERNALDATE ENVELOPE BODY BODYSTRUCTURE",
    "BODY.PEEK[HEADER.FIELDS (From Subject)] BODY.PEEK[HEADER.FIELDS.NOT (Received)] "
    "BODY.PEEK[HEADER.FIELDS (X-None)] BODY.PEEK[HEADER.FIELDS (Content-Type to)]<5.30>",
    "RFC822.HEADER RFC822.SIZE RFC822.TEXT RFC822",
    "BODY.PEEK[1.MIME] BODY.PEEK[TEXT]<10.20> BODY.PEEK[]<0.100> BODY.PEEK[]<100.100000>",
    "BODY.PEEK[2.1.HEADER] BODY.PEEK[2.HEADER] BODY.PEEK[2.HEADER.FIELDS (Subject From)] "
    "BODY.PEEK[2.HEADER.FIELDS.NOT (Subject)] BODY.PEEK[2.TEXT]",
    "BODY.PEEK[1]<0.0> BODY.PEEK[9] BODY.PEEK[1]<3.5> BODY.PEEK[1]<1000000.5> BODY.PEEK[2.MIME]",
    "BODY.PEEK[1.1] BODY.PEEK[1.2.MIME] BODY.PEEK[2.1] BODY.PEEK[2.1.1] BODY.PEEK[3] "
    "BODY.PEEK[HEADER] BODY.PEEK[TEXT] BODY.PEEK[]",
    "BODY.PEEK[3.HEADER.FIELDS (Content-Type)] BODY.PEEK[1.TEXT]<0.10> BODY.PEEK[4.MIME]",
]
# (message, BINARY part) that Dovecot 2.3 answers with "BYE Internal error".
# (A QP body ending in "=" without a line break is one: our decoder drops the "=".)
DOVECOT_FAILS: set[tuple[str, str]] = set()
BINARY_PARTS = ["", "1", "2", "3", "1.1", "1.2", "2.1", "2.2", "9"]


# --------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotInstance]:
    # No skip: CI installs Dovecot, so its absence is a failure.
    assert dovecot_binary() is not None, "dovecot is not installed"
    instance = start_dovecot(tmp_path_factory.mktemp("dovecot-fetch"), {USER: PASSWORD})
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="module")
def imap(dovecot: DovecotInstance) -> Iterator[tuple[imaplib.IMAP4, dict[str, int]]]:
    conn = imaplib.IMAP4(dovecot.host, dovecot.imap_port)
    conn.login(USER, PASSWORD)
    uids: dict[str, int] = {}
    date = imaplib.Time2Internaldate(INTERNALDATE)
    for name, data in MESSAGES.items():
        typ, resp = conn.append("INBOX", r"(\Seen $Foo)", date, data)
        assert typ == "OK", resp
        m = re.search(rb"APPENDUID \d+ (\d+)", resp[0] or b"")
        assert m is not None, resp
        uids[name] = int(m.group(1))
    conn.select("INBOX", readonly=True)
    try:
        yield conn, uids
    finally:
        conn.logout()


class MemContent:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length]

    def file(self) -> BinaryIO | None:
        return None

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------------------------
# parsing FETCH item lists (both sides) into (label, value) pairs


def _raw(data: list[object]) -> bytes:
    out = b""
    for item in data:
        if isinstance(item, tuple):
            out += item[0] + b"\r\n" + item[1]
        elif isinstance(item, bytes):
            out += item
    return out


def _string(buf: bytes, i: int) -> tuple[bytes, int] | None:
    """A quoted string, literal or literal8 at i → (octets, end)."""
    if buf[i : i + 1] == b'"':
        j, out = i + 1, bytearray()
        while buf[j : j + 1] != b'"':
            if buf[j : j + 1] == b"\\":
                j += 1
            out += buf[j : j + 1]
            j += 1
        return bytes(out), j + 1
    m = re.compile(rb"~?\{(\d+)\}\r\n").match(buf, i)
    if m:
        n = int(m.group(1))
        return buf[m.end() : m.end() + n], m.end() + n
    return None


def _list(buf: bytes, i: int) -> int:
    """End of the parenthesised list starting at i (strings and literals skipped)."""
    depth = 0
    while True:
        c = buf[i : i + 1]
        if c == b"(":
            depth += 1
            i += 1
        elif c == b")":
            depth -= 1
            i += 1
            if depth == 0:
                return i
        elif c in (b'"', b"{", b"~"):
            s = _string(buf, i)
            assert s is not None, buf[i:]
            i = s[1]
        else:
            i += 1


def parse_items(buf: bytes) -> dict[bytes, object]:
    """``UID 5 BODY[1]<0> {3}\\r\\nabc ...`` → {b"UID": b"5", b"BODY[1]<0>": ("str", b"abc")}."""
    out: dict[bytes, object] = {}
    i = 0
    label_re = re.compile(rb"([A-Z0-9.]+(?:\[[^\]]*\](?:<\d+>)?)?) ")
    while i < len(buf):
        m = label_re.match(buf, i)
        assert m is not None, buf[i:]
        label, i = m.group(1), m.end()
        s = _string(buf, i)
        if s is not None:
            value: object = ("str", s[0])
            i = s[1]
        elif buf[i : i + 1] == b"(":
            end = _list(buf, i)
            value = buf[i:end]
            i = end
        else:
            m2 = re.compile(rb"[^ )]+").match(buf, i)
            assert m2 is not None
            value, i = m2.group(0), m2.end()
        if label == b"FLAGS":
            assert isinstance(value, bytes)
            value = sorted(f for f in value[1:-1].split() if f != b"\\Recent")
        out[label] = value
        if buf[i : i + 1] == b" ":
            i += 1
    return out


# --------------------------------------------------------------------------------------------
# building our items from the same text


def _section(text: str) -> Section:
    fields: tuple[bytes, ...] = ()
    m = re.fullmatch(r"([^ ]*)(?: \((.*)\))?", text)
    assert m is not None
    spec, names = m.group(1), m.group(2)
    if names is not None:
        fields = tuple(n.encode() for n in names.split())
    part: list[int] = []
    kind = ""
    toks = spec.split(".") if spec else []
    for k, tok in enumerate(toks):
        if tok.isdigit():
            part.append(int(tok))
        else:
            kind = ".".join(toks[k:])
            break
    return Section(tuple(part), kind, fields)


def our_items(spec: str) -> list[FetchItem]:
    items: list[FetchItem] = []
    pat = re.compile(
        r"(BODY\.PEEK|BODY|BINARY\.PEEK|BINARY\.SIZE|BINARY)\[([^\]]*)\](?:<(\d+)\.(\d+)>)?|(\S+)"
    )
    for m in pat.finditer(spec):
        if m.group(5):
            items.append(FetchItem.simple(m.group(5)))
            continue
        sec = _section(m.group(2))
        if m.group(3) is not None:
            sec = Section(sec.part, sec.kind, sec.fields, (int(m.group(3)), int(m.group(4))))
        name = m.group(1)
        if name.startswith("BODY"):
            items.append(FetchItem.body(sec, peek=name.endswith("PEEK")))
        elif name == "BINARY.SIZE":
            items.append(FetchItem.binary_size(sec))
        else:
            items.append(FetchItem.binary(sec, peek=name.endswith("PEEK")))
    return items


def render_ours(name: str, uid: int, spec: str) -> bytes:
    raw = MESSAGES[name]
    parsed = parse_bytes(raw)
    meta = MessageMeta(
        mailbox_id=MailboxId(1),
        uid=Uid(uid),
        modseq=ModSeq(1),
        flags=frozenset({"\\Seen", "$Foo"}),
        internal_date=INTERNALDATE,
        save_date=INTERNALDATE,
        size=len(raw),
        blob=BlobId(1),
    )
    items = [FetchItem.simple("UID"), *our_items(spec)]
    return materialize(render_fetch(items, meta, parsed, MemContent(raw)), MemContent(raw))


def fetch_theirs(conn: imaplib.IMAP4, uid: int, spec: str) -> tuple[str, bytes]:
    conn.untagged_responses.pop("FETCH", None)  # a NO leaves its FETCH lines behind
    typ, data = conn.uid("FETCH", str(uid), f"({spec})")
    if typ != "OK":
        return typ, data[0] if data and isinstance(data[0], bytes) else b""
    raw = _raw(data)
    body = raw.split(b" (", 1)[1]
    assert body.endswith(b")"), raw
    return typ, body[:-1]


# --------------------------------------------------------------------------------------------
# the tests


@pytest.mark.parametrize("name", NAMES)
def test_fetch_matches_dovecot(imap: tuple[imaplib.IMAP4, dict[str, int]], name: str) -> None:
    conn, uids = imap
    mismatches = []
    for spec in COMBINATIONS:
        typ, theirs_raw = fetch_theirs(conn, uids[name], spec)
        assert typ == "OK", (spec, theirs_raw)
        theirs = parse_items(theirs_raw)
        ours = parse_items(render_ours(name, uids[name], spec))
        for label in sorted(set(theirs) | set(ours)):
            if theirs.get(label) != ours.get(label):
                mismatches.append((spec, label, ours.get(label), theirs.get(label)))
    assert mismatches == []


def _connect(dovecot: DovecotInstance) -> imaplib.IMAP4:
    conn = imaplib.IMAP4(dovecot.host, dovecot.imap_port)
    conn.login(USER, PASSWORD)
    conn.select("INBOX", readonly=True)
    return conn


@pytest.mark.parametrize("name", NAMES)
def test_binary_matches_dovecot(
    dovecot: DovecotInstance, imap: tuple[imaplib.IMAP4, dict[str, int]], name: str
) -> None:
    uid = imap[1][name]
    conn = _connect(dovecot)  # our own: Dovecot may drop it (see DOVECOT_FAILS)
    mismatches: list[tuple[str, str, object, object]] = []
    for part in BINARY_PARTS:
        spec = f"BINARY.PEEK[{part}] BINARY.SIZE[{part}]"
        try:
            typ, theirs_raw = fetch_theirs(conn, uid, spec)
        except imaplib.IMAP4.abort:
            conn.shutdown()
            assert (name, part) in DOVECOT_FAILS, (name, part, dovecot.log_tail(5))
            conn = _connect(dovecot)
            continue
        assert (name, part) not in DOVECOT_FAILS, (name, part, "Dovecot answers it now")
        try:
            ours_raw = render_ours(name, uid, f"BINARY.PEEK[{part}] BINARY.SIZE[{part}]")
        except FetchError as exc:
            if typ != "NO" or f"[{exc.code}]".encode() not in theirs_raw:
                mismatches.append((part, exc.code, typ, theirs_raw))
            continue
        if typ != "OK":
            mismatches.append((part, "OK", typ, theirs_raw))
            continue
        theirs = parse_items(theirs_raw)
        ours = parse_items(ours_raw)
        label = f"BINARY[{part}]".encode()
        size_label = f"BINARY.SIZE[{part}]".encode()
        if theirs[label] != ours[label]:
            mismatches.append((part, "data", ours[label], theirs[label]))
        data = theirs[label]
        assert isinstance(data, tuple)
        # Ours must equal the length of Dovecot's own BINARY data (see module doc).
        if ours[size_label] != b"%d" % len(data[1]):
            mismatches.append((part, "size", ours[size_label], theirs[size_label]))
    conn.logout()
    assert mismatches == []
