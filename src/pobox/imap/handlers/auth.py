"""LOGIN and AUTHENTICATE (RFC 9051 §6.2, RFC 4959 SASL-IR) through the one auth routine."""

from __future__ import annotations

import asyncio
from typing import Any

from pobox import sasl
from pobox.imap import commands as c
from pobox.imap import responses as r
from pobox.imap.protocol import AuthenticateResponse
from pobox.imap.session import NOT_AUTH, CommandSpec, Disconnect, ImapSession, State
from pobox.sasl.mechanisms import Challenge, Credentials, Failure, start

MAX_FAILURES = 3
FAILURE_DELAY = 1.0


async def _finish_login(session: ImapSession, tag: str, user: str, password: str) -> None:
    remote = session.peer
    account = await session.service.auth.authenticate(user, password, remote=remote)
    if account is None:
        session.auth_failures += 1
        await asyncio.sleep(FAILURE_DELAY * session.auth_failures)
        session.tagged(
            tag,
            "NO",
            "invalid user name or password",
            r.ResponseCode.plain("AUTHENTICATIONFAILED"),
        )
        if session.auth_failures >= MAX_FAILURES:
            session.send(r.bye("too many authentication failures"))
            await session.drain()
            raise Disconnect
        return
    session.account = account
    session.state = State.AUTHENTICATED
    session.tagged(tag, "OK", "logged in", r.ResponseCode.capability(session.capabilities()))


async def login(session: ImapSession, cmd: c.Login) -> None:
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
