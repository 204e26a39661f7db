"""The SMTP client side (RFC 5321): one connection to a next hop, several messages over it.

Built on the standard library's :mod:`smtplib`, run in a worker thread by the runner: it speaks
exactly the commands we need (EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA, QUIT) with per-recipient
replies, and adds no dependency. Everything here is blocking; nothing touches the store.

Replies are kept as text in one shape, ``"550 5.1.1 text"`` for what the next hop said, and
problems of our own (no connection, TLS failed) as ``"4.4.1 text"`` with an enhanced status code
(RFC 3463) first; :mod:`pobox.relay.dsn` turns either into DSN fields.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

#: how the connection to a hop is protected
TLS_STARTTLS = "starttls"  # STARTTLS required (a smarthost)
TLS_IMPLICIT = "implicit"  # TLS from the first byte (port 465, RFC 8314)
TLS_NONE = "none"  # plain text
TLS_OPPORTUNISTIC = "opportunistic"  # STARTTLS when offered, certificate not checked (MX hosts)


class HopError(Exception):
    """The hop could not be used at all: no connection, no greeting, TLS or AUTH failed. The
    text is a reply-shaped line (``"4.4.1 ..."`` or the hop's ``"421 ..."``)."""

    def __init__(self, text: str, *, permanent: bool = False) -> None:
        super().__init__(text)
        self.text = text
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class Hop:
    """Where to connect: *name* is the host name (for TLS and for the logs), *address* what
    to connect to (an IP address, or the name again)."""

    name: str
    address: str
    port: int
    tls: str
    username: str = ""
    password: str = ""
    timeout: float = 300.0
    #: a TLS context for required TLS (tests pass one that trusts their certificate)
    context: ssl.SSLContext | None = None


def reply_text(code: int, message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    return f"{code} {' '.join(text.split())}".strip()


def _opportunistic_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Connection:
    """One SMTP session to a hop, open after :meth:`open`."""

    def __init__(self, hop: Hop, helo_name: str) -> None:
        self.hop = hop
        self.helo_name = helo_name
        self._smtp: smtplib.SMTP | None = None

    def _where(self) -> str:
        hop = self.hop
        if hop.address != hop.name:
            return f"{hop.name} [{hop.address}]:{hop.port}"
        return f"{hop.name}:{hop.port}"

    def open(self) -> None:
        """Connect, greet, secure and log in; raises :class:`HopError`."""
        hop = self.hop
        context = hop.context or ssl.create_default_context()
        smtp: smtplib.SMTP
        try:
            if hop.tls == TLS_IMPLICIT:
                smtp = smtplib.SMTP_SSL(
                    local_hostname=self.helo_name, timeout=hop.timeout, context=context
                )
                smtp._host = hop.name  # type: ignore[attr-defined]  # certificate name
            else:
                smtp = smtplib.SMTP(local_hostname=self.helo_name, timeout=hop.timeout)
                smtp._host = hop.name  # type: ignore[attr-defined]
            code, message = smtp.connect(hop.address, hop.port)
        except (OSError, smtplib.SMTPException) as exc:
            raise HopError(f"4.4.1 no connection to {self._where()}: {_describe(exc)}") from None
        self._smtp = smtp
        try:
            if code != 220:
                raise HopError(
                    f"{reply_text(code, message)} (greeting of {self._where()})",
                    permanent=False,
                )
            smtp.ehlo_or_helo_if_needed()
            if hop.tls == TLS_STARTTLS or (
                hop.tls == TLS_OPPORTUNISTIC and smtp.has_extn("starttls")
            ):
                if not smtp.has_extn("starttls"):
                    raise HopError(f"4.7.0 {self._where()} does not offer STARTTLS")
                tls_context = context if hop.tls == TLS_STARTTLS else _opportunistic_context()
                code, message = smtp.starttls(context=tls_context)
                if code != 220:
                    raise HopError(f"{reply_text(code, message)} (STARTTLS at {self._where()})")
                smtp.ehlo()
            if hop.username:
                smtp.login(hop.username, hop.password)
        except HopError:
            self.close()
            raise
        except smtplib.SMTPAuthenticationError as exc:
            self.close()
            # a configuration problem (fix the password): deferred, never bounced
            raise HopError(
                f"4.7.0 login at {self._where()} refused:"
                f" {reply_text(exc.smtp_code, exc.smtp_error)}"
            ) from None
        except smtplib.SMTPResponseException as exc:
            self.close()
            raise HopError(
                f"{reply_text(exc.smtp_code, exc.smtp_error)} ({self._where()})"
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            raise HopError(f"4.4.2 {self._where()} broke off: {_describe(exc)}") from None

    def send(self, sender: str, recipients: Sequence[str], content: bytes) -> dict[str, str]:
        """One mail transaction; the reply for each recipient (2xx: delivered). Raises
        :class:`HopError` when the connection is lost (the caller defers what is left)."""
        smtp = self._smtp
        if smtp is None:
            raise HopError(f"4.4.2 not connected to {self._where()}")
        replies: dict[str, str] = {}
        try:
            options: list[str] = []
            if smtp.has_extn("size"):
                options.append(f"SIZE={len(content)}")
            if smtp.has_extn("8bitmime") and any(b > 127 for b in content):
                options.append("BODY=8BITMIME")
            international = not (sender.isascii() and all(r.isascii() for r in recipients))
            if international:
                if not smtp.has_extn("smtputf8"):
                    text = f"5.6.7 {self._where()} does not accept international addresses"
                    return dict.fromkeys(recipients, text)
                options.append("SMTPUTF8")
            code, message = smtp.mail(sender, options)
            if code >= 300:
                return dict.fromkeys(recipients, reply_text(code, message))
            accepted = []
            for rcpt in recipients:
                code, message = smtp.rcpt(rcpt)
                if code >= 300:
                    replies[rcpt] = reply_text(code, message)
                else:
                    accepted.append(rcpt)
            if not accepted:
                smtp.rset()
                return replies
            try:
                code, answer = smtp.data(content)
                final = reply_text(code, answer)
            except smtplib.SMTPDataError as exc:  # no 354
                final = reply_text(exc.smtp_code, exc.smtp_error)
            for rcpt in accepted:
                replies[rcpt] = final
            return replies
        except smtplib.SMTPServerDisconnected as exc:
            self._smtp = None
            raise HopError(f"4.4.2 {self._where()} closed the connection: {exc}") from None
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code == 421:
                self.close()
            raise HopError(reply_text(exc.smtp_code, exc.smtp_error)) from None
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            raise HopError(f"4.4.2 {self._where()} broke off: {_describe(exc)}") from None

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            smtp.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
