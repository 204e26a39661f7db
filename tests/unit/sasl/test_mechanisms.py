"""The sans-IO SASL exchanges: PLAIN and LOGIN, base64, initial responses, failures."""

from __future__ import annotations

import base64

import pytest

from pobox import sasl
from pobox.sasl import Challenge, Credentials, Failure


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def test_unknown_mechanism() -> None:
    assert sasl.start("CRAM-MD5") is None
    assert sasl.start("") is None


def test_plain_without_initial_response_sends_empty_challenge() -> None:
    exchange = sasl.start("plain")
    assert exchange is not None
    assert exchange.first == Challenge(b"")
    assert sasl.encode(b"") == b""
    step = exchange.respond(b64(b"\0user@example.org\0secret pw"))
    assert step == Credentials("", "user@example.org", "secret pw")
    assert exchange.done
    assert isinstance(exchange.respond(b64(b"\0a\0b")), Failure)


def test_plain_with_initial_response_and_authzid() -> None:
    exchange = sasl.start("PLAIN", b64(b"admin\0user\0pw"))
    assert exchange is not None
    assert exchange.first == Credentials("admin", "user", "pw")


def test_plain_utf8() -> None:
    exchange = sasl.start("PLAIN", b64("\0jörg@example.org\0pässword".encode()))
    assert exchange is not None
    assert exchange.first == Credentials("", "jörg@example.org", "pässword")


@pytest.mark.parametrize(
    ("initial", "reason"),
    [
        (b"=", "malformed PLAIN message"),
        (b"!!!", "invalid base64 data"),
        (b"YQ", "invalid base64 data"),  # missing padding
        (b64(b"user\0pw"), "malformed PLAIN message"),
        (b64(b"\0\0pw"), "empty user name or password"),
        (b64(b"\0user\0"), "empty user name or password"),
        (b64(b"\0us\xffer\0pw"), "user name is not valid UTF-8"),
        (b64(b"a\0b\0c\0d"), "malformed PLAIN message"),
    ],
)
def test_plain_failures(initial: bytes, reason: str) -> None:
    exchange = sasl.start("PLAIN", initial)
    assert exchange is not None
    assert exchange.first == Failure(reason)
    assert exchange.done


def test_login_two_challenges() -> None:
    exchange = sasl.start("LOGIN")
    assert exchange is not None
    assert exchange.first == Challenge(b"Username:")
    assert sasl.encode(b"Username:") == b"VXNlcm5hbWU6"
    assert exchange.respond(b64(b"user@example.org")) == Challenge(b"Password:")
    assert not exchange.done
    assert exchange.respond(b64(b"pw")) == Credentials("", "user@example.org", "pw")
    assert exchange.done


def test_login_with_initial_response_is_the_user_name() -> None:
    exchange = sasl.start("LOGIN", b64(b"user"))
    assert exchange is not None
    assert exchange.first == Challenge(b"Password:")
    assert exchange.respond(b64(b"pw")) == Credentials("", "user", "pw")


def test_login_failures() -> None:
    exchange = sasl.start("LOGIN")
    assert exchange is not None
    assert exchange.respond(b"=") == Failure("empty user name")
    exchange = sasl.start("LOGIN")
    assert exchange is not None
    exchange.respond(b64(b"user"))
    assert exchange.respond(b"not base64!") == Failure("invalid base64 data")


def test_decode() -> None:
    assert sasl.decode(b"=") == b""
    assert sasl.decode(b"") == b""
    assert sasl.decode(b" YWJj ") == b"abc"
    assert isinstance(sasl.decode(b"A" * 10000), Failure)
