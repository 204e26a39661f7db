"""APPEND with CATENATE (RFC 4469) through the sans-IO protocol: URL parts as events, TEXT
literals streamed like message literals, with MULTIAPPEND and REPLACE."""

from __future__ import annotations

from tests.unit.imap.test_protocol import merge_append_data, run

from pobox.imap.protocol import (
    AppendAborted,
    AppendData,
    AppendEnd,
    AppendStart,
    BadCommand,
    CatenatePart,
    ContinuationNeeded,
    Event,
    ImapLimits,
    ImapServerProtocol,
    LiteralTooBig,
    NeedData,
)

URL1 = b"/Drafts;UIDVALIDITY=385759045/;UID=20/;section=HEADER"


def test_catenate_of_rfc_4469_with_synchronizing_literals() -> None:
    p = ImapServerProtocol()
    p.receive_data(b'A003 APPEND Drafts (\\Seen) CATENATE (URL "' + URL1 + b'" TEXT {4}\r\n')
    start = p.next_event()
    assert isinstance(start, AppendStart) and start.catenate and start.flags == ("\\Seen",)
    assert p.next_event() == CatenatePart(url=URL1)
    assert p.next_event() == CatenatePart(size=4, sync=True)
    assert p.accept_literal().startswith(b"+ ")
    p.receive_data(b'--b\n URL "/Drafts/;UID=30" TEXT {3+}\r\nend)\r\n')
    events: list[Event] = []
    while not isinstance(event := p.next_event(), NeedData):
        events.append(event)
    assert merge_append_data(events) == [
        AppendData(b"--b\n"),
        CatenatePart(url=b"/Drafts/;UID=30"),
        CatenatePart(size=3),
        AppendData(b"end"),
        AppendEnd("A003"),
    ]


def test_catenate_without_literals_is_one_line() -> None:
    events = run(b'a1 APPEND INBOX CATENATE (URL "/INBOX/;UID=1" URL "/INBOX/;UID=2")\r\n')
    start, one, two, end = events
    assert isinstance(start, AppendStart) and start.catenate and start.size == 0
    assert (one, two, end) == (
        CatenatePart(url=b"/INBOX/;UID=1"),
        CatenatePart(url=b"/INBOX/;UID=2"),
        AppendEnd("a1"),
    )


def test_multiappend_mixes_catenate_and_plain_messages() -> None:
    data = (
        b'a2 APPEND INBOX CATENATE (URL "/INBOX/;UID=1") (\\Flagged) {2+}\r\n'
        b"hi CATENATE (TEXT {1+}\r\nx)\r\n"
    )
    events = merge_append_data(run(data))
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "AppendStart",
        "CatenatePart",
        "AppendStart",
        "AppendData",
        "AppendStart",
        "CatenatePart",
        "AppendData",
        "AppendEnd",
    ]
    plain = events[2]
    assert isinstance(plain, AppendStart) and not plain.catenate and plain.flags == ("\\Flagged",)
    assert events[3] == AppendData(b"hi") and events[6] == AppendData(b"x")


def test_replace_with_catenate() -> None:
    start = run(b'a3 UID REPLACE 5 Drafts CATENATE (URL "/Drafts/;UID=5")\r\n')[0]
    assert isinstance(start, AppendStart)
    assert (start.catenate, start.replace, start.uid) == (True, "5", True)


def test_malformed_catenate() -> None:
    (bad,) = run(b"a4 APPEND INBOX CATENATE ()\r\n")
    assert isinstance(bad, BadCommand) and bad.tag == "a4"
    (bad,) = run(b'a5 APPEND INBOX CATENATE (URL "/INBOX/;UID=1" FOO x)\r\n')
    assert isinstance(bad, BadCommand) and "URL, TEXT" in bad.text
    events = run(b"a6 APPEND INBOX CATENATE (TEXT {1+}\r\nx BOGUS)\r\na7 NOOP\r\n")
    assert any(isinstance(e, AppendAborted) and e.tag == "a6" for e in events)


def test_a_too_big_text_literal() -> None:
    events = run(b"a8 APPEND INBOX CATENATE (TEXT {100}\r\n", ImapLimits(max_literal=10))
    assert isinstance(events[0], AppendStart)
    assert isinstance(events[1], LiteralTooBig) and events[1].append
    assert not any(isinstance(e, ContinuationNeeded) for e in events)
