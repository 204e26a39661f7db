"""Sans-IO SASL for PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login), server side.

A front end (POP3 ``AUTH``, IMAP ``AUTHENTICATE``, SMTP ``AUTH``) drives one :class:`Exchange`:

    exchange = start("PLAIN", initial)       # initial: the base64 text after the name, or None
    step = exchange.first                     # Challenge | Credentials | Failure
    while isinstance(step, Challenge):
        send continuation(step.data)          # base64 of step.data, in the protocol's own framing
        line = read a line
        if line == b"*": cancel               # the caller handles "*" (each protocol words it)
        step = exchange.respond(line)         # base64 text in, next step out

The exchange decodes and checks base64 and UTF-8; it never verifies a password (that is the
service's one authentication routine) and does no I/O.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

#: Mechanisms offered, in the order they are advertised.
MECHANISMS: tuple[str, ...] = ("PLAIN", "LOGIN")

#: Longest decoded client response accepted (a PLAIN message is three fields of at most 255).
MAX_RESPONSE = 4096


@dataclass(frozen=True, slots=True)
class Challenge:
    """Send this (raw, not yet base64) challenge and wait for the client's response."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Credentials:
    """The exchange is complete: check these with the authentication routine."""

    authzid: str  # "" when the client asked for no other identity
    authcid: str
    password: str


@dataclass(frozen=True, slots=True)
class Failure:
    """The exchange failed on the client's input (bad base64, bad message); the text says why."""

    reason: str


Step = Challenge | Credentials | Failure


def encode(data: bytes) -> bytes:
    """Base64 for a challenge line (empty data gives empty text)."""
    return base64.b64encode(data)


def decode(text: bytes) -> bytes | Failure:
    """Strict base64 of a client response; ``=`` alone is the empty response (RFC 4954/5034)."""
    text = text.strip(b" \t")
    if text == b"=":
        return b""
    if len(text) > (MAX_RESPONSE * 4) // 3 + 4:
        return Failure("response too long")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return Failure("invalid base64 data")


def _utf8(data: bytes, what: str) -> str | Failure:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return Failure(f"{what} is not valid UTF-8")
    if "\x00" in text:
        return Failure(f"{what} contains NUL")
    return text


class Exchange:
    """One mechanism's conversation. Subclasses implement :meth:`_begin` and :meth:`_next`."""

    name = ""

    def __init__(self) -> None:
        self.first: Step = Failure("exchange not started")
        self.done = False

    def _begin(self, initial: bytes | None) -> Step:  # pragma: no cover - abstract
        raise NotImplementedError

    def _next(self, response: bytes) -> Step:  # pragma: no cover - abstract
        raise NotImplementedError

    def _finish(self, step: Step) -> Step:
        if not isinstance(step, Challenge):
            self.done = True
        return step

    def begin(self, initial: bytes | None) -> Step:
        """Start with the initial response's base64 text (or None when the client sent none)."""
        if initial is None:
            self.first = self._finish(self._begin(None))
        else:
            data = decode(initial)
            self.first = self._finish(data if isinstance(data, Failure) else self._begin(data))
        return self.first

    def respond(self, line: bytes) -> Step:
        """The client's base64 response to the last challenge."""
        if self.done:
            return Failure("the exchange is already complete")
        data = decode(line)
        if isinstance(data, Failure):
            return self._finish(data)
        return self._finish(self._next(data))


class Plain(Exchange):
    """RFC 4616: one message ``authzid NUL authcid NUL passwd``; an empty challenge first."""

    name = "PLAIN"

    def _begin(self, initial: bytes | None) -> Step:
        if initial is None:
            return Challenge(b"")
        return self._next(initial)

    def _next(self, response: bytes) -> Step:
        if len(response) > MAX_RESPONSE:
            return Failure("response too long")
        parts = response.split(b"\x00")
        if len(parts) != 3:
            return Failure("malformed PLAIN message")
        fields: list[str] = []
        for part, what in zip(
            parts, ("authorization identity", "user name", "password"), strict=True
        ):
            text = _utf8(part, what)
            if isinstance(text, Failure):
                return text
            fields.append(text)
        authzid, authcid, password = fields
        if not authcid or not password:
            return Failure("empty user name or password")
        return Credentials(authzid, authcid, password)


class Login(Exchange):
    """The LOGIN mechanism: "Username:" then "Password:" challenges; an initial response is the
    user name (as Thunderbird and Outlook send it with SASL-IR)."""

    name = "LOGIN"

    def __init__(self) -> None:
        super().__init__()
        self._user: str | None = None

    def _begin(self, initial: bytes | None) -> Step:
        if initial is None:
            return Challenge(b"Username:")
        return self._next(initial)

    def _next(self, response: bytes) -> Step:
        if len(response) > MAX_RESPONSE:
            return Failure("response too long")
        if self._user is None:
            user = _utf8(response, "user name")
            if isinstance(user, Failure):
                return user
            if not user:
                return Failure("empty user name")
            self._user = user
            return Challenge(b"Password:")
        password = _utf8(response, "password")
        if isinstance(password, Failure):
            return password
        if not password:
            return Failure("empty password")
        return Credentials("", self._user, password)


def start(mechanism: str, initial: bytes | None = None) -> Exchange | None:
    """A new exchange for *mechanism* (case-insensitive) already begun, or None if unknown."""
    name = mechanism.upper()
    exchange: Exchange
    if name == "PLAIN":
        exchange = Plain()
    elif name == "LOGIN":
        exchange = Login()
    else:
        return None
    exchange.begin(initial)
    return exchange
