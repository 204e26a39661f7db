"""Reading SMTP/LMTP DATA in large pieces instead of aiosmtpd's line by line."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiosmtpd.smtp import MISSING, Envelope, syntax

#: Largest piece of DATA read at once (a larger body is read in several pieces)
CHUNK_LIMIT = 1 << 20

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
#: ``<local@domain>`` with a dot-atom local part and a plain domain, what MTAs send
_PLAIN_PATH = re.compile(rf"<({_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>")


class WholeData:
    """A mixin for aiosmtpd's SMTP/LMTP classes replacing ``smtp_DATA``.

    Same protocol as aiosmtpd's (RFC 5321 §4.1.1.4 and §4.5.2): the body ends at
    ``CRLF . CRLF``, a leading dot of a line is removed, a body above the SIZE limit is read to
    its end and refused with 552. Lines longer than 1000 octets are accepted, as Dovecot's LMTP
    does: real mail has them, and memory stays bounded by the SIZE limit. Reading up to each
    ``.CRLF`` instead of each line is what makes delivery cheap in CPU.
    """

    _reader: asyncio.StreamReader
    data_size_limit: int | None
    envelope: Envelope | None
    #: between 354 and the reply to the message: a shutdown lets it finish (pobox.net.drain)
    _in_data = False

    def _transaction_done(self) -> None:
        """A DATA has been answered (the session may close now, when the server stops)."""

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's MAIL/RCPT address parsing, with a fast path for the plain form.

        aiosmtpd parses every path with the email package's RFC 5322 header parser (and
        defines a class on each call), a large part of an LMTP delivery's CPU. A plain
        ``<local@domain>`` followed by nothing or by parameters gives the same result as
        that parser; anything else (comments, quoting, routes, literals, ``<>``) goes to it.
        """
        match = _PLAIN_PATH.match(arg)
        if match is None or "(" in arg or '"' in arg or "\\" in arg:
            return super()._getaddr(arg)  # type: ignore[misc,no-any-return]
        address = match.group(1)
        limit = getattr(self, "local_part_limit", 0)
        if limit and len(address.rpartition("@")[0]) > limit:
            return None, None
        return address, arg[match.end() :].lstrip(" \t")

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:  # aiosmtpd dispatches on this name
        server: Any = self
        if await server.check_helo_needed():
            return
        if await server.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await server.push("503 Error: need RCPT command")
            return
        if arg:
            await server.push("501 Syntax: DATA")
            return
        self._in_data = True
        try:
            await server.push("354 End data with <CR><LF>.<CR><LF>")
            try:
                body, too_much = await read_body(self._reader, self.data_size_limit or 0)
            except (asyncio.IncompleteReadError, ConnectionError):
                server._writer.close()
                return
            if too_much:
                await server.push("552 Error: Too much mail data")
                server._set_post_data_state()
            else:
                self.envelope.content = body
                self.envelope.original_content = body
                status = await server._call_handler_hook("DATA")
                server._set_post_data_state()
                await server.push("250 OK" if status is MISSING else status)
        finally:
            self._in_data = False
        self._transaction_done()


async def read_body(reader: asyncio.StreamReader, limit: int) -> tuple[bytes, bool]:
    """The unstuffed body up to the ``.`` line, and whether it exceeded *limit* (then empty)."""
    saved_limit = reader._limit  # type: ignore[attr-defined]
    reader._limit = CHUNK_LIMIT  # type: ignore[attr-defined]
    parts: list[bytes] = []
    size = 0
    too_much = False
    at_line_start = True
    try:
        while True:
            head: bytes | None
            try:
                chunk = await reader.readuntil(b".\r\n")
            except asyncio.LimitOverrunError as exc:
                chunk = await reader.readexactly(exc.consumed)
                head = None
            else:
                head = chunk[:-3]
            final = head is not None and ((not head and at_line_start) or head.endswith(b"\r\n"))
            if final:
                assert head is not None
                chunk = head  # without the terminating dot line
            size += len(chunk)
            if limit and size > limit:
                too_much = True
                parts.clear()
            elif chunk and not too_much:
                parts.append(chunk)
            if final:
                break
            if chunk:
                at_line_start = chunk.endswith(b"\r\n")
    finally:
        reader._limit = saved_limit  # type: ignore[attr-defined]
    if too_much:
        return b"", True
    raw = b"".join(parts)
    body = raw.replace(b"\r\n..", b"\r\n.")
    if body.startswith(b".."):
        body = body[1:]
    return body, False
