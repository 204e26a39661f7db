"""pobox's own EHLO/LHLO, HELO, MAIL, RCPT, VRFY and AUTH on top of aiosmtpd's session.

aiosmtpd runs the connection (reading lines, STARTTLS, DATA through pobox.delivery.data); these
replace the commands where pobox answers differently:

* EHLO and LHLO advertise PIPELINING, SIZE, 8BITMIME, SMTPUTF8 and ENHANCEDSTATUSCODES (RFC 2033
  §5 requires the first and the last for LMTP), STARTTLS where a certificate is configured, and
  AUTH only where :attr:`Commands.offers_auth` says so (the submission listeners); nothing else.
* MAIL and RCPT check their argument with :func:`pobox.delivery.paths.parse_path` (501 for
  syntax, 553 for a bad mailbox); the null reverse-path ``<>`` is accepted as a sender.
* Every reply carries an enhanced status code (RFC 2034), added in :meth:`enhanced` to the
  replies aiosmtpd words itself; text that is not valid UTF-8 never reaches the wire.
* AUTH on the inbound listeners is ``502 5.5.1`` and is not listed by HELP.
"""

from __future__ import annotations

import collections
from typing import Any

from aiosmtpd.smtp import MISSING, syntax

from pobox.delivery import replies
from pobox.delivery.paths import PathError, parse_path

#: RFC 4954 §4: an AUTH command line may be this long (the initial response is base64)
AUTH_LINE = 12288
#: MAIL and RCPT lines with SIZE, BODY, SMTPUTF8 and UTF-8 addresses (RFC 5321 §4.5.3.1.4 + ext.)
PATH_LINE = 1024


def printable(text: str) -> str:
    """*text* with octets that were not UTF-8 (lone surrogates) shown as ``\\xNN``."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class Commands:
    """A mixin placed before aiosmtpd's SMTP/LMTP class."""

    #: whether AUTH may be offered here at all (submission)
    offers_auth = False
    #: the word the client greets with, for replies
    greeting = "EHLO"
    #: when set, the next reply is sent as it is (the greeting, which is the first, and the
    #: EHLO/LHLO/HELO answers: RFC 2034 leaves them without enhanced codes)
    _raw_reply = True

    # the aiosmtpd state used here
    hostname: str
    data_size_limit: int | None
    tls_context: Any
    _tls_protocol: Any
    session: Any
    envelope: Any
    transport: Any

    def _is_tls(self) -> bool:
        """STARTTLS done, or a listener with implicit TLS."""
        if self._tls_protocol is not None:
            return True
        transport = self.transport
        return transport is not None and transport.get_extra_info("ssl_object") is not None

    def _auth_keywords(self) -> list[str]:
        """The AUTH line of the EHLO reply (none here; the submission session offers it)."""
        return []

    def enhanced(self, status: str | bytes) -> str | bytes:
        """The reply as it goes out: with enhanced status codes, and UTF-8 clean."""
        if isinstance(status, bytes):
            return status
        status = printable(status)
        if self._raw_reply:
            self._raw_reply = False
            return status
        return replies.enhance(status)

    async def _greet(self, hostname: str | None) -> None:
        server: Any = self
        if not hostname:
            await server.push(f"501 5.5.4 Syntax: {self.greeting} hostname")
            return
        server._set_rset_state()
        self.session.extended_smtp = True
        self.session.host_name = printable(hostname)[:255]
        # per connection (aiosmtpd's own table is shared by all, and grows at each EHLO)
        server.command_size_limits = collections.defaultdict(
            lambda: 512, {"MAIL": PATH_LINE, "RCPT": PATH_LINE, "AUTH": AUTH_LINE}
        )
        keywords = ["PIPELINING"]
        keywords.append(f"SIZE {self.data_size_limit}" if self.data_size_limit else "SIZE")
        keywords += ["8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"]
        if self.tls_context is not None and not self._is_tls():
            keywords.append("STARTTLS")
        keywords += self._auth_keywords()
        lines = [self.hostname, *keywords]
        text = "\r\n".join(f"250-{line}" for line in lines[:-1]) + f"\r\n250 {lines[-1]}"
        self._raw_reply = True
        await server.push(text)

    @syntax("HELO hostname")
    async def smtp_HELO(self, hostname: str | None) -> None:
        server: Any = self
        if not hostname:
            await server.push("501 5.5.4 Syntax: HELO hostname")
            return
        server._set_rset_state()
        self.session.extended_smtp = False
        self.session.host_name = printable(hostname)[:255]
        self._raw_reply = True
        await server.push(f"250 {self.hostname}")

    async def smtp_AUTH(self, arg: str | None) -> None:  # not offered: no @syntax, not in HELP
        server: Any = self
        await server.push(replies.AUTH_NOT_OFFERED)

    @syntax("VRFY <address>")
    async def smtp_VRFY(self, arg: str | None) -> None:
        server: Any = self
        if await server.check_auth_needed("VRFY"):
            return
        if not arg:
            await server.push("501 5.5.4 Syntax: VRFY <address>")
            return
        # RFC 5321 §3.5.3: 252 for a server that does not tell which addresses exist
        await server.push(
            "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery"
        )

    async def _transaction_checks(self, command: str) -> bool:
        """HELO/EHLO first, and (submission) AUTH; True when the command was refused."""
        server: Any = self
        if not self.session.host_name:
            await server.push(f"503 5.5.1 Error: send {self.greeting} first")
            return True
        return bool(await server.check_auth_needed(command))

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        server: Any = self
        if await self._transaction_checks("MAIL"):
            return
        if self.envelope.mail_from is not None:
            await server.push("503 5.5.1 Error: nested MAIL command")
            return
        rest = _after_keyword(arg, "FROM:")
        if rest is None:
            await server.push("501 5.5.4 Syntax: MAIL FROM:<address>")
            return
        path = parse_path(rest, sender=True)
        if isinstance(path, PathError):
            await server.push(path.reply)
            return
        params = dict(path.params)
        if params and not self.session.extended_smtp:
            await server.push("501 5.5.4 Syntax: MAIL FROM:<address> (parameters need EHLO)")
            return
        body = params.pop("BODY", "7BIT")
        if not isinstance(body, str) or body.upper() not in ("7BIT", "8BITMIME"):
            await server.push("501 5.5.4 BODY can only be 7BIT or 8BITMIME")
            return
        smtputf8 = params.pop("SMTPUTF8", False)
        if smtputf8 is not False and smtputf8 is not True:
            await server.push("501 5.5.4 SMTPUTF8 takes no value")
            return
        size = params.pop("SIZE", None)
        if size is not None:
            if not isinstance(size, str) or not size.isdigit() or len(size) > 20:
                await server.push("501 5.5.4 SIZE needs a number")
                return
            if self.data_size_limit and int(size) > self.data_size_limit:
                await server.push("552 5.3.4 message size exceeds fixed maximum message size")
                return
        if params:
            await server.push("555 5.5.4 MAIL FROM parameters not recognized or not implemented")
            return
        options = [f"{k}={v}" if isinstance(v, str) else k for k, v in path.params.items()]
        status = await server._call_handler_hook("MAIL", path.address, options)
        if status is MISSING:
            self.envelope.mail_from = path.address or "<>"
            self.envelope.mail_options.extend(options)
            status = replies.SENDER_OK
        if status.startswith("2"):
            self.envelope.smtp_utf8 = smtputf8
        await server.push(status)

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:
        server: Any = self
        if await self._transaction_checks("RCPT"):
            return
        if self.envelope.mail_from is None:
            await server.push("503 5.5.1 Error: need MAIL command")
            return
        rest = _after_keyword(arg, "TO:")
        if rest is None:
            await server.push("501 5.5.4 Syntax: RCPT TO:<address>")
            return
        path = parse_path(rest, sender=False, smtputf8=bool(self.envelope.smtp_utf8))
        if isinstance(path, PathError):
            await server.push(path.reply)
            return
        if path.params:
            await server.push("555 5.5.4 RCPT TO parameters not recognized or not implemented")
            return
        address = path.address
        if address == "postmaster":  # RFC 5321 §4.5.1: the server's own postmaster
            address = f"postmaster@{self.hostname}"
        status = await server._call_handler_hook("RCPT", address, [])
        if status is MISSING:
            self.envelope.rcpt_tos.append(address)
            status = replies.RCPT_OK
        await server.push(status)


def _after_keyword(arg: str | None, keyword: str) -> str | None:
    """The text after ``FROM:``/``TO:`` (case-insensitive, spaces before the path allowed)."""
    if arg is None or arg[: len(keyword)].upper() != keyword:
        return None
    return arg[len(keyword) :].lstrip(" ")
