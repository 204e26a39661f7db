"""LOGIN and AUTHENTICATE (RFC 9051 §6.2, RFC 4959 SASL-IR) through the one auth routine."""

from __future__ import annotations

from typing import Any

from pobox import metrics, sasl
from pobox.imap import commands as c
from pobox.imap import responses as r
from pobox.imap.protocol import AuthenticateResponse
from pobox.imap.session import NOT_AUTH, CommandSpec, Disconnect, ImapSession, State
from pobox.sasl.mechanisms import Challenge, Credentials, Failure, start
from pobox.service.auth import Blocked

#: Failed logins in one session before the server says BYE (the delays between failures are
#: the authentication service's penalties, per address and per account).
MAX_FAILURES = 3


async def _finish_login(session: ImapSession, tag: str, user: str, password: str) -> None:
    try:
        result = await session.service.auth.sign_in(user, password, remote=session.remote_ip)
    except Blocked:
        result = None
        metrics.login("imap", "blocked")
        session.tagged(
            tag,
            "NO",
            "too many failed logins; try again later",
            r.ResponseCode.plain("UNAVAILABLE"),
        )
    else:
        metrics.login("imap", "failed" if result is None else "ok")
        if result is None:
            session.tagged(
                tag,
                "NO",
                "invalid user name or password",
                r.ResponseCode.plain("AUTHENTICATIONFAILED"),
            )
    if result is None:
        session.auth_failures += 1
        if session.auth_failures >= MAX_FAILURES:
            session.send(r.bye("too many authentication failures"))
            await session.drain()
            raise Disconnect
        return
    account = result.account
    slots = session.account_slots
    if slots is not None:
        if not slots.acquire(account.id):
            session.tagged(
                tag,
                "NO",
                "too many concurrent sessions for this account",
                r.ResponseCode.plain("UNAVAILABLE"),
            )
            return
        session.holds_slot = True
    session.account = account
    session.credential = result
    if result.handle is not None:
        result.handle.on_revoke = session.on_revoked
    metrics.session_opened("imap")
    session.state = State.AUTHENTICATED
    session.tagged(tag, "OK", "logged in", r.ResponseCode.capability(session.capabilities()))


def _privacy_required(session: ImapSession, tag: str) -> bool:
    """RFC 9051 §6.2.3: no password over a connection that is neither TLS nor local (the
    capability list says LOGINDISABLED). True after answering NO [PRIVACYREQUIRED]."""
    if session.plaintext_auth_allowed:
        return False
    text = "plaintext login is disabled on an unencrypted connection"
    if session.tls_manager is not None:
        text += "; use STARTTLS or the IMAPS port"
    session.tagged(tag, "NO", text, r.ResponseCode.plain("PRIVACYREQUIRED"))
    return True


async def login(session: ImapSession, cmd: c.Login) -> None:
    if _privacy_required(session, cmd.tag):
        return
    try:
        user = cmd.userid.decode("utf-8")
        password = cmd.password.decode("utf-8")
    except UnicodeDecodeError:
        session.tagged(
            cmd.tag,
            "NO",
            "user name and password must be UTF-8",
            r.ResponseCode.plain("AUTHENTICATIONFAILED"),
        )
        return
    await _finish_login(session, cmd.tag, user, password)


async def authenticate(session: ImapSession, cmd: c.Authenticate) -> None:
    if _privacy_required(session, cmd.tag):  # every mechanism offered carries a password
        session.protocol.resume()
        return
    initial = cmd.initial_response
    if initial == b"=":  # RFC 4959: an empty initial response
        initial = b""
    exchange = start(cmd.mechanism, initial)
    if exchange is None:
        session.protocol.resume()
        session.tagged(
            cmd.tag,
            "NO",
            f"mechanism {cmd.mechanism} is not supported",
            r.ResponseCode.plain("CANNOT"),
        )
        return
    session.auth_exchange = exchange
    session.auth_tag = cmd.tag
    await _advance(session, exchange.first)


async def _advance(session: ImapSession, step: sasl.mechanisms.Step) -> None:
    tag = session.auth_tag
    assert tag is not None
    if isinstance(step, Challenge):
        session.send_raw(session.protocol.enter_authenticate(step.data))
        return
    session.protocol.resume()
    session.auth_exchange = None
    session.auth_tag = None
    if isinstance(step, Failure):
        session.tagged(tag, "BAD", f"authentication failed: {step.reason}")
        return
    assert isinstance(step, Credentials)
    if step.authzid and step.authzid.lower() != step.authcid.lower():
        session.tagged(
            tag,
            "NO",
            "acting as another user is not allowed",
            r.ResponseCode.plain("AUTHORIZATIONFAILED"),
        )
        return
    await _finish_login(session, tag, step.authcid, step.password)


async def authenticate_step(session: ImapSession, event: AuthenticateResponse) -> None:
    exchange = session.auth_exchange
    tag = session.auth_tag
    if exchange is None or tag is None:
        session.protocol.resume()
        return
    if event.cancelled:
        session.protocol.resume()
        session.auth_exchange = None
        session.auth_tag = None
        session.tagged(tag, "BAD", "authentication cancelled")
        return
    await _advance(session, exchange.respond(event.data))


SPECS: dict[type[Any], CommandSpec] = {
    c.Login: CommandSpec(login, NOT_AUTH),
    c.Authenticate: CommandSpec(authenticate, NOT_AUTH),
}
