"""Typed responses → bytes, including the string choice rule."""

from __future__ import annotations

import re

import pytest
from imapclient.response_parser import (  # type: ignore[import-untyped]
    parse_fetch_response,
    parse_response,
)

from pobox.imap import responses as r
from pobox.imap.responses import ResponseCode as Code


@pytest.mark.parametrize(
    ("response", "wire"),
    [
        (
            r.Untagged("OK", "UIDs valid", Code.uidvalidity(3857529045)),
            b"* OK [UIDVALIDITY 3857529045] UIDs valid\r\n",
        ),
        (
            r.Tagged("a1", "OK", "SELECT completed", Code.plain("READ-WRITE")),
            b"a1 OK [READ-WRITE] SELECT completed\r\n",
        ),
        (r.Tagged("a1", "NO", ""), b"a1 NO done\r\n"),
        (r.Tagged(None, "BAD", "line\r\nbreak"), b"* BAD line  break\r\n"),
        (r.exists(3), b"* 3 EXISTS\r\n"),
        (r.recent(0), b"* 0 RECENT\r\n"),
        (r.expunge(2), b"* 2 EXPUNGE\r\n"),
        (
            r.ListItem(("\\HasNoChildren", "\\Drafts"), "/", "Drafts"),
            b'* LIST (\\HasNoChildren \\Drafts) "/" Drafts\r\n',
        ),
        (r.ListItem((), None, "inbox", kind="LSUB"), b"* LSUB () NIL INBOX\r\n"),
        (
            r.ListItem(("\\Noselect",), "/", "with space"),
            b'* LIST (\\Noselect) "/" "with space"\r\n',
        ),
        (r.ListItem((), "/", "a*b"), b'* LIST () "/" "a*b"\r\n'),
        (
            r.ListItem((), "/", "x", extra=b'("CHILDINFO" ("SUBSCRIBED"))'),
            b'* LIST () "/" x ("CHILDINFO" ("SUBSCRIBED"))\r\n',
        ),
        (
            r.StatusResponse("INBOX", (("MESSAGES", 3), ("UIDNEXT", 4))),
            b"* STATUS INBOX (MESSAGES 3 UIDNEXT 4)\r\n",
        ),
        (r.SearchResponse((2, 3)), b"* SEARCH 2 3\r\n"),
        (r.SearchResponse(()), b"* SEARCH\r\n"),
        (r.SearchResponse((1,), modseq=917162500), b"* SEARCH 1 (MODSEQ 917162500)\r\n"),
        (
            r.ESearchResponse("a1", True, (("MIN", 1), ("COUNT", 4))),
            b'* ESEARCH (TAG "a1") UID MIN 1 COUNT 4\r\n',
        ),
        (
            r.ESearchResponse("a2", False, (("ALL", (1, 2, 3, 5)),)),
            b'* ESEARCH (TAG "a2") ALL 1:3,5\r\n',
        ),
        (
            r.ESearchResponse("a3", False, (("ALL", ()), ("COUNT", 0))),
            b'* ESEARCH (TAG "a3") COUNT 0\r\n',
        ),
        (
            r.FetchResponse(12, ((b"UID", b"5"), (b"FLAGS", r.flag_list(["\\Seen"])))),
            b"* 12 FETCH (UID 5 FLAGS (\\Seen))\r\n",
        ),
        (
            r.FetchResponse(1, ((b"BODY[]", r.literal(b"hi\r\n")),)),
            b"* 1 FETCH (BODY[] {4}\r\nhi\r\n)\r\n",
        ),
        (
            r.Flags(("\\Answered", "\\Seen", "$Forwarded")),
            b"* FLAGS (\\Answered \\Seen $Forwarded)\r\n",
        ),
        (
            r.CapabilityResponse(("IMAP4rev1", "IMAP4rev2", "IDLE")),
            b"* CAPABILITY IMAP4rev1 IMAP4rev2 IDLE\r\n",
        ),
        (r.enabled(["UTF8=ACCEPT"]), b"* ENABLED UTF8=ACCEPT\r\n"),
        (r.NamespaceResponse((("", "/"),)), b'* NAMESPACE (("" "/")) NIL NIL\r\n'),
        (
            r.NamespaceResponse((("", "/"),), None, (("Shared/", "/"),)),
            b'* NAMESPACE (("" "/")) NIL (("Shared/" "/"))\r\n',
        ),
        (r.IdResponse((("name", "pobox"), ("os", None))), b'* ID ("name" "pobox" "os" NIL)\r\n'),
        (r.IdResponse(None), b"* ID NIL\r\n"),
        (r.bye("Logging out"), b"* BYE Logging out\r\n"),
        (r.Continuation(b"idling"), b"+ idling\r\n"),
        (r.Continuation(), b"+ \r\n"),
        (r.VanishedResponse((41, 43, 44, 45), earlier=True), b"* VANISHED (EARLIER) 41,43:45\r\n"),
        (
            r.Tagged("a1", "OK", "done", Code.appenduid(38505, [3955])),
            b"a1 OK [APPENDUID 38505 3955] done\r\n",
        ),
        (
            r.Tagged("a1", "OK", "done", Code.copyuid(38505, [304, 319, 320], [3956, 3957, 3958])),
            b"a1 OK [COPYUID 38505 304,319:320 3956:3958] done\r\n",
        ),
        (
            r.Untagged("OK", "Limited", Code.permanentflags(["\\Deleted", "\\Seen", "\\*"])),
            b"* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited\r\n",
        ),
        (
            r.Untagged("OK", "ready", Code.capability(["IMAP4rev1", "LITERAL+"])),
            b"* OK [CAPABILITY IMAP4rev1 LITERAL+] ready\r\n",
        ),
        (
            r.Tagged("a", "NO", "charset", Code.badcharset(["UTF-8", "US-ASCII"])),
            b"a NO [BADCHARSET (UTF-8 US-ASCII)] charset\r\n",
        ),
        (r.Tagged("a", "NO", "too big", Code.plain("TOOBIG")), b"a NO [TOOBIG] too big\r\n"),
        (r.Untagged("OK", "next", Code.uidnext(4392)), b"* OK [UIDNEXT 4392] next\r\n"),
    ],
    ids=lambda v: repr(v)[:50],
)
def test_render(response: r.Response, wire: bytes) -> None:
    assert r.render(response) == wire


@pytest.mark.parametrize(
    ("data", "utf8", "wire"),
    [
        (b"", False, b'""'),
        (b"plain", False, b'"plain"'),
        (b'a"b\\c', False, b'"a\\"b\\\\c"'),
        (b"a\r\nb", False, b"{4}\r\na\r\nb"),
        ("ü".encode(), False, b"{2}\r\n\xc3\xbc"),
        ("ü".encode(), True, '"ü"'.encode()),
        (b"\xff", True, b"{1}\r\n\xff"),
        (b"x" * 5000, False, b"{5000}\r\n" + b"x" * 5000),
    ],
)
def test_string_choice(data: bytes, utf8: bool, wire: bytes) -> None:
    assert r.string(data, utf8=utf8) == wire


def test_astring_and_nstring() -> None:
    assert r.astring(b"Drafts") == b"Drafts"
    assert r.astring(b"a]b") == b"a]b"
    assert r.astring(b"NIL") == b'"NIL"'
    assert r.astring(b"a b") == b'"a b"'
    assert r.nstring(None) == b"NIL"
    assert r.nstring(b"x") == b'"x"'


def test_literal8_for_binary_data() -> None:
    assert r.string(b"a\x00b", binary=True) == b"~{3}\r\na\x00b"
    assert r.string(b"a\x00b") == b"{3}\r\na\x00b"
    assert r.literal(b"x", binary=True) == b"~{1}\r\nx"


def test_mailbox_names() -> None:
    assert r.mailbox_name("inbox") == b"INBOX"
    assert r.mailbox_name("Entwürfe") == b"Entw&APw-rfe"
    assert r.mailbox_name("Entwürfe", utf8=True) == '"Entwürfe"'.encode()
    assert r.mailbox_name("A&B") == b"A&-B"
    assert r.mailbox_name("") == b'""'
    assert r.mailbox_name("Sent Items") == b'"Sent Items"'


def imaplib_chunks(wire: bytes) -> list[bytes | tuple[bytes, bytes]]:
    """Split one rendered untagged response the way imaplib hands it to imapclient."""
    assert wire.startswith(b"* ") and wire.endswith(b"\r\n")
    rest = wire[2:-2]
    chunks: list[bytes | tuple[bytes, bytes]] = []
    while (m := re.search(rb"\{(\d+)\}\r\n", rest)) is not None:
        size = int(m.group(1))
        chunks.append(
            (rest[: m.start()] + rest[m.start() : m.end() - 2], rest[m.end() : m.end() + size])
        )
        rest = rest[m.end() + size :]
    chunks.append(rest)
    return chunks


def test_imapclient_reads_our_responses() -> None:
    wire = r.ListItem(("\\HasNoChildren",), "/", 'a "q" \\ b').render()
    assert parse_response([wire[len(b"* LIST ") : -2]]) == (
        (b"\\HasNoChildren",),
        b"/",
        b'a "q" \\ b',
    )
    body = b"Subject: x\r\n\r\n\xc3\xa4"
    wire = r.FetchResponse(
        12,
        (
            (b"UID", b"5"),
            (b"BODY[HEADER.FIELDS (date)]", r.string(body)),
            (b"FLAGS", r.flag_list(["\\Seen"])),
        ),
    ).render()
    # imaplib hands over '12 (...)' without the FETCH keyword
    parsed = parse_fetch_response(imaplib_chunks(wire.replace(b" FETCH ", b" ", 1)))
    assert parsed[5][b"BODY[HEADER.FIELDS (DATE)]"] == body
    assert parsed[5][b"FLAGS"] == (b"\\Seen",)


@pytest.mark.parametrize(
    "text",
    [
        "unknown command FOO\ufffd\ufffdBAR",  # invalid UTF-8, decoded with replacement
        "unknown command FOO\udcff\udcfeBAR",  # or kept as surrogates
        "unknown command FOO\xff\xfeBAR",
    ],
)
def test_texts_never_echo_a_clients_raw_bytes(text: str) -> None:
    rendered = r.Tagged("a1", "BAD", text).render(utf8=True)
    assert rendered == b"a1 BAD unknown command FOO??BAR\r\n"


def test_long_texts_are_cut() -> None:
    rendered = r.Tagged("a1", "BAD", "unknown command " + "X" * 5000).render()
    assert len(rendered) < 400 and rendered.endswith(b"X\r\n")
