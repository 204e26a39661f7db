"""CATENATE's URL parts (RFC 4469 §5): copy a message, or a part of one, of the same account
into the message being appended.

A URL (pobox.imap.imapurl) names a mailbox the user may read (its own, or a shared one with the
r right), the UIDVALIDITY it must still have, a UID, and optionally a section (the syntax of
``BODY[section]``) and a partial range; or it is a URLAUTH-authorized URL (RFC 4467, allowed
by RFC 4469 §5), read with the rights of its owner once the service has verified it. Anything
that does not resolve is ``NO [BADURL url]``; a message that grows past the APPEND limit is
``NO [TOOBIG]``. The octets are copied from the stored content in pieces, never read whole.
URLFETCH (pobox.imap.handlers.urlauth) reads URLs with the same :func:`resolve_url` and
:func:`open_part`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from pobox.errors import PoboxError
from pobox.imap.bodystructure import section_range
from pobox.imap.commands import FetchBody
from pobox.imap.fetch import filter_header
from pobox.imap.fetch_grammar import parse_fetch_att
from pobox.imap.imapurl import (
    AuthUrl,
    MessageUrl,
    UrlError,
    has_urlauth,
    parse_auth_url,
    parse_message_url,
    url_userid,
)
from pobox.imap.lexer import ParseError, Reader
from pobox.imap.session import ImapSession
from pobox.mail.structure import ParsedMessage
from pobox.service.content import IncomingMessage
from pobox.service.urlauth import UrlClaim
from pobox.store.api import Content, Mailbox, Uid

#: Octets copied at a time.
PIECE = 256 * 1024


class CatenateError(Exception):
    def __init__(self, text: str, code: str) -> None:
        super().__init__(text)
        self.text = text
        self.code = code


def badurl(url: bytes, why: str) -> CatenateError:
    """``NO [BADURL url]``: the URL as the client sent it when it can be shown as it is."""
    shown = url.decode("ascii", "replace")
    safe = url.isascii() and all(0x20 < c < 0x7F and c != 0x5D for c in url)
    return CatenateError(f"bad URL: {why}", f"BADURL {shown}" if safe else "BADURL")


async def _mailbox(session: ImapSession, url: bytes, where: MessageUrl) -> Mailbox:
    account = session.require_account()
    user = None if where.user is None else url_userid(where.user, where.host)
    if user is not None and user.lower() != account.address.lower():
        raise badurl(url, "the URL names another user")
    acl = session.service.acl
    try:
        if acl.is_shared_name(where.mailbox):
            return (await acl.access(account, where.mailbox, "r")).mailbox
        mailbox = await session.service.store.get_mailbox(account.id, where.mailbox)
    except PoboxError:
        raise badurl(url, f"no mailbox {where.mailbox} to read") from None
    if mailbox is None:
        raise badurl(url, f"no mailbox {where.mailbox}")
    return mailbox


def _section(url: bytes, text: str) -> FetchBody:
    try:
        reader = Reader([b"BODY.PEEK[" + text.encode("utf-8") + b"]"], [])
        att = parse_fetch_att(reader)
        reader.end()
    except ParseError:
        att = None
    if not isinstance(att, FetchBody):
        raise badurl(url, f"not a section: {text}")
    return att


class UrlPart:
    """The octets a URL names in a stored message: a range of its content, or (for
    ``HEADER.FIELDS``) bytes made here. :meth:`close` it."""

    def __init__(self, content: Content, offset: int, length: int, data: bytes | None) -> None:
        self.content = content
        self.offset = offset
        self.length = length
        self.data = data

    async def chunks(self) -> AsyncIterator[bytes]:
        """The octets in pieces of at most :data:`PIECE`; ValueError if the stored content
        ends early."""
        if self.data is not None:
            yield self.data[self.offset : self.offset + self.length]
            return
        offset, end = self.offset, self.offset + self.length
        while offset < end:
            piece = await asyncio.to_thread(self.content.read, offset, min(PIECE, end - offset))
            if not piece:
                raise ValueError("the stored message is shorter than its structure")
            yield piece
            offset += len(piece)

    def close(self) -> None:
        self.content.close()


async def open_part(
    session: ImapSession, url: bytes, mailbox: Mailbox, where: MessageUrl
) -> UrlPart:
    """What *where* names in *mailbox*; :class:`CatenateError` (``BADURL``) when it does not
    resolve."""
    if where.uidvalidity is not None and where.uidvalidity != mailbox.uidvalidity:
        raise badurl(url, "UIDVALIDITY has changed")
    store = session.service.store
    metas = await store.get_messages(mailbox.id, [Uid(where.uid)])
    if not metas:
        raise badurl(url, f"no message with UID {where.uid}")
    blob = metas[0].blob
    section = _section(url, where.section) if where.section else None
    try:
        parsed = ParsedMessage.cached(await store.get_structure(blob))
        content = await store.open_content(blob)
    except PoboxError:
        raise badurl(url, "the message is gone") from None
    try:
        if section is None or (not section.part and section.text is None):
            offset, length = 0, parsed.size
        else:
            kind = section.text or ""
            found = section_range(parsed, section.part, kind)
            if found is None:
                raise badurl(url, f"the message has no section {where.section}")
            offset, length = found
        data: bytes | None = None
        if section is not None and (section.text or "").startswith("HEADER.FIELDS"):
            raw = await asyncio.to_thread(content.read, offset, length)
            data = filter_header(raw, section.fields, section.text == "HEADER.FIELDS")
            offset, length = 0, len(data)
        if where.partial is not None:
            start, count = where.partial
            start = min(start, length)
            length = length - start if count is None else min(count, length - start)
            offset += start
    except BaseException:
        content.close()
        raise
    return UrlPart(content, offset, length, data)


async def resolve_url(session: ImapSession, url: bytes) -> tuple[Mailbox, MessageUrl]:
    """The mailbox and message *url* names, read with the rights of the URL's owner for a
    URLAUTH-authorized URL (RFC 4469 §5 allows them; RFC 4467 §7 says whose rights), else with
    the session's; :class:`CatenateError` (``BADURL``) when it may not be used."""
    try:
        text = url.decode("utf-8")
        if not has_urlauth(text):
            where = parse_message_url(text)
            return await _mailbox(session, url, where), where
        authorized = parse_auth_url(text, rump=False)
    except (UrlError, UnicodeDecodeError) as exc:
        raise badurl(url, str(exc)) from None
    access = await session.service.urlauth.verify(session.require_account(), claim_of(authorized))
    if access is None:
        raise badurl(url, "the URLAUTH does not authorize this URL here")
    return access.mailbox, authorized.message


def claim_of(url: AuthUrl) -> UrlClaim:
    """What the service needs to know of a URLAUTH-authorized URL."""
    where = url.message
    return UrlClaim(
        owner=url.owner,
        mailbox=where.mailbox,
        rump=url.rump,
        access=url.access,
        access_user=url.access_user,
        expire=url.expire,
        mechanism=url.mechanism,
        token=url.token,
    )


async def copy_url(
    session: ImapSession, incoming: IncomingMessage, url: bytes, written: int, limit: int
) -> int:
    """Append what *url* names to *incoming*; returns the octets written (*written* before)."""
    mailbox, where = await resolve_url(session, url)
    part = await open_part(session, url, mailbox, where)
    try:
        if written + part.length > limit:
            raise CatenateError(f"the message would be larger than {limit} octets", "TOOBIG")
        try:
            async for piece in part.chunks():
                await asyncio.to_thread(incoming.write, piece)
        except ValueError as exc:
            raise badurl(url, str(exc)) from None
        return written + part.length
    finally:
        part.close()
