"""FETCH item rendering (pobox.imap.fetch). Expected values follow Dovecot 2.3's answers for
the same bytes; tests/interop/test_dovecot_fetch.py checks the corpus live."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pobox.imap import fetch
from pobox.imap.fetch import (
    DecodeError,
    FetchItem,
    Literal,
    Section,
    UnknownCte,
    UnsupportedItem,
    decode_base64,
    decode_quoted_printable,
    filter_header,
    format_flags,
    format_internaldate,
    materialize,
    needs_content,
    needs_structure,
    render_fetch,
    sets_seen,
)
from pobox.mail.parse import parse_bytes
from pobox.store.api import BlobId, MailboxId, MessageMeta, ModSeq, Uid

CORPUS = Path(__file__).resolve().parents[2] / "data" / "messages"


class MemContent:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)
        self.reads: list[tuple[int, int]] = []

    def read(self, offset: int, length: int) -> bytes:
        self.reads.append((offset, length))
        return self.data[offset : offset + length]

    def file(self) -> BinaryIO | None:
        return None

    def close(self) -> None:
        pass


def meta(size: int = 0, flags: frozenset[str] = frozenset()) -> MessageMeta:
    date = datetime(1996, 7, 17, 2, 44, 25, tzinfo=timezone(timedelta(hours=-7)))
    return MessageMeta(
        mailbox_id=MailboxId(1),
        uid=Uid(5),
        modseq=ModSeq(42),
        flags=flags,
        internal_date=date,
        save_date=date,
        size=size,
        blob=BlobId(1),
    )


def run(raw: bytes, *items: FetchItem, **kw: bool) -> bytes:
    content = MemContent(raw)
    pieces = render_fetch(list(items), meta(len(raw)), parse_bytes(raw), content, **kw)
    return materialize(pieces, content)


def body(text: str = "", partial: tuple[int, int] | None = None, **kw: object) -> FetchItem:
    part: list[int] = []
    kind = ""
    toks = text.split(".") if text else []
    for i, tok in enumerate(toks):
        if tok.isdigit():
            part.append(int(tok))
        else:
            kind = ".".join(toks[i:])
            break
    fields = kw.pop("fields", ())
    assert isinstance(fields, tuple)
    return FetchItem.body(Section(tuple(part), kind, fields, partial), peek=True)


PLAIN = b"From: a@b\r\nSubject: hi\r\n\r\nhello\r\n"
NESTED = (CORPUS / "08-rfc822-attachment.eml").read_bytes()
MIXED = (CORPUS / "05-mixed-attachments.eml").read_bytes()


# ---- simple items ---------------------------------------------------------------------------


def test_simple_items() -> None:
    raw = PLAIN
    out = run(
        raw,
        FetchItem.simple("UID"),
        FetchItem.simple("rfc822.size"),
        FetchItem.simple("INTERNALDATE"),
        FetchItem.simple("MODSEQ"),
        FetchItem.simple("SAVEDATE"),
    )
    assert out == (
        b'UID 5 RFC822.SIZE %d INTERNALDATE "17-Jul-1996 02:44:25 -0700" MODSEQ (42) '
        b'SAVEDATE "17-Jul-1996 02:44:25 -0700"' % len(raw)
    )


def test_internaldate() -> None:
    assert format_internaldate(datetime(2020, 1, 1, 0, 0, tzinfo=UTC)) == (
        b"01-Jan-2020 00:00:00 +0000"
    )
    ist = timezone(timedelta(hours=5, minutes=30))
    assert format_internaldate(datetime(2020, 12, 9, 23, 5, 1, tzinfo=ist)) == (
        b"09-Dec-2020 23:05:01 +0530"
    )
    nst = timezone(-timedelta(hours=3, minutes=30))
    assert format_internaldate(datetime(2020, 2, 3, 4, 5, 6, tzinfo=nst)).endswith(b" -0330")


def test_flags() -> None:
    assert format_flags([]) == b"()"
    assert format_flags(["$Foo", "\\Seen", "\\Answered", "Junk"]) == (
        b"(\\Answered \\Seen $Foo Junk)"
    )
    assert format_flags(["\\Seen"], recent=True) == b"(\\Seen \\Recent)"
    assert format_flags(["\\Recent"]) == b"()"  # only the session decides \Recent


def test_flags_item_and_include_flags() -> None:
    content = MemContent(PLAIN)
    m = meta(len(PLAIN), frozenset({"\\Seen"}))
    items = [FetchItem.body(Section())]
    out = render_fetch(items, m, parse_bytes(PLAIN), content, include_flags=True)
    assert materialize(out, content).endswith(b" FLAGS (\\Seen)")
    items = [FetchItem.simple("FLAGS"), FetchItem.body(Section())]
    out = render_fetch(items, m, parse_bytes(PLAIN), content, include_flags=True, recent=True)
    text = materialize(out, content)
    assert text.startswith(b"FLAGS (\\Seen \\Recent) BODY[] ")
    assert text.count(b"FLAGS") == 1


def test_structure_items() -> None:
    out = run(PLAIN, FetchItem.simple("ENVELOPE"), FetchItem.simple("BODY"))
    assert out.startswith(b'ENVELOPE (NIL "hi" ((NIL NIL "a" "b"))')
    assert out.endswith(b' BODY ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 7 1)')
    assert run(PLAIN, FetchItem.simple("BODYSTRUCTURE")).endswith(b"7 1 NIL NIL NIL NIL)")


def test_rfc822_items() -> None:
    assert run(PLAIN, FetchItem.simple("RFC822")) == b"RFC822 {%d}\r\n%s" % (len(PLAIN), PLAIN)
    assert run(PLAIN, FetchItem.simple("RFC822.PEEK")).startswith(b"RFC822 {")
    assert run(PLAIN, FetchItem.simple("RFC822.HEADER")) == (
        b"RFC822.HEADER {26}\r\nFrom: a@b\r\nSubject: hi\r\n\r\n"
    )
    assert run(PLAIN, FetchItem.simple("RFC822.TEXT")) == b"RFC822.TEXT {7}\r\nhello\r\n"


def test_unknown_item() -> None:
    with pytest.raises(UnsupportedItem):
        run(PLAIN, FetchItem.simple("X-GM-LABELS"))
    with pytest.raises(UnsupportedItem):
        run(PLAIN, FetchItem.binary(Section((1,), "MIME")))


# ---- BODY[section] --------------------------------------------------------------------------


def test_whole_and_header_text() -> None:
    assert run(PLAIN, body()) == b"BODY[] {%d}\r\n%s" % (len(PLAIN), PLAIN)
    assert run(PLAIN, body("HEADER")) == b"BODY[HEADER] {26}\r\nFrom: a@b\r\nSubject: hi\r\n\r\n"
    assert run(PLAIN, body("TEXT")) == b"BODY[TEXT] {7}\r\nhello\r\n"
    assert run(PLAIN, body("1")) == b"BODY[1] {7}\r\nhello\r\n"


def test_missing_sections_are_empty() -> None:
    # as every empty section, the empty literal (Dovecot answers the same)
    assert run(PLAIN, body("2")) == b"BODY[2] {0}\r\n"
    assert run(PLAIN, body("1.1")) == b"BODY[1.1] {0}\r\n"
    assert run(PLAIN, body("1.HEADER")) == b"BODY[1.HEADER] {0}\r\n"
    assert run(MIXED, body("1.TEXT")) == b"BODY[1.TEXT] {0}\r\n"
    empty = b"Subject: x\r\n\r\n"
    assert run(empty, body("TEXT")) == b"BODY[TEXT] {0}\r\n"


def test_partial_boundaries() -> None:
    n = len(PLAIN)
    assert run(PLAIN, body("", (0, 4))) == b"BODY[]<0> {4}\r\nFrom"
    assert run(PLAIN, body("", (n - 1, 10))) == b"BODY[]<%d> {1}\r\n\n" % (n - 1)
    assert run(PLAIN, body("", (n, 10))) == b"BODY[]<%d> {0}\r\n" % n
    assert run(PLAIN, body("", (n + 100, 10))) == b"BODY[]<%d> {0}\r\n" % (n + 100)
    assert run(PLAIN, body("", (3, 0))) == b"BODY[]<3> {0}\r\n"
    assert run(PLAIN, body("TEXT", (2, 100))) == b"BODY[TEXT]<2> {5}\r\nllo\r\n"
    assert run(PLAIN, body("HEADER.FIELDS", (3, 4), fields=(b"subject",))) == (
        b"BODY[HEADER.FIELDS (SUBJECT)]<3> {4}\r\nject"
    )


def test_header_fields() -> None:
    block = b"From: a\r\nReceived: x\r\n  y\r\nSUBJECT: s\r\nreceived: z\r\n\r\n"
    assert filter_header(block, [b"Received"], True) == (
        b"Received: x\r\n  y\r\nreceived: z\r\n\r\n"
    )
    assert filter_header(block, [b"received"], False) == b"From: a\r\nSUBJECT: s\r\n\r\n"
    assert filter_header(block, [b"x-none"], True) == b"\r\n"
    # no blank line in the message: .NOT adds none, HEADER.FIELDS always does
    assert filter_header(b"From: a\r\nTo: b\r\n", [b"to"], False) == b"From: a\r\n"
    assert filter_header(b"From: a\r\nTo: b\r\n", [b"to"], True) == b"To: b\r\n\r\n"
    assert filter_header(b"From: a", [b"from"], True) == b"From: a\r\n\r\n"


def test_header_fields_label_echo() -> None:
    item = FetchItem.body(
        Section((), "HEADER.FIELDS", (b"From", b"Subject")),
        peek=True,
        section_text=b"header.fields (From Subject)",
    )
    out = run(PLAIN, item)
    assert out == b"BODY[header.fields (From Subject)] {26}\r\nFrom: a@b\r\nSubject: hi\r\n\r\n"
    out = run(PLAIN, body("HEADER.FIELDS.NOT", fields=(b"from",)))
    assert out == b"BODY[HEADER.FIELDS.NOT (FROM)] {15}\r\nSubject: hi\r\n\r\n"


def test_nested_message_rfc822() -> None:
    msg = parse_bytes(NESTED)
    inner = msg.root.children[1]
    assert inner.message is not None
    hdr = NESTED[inner.message.root.header_offset :][: inner.message.root.header_size]
    text = NESTED[inner.message.root.body_offset :][: inner.message.root.body_size]
    assert run(NESTED, body("2.HEADER")) == b"BODY[2.HEADER] {%d}\r\n%s" % (len(hdr), hdr)
    assert run(NESTED, body("2.TEXT")) == b"BODY[2.TEXT] {%d}\r\n%s" % (len(text), text)
    mime = NESTED[inner.header_offset :][: inner.header_size]
    assert run(NESTED, body("2.MIME")) == b"BODY[2.MIME] {%d}\r\n%s" % (len(mime), mime)
    subj = run(NESTED, body("2.HEADER.FIELDS", fields=(b"Subject",)))
    assert subj.startswith(b"BODY[2.HEADER.FIELDS (SUBJECT)] {")
    assert subj.endswith(b"\r\n\r\n") and b"Subject:" in subj


def test_large_sections_stream() -> None:
    big = b"Subject: big\r\n\r\n" + b"x" * (fetch.STREAM_THRESHOLD + 10)
    content = MemContent(big)
    items = [body(""), body("TEXT", (5, fetch.STREAM_THRESHOLD * 2)), FetchItem.simple("UID")]
    pieces = render_fetch(items, meta(len(big)), parse_bytes(big), content)
    assert pieces == [
        b"BODY[] ",
        Literal(0, len(big)),
        b" BODY[TEXT]<5> ",
        Literal(16 + 5, fetch.STREAM_THRESHOLD + 5),
        b" UID 5",
    ]
    assert content.reads == []  # nothing read: the session streams it
    assert Literal(3, 7).prefix() == b"{7}\r\n"
    assert Literal(3, 7, binary=True).prefix() == b"~{7}\r\n"


def test_body_without_structure() -> None:
    content = MemContent(PLAIN)
    items = [FetchItem.simple("UID"), body(), FetchItem.simple("RFC822.SIZE")]
    assert not needs_structure(items)
    out = render_fetch(items, meta(len(PLAIN)), None, content)
    assert materialize(out, content) == b"UID 5 BODY[] {%d}\r\n%s RFC822.SIZE %d" % (
        len(PLAIN),
        PLAIN,
        len(PLAIN),
    )


# ---- BINARY ---------------------------------------------------------------------------------


def test_binary_decodes() -> None:
    out = run(MIXED, FetchItem.binary(Section((1,))), FetchItem.binary_size(Section((1,))))
    assert out == (
        b"BINARY[1] {40}\r\nPlease find the report attached. Gr\xc3\xbc\xc3\x9fe BINARY.SIZE[1] 40"
    )
    pdf = run(MIXED, FetchItem.binary(Section((2,))))
    assert pdf.startswith(b"BINARY[2] ~{768}\r\n\x00\x01\x02")
    assert run(MIXED, FetchItem.binary_size(Section((2,)))) == b"BINARY.SIZE[2] 768"
    part = run(MIXED, FetchItem.binary(Section((2,), partial=(766, 10))))
    assert part == b"BINARY[2]<766> {2}\r\n\xfe\xff"
    assert run(MIXED, FetchItem.binary(Section((9,)))) == b"BINARY[9] {0}\r\n"
    assert run(PLAIN, FetchItem.binary(Section((1,)))) == b"BINARY[1] {7}\r\nhello\r\n"


def test_binary_of_containers_rewrites_encoded_leaves() -> None:
    raw = (
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b"Content-Transfer-Encoding: base64\r\nContent-Type: text/plain\r\n\r\naGk=\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nraw\r\n--b--\r\n"
    )
    out = run(raw, FetchItem.binary(Section()))
    expected = raw.replace(
        b"Content-Transfer-Encoding: base64\r\nContent-Type: text/plain\r\n\r\naGk=",
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: binary\r\n\r\nhi",
    )
    assert out == b"BINARY[] {%d}\r\n%s" % (len(expected), expected)
    size = run(raw, FetchItem.binary_size(Section()))
    assert size == b"BINARY.SIZE[] %d" % len(expected)
    # a root without MIME-Version/Content-Type: still decoded, as Dovecot does
    bare = b"From: a\r\nContent-Transfer-Encoding: base64\r\n\r\nQUJD\r\n"
    assert run(bare, FetchItem.binary(Section((1,)))) == b"BINARY[1] {3}\r\nABC"


def test_binary_errors() -> None:
    uu = b"MIME-Version: 1.0\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n"
    with pytest.raises(UnknownCte) as exc:
        run(uu, FetchItem.binary(Section((1,))))
    assert exc.value.code == "UNKNOWN-CTE"
    bad = b"MIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n\r\nAA!!\r\n"
    with pytest.raises(DecodeError) as exc2:
        run(bad, FetchItem.binary_size(Section((1,))))
    assert exc2.value.code == "PARSE"


def test_decoders() -> None:
    assert decode_base64(b"QUJD\r\nRA=\r\n=\r\n") == b"ABCD"
    assert decode_base64(b"QUJDRA") == b"ABCD"
    with pytest.raises(DecodeError):
        decode_base64(b"QUJDR")
    assert decode_quoted_printable(b"trail   \r\na=3d=\r\nb\r\n") == b"trail\r\na=b\r\n"
    assert decode_quoted_printable(b"a\tb =  \r\nc") == b"a\tb c"
    assert decode_quoted_printable(b"l=C3=\r\n\r\n") == b"l\xc3\r\n"
    assert decode_quoted_printable(b"x=") == b"x"
    for junk in (b"a=ZZb", b"a=4 b", b"a=4"):
        with pytest.raises(DecodeError):
            decode_quoted_printable(junk)


# ---- planning helpers -----------------------------------------------------------------------


def test_sets_seen() -> None:
    assert sets_seen([FetchItem.body(Section())])
    assert sets_seen([FetchItem.binary(Section((1,)))])
    assert sets_seen([FetchItem.simple("RFC822")])
    assert sets_seen([FetchItem.simple("RFC822.TEXT")])
    for item in (
        FetchItem.body(Section(), peek=True),
        FetchItem.binary(Section((1,)), peek=True),
        FetchItem.binary_size(Section((1,))),
        FetchItem.simple("RFC822.HEADER"),
        FetchItem.simple("RFC822.PEEK"),
        FetchItem.simple("RFC822.TEXT.PEEK"),
        FetchItem.simple("FLAGS"),
    ):
        assert not sets_seen([item]), item


def test_needs() -> None:
    light = [FetchItem.simple(n) for n in ("UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE")]
    assert not needs_structure(light) and not needs_content(light)
    env = [FetchItem.simple("ENVELOPE"), FetchItem.simple("BODYSTRUCTURE")]
    assert needs_structure(env) and not needs_content(env)
    whole = [FetchItem.body(Section(partial=(0, 10)))]
    assert not needs_structure(whole) and needs_content(whole)
    part = [FetchItem.body(Section((1,)))]
    assert needs_structure(part) and needs_content(part)
    assert needs_structure([FetchItem.simple("RFC822.HEADER")])
    assert needs_content([FetchItem.binary_size(Section((1,)))])


def test_section_validation() -> None:
    with pytest.raises(ValueError):
        Section((), "BOGUS")


def test_top_header_is_the_stored_header_block_or_none_when_cut() -> None:
    from pobox.mail.parse import MAX_HEADER_BYTES

    raw = b"From: a@b\r\nSubject: x\r\n y\r\n\r\nbody\r\n"
    assert fetch.top_header(parse_bytes(raw)) == raw[: raw.index(b"\r\n\r\n") + 4]
    no_body = b"From: a@b\r\nSubject: x"
    assert fetch.top_header(parse_bytes(no_body)) == no_body
    huge = b"X-Pad: " + b"p" * MAX_HEADER_BYTES + b"\r\nFrom: a@b\r\n\r\nbody\r\n"
    assert fetch.top_header(parse_bytes(huge)) is None  # the structure kept only its start
    assert fetch.top_header(None) is None


def test_header_only_items() -> None:
    fields = Section(kind="HEADER.FIELDS", fields=(b"FROM", b"SUBJECT"))
    uid, flags = FetchItem.simple("UID"), FetchItem.simple("FLAGS")
    assert fetch.header_only([uid, flags, FetchItem.body(fields, peek=True)])
    assert fetch.header_only([FetchItem.simple("RFC822.HEADER"), FetchItem.simple("ENVELOPE")])
    assert fetch.header_only([FetchItem.body(Section(kind="HEADER", partial=(0, 100)))])
    assert not fetch.header_only([FetchItem.body(Section((1,), "HEADER"), peek=True)])
    text = FetchItem.body(Section(kind="TEXT"), peek=True)
    assert not fetch.header_only([FetchItem.body(Section(kind="HEADER"), peek=True), text])
    assert not fetch.header_only([FetchItem.simple("RFC822.HEADER"), FetchItem.simple("PREVIEW")])


_LINES = st.sampled_from(
    [
        b"From: a@b\r\n",
        b"from :x\r\n",
        b"FROM\t: y\r\n",
        b"From\r\n",
        b"From \r\n",
        b"From-X: z\r\n",
        b"Subject: s\r\n",
        b" folded\r\n",
        b"\tfolded tab\r\n",
        b"To: t\n",
        b"X: a\rFrom: b\r\n",
        b"Received: from x by y\r\n",
        b"no colon line\r\n",
        b"Date: d\r\r\n",
        b"\r\n",
    ]
)


@given(
    st.lists(_LINES, max_size=12),
    st.booleans(),
    st.lists(st.sampled_from([b"FROM", b"subject", b"To", b"date", b"x"]), min_size=1, max_size=3),
)
def test_filter_header_fast_path_answers_as_the_line_reader(
    lines: list[bytes], end_blank: bool, names: list[bytes]
) -> None:
    block = b"".join(lines) + (b"\r\n" if end_blank else b"")
    assert fetch.filter_header(block, names, True) == fetch._filter_by_line(block, names, True)
