"""RESETKEY, GENURLAUTH and URLFETCH (RFC 4467 §7; docs/imap.md).

GENURLAUTH signs URL rumps with the logged-in user's key for the mailbox
(pobox.service.urlauth): any URL it cannot authorize makes the whole command BAD, as §7 asks.
URLFETCH answers each URL with its octets, or NIL for any URL that is not valid here (§8),
one ``* URLFETCH`` response per URL so that each is streamed from the stored content; it
reads with the rights of the URL's owner, needs no selected mailbox and changes nothing (no
\\Seen). RESETKEY replaces the key of a mailbox, or without a mailbox removes every key of the
user; the tagged OK of the first form carries ``[URLMECH INTERNAL]`` (§8 allows it there
instead of an untagged OK). Other sessions that have the mailbox selected are not told.
"""

from __future__ import annotations

from typing import Any

from pobox.errors import InvalidInput
from pobox.imap import responses as r
from pobox.imap.fetch import no_nul
from pobox.imap.handlers.catenate import CatenateError, claim_of, open_part, resolve_url
from pobox.imap.imapurl import UrlError, parse_auth_url
from pobox.imap.session import AUTH, CommandError, CommandSpec, Disconnect, ImapSession
from pobox.imap.urlauth_grammar import (
    GenUrlAuth,
    GenUrlAuthResponse,
    ResetKey,
    UrlFetch,
    urlfetch_prefix,
)
from pobox.service.urlauth import INTERNAL

URLMECH = r.ResponseCode("URLMECH", INTERNAL.encode("ascii"))


async def resetkey(session: ImapSession, cmd: ResetKey) -> None:
    account = session.require_account()
    urlauth = session.service.urlauth
    if cmd.mailbox is None:
        await urlauth.reset(account, None)
        await session.announce_updates()
        session.tagged(cmd.tag, "OK", "All keys removed")  # as RFC 4467 §7's example
        return
    name = session.mailbox_name(cmd.mailbox)
    await urlauth.reset(account, name, cmd.mechanisms)  # NO for another mechanism (as Dovecot)
    await session.announce_updates()
    session.tagged(cmd.tag, "OK", "RESETKEY completed", URLMECH)


async def genurlauth(session: ImapSession, cmd: GenUrlAuth) -> None:
    account = session.require_account()
    urlauth = session.service.urlauth
    urls: list[bytes] = []
    for raw, mechanism in cmd.pairs:
        try:
            rump = parse_auth_url(raw.decode("utf-8"), rump=True)
            full = await urlauth.generate(account, claim_of(rump), mechanism)
        except UnicodeDecodeError:
            raise CommandError("the URL is not UTF-8", status="BAD") from None
        except (UrlError, InvalidInput) as exc:
            raise CommandError(f"invalid URL: {exc}", status="BAD") from None
        urls.append(full.encode("utf-8"))
    session.send(GenUrlAuthResponse(tuple(urls)))
    await session.announce_updates()
    session.tagged(cmd.tag, "OK", "GENURLAUTH completed")


async def _fetch_one(session: ImapSession, url: bytes) -> None:
    try:
        text = url.decode("utf-8")
        parse_auth_url(text, rump=False)  # URLFETCH takes URLAUTH-authorized URLs only
        mailbox, where = await resolve_url(session, url)
        part = await open_part(session, url, mailbox, where)
    except (UnicodeDecodeError, UrlError, CatenateError):
        session.send_raw(urlfetch_prefix(url, None))
        return
    try:
        session.send_raw(urlfetch_prefix(url, part.length))
        sent = 0
        try:
            async for piece in part.chunks():
                session.send_raw(no_nul(piece))
                sent += len(piece)
                await session.drain()
        except ValueError:
            sent = -1
        if sent != part.length:  # the literal cannot be finished: the stream is lost
            raise Disconnect()
        session.send_raw(r.CRLF)
    finally:
        part.close()


async def urlfetch(session: ImapSession, cmd: UrlFetch) -> None:
    session.require_account()
    for url in cmd.urls:
        await _fetch_one(session, url)
    await session.announce_updates()
    session.tagged(cmd.tag, "OK", "URLFETCH completed")


SPECS: dict[type[Any], CommandSpec] = {
    ResetKey: CommandSpec(resetkey, AUTH),
    GenUrlAuth: CommandSpec(genurlauth, AUTH),
    UrlFetch: CommandSpec(urlfetch, AUTH),
}
