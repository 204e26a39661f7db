"""Command lines → typed commands, for every command and the client wire shapes of
research/clients.md §5 (lines without literals; literals are in test_protocol.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from pobox.imap.commands import (
    Authenticate,
    Capability,
    Check,
    Close,
    Command,
    Copy,
    Create,
    Delete,
    Enable,
    Examine,
    Expunge,
    Fetch,
    FetchBinary,
    FetchBinarySize,
    FetchBody,
    FetchSimple,
    Id,
    Idle,
    List,
    Login,
    Logout,
    Lsub,
    Move,
    Namespace,
    Noop,
    Parameter,
    Rename,
    Search,
    SearchAge,
    SearchAll,
    SearchAnd,
    SearchBody,
    SearchDate,
    SearchField,
    SearchFlag,
    SearchHeader,
    SearchModSeq,
    SearchNot,
    SearchOr,
    SearchSaveDateSupported,
    SearchSequence,
    SearchSize,
    SearchText,
    SearchUid,
    Select,
    StartTls,
    Status,
    Store,
    StoreMode,
    Subscribe,
    Unselect,
    Unsubscribe,
)
from pobox.imap.grammar import CommandError, command_tag, decode_mailbox, parse_command
from pobox.imap.sequences import SequenceSet

S = SequenceSet.parse


def parse(line: bytes) -> Command:
    return parse_command([line], [])


def hdr_fields(*names: bytes, peek: bool = True, section: bytes) -> FetchBody:
    return FetchBody(peek, (), "HEADER.FIELDS", names, None, section)


SIMPLE_CASES: list[tuple[bytes, Command]] = [
    (b"a1 CAPABILITY", Capability("a1")),
    (b"a1 capability", Capability("a1")),
    (b"a1 NOOP", Noop("a1")),
    (b"a1 LOGOUT", Logout("a1")),
    (b"a1 STARTTLS", StartTls("a1")),
    (b"a1 CHECK", Check("a1")),
    (b"a1 CLOSE", Close("a1")),
    (b"a1 UNSELECT", Unselect("a1")),
    (b"a1 IDLE", Idle("a1")),
    (b"a1 NAMESPACE", Namespace("a1")),
    (b"a1 EXPUNGE", Expunge("a1")),
    (b"a1 uid expunge 5,7", Expunge("a1", S("5,7"))),
    # session / auth
    (
        b'a LOGIN "user@example.com" "pa\\"ss\\\\word"',
        Login("a", b"user@example.com", b'pa"ss\\word'),
    ),
    (b'a login user@example.com "secret"', Login("a", b"user@example.com", b"secret")),
    (b"a LOGIN user pass", Login("a", b"user", b"pass")),
    ('a LOGIN "jürgen" "pässwörd"'.encode(), Login("a", "jürgen".encode(), "pässwörd".encode())),
    (b"a authenticate PLAIN", Authenticate("a", "PLAIN")),
    (b"a AUTHENTICATE PLAIN AHVzZXIAcGFzcw==", Authenticate("a", "PLAIN", b"AHVzZXIAcGFzcw==")),
    (b"a AUTHENTICATE EXTERNAL =", Authenticate("a", "EXTERNAL", b"=")),
    (b"a AUTHENTICATE xoauth2 dXNlcj0=", Authenticate("a", "XOAUTH2", b"dXNlcj0=")),
    (b"a ENABLE UTF8=ACCEPT", Enable("a", ("UTF8=ACCEPT",))),
    (b"a enable condstore qresync", Enable("a", ("CONDSTORE", "QRESYNC"))),
    (b"a ENABLE IMAP4rev2", Enable("a", ("IMAP4REV2",))),
    (
        b'a ID ("name" "Thunderbird" "version" "128.0")',
        Id("a", (("name", "Thunderbird"), ("version", "128.0"))),
    ),
    (b"a ID NIL", Id("a", None)),
    (b'a ID ("guid" "1")', Id("a", (("guid", "1"),))),
    (b'a ID ("os" NIL)', Id("a", (("os", None),))),
    # mailboxes
    (b'a SELECT "box"', Select("a", b"box")),
    (b"a select inbox", Select("a", b"INBOX")),
    (b'a SELECT "InBoX"', Select("a", b"INBOX")),
    (b'a SELECT "inbox/child"', Select("a", b"inbox/child")),
    (b'a SELECT ""', Select("a", b"")),
    (b'a select "box" (CONDSTORE)', Select("a", b"box", (Parameter("CONDSTORE"),))),
    (
        b"a SELECT box (QRESYNC (3857529045 20050715194045000 41,43:211,214:541))",
        Select(
            "a",
            b"box",
            (Parameter("QRESYNC", (b"3857529045", b"20050715194045000", b"41,43:211,214:541")),),
        ),
    ),
    (
        b"a SELECT box (QRESYNC (67890007 90060115194045000 41:211,214:541 (1:3 4:6)))",
        Select(
            "a",
            b"box",
            (
                Parameter(
                    "QRESYNC",
                    (b"67890007", b"90060115194045000", b"41:211,214:541", (b"1:3", b"4:6")),
                ),
            ),
        ),
    ),
    (b'a EXAMINE "box"', Examine("a", b"box")),
    (b'a CREATE "box"', Create("a", b"box")),
    (b'a CREATE "box" (USE (\\Sent))', Create("a", b"box", (Parameter("USE", (b"\\Sent",)),))),
    (b"a DELETE box", Delete("a", b"box")),
    (b'a RENAME "a" "b"', Rename("a", b"a", b"b")),
    (b"a SUBSCRIBE box", Subscribe("a", b"box")),
    (b"a UNSUBSCRIBE box", Unsubscribe("a", b"box")),
    (b'a LIST "" ""', List("a", b"", (b"",))),
    (b'a LIST "" "*"', List("a", b"", (b"*",))),
    (b'a LIST "" %', List("a", b"", (b"%",))),
    (b'a LIST "" INBOX*', List("a", b"", (b"INBOX*",))),
    (
        b'a LIST "" "*" RETURN (SPECIAL-USE)',
        List("a", b"", (b"*",), return_options=("SPECIAL-USE",), extended=True),
    ),
    (
        b'a list (subscribed) "" "*" return (special-use)',
        List("a", b"", (b"*",), ("SUBSCRIBED",), ("SPECIAL-USE",), extended=True),
    ),
    (
        b'a LIST (SUBSCRIBED) "" "*" RETURN (SUBSCRIBED SPECIAL-USE STATUS (MESSAGES UNSEEN '
        b"UIDNEXT UIDVALIDITY HIGHESTMODSEQ SIZE))",
        List(
            "a",
            b"",
            (b"*",),
            ("SUBSCRIBED",),
            ("SUBSCRIBED", "SPECIAL-USE"),
            ("MESSAGES", "UNSEEN", "UIDNEXT", "UIDVALIDITY", "HIGHESTMODSEQ", "SIZE"),
            True,
        ),
    ),
    (
        b'a LIST (SUBSCRIBED RECURSIVEMATCH) "" "*"',
        List("a", b"", (b"*",), ("SUBSCRIBED", "RECURSIVEMATCH"), extended=True),
    ),
    (
        b'a LIST "" "*" RETURN (STATUS (MESSAGES UNSEEN))',
        List("a", b"", (b"*",), status_items=("MESSAGES", "UNSEEN"), extended=True),
    ),
    (
        b'a LIST "" ("INBOX" "Sent*" %/x)',
        List("a", b"", (b"INBOX", b"Sent*", b"%/x"), extended=True),
    ),
    (b'a LIST () "" "*" RETURN ()', List("a", b"", (b"*",), extended=True)),
    (b'a LSUB "" "*"', Lsub("a", b"", b"*")),
    (b'a lsub "" "*"', Lsub("a", b"", b"*")),
    (
        b'a STATUS "INBOX" (UIDNEXT MESSAGES UNSEEN RECENT)',
        Status("a", b"INBOX", ("UIDNEXT", "MESSAGES", "UNSEEN", "RECENT")),
    ),
    (
        b"a STATUS box (MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE RECENT HIGHESTMODSEQ)",
        Status(
            "a",
            b"box",
            (
                "MESSAGES",
                "UIDNEXT",
                "UIDVALIDITY",
                "UNSEEN",
                "DELETED",
                "SIZE",
                "RECENT",
                "HIGHESTMODSEQ",
            ),
        ),
    ),
    (b'a STATUS "box" (APPENDLIMIT MAILBOXID)', Status("a", b"box", ("APPENDLIMIT", "MAILBOXID"))),
    # store / copy / move
    (
        b"a UID STORE 5,7:9 +FLAGS.SILENT (\\Seen)",
        Store("a", True, S("5,7:9"), StoreMode.ADD, True, ("\\Seen",)),
    ),
    (
        b"a uid store 5 +FLAGS (\\Seen $Forwarded)",
        Store("a", True, S("5"), StoreMode.ADD, False, ("\\Seen", "$Forwarded")),
    ),
    (
        b"a UID STORE 5 -FLAGS.SILENT (\\Flagged)",
        Store("a", True, S("5"), StoreMode.REMOVE, True, ("\\Flagged",)),
    ),
    (
        b"a UID STORE 122585 +FLAGS \\seen",
        Store("a", True, S("122585"), StoreMode.ADD, False, ("\\Seen",)),
    ),
    (
        b"a STORE 3 +FLAGS (\\Seen \\Deleted)",
        Store("a", False, S("3"), StoreMode.ADD, False, ("\\Seen", "\\Deleted")),
    ),
    (
        b"a UID STORE 5 FLAGS (\\Deleted \\Seen)",
        Store("a", True, S("5"), StoreMode.REPLACE, False, ("\\Deleted", "\\Seen")),
    ),
    (b"a STORE 1 flags ()", Store("a", False, S("1"), StoreMode.REPLACE, False, ())),
    (
        b"a STORE 1 flags.silent \\Seen Junk",
        Store("a", False, S("1"), StoreMode.REPLACE, True, ("\\Seen", "Junk")),
    ),
    (
        b"a STORE 1:* (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)",
        Store(
            "a",
            False,
            S("1:*"),
            StoreMode.ADD,
            True,
            ("\\Deleted",),
            (Parameter("UNCHANGEDSINCE", b"320162338"),),
        ),
    ),
    (b'a UID COPY 5 "Trash"', Copy("a", True, S("5"), b"Trash")),
    (b'a COPY 2:4 "Trash"', Copy("a", False, S("2:4"), b"Trash")),
    (b'a uid move 5:9 "Archive"', Move("a", True, S("5:9"), b"Archive")),
    (b"a MOVE 1 inbox", Move("a", False, S("1"), b"INBOX")),
]


@pytest.mark.parametrize(("line", "expected"), SIMPLE_CASES, ids=lambda v: repr(v)[:60])
def test_command(line: bytes, expected: Command) -> None:
    assert parse(line) == expected


def test_store_unchanged_since_property() -> None:
    cmd = parse(b"a STORE 1 (UNCHANGEDSINCE 7) FLAGS (\\Seen)")
    assert isinstance(cmd, Store)
    assert cmd.unchanged_since == 7


def test_create_special_use_property() -> None:
    cmd = parse(b'a CREATE "Drafts" (USE (\\drafts))')
    assert isinstance(cmd, Create)
    assert cmd.special_use == ("\\Drafts",)


def test_login_repr_hides_password() -> None:
    assert "secret" not in repr(parse(b"a LOGIN user secret"))


# --------------------------------------------------------------------------- FETCH


def fetch(line: bytes) -> Fetch:
    cmd = parse(line)
    assert isinstance(cmd, Fetch)
    return cmd


def test_fetch_uid_flags_with_changedsince() -> None:
    cmd = fetch(b"a UID fetch 1:* (FLAGS) (CHANGEDSINCE 12345)")
    assert cmd.uid
    assert cmd.sequence_set == S("1:*")
    assert cmd.attributes == (FetchSimple("FLAGS"),)
    assert cmd.modifiers == (Parameter("CHANGEDSINCE", b"12345"),)


def test_fetch_modifiers_vanished() -> None:
    cmd = fetch(b"a UID FETCH 1:5000 (FLAGS) (CHANGEDSINCE 12345 VANISHED)")
    assert cmd.modifiers == (Parameter("CHANGEDSINCE", b"12345"), Parameter("VANISHED"))


@pytest.mark.parametrize(
    ("macro", "names"),
    [
        (b"ALL", ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE")),
        (b"fast", ("FLAGS", "INTERNALDATE", "RFC822.SIZE")),
        (b"FULL", ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY")),
    ],
)
def test_fetch_macros(macro: bytes, names: tuple[str, ...]) -> None:
    assert fetch(b"a FETCH 1 " + macro).attributes == tuple(FetchSimple(n) for n in names)


def test_fetch_every_simple_attribute() -> None:
    names = [
        "ENVELOPE",
        "FLAGS",
        "INTERNALDATE",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.SIZE",
        "RFC822.TEXT",
        "BODY",
        "BODYSTRUCTURE",
        "UID",
        "MODSEQ",
        "RFC822.PEEK",
    ]
    line = b"a FETCH 1 (" + " ".join(n.lower() for n in names).encode() + b")"
    assert fetch(line).attributes == tuple(FetchSimple(n) for n in names)


def test_fetch_without_parentheses() -> None:
    assert fetch(b"a FETCH 3 RFC822.HEADER").attributes == (FetchSimple("RFC822.HEADER"),)
    assert fetch(b"a UID FETCH 7 BODY.PEEK[]").attributes == (
        FetchBody(True, (), None, (), None, b""),
    )


def test_fetch_thunderbird_header_fields_keep_label() -> None:
    fields = (
        b"From To Cc Bcc Subject Date Message-ID Priority X-Priority References Newsgroups "
        b"In-Reply-To Content-Type Reply-To Received"
    )
    cmd = fetch(b"a UID fetch 7 (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (" + fields + b")])")
    body = cmd.attributes[3]
    assert isinstance(body, FetchBody)
    assert body.fields == tuple(fields.split())
    assert body.response_name() == b"BODY[HEADER.FIELDS (" + fields + b")]"


def test_fetch_k9_lowercase_header_names_are_echoed_verbatim() -> None:
    cmd = fetch(b"a UID FETCH 101,102 (UID BODY.PEEK[header.fields (date subject from)])")
    body = cmd.attributes[1]
    assert body == FetchBody(
        True,
        (),
        "HEADER.FIELDS",
        (b"date", b"subject", b"from"),
        None,
        b"header.fields (date subject from)",
    )
    assert body.response_name() == b"BODY[header.fields (date subject from)]"


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (b"BODY[]<0.65536>", FetchBody(False, (), None, (), (0, 65536), b"")),
        (b"BODY.PEEK[1]<0.393216>", FetchBody(True, (1,), None, (), (0, 393216), b"1")),
        (b"BODY.PEEK[1.2.MIME]", FetchBody(True, (1, 2), "MIME", (), None, b"1.2.MIME")),
        (b"BODY[2.HEADER]", FetchBody(False, (2,), "HEADER", (), None, b"2.HEADER")),
        (b"BODY[HEADER]", FetchBody(False, (), "HEADER", (), None, b"HEADER")),
        (b"BODY[TEXT]", FetchBody(False, (), "TEXT", (), None, b"TEXT")),
        (b"BODY.PEEK[TEXT]<0.2048>", FetchBody(True, (), "TEXT", (), (0, 2048), b"TEXT")),
        (b"body.peek[3.1.text]", FetchBody(True, (3, 1), "TEXT", (), None, b"3.1.text")),
        (
            b"BODY[HEADER.FIELDS.NOT (Received)]",
            FetchBody(
                False,
                (),
                "HEADER.FIELDS.NOT",
                (b"Received",),
                None,
                b"HEADER.FIELDS.NOT (Received)",
            ),
        ),
        (
            b'BODY[1.HEADER.FIELDS ("Subject")]',
            FetchBody(
                False, (1,), "HEADER.FIELDS", (b"Subject",), None, b'1.HEADER.FIELDS ("Subject")'
            ),
        ),
        (b"BINARY.PEEK[1.2]", FetchBinary(True, (1, 2), None, b"1.2")),
        (b"BINARY[2]<100.200>", FetchBinary(False, (2,), (100, 200), b"2")),
        (b"BINARY[]", FetchBinary(False, (), None, b"")),
        (b"BINARY.SIZE[1]", FetchBinarySize((1,), b"1")),
        (b"BODY", FetchSimple("BODY")),
    ],
)
def test_fetch_sections(item: bytes, expected: object) -> None:
    assert fetch(b"a FETCH 1 (" + item + b")").attributes == (expected,)


def test_fetch_partial_response_names() -> None:
    body = fetch(b"a FETCH 1 BODY[]<100.50>").attributes[0]
    assert isinstance(body, FetchBody)
    assert body.response_name() == b"BODY[]<100>"
    binary = fetch(b"a FETCH 1 BINARY.PEEK[1]<0.10>").attributes[0]
    assert isinstance(binary, FetchBinary)
    assert binary.response_name() == b"BINARY[1]<0>"


def test_fetch_gmail_two_parts() -> None:
    assert fetch(b"a UID FETCH 7 (BODY.PEEK[1] BODY.PEEK[2])").attributes == (
        FetchBody(True, (1,), None, (), None, b"1"),
        FetchBody(True, (2,), None, (), None, b"2"),
    )


# --------------------------------------------------------------------------- SEARCH


def search(line: bytes) -> Search:
    cmd = parse(line)
    assert isinstance(cmd, Search)
    return cmd


def test_uid_search_keeps_message_number_range_apart() -> None:
    cmd = search(b"a UID SEARCH 4951:5000 NOT DELETED")
    assert cmd.uid
    assert cmd.key == SearchAnd(
        (SearchSequence(S("4951:5000")), SearchNot(SearchFlag("\\Deleted")))
    )
    assert search(b"a UID SEARCH UID 10:*").key == SearchUid(S("10:*"))


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (b"ALL", SearchAll()),
        (b"ANSWERED", SearchFlag("\\Answered")),
        (b"BCC x", SearchField("BCC", b"x")),
        (b"BEFORE 1-Feb-2024", SearchDate("BEFORE", dt.date(2024, 2, 1))),
        (b'BODY "hello world"', SearchBody(b"hello world")),
        (b"CC x", SearchField("CC", b"x")),
        (b"DELETED", SearchFlag("\\Deleted")),
        (b"DRAFT", SearchFlag("\\Draft")),
        (b"FLAGGED", SearchFlag("\\Flagged")),
        (b"FROM bob", SearchField("FROM", b"bob")),
        (b'HEADER MESSAGE-ID "<x@y>"', SearchHeader(b"MESSAGE-ID", b"<x@y>")),
        (b"HEADER Message-ID <x@y>", SearchHeader(b"Message-ID", b"<x@y>")),
        (b"KEYWORD $Forwarded", SearchFlag("$Forwarded")),
        (b"LARGER 1000", SearchSize(True, 1000)),
        (b"NEW", SearchAnd((SearchFlag("\\Recent"), SearchFlag("\\Seen", False)))),
        (b"NOT SEEN", SearchNot(SearchFlag("\\Seen"))),
        (b"OLD", SearchFlag("\\Recent", False)),
        (b'ON "5-Mar-2023"', SearchDate("ON", dt.date(2023, 3, 5))),
        (b"OR SEEN FLAGGED", SearchOr(SearchFlag("\\Seen"), SearchFlag("\\Flagged"))),
        (b"RECENT", SearchFlag("\\Recent")),
        (b"SEEN", SearchFlag("\\Seen")),
        (b"SENTBEFORE 01-Jan-2020", SearchDate("BEFORE", dt.date(2020, 1, 1), sent=True)),
        (b"SENTON 01-Jan-2020", SearchDate("ON", dt.date(2020, 1, 1), sent=True)),
        (b"SENTSINCE 01-Jan-2020", SearchDate("SINCE", dt.date(2020, 1, 1), sent=True)),
        (b"SINCE 01-Jan-2025", SearchDate("SINCE", dt.date(2025, 1, 1))),
        (b"SMALLER 100000", SearchSize(False, 100000)),
        (b"SUBJECT hi", SearchField("SUBJECT", b"hi")),
        (b"TEXT word", SearchText(b"word")),
        (b"TO alice", SearchField("TO", b"alice")),
        (b"UID 1:5", SearchUid(S("1:5"))),
        (b"UNANSWERED", SearchFlag("\\Answered", False)),
        (b"UNDELETED", SearchFlag("\\Deleted", False)),
        (b"UNDRAFT", SearchFlag("\\Draft", False)),
        (b"UNFLAGGED", SearchFlag("\\Flagged", False)),
        (b"UNKEYWORD Junk", SearchFlag("Junk", False)),
        (b"UNSEEN", SearchFlag("\\Seen", False)),
        (b"*:*", SearchSequence(S("*:*"))),
        (b"$", SearchSequence(SequenceSet(saved=True))),
        (b"MODSEQ 620162338", SearchModSeq(620162338)),
        (
            b'MODSEQ "/flags/\\\\draft" all 620162338',
            SearchModSeq(620162338, b"/flags/\\draft", "ALL"),
        ),
        (b"OLDER 3600", SearchAge(True, 3600)),
        (b"YOUNGER 60", SearchAge(False, 60)),
        (b"SAVEDON 1-Feb-2026", SearchDate("ON", dt.date(2026, 2, 1), saved=True)),
        (b"SAVEDBEFORE 1-Feb-2026", SearchDate("BEFORE", dt.date(2026, 2, 1), saved=True)),
        (b"SAVEDSINCE 1-Feb-2026", SearchDate("SINCE", dt.date(2026, 2, 1), saved=True)),
        (b"SAVEDATESUPPORTED", SearchSaveDateSupported()),
        (
            b"(SINCE 01-Jan-2024 SMALLER 100000)",
            SearchAnd((SearchDate("SINCE", dt.date(2024, 1, 1)), SearchSize(False, 100000))),
        ),
        (b"(UID 100:*)", SearchAnd((SearchUid(S("100:*")),))),
        (
            b"not (or from a to b)",
            SearchNot(SearchAnd((SearchOr(SearchField("FROM", b"a"), SearchField("TO", b"b")),))),
        ),
    ],
)
def test_search_keys(text: bytes, key: object) -> None:
    assert search(b"a SEARCH " + text).key == key


def test_search_client_shapes() -> None:
    assert search(b"a SEARCH 1:* UNSEEN NOT DELETED").key == SearchAnd(
        (SearchSequence(S("1:*")), SearchFlag("\\Seen", False), SearchNot(SearchFlag("\\Deleted")))
    )
    assert search(b"a uid SEARCH UNDELETED HEADER Message-ID <x@y>").key == SearchAnd(
        (SearchFlag("\\Deleted", False), SearchHeader(b"Message-ID", b"<x@y>"))
    )
    cmd = search(b"a UID SEARCH RETURN (ALL) UID 10:*")
    assert cmd.return_options == ("ALL",)
    assert search(b"a SEARCH RETURN (COUNT) ALL UNSEEN").return_options == ("COUNT",)
    assert search(b"a SEARCH RETURN () ALL").return_options == ()
    assert search(b"a SEARCH ALL").return_options is None
    cmd = search(b"a UID SEARCH RETURN (MIN MAX ALL COUNT SAVE) UNSEEN")
    assert cmd.return_options == ("MIN", "MAX", "ALL", "COUNT", "SAVE")
    cmd = search(b"a SEARCH CHARSET utf-8 SUBJECT x")
    assert cmd.charset == "UTF-8"
    cmd = search(b"a SEARCH RETURN (MIN) CHARSET US-ASCII ALL")
    assert (cmd.charset, cmd.return_options) == ("US-ASCII", ("MIN",))


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("line", "tag", "fragment"),
    [
        (b"a1 FROB", "a1", "unknown command FROB"),
        (b"a1", "a1", "expected a space"),
        (b"+ CAPABILITY", None, "expected a tag"),
        (b"a1 NOOP extra", "a1", "extra data"),
        (b"a1 UID NOOP", "a1", "UID NOOP"),
        (b"a1 SELECT", "a1", "space"),
        (b"a1 FETCH 1 (FLAGS", "a1", "space"),
        (b"a1 FETCH 0 FLAGS", "a1", "invalid sequence number"),
        (b"a1 FETCH 1 (BOGUS)", "a1", "unknown FETCH attribute BOGUS"),
        (b"a1 FETCH 1 BODY[MIME]", "a1", "invalid section MIME"),
        (b"a1 FETCH 1 BODY[]<5>", "a1", "expected '.'"),
        (b"a1 SEARCH FOO", "a1", "unknown search key FOO"),
        (b"a1 SEARCH SINCE 31-Feb-2024", "a1", "invalid date"),
        (b"a1 SEARCH RETURN (BOGUS) ALL", "a1", "RETURN option"),
        (b'a1 LOGIN "unterminated', "a1", "unterminated"),
        (b'a1 LOGIN "bad\\escape" x', "a1", "escape"),
        (b"a1 STORE 1 XFLAGS (\\Seen)", "a1", "STORE item"),
        (b"a1 APPEND box", "a1", "APPEND needs a message literal"),
        (b"a1 AUTHENTICATE PLAIN !!!!", "a1", "not base64"),
        (b"a1 ENABLE", "a1", "capability"),
        (b"a1 SEARCH " + b"NOT " * 200 + b"ALL", "a1", "nested too deeply"),
        (b"a1 SEARCH " + b"(" * 200 + b"ALL" + b")" * 200, "a1", "nested too deeply"),
    ],
)
def test_errors(line: bytes, tag: str | None, fragment: str) -> None:
    with pytest.raises(CommandError) as info:
        parse(line)
    assert info.value.tag == tag
    assert fragment in info.value.text


def test_command_tag() -> None:
    assert command_tag(b"a1 NOOP") == "a1"
    assert command_tag(b"a+1 NOOP") is None
    assert command_tag(b"") is None
    assert command_tag(b"a{1 NOOP") is None


def test_decode_mailbox() -> None:
    assert decode_mailbox(b"Entw&APw-rfe", utf8=False) == "Entwürfe"
    assert decode_mailbox("Entwürfe".encode(), utf8=True) == "Entwürfe"
    assert decode_mailbox("Entwürfe".encode(), utf8=False) == "Entwürfe"  # lenient
    assert decode_mailbox(b"a&b", utf8=True) == "a&b"
    with pytest.raises(ValueError):
        decode_mailbox(b"&Jjo", utf8=False)
