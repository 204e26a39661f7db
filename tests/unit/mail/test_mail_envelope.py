from __future__ import annotations

from pobox.mail.envelope import Address, build_envelope, parse_address_list
from pobox.mail.headers import split_fields

A = Address


def test_simple_and_named() -> None:
    assert parse_address_list(b'Alice <a@example.org>, "B, c" <b@x>, plain@y') == (
        A(b"Alice", None, b"a", b"example.org"),
        A(b"B, c", None, b"b", b"x"),
        A(None, None, b"plain", b"y"),
    )


def test_groups() -> None:
    assert parse_address_list(b"team: a@b, c@d;, undisclosed:;") == (
        A(None, None, b"team", None),
        A(None, None, b"a", b"b"),
        A(None, None, b"c", b"d"),
        A(None, None, None, None),
        A(None, None, b"undisclosed", None),
        A(None, None, None, None),
    )
    # an unterminated group is closed at the end
    assert parse_address_list(b"g: a@b")[-1] == A(None, None, None, None)


def test_odd_forms_like_dovecot() -> None:
    assert parse_address_list(b"<@r1,@r2:m@h>") == (A(None, b"@r1,@r2", b"m", b"h"),)
    assert parse_address_list(b"local") == (A(None, None, b"local", b"MISSING_DOMAIN"),)
    assert parse_address_list(b"<>") == (A(None, None, b"MISSING_MAILBOX", b"MISSING_DOMAIN"),)
    assert parse_address_list(b"Name <>") == (
        A(b"Name", None, b"MISSING_MAILBOX", b"MISSING_DOMAIN"),
    )
    assert parse_address_list(b"foo@bar (c1) (c2)") == (A(b"c2", None, b"foo", b"bar"),)
    assert parse_address_list(b'"a b"@x, ""@y, x@[1.2.3.4]') == (
        A(None, None, b"a b", b"x"),
        A(None, None, b"", b"y"),
        A(None, None, b"x", b"[1.2.3.4]"),
    )
    assert parse_address_list(b'"q\\"x" <m@h>') == (A(b'q"x', None, b"m", b"h"),)
    assert parse_address_list(b"John Q. Public <j@x>")[0].name == b"John Q. Public"


def test_address_list_never_raises_on_junk() -> None:
    for junk in [b"<<<", b">>>", b"@@@", b":;:;", b'"unterminated', b"(unterminated", b"\x00\xff"]:
        parse_address_list(junk)


def test_build_envelope_defaults_and_repeats() -> None:
    fields = split_fields(
        b"From: a@b\r\nFrom: c@d\r\nSender:\r\nSubject: one\r\nSubject: two\r\n"
        b"Date: d1\r\nMessage-ID:\r\n <m@x>\r\nTo:\r\n\r\n"
    )
    env = build_envelope(fields)
    assert env.from_ == (A(None, None, b"a", b"b"), A(None, None, b"c", b"d"))
    assert env.sender == env.from_
    assert env.reply_to == env.from_
    assert env.subject == b"two"
    assert env.date == b"d1"
    assert env.message_id == b" <m@x>"
    assert env.to is None
    assert env.cc is None and env.bcc is None and env.in_reply_to is None


def test_empty_envelope() -> None:
    env = build_envelope([])
    assert env.from_ is None and env.sender is None and env.subject is None
