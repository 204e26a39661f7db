"""Framing: lines, literals of every flavour, APPEND streaming, modes, limits, resync."""

from __future__ import annotations

import datetime as dt

import pytest

from pobox.imap.commands import (
    Authenticate,
    Capability,
    Idle,
    List,
    Login,
    Namespace,
    Noop,
    Search,
    SearchAnd,
    SearchField,
    SearchFlag,
    Select,
    StartTls,
)
from pobox.imap.protocol import (
    NEED_DATA,
    AppendAborted,
    AppendData,
    AppendEnd,
    AppendStart,
    AuthenticateResponse,
    BadCommand,
    CommandReceived,
    ConnectionClosed,
    ContinuationNeeded,
    Event,
    IdleDone,
    ImapLimits,
    ImapServerProtocol,
    LiteralTooBig,
    NeedData,
    ProtocolUsageError,
)

SENT: list[bytes] = []


def drain(p: ImapServerProtocol, *, sent: list[bytes] | None = None) -> list[Event]:
    """All events up to NeedData/ConnectionClosed; accepts every literal, resumes pauses."""
    events: list[Event] = []
    while True:
        ev = p.next_event()
        if isinstance(ev, NeedData):
            return events
        events.append(ev)
        if isinstance(ev, ConnectionClosed):
            return events
        if isinstance(ev, ContinuationNeeded) or (isinstance(ev, AppendStart) and ev.sync):
            out = p.accept_literal()
            if sent is not None:
                sent.append(out)
        if isinstance(ev, CommandReceived) and isinstance(
            ev.command, Idle | Authenticate | StartTls
        ):
            p.resume()
        if isinstance(ev, AuthenticateResponse):
            p.resume()


def run(data: bytes, limits: ImapLimits | None = None) -> list[Event]:
    p = ImapServerProtocol(limits)
    p.receive_data(data)
    return drain(p)


def commands(events: list[Event]) -> list[object]:
    return [e.command if isinstance(e, CommandReceived) else e for e in events]


def merge_append_data(events: list[Event]) -> list[Event]:
    out: list[Event] = []
    for e in events:
        if isinstance(e, AppendData) and out and isinstance(out[-1], AppendData):
            out[-1] = AppendData(out[-1].data + e.data)
        else:
            out.append(e)
    return out


def test_pipelined_commands_in_one_packet() -> None:
    events = run(b'a1 NAMESPACE\r\na2 LIST "" "*" RETURN (SPECIAL-USE)\r\na3 noop\r\n')
    assert commands(events) == [
        Namespace("a1"),
        List("a2", b"", (b"*",), return_options=("SPECIAL-USE",), extended=True),
        Noop("a3"),
    ]


def test_byte_at_a_time_gives_same_events() -> None:
    data = b'a1 LOGIN {4}\r\nuser {6+}\r\nsecret\r\na2 SELECT "INBOX"\r\n'
    p = ImapServerProtocol()
    events: list[Event] = []
    for i in range(len(data)):
        p.receive_data(data[i : i + 1])
        events += drain(p)
    assert events == run(data)
    assert commands(events)[1:] == [Login("a1", b"user", b"secret"), Select("a2", b"INBOX")]


EMPTY = BadCommand(None, "empty command line (a command starts with a tag)")


def test_bare_lf_and_every_empty_line_is_answered() -> None:
    # an empty or blank line is not a command, but it gets an answer all the same
    assert commands(run(b"\r\n\na1 NOOP\n  \r\na2 CAPABILITY\r\n\t\r\n")) == [
        EMPTY,
        EMPTY,
        Noop("a1"),
        EMPTY,
        Capability("a2"),
        EMPTY,
    ]


@pytest.mark.parametrize(
    "line",
    [b"a\xff NOOP", b"a{ NOOP", b"a% NOOP", b'a"b NOOP', b"a\x00b NOOP", b"\xff\xfe a", b"+ NOOP"],
)
def test_an_invalid_tag_is_answered_untagged(line: bytes) -> None:
    """A tag that goes on with characters no tag has: the BAD cannot carry it (Dovecot answers
    "* BAD ... Invalid tag" too), and the next command is read as usual."""
    [bad, nxt] = run(line + b"\r\na1 NOOP\r\n")
    assert isinstance(bad, BadCommand) and bad.tag is None, bad
    assert nxt == CommandReceived(Noop("a1"))


def test_sync_literal_in_login_password() -> None:
    p = ImapServerProtocol()
    p.receive_data(b"a1 LOGIN user {6}\r\n")
    assert p.next_event() == ContinuationNeeded("a1", 6, binary=False)
    with pytest.raises(ProtocolUsageError):
        p.next_event()
    assert p.accept_literal() == b"+ Ready for literal data\r\n"
    assert p.next_event() is NEED_DATA
    p.receive_data(b's3cr"t\r\n')
    assert p.next_event() == CommandReceived(Login("a1", b"user", b's3cr"t'))


def test_reject_literal_resyncs_on_next_line() -> None:
    p = ImapServerProtocol()
    p.receive_data(b"a1 LOGIN user {6}\r\n")
    assert isinstance(p.next_event(), ContinuationNeeded)
    assert p.reject_literal("no literals before login", status="BAD") == (
        b"a1 BAD no literals before login\r\n"
    )
    p.receive_data(b"a2 NOOP\r\n")
    assert p.next_event() == CommandReceived(Noop("a2"))


def test_nonsync_literal_imapclient_search_charset() -> None:
    subject = "Grüße".encode()
    data = b"a1 SEARCH CHARSET UTF-8 SUBJECT {%d+}\r\n%s UNSEEN\r\n" % (len(subject), subject)
    (ev,) = run(data)
    assert ev == CommandReceived(
        Search(
            "a1",
            uid=False,
            key=SearchAnd((SearchField("SUBJECT", subject), SearchFlag("\\Seen", False))),
            charset="UTF-8",
        )
    )


def test_several_literals_and_literal_with_crlf_inside() -> None:
    events = run(b"a1 LOGIN {3+}\r\na\r\n {4+}\r\nx\r\ny\r\n")
    assert commands(events) == [Login("a1", b"a\r\n", b"x\r\ny")]


def test_nul_in_plain_literal_is_bad() -> None:
    (ev,) = run(b"a1 LOGIN {3+}\r\na\x00b pw\r\n")
    assert isinstance(ev, BadCommand)
    assert ev.tag == "a1"


def test_literal8_only_in_append() -> None:
    (ev,) = run(b"a1 LOGIN ~{3+}\r\nabc pw\r\n")
    assert ev == BadCommand("a1", "literal8 is not allowed here")


def test_nonsync_literal_too_big_is_skipped_exactly() -> None:
    limits = ImapLimits(max_literal_in_command=10)
    payload = b"x\r\nb1 NOOP\r\n" + b"y" * 20  # looks like a command: must not run
    data = b"a1 LOGIN user {%d+}\r\n%s\r\na2 NOOP\r\n" % (len(payload), payload)
    events = run(data, limits)
    assert events == [
        LiteralTooBig("a1", len(payload), 10, sync=False, append=False),
        CommandReceived(Noop("a2")),
    ]


def test_nonsync_literal_too_big_follows_further_literals() -> None:
    limits = ImapLimits(max_literal_in_command=10)
    data = b"a1 LOGIN {20+}\r\n" + b"u" * 20 + b" {5+}\r\nNOOP!\r\na2 NOOP\r\n"
    assert commands(run(data, limits)) == [
        LiteralTooBig("a1", 20, 10, sync=False, append=False),
        Noop("a2"),
    ]


def test_sync_literal_too_big() -> None:
    limits = ImapLimits(max_literal_in_command=10)
    assert commands(run(b"a1 LOGIN user {11}\r\na2 NOOP\r\n", limits)) == [
        LiteralTooBig("a1", 11, 10, sync=True, append=False),
        Noop("a2"),
    ]


def test_literal_minus_limits_nonsync_literals() -> None:
    limits = ImapLimits(literal_minus=True, max_literal_in_command=10_000)
    data = b"a1 LOGIN user {5000+}\r\n" + b"p" * 5000 + b"\r\na2 LOGIN user {4096+}\r\n"
    data += b"p" * 4096 + b"\r\n"
    events = run(data, limits)
    assert events[0] == LiteralTooBig("a1", 5000, 4096, sync=False, append=False)
    assert events[1] == CommandReceived(Login("a2", b"user", b"p" * 4096))


def test_command_total_size_is_bounded() -> None:
    limits = ImapLimits(max_literal_in_command=100, max_command=200)
    lit = b"z" * 100
    data = b"a1 LOGIN {100+}\r\n" + lit + b" {100+}\r\n" + lit + b"\r\na2 NOOP\r\n"
    events = run(data, limits)
    assert isinstance(events[0], LiteralTooBig)
    assert events[0].limit < 100
    assert commands(events)[1:] == [Noop("a2")]


def test_line_too_long() -> None:
    limits = ImapLimits(max_line=100)
    data = b"a1 SEARCH " + b"x" * 200 + b"\r\na2 NOOP\r\n"
    assert commands(run(data, limits)) == [
        BadCommand("a1", "command line too long", "TOOBIG"),
        Noop("a2"),
    ]


def test_line_too_long_ending_in_nonsync_literal_skips_it() -> None:
    limits = ImapLimits(max_line=100)
    data = b"a1 SEARCH " + b"x" * 200 + b" {10+}\r\n0123456789\r\na2 NOOP\r\n"
    assert commands(run(data, limits))[1:] == [Noop("a2")]


def test_line_too_long_memory_stays_bounded() -> None:
    limits = ImapLimits(max_line=1000)
    p = ImapServerProtocol(limits)
    p.receive_data(b"a1 NOOP ")
    for _ in range(200):
        p.receive_data(b"a" * 4096)
        drain(p)
        assert p.buffered <= 2 * limits.max_line + 2
    p.receive_data(b"\r\na2 NOOP\r\n")
    assert commands(drain(p)) == [Noop("a2")]


def test_connection_closed_mid_line() -> None:
    p = ImapServerProtocol()
    p.receive_data(b"a1 NOOP\r\na2 NO")
    p.receive_data(b"")
    assert commands(drain(p)) == [Noop("a1"), ConnectionClosed()]
    assert p.next_event() == ConnectionClosed()


def test_bad_command_keeps_parsing_following_commands() -> None:
    events = run(b"a1 FROB\r\n\x00\x01garbage\r\na2 NOOP\r\n")
    assert events[0] == BadCommand("a1", "unknown command FROB")
    assert isinstance(events[1], BadCommand)
    assert events[1].tag is None
    assert events[2] == CommandReceived(Noop("a2"))


# --------------------------------------------------------------------------- APPEND


def test_append_sync_literal_streams() -> None:
    p = ImapServerProtocol()
    p.receive_data(b'A003 APPEND saved-messages (\\Seen) "26-Aug-2026 10:11:12 +0200" {23}\r\n')
    start = p.next_event()
    assert start == AppendStart(
        tag="A003",
        mailbox=b"saved-messages",
        flags=("\\Seen",),
        internal_date=dt.datetime(
            2026, 8, 26, 10, 11, 12, tzinfo=dt.timezone(dt.timedelta(hours=2))
        ),
        size=23,
        binary=False,
        utf8=False,
        sync=True,
    )
    assert p.accept_literal() == b"+ Ready for literal data\r\n"
    p.receive_data(b"Subject: hi\r\n")
    assert p.next_event() == AppendData(b"Subject: hi\r\n")
    assert p.next_event() is NEED_DATA
    p.receive_data(b"\r\nbody\r\n\r\n\r\na4 NOOP\r\n")
    assert p.next_event() == AppendData(b"\r\nbody\r\n\r\n")
    assert p.next_event() == AppendEnd("A003")
    assert p.next_event() == CommandReceived(Noop("a4"))


def test_append_thunderbird_utf8_literal8_nonsync() -> None:
    msg = "Subject: Grüße\r\n\r\n\x00bin\r\n".encode()
    data = b'a1 append "Sent" (\\Seen) "26-Aug-2026 10:11:12 +0200" UTF8 (~{%d+}\r\n%s)\r\n' % (
        len(msg),
        msg,
    )
    events = merge_append_data(run(data))
    assert isinstance(events[0], AppendStart)
    assert (events[0].mailbox, events[0].utf8, events[0].binary, events[0].sync) == (
        b"Sent",
        True,
        True,
        False,
    )
    assert events[1:] == [AppendData(msg), AppendEnd("a1")]


def test_append_roundcube_binary_and_no_date_no_flags() -> None:
    events = run(b'a1 APPEND "box" () ~{3+}\r\nabc\r\na2 APPEND INBOX {2+}\r\nhi\r\n')
    assert [type(e).__name__ for e in events] == [
        "AppendStart", "AppendData", "AppendEnd", "AppendStart", "AppendData", "AppendEnd",
    ]  # fmt: skip
    first, second = events[0], events[3]
    assert isinstance(first, AppendStart) and isinstance(second, AppendStart)
    assert (first.flags, first.binary, first.internal_date) == ((), True, None)
    assert (second.mailbox, second.flags, second.binary) == (b"INBOX", (), False)


def test_imaplib_utf8_bug_shape_is_just_a_message() -> None:
    msg = b"UTF8 (Subject: x\r\n\r\nbody)"
    events = merge_append_data(run(b"a1 APPEND INBOX {%d+}\r\n%s\r\n" % (len(msg), msg)))
    assert events[1:] == [AppendData(msg), AppendEnd("a1")]


def test_multiappend() -> None:
    data = (
        b'a1 APPEND "box" (\\Seen) {3+}\r\none (\\Flagged) "01-Jan-2024 00:00:00 -0130" {3+}\r\n'
        b"two UTF8 (~{5+}\r\nthree)\r\n"
    )
    events = merge_append_data(run(data))
    starts = [e for e in events if isinstance(e, AppendStart)]
    assert [s.flags for s in starts] == [("\\Seen",), ("\\Flagged",), ()]
    assert starts[1].internal_date == dt.datetime(
        2024, 1, 1, tzinfo=dt.timezone(-dt.timedelta(hours=1, minutes=30))
    )
    assert starts[2].utf8
    assert [e.data for e in events if isinstance(e, AppendData)] == [b"one", b"two", b"three"]
    assert events[-1] == AppendEnd("a1")


def test_append_mailbox_as_literal() -> None:
    data = b"a1 APPEND {4+}\r\nSent (\\Seen) {2+}\r\nhi\r\n"
    events = run(data)
    assert isinstance(events[0], AppendStart)
    assert events[0].mailbox == b"Sent"
    assert events[1:] == [AppendData(b"hi"), AppendEnd("a1")]


def test_append_zero_length_message() -> None:
    events = run(b"a1 APPEND box {0+}\r\n\r\n")
    assert [type(e) for e in events] == [AppendStart, AppendEnd]


def test_append_chunks_are_bounded() -> None:
    limits = ImapLimits(append_chunk=1000)
    events = run(b"a1 APPEND box {5000+}\r\n" + b"m" * 5000 + b"\r\n", limits)
    chunks = [e for e in events if isinstance(e, AppendData)]
    assert len(chunks) == 5
    assert all(len(c.data) <= 1000 for c in chunks)


def test_append_too_big_nonsync_is_skipped() -> None:
    limits = ImapLimits(max_literal=10)
    data = b"a1 APPEND box {20+}\r\n" + b"a2 NOOP\r\n" * 2 + b"xx\r\na3 NOOP\r\n"
    assert commands(run(data, limits)) == [
        LiteralTooBig("a1", 20, 10, sync=False, append=True),
        Noop("a3"),
    ]


def test_append_too_big_sync() -> None:
    limits = ImapLimits(max_literal=10)
    assert commands(run(b"a1 APPEND box {20}\r\na2 NOOP\r\n", limits)) == [
        LiteralTooBig("a1", 20, 10, sync=True, append=True),
        Noop("a2"),
    ]


def test_multiappend_second_message_too_big() -> None:
    limits = ImapLimits(max_literal=10)
    events = run(b"a1 APPEND box {2+}\r\nhi {20+}\r\n" + b"y" * 20 + b"\r\na2 NOOP\r\n", limits)
    assert [type(e) for e in events] == [AppendStart, AppendData, LiteralTooBig, CommandReceived]


def test_append_reject_sync_literal() -> None:
    p = ImapServerProtocol()
    p.receive_data(b"a1 APPEND nosuchbox {100}\r\n")
    assert isinstance(p.next_event(), AppendStart)
    assert p.reject_literal("Mailbox does not exist", code="TRYCREATE") == (
        b"a1 NO [TRYCREATE] Mailbox does not exist\r\n"
    )
    p.receive_data(b"a2 NOOP\r\n")
    assert p.next_event() == CommandReceived(Noop("a2"))


def test_append_garbage_after_message_aborts() -> None:
    events = run(b"a1 APPEND box {2+}\r\nhi garbage\r\na2 NOOP\r\n")
    assert isinstance(events[2], AppendAborted)
    assert events[2].tag == "a1"
    assert events[3] == CommandReceived(Noop("a2"))


@pytest.mark.parametrize(
    "line",
    [
        b'a1 APPEND box (\\Seen "bad {3+}',
        b'a1 APPEND box "99-Foo-2024 00:00:00 +0000" {3+}',
        b"a1 APPEND box UTF8 ({3+}",
    ],
)
def test_append_malformed_before_literal(line: bytes) -> None:
    events = run(line + b"\r\nabc\r\na2 NOOP\r\n")
    assert isinstance(events[0], BadCommand)
    assert events[0].tag == "a1"
    assert events[1:] == [CommandReceived(Noop("a2"))]


# --------------------------------------------------------------------------- modes


def test_idle_done_and_next_command_in_one_packet() -> None:
    p = ImapServerProtocol()
    p.receive_data(b"a1 IDLE\r\n")
    assert p.next_event() == CommandReceived(Idle("a1"))
    with pytest.raises(ProtocolUsageError):
        p.next_event()
    assert p.enter_idle() == b"+ idling\r\n"
    assert p.next_event() is NEED_DATA
    p.receive_data(b"done\r\na2 NOOP\r\na3 IDLE\r\n")
    assert p.next_event() == IdleDone(ok=True)
    assert p.next_event() == CommandReceived(Noop("a2"))
    assert p.next_event() == CommandReceived(Idle("a3"))


def test_idle_other_line_ends_idle_with_error() -> None:
    p = ImapServerProtocol()
    p.receive_data(b"a1 IDLE\r\n")
    p.next_event()
    p.enter_idle()
    p.receive_data(b"a2 NOOP\r\na3 NOOP\r\n")
    assert p.next_event() == IdleDone(ok=False)
    assert p.next_event() == CommandReceived(Noop("a3"))


def test_idle_refused_then_resume() -> None:
    p = ImapServerProtocol()
    p.receive_data(b"a1 IDLE\r\na2 NOOP\r\n")
    p.next_event()
    p.resume()
    assert p.next_event() == CommandReceived(Noop("a2"))


def test_authenticate_exchange() -> None:
    p = ImapServerProtocol()
    p.receive_data(b"a1 authenticate LOGIN\r\n")
    assert p.next_event() == CommandReceived(Authenticate("a1", "LOGIN"))
    assert p.enter_authenticate(b"Username:") == b"+ VXNlcm5hbWU6\r\n"
    p.receive_data(b"dXNlcg==\r\n")
    assert p.next_event() == AuthenticateResponse(b"dXNlcg==", cancelled=False)
    assert p.enter_authenticate(b"Password:") == b"+ UGFzc3dvcmQ6\r\n"
    p.receive_data(b"*\r\na2 NOOP\r\n")
    assert p.next_event() == AuthenticateResponse(b"*", cancelled=True)
    p.resume()
    assert p.next_event() == CommandReceived(Noop("a2"))


def test_authenticate_empty_challenge() -> None:
    p = ImapServerProtocol()
    p.receive_data(b"a1 AUTHENTICATE PLAIN\r\n")
    p.next_event()
    assert p.enter_authenticate() == b"+ \r\n"


def test_starttls_drops_injected_plaintext() -> None:
    p = ImapServerProtocol()
    p.receive_data(b"a1 STARTTLS\r\na2 LOGIN evil injected\r\n")
    assert p.next_event() == CommandReceived(StartTls("a1"))
    assert p.start_tls() is True
    assert p.next_event() is NEED_DATA
    p.receive_data(b"a3 NOOP\r\n")
    assert p.next_event() == CommandReceived(Noop("a3"))


def test_starttls_clean() -> None:
    p = ImapServerProtocol()
    p.receive_data(b"a1 STARTTLS\r\n")
    p.next_event()
    assert p.start_tls() is False


def test_usage_errors() -> None:
    p = ImapServerProtocol()
    with pytest.raises(ProtocolUsageError):
        p.accept_literal()
    with pytest.raises(ProtocolUsageError):
        p.reject_literal()
    with pytest.raises(ProtocolUsageError):
        p.enter_idle()
    with pytest.raises(ProtocolUsageError):
        p.resume()


def test_send_uses_utf8_mode() -> None:
    from pobox.imap.responses import ListItem

    p = ImapServerProtocol()
    item = ListItem((), "/", "Entwürfe")
    assert p.send(item) == b'* LIST () "/" Entw&APw-rfe\r\n'
    p.utf8 = True
    assert p.send(item) == '* LIST () "/" "Entwürfe"\r\n'.encode()


def test_unknown_command_with_literal_is_refused_before_the_literal() -> None:
    assert commands(run(b"a1 FROB {5}\r\na2 NOOP\r\n")) == [
        BadCommand("a1", "unknown command FROB"),
        Noop("a2"),
    ]
    assert commands(run(b"a1 FROB {5+}\r\nhello\r\na2 NOOP\r\n")) == [
        BadCommand("a1", "unknown command FROB"),
        Noop("a2"),
    ]
