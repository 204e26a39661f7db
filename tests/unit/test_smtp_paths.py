"""MAIL/RCPT argument checking (pobox.delivery.paths) and enhanced status codes
(pobox.delivery.replies.enhance): pure functions, RFC 5321 §4.1.2, RFC 6531, RFC 2034."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pobox.delivery.paths import Path, PathError, is_mailbox, parse_path
from pobox.delivery.replies import enhance


@pytest.mark.parametrize(
    ("arg", "address", "params"),
    [
        ("<a@example.org>", "a@example.org", {}),
        ("<>", "", {}),
        ("<> SIZE=100", "", {"SIZE": "100"}),
        ("a@example.org", "a@example.org", {}),
        (
            "<a@example.org> BODY=8BITMIME  SIZE=5",
            "a@example.org",
            {"BODY": "8BITMIME", "SIZE": "5"},
        ),
        ("<a@example.org> smtputf8", "a@example.org", {"SMTPUTF8": True}),
        ('<"John Doe"@example.org>', '"John Doe"@example.org', {}),
        ('<"a>b"@example.org>', '"a>b"@example.org', {}),
        ("<a@[192.0.2.1]>", "a@[192.0.2.1]", {}),
        ("<a@[IPv6:2001:db8::1]>", "a@[IPv6:2001:db8::1]", {}),
        ("<@one.test,@two.test:a@example.org>", "a@example.org", {}),
        ("<first.last+tag@sub.example.org>", "first.last+tag@sub.example.org", {}),
        ("<é@exämple.org> SMTPUTF8", "é@exämple.org", {"SMTPUTF8": True}),
    ],
)
def test_accepted_senders(arg: str, address: str, params: dict[str, object]) -> None:
    assert parse_path(arg, sender=True) == Path(address, params)


@pytest.mark.parametrize(
    ("arg", "code"),
    [
        ("garbage", "501 5.5.4"),
        ("", "501 5.5.4"),
        ("<a@example.org", "501 5.5.4"),
        ("<a@example.org>x", "501 5.5.4"),
        ("a b@example.org", "501 5.5.4"),
        ("<garbage>", "553 5.1.7"),
        ("<a@>", "553 5.1.7"),
        ("<@example.org>", "553 5.1.7"),
        ("<a..b@example.org>", "553 5.1.7"),
        (".a@example.org", "501 5.5.4"),
        ("<a@-bad.org>", "553 5.1.7"),
        ("<a@exa_mple.org>", "553 5.1.7"),
        ("<a@[300.1.1.1]>", "553 5.1.7"),
        ("<a@[IPv6:zz::1]>", "553 5.1.7"),
        ("<" + "x" * 65 + "@example.org>", "553 5.1.7"),
        ("<a@" + "b" * 64 + ".org>", "553 5.1.7"),
        ("<a@example.org> =x", "501 5.5.4"),
        ("<a@example.org> SIZE=", "501 5.5.4"),
        ("<é@example.org>", "553 5.6.7"),
        ("<\udcff@example.org> SMTPUTF8", "501 5.6.7"),
        ("<a@example.org>\x00", "501 5.5.4"),
    ],
)
def test_refused_senders(arg: str, code: str) -> None:
    result = parse_path(arg, sender=True)
    assert isinstance(result, PathError)
    assert result.reply.startswith(code), result.reply


def test_recipient_rules() -> None:
    assert parse_path("<>", sender=False) == PathError("553 5.1.3 a recipient address is needed")
    bad = parse_path("<x>", sender=False)
    assert isinstance(bad, PathError) and bad.reply.startswith("553 5.1.3")
    # RFC 5321 §4.5.1: <Postmaster> without a domain is a recipient (not a sender)
    assert parse_path("<Postmaster>", sender=False) == Path("postmaster", {})
    assert isinstance(parse_path("<Postmaster>", sender=True), PathError)
    # a UTF-8 recipient is fine when MAIL announced SMTPUTF8, not otherwise
    assert parse_path("<é@example.org>", sender=False, smtputf8=True) == Path("é@example.org", {})
    refused = parse_path("<é@example.org>", sender=False, smtputf8=False)
    assert isinstance(refused, PathError) and refused.reply.startswith("553 5.6.7")


@given(st.text(max_size=80))
def test_any_text_gets_a_path_or_a_5xx(arg: str) -> None:
    for sender in (True, False):
        result = parse_path(arg, sender=sender)
        if isinstance(result, PathError):
            assert result.reply[:1] == "5" and result.reply[4:5] == "5"
            result.reply.encode("utf-8")  # never a surrogate on the wire
        else:
            assert result.address == "" or is_mailbox(result.address)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("250 OK", "250 2.0.0 OK"),
        ("250 2.1.5 OK", "250 2.1.5 OK"),
        ("503 Error: need RCPT command", "503 5.5.1 Error: need RCPT command"),
        ("500 Error: bad syntax", "500 5.5.2 Error: bad syntax"),
        ("552 Error: Too much mail data", "552 5.3.4 Error: Too much mail data"),
        ("354 End data with <CR><LF>.<CR><LF>", "354 End data with <CR><LF>.<CR><LF>"),
        ("334 ", "334 "),
        ("221 Bye", "221 2.0.0 Bye"),
        ("220 Ready to start TLS", "220 2.0.0 Ready to start TLS"),
        ("250 2.0.0 <a> delivered\r\n451 x", "250 2.0.0 <a> delivered\r\n451 4.3.0 x"),
        ("599 odd", "599 5.0.0 odd"),
    ],
)
def test_enhance(status: str, expected: str) -> None:
    assert enhance(status) == expected
