"""The submission listeners (RFC 6409 on ``[submission]``, RFC 8314 implicit TLS on
``[submissions]``): SMTP AUTH, then pobox.service.submission does the rest.

* AUTH PLAIN and LOGIN (pobox.sasl) with the account's password, through the one
  authentication routine (pobox.service.auth): the same failure penalties and blocks as IMAP and
  POP3. AUTH is offered and accepted only over TLS (STARTTLS or implicit), unless ``[tls]
  allow_plaintext_auth`` is set; before it, MAIL, RCPT and DATA get ``530 5.7.0``.
* MAIL FROM must be the account's address or one of its aliases (``553 5.7.1``); RCPT TO is
  routed (local account, or the outbound queue); DATA is checked (From) and completed (Date,
  Message-ID) by :class:`~pobox.service.submission.Submission`.
"""

from __future__ import annotations

import logging
import typing
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session, syntax

from pobox import metrics, sasl
from pobox.delivery import replies
from pobox.delivery.commands import AUTH_LINE, Commands
from pobox.delivery.data import WholeData
from pobox.delivery.handlers import _LoggedSession
from pobox.errors import PoboxError, Temporary
from pobox.net.limits import peer_ip
from pobox.service.auth import Authenticated, Authenticator, Blocked
from pobox.service.submission import (
    BadMessage,
    NoRelay,
    NoSuchRecipient,
    NotYourAddress,
    Submission,
)
from pobox.store.api import Account

log = logging.getLogger("pobox.submission")

AUTH_OK = "235 2.7.0 Authentication successful"
AUTH_INVALID = "535 5.7.8 Authentication credentials invalid"
AUTH_NEEDS_TLS = "538 5.7.11 Encryption required for requested authentication mechanism"
AUTH_BLOCKED = "454 4.7.0 Too many failed logins; try again later"
AUTH_UNAVAILABLE = "454 4.7.0 Temporary authentication failure"
AUTH_REQUIRED = "530 5.7.0 Authentication required"
AUTH_REVOKED = "421 4.7.0 This app password was revoked; closing connection"


def _refusal(exc: PoboxError) -> str:
    """The SMTP reply for a refusal of the submission service."""
    text = str(exc)[:300]
    if isinstance(exc, NotYourAddress):
        return f"553 5.7.1 {text}"
    if isinstance(exc, NoSuchRecipient):
        return f"550 5.1.1 {text}"
    if isinstance(exc, NoRelay):
        return f"550 5.7.1 {text}"
    if isinstance(exc, BadMessage):
        return f"550 5.6.0 {text}"
    if isinstance(exc, Temporary):
        return f"451 4.3.0 {text}"
    return f"554 5.0.0 {text}"


class SubmissionHandler:
    """aiosmtpd's hooks for MAIL, RCPT and DATA of an authenticated session."""

    def __init__(self, submission: Submission, max_recipients: int) -> None:
        self.submission = submission
        self.max_recipients = max_recipients

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        account = typing.cast(Account, session.auth_data)
        try:
            await self.submission.check_sender(account, address)
        except PoboxError as exc:
            return _refusal(exc)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return replies.SENDER_OK

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return replies.TOO_MANY_RECIPIENTS
        try:
            await self.submission.route(address)
        except PoboxError as exc:
            return _refusal(exc)
        envelope.rcpt_tos.append(address)
        return replies.RCPT_OK

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        account = typing.cast(Account, session.auth_data)
        content = envelope.original_content or b""
        if isinstance(envelope.content, bytes) and not content:
            content = envelope.content
        peer = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer)
        try:
            done = await self.submission.submit(
                account,
                envelope.mail_from or "",
                list(envelope.rcpt_tos),
                content,
                peer=peer,
                helo=session.host_name or "",
            )
        except PoboxError as exc:
            log.info("submission from %s refused: %s", account.address, exc)
            return _refusal(exc)
        queued = f" queued as {done.queue_id}" if done.queue_id else ""
        return f"250 2.0.0 OK{queued}"

    async def handle_exception(self, error: Exception) -> str:
        log.exception("submission session error", exc_info=error)
        return "451 4.3.0 internal error, please try again later"


class SubmissionServer(_LoggedSession, Commands, WholeData, SMTP):
    """One submission connection (plain with STARTTLS, or implicit TLS)."""

    protocol_name = "SUBMISSION"
    offers_auth = True
    #: the longest line read: an AUTH command with its initial response (RFC 4954 §4)
    line_length_limit = AUTH_LINE

    def __init__(
        self,
        handler: SubmissionHandler,
        *args: Any,
        authenticator: Authenticator,
        allow_plaintext_auth: bool = False,
        **kwargs: Any,
    ) -> None:
        self._authenticator_service = authenticator
        self._allow_plaintext_auth = allow_plaintext_auth
        #: how the session logged in (its app password's revocation flag: docs/app-passwords.md)
        self._credential: Authenticated | None = None
        super().__init__(handler, *args, **kwargs)

    def _auth_allowed(self) -> bool:
        return self._is_tls() or self._allow_plaintext_auth

    def _auth_keywords(self) -> list[str]:
        return ["AUTH " + " ".join(sasl.MECHANISMS)] if self._auth_allowed() else []

    async def check_auth_needed(self, caller_method: str) -> bool:
        if caller_method in ("HELP", "NOOP"):
            return False
        if self.session is None or not self.session.authenticated:
            await self.push(AUTH_REQUIRED)
            return True
        if self._credential is not None and self._credential.revoked:
            self._end = "revoked"
            await self.push(AUTH_REVOKED)
            self.transport.close()
            return True
        return False

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str | None) -> None:
        await self._greet(hostname)

    @syntax("AUTH <mechanism> [initial-response]")
    async def smtp_AUTH(self, arg: str | None) -> None:
        session = self.session
        assert session is not None
        if not session.host_name or not session.extended_smtp:
            await self.push("503 5.5.1 Error: send EHLO first")
            return
        if not self._auth_allowed():
            await self.push(AUTH_NEEDS_TLS)
            return
        if session.authenticated:
            await self.push("503 5.5.1 Already authenticated")
            return
        if self.envelope is not None and self.envelope.mail_from is not None:
            await self.push("503 5.5.1 AUTH is not allowed during a mail transaction")
            return
        words = (arg or "").split()
        if not words or len(words) > 2:
            await self.push("501 5.5.4 Syntax: AUTH mechanism [initial-response]")
            return
        initial = words[1].encode("utf-8", "surrogateescape") if len(words) == 2 else None
        exchange = sasl.start(words[0], initial)
        if exchange is None:
            await self.push("504 5.5.4 Unrecognized authentication type")
            return
        step = exchange.first
        while isinstance(step, sasl.Challenge):
            await self.push(b"334 " + sasl.encode(step.data))
            try:
                line = await self._reader.readline()
            except ValueError:  # longer than the line limit
                step = sasl.Failure("response line too long")
                break
            if not line:
                return  # the client went away
            if line.strip() == b"*":
                await self.push("501 5.7.0 Authentication cancelled")
                return
            step = exchange.respond(line.strip())
        if isinstance(step, sasl.Failure):
            await self.push(f"501 5.5.2 {step.reason}")
            return
        assert isinstance(step, sasl.Credentials)
        if step.authzid and step.authzid != step.authcid:
            await self.push("535 5.7.8 Not authorized to act as another user")
            return
        await self._login(step.authcid, step.password)

    async def _login(self, username: str, password: str) -> None:
        session = self.session
        assert session is not None
        try:
            result = await self._authenticator_service.sign_in(
                username, password, remote=peer_ip(self._peer)
            )
        except Blocked:
            metrics.login("submission", "blocked")
            await self.push(AUTH_BLOCKED)
            return
        except Temporary:
            metrics.login("submission", "unavailable")
            await self.push(AUTH_UNAVAILABLE)
            return
        metrics.login("submission", "failed" if result is None else "ok")
        if result is None:
            await self.push(AUTH_INVALID)
            return
        account = result.account
        self._credential = result
        self._login_label = result.label or ""
        session.authenticated = True
        session.auth_data = account
        self._user = account.address
        await self.push(AUTH_OK)
