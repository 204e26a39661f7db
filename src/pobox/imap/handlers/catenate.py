"""CATENATE's URL parts (RFC 4469 §5): copy a message, or a part of one, of the same account
into the message being appended.

A URL (pobox.imap.imapurl) names a mailbox the user may read (its own, or a shared one with the
r right), the UIDVALIDITY it must still have, a UID, and optionally a section (the syntax of
``BODY[section]``) and a partial range. Anything that does not resolve is ``NO [BADURL url]``;
a message that grows past the APPEND limit is ``NO [TOOBIG]``. The octets are copied from the
stored content in pieces, never read whole.
"""

from __future__ import annotations

import asyncio

from pobox.errors import PoboxError
from pobox.imap.bodystructure import section_range
from pobox.imap.commands import FetchBody
from pobox.imap.fetch import filter_header
from pobox.imap.fetch_grammar import parse_fetch_att
from pobox.imap.imapurl import MessageUrl, UrlError, parse_message_url
from pobox.imap.lexer import ParseError, Reader
from pobox.imap.session import ImapSession
from pobox.mail.structure import ParsedMessage
from pobox.service.content import IncomingMessage
from pobox.store.api import Mailbox, Uid

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
    if where.user is not None and where.user.lower() != account.address.lower():
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


async def copy_url(
    session: ImapSession, incoming: IncomingMessage, url: bytes, written: int, limit: int
) -> int:
    """Append what *url* names to *incoming*; returns the octets written (*written* before)."""
    try:
        where = parse_message_url(url.decode("utf-8"))
    except (UrlError, UnicodeDecodeError) as exc:
        raise badurl(url, str(exc)) from None
    mailbox = await _mailbox(session, url, where)
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
        if written + length > limit:
            raise CatenateError(f"the message would be larger than {limit} octets", "TOOBIG")
        if data is not None:
            await asyncio.to_thread(incoming.write, data[offset : offset + length])
            return written + length
        end = offset + length
        while offset < end:
            piece = await asyncio.to_thread(content.read, offset, min(PIECE, end - offset))
            if not piece:
                raise badurl(url, "the stored message is shorter than its structure")
            await asyncio.to_thread(incoming.write, piece)
            offset += len(piece)
        return written + length
    finally:
        content.close()
