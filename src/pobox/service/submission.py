"""Mail submission (RFC 6409): what an authenticated user may send, and where it goes.

The SMTP submission listeners (pobox.delivery.submission) and the webmail send through
:class:`Submission`; the front ends only map its errors to their own words.

* The envelope sender and every address in the From header must be the account's own address
  or one of its aliases (:class:`NotYourAddress`; SMTP ``553 5.7.1``).
* A missing Date or Message-ID header is added (RFC 6409 §8.2, §8.3), the Message-ID with the
  configured hostname.
* Recipients that are an account or an alias are delivered straight into their INBOX through
  the one delivery routine (pobox.service.delivery); an unknown address in a domain pobox
  serves is refused (:class:`NoSuchRecipient`); every other recipient goes to the outbound
  queue (pobox.relay.queue).

Order, and what a client's retry does (docs/decisions/submission-order.md): the remote
recipients are enqueued first, in one durable step; only then are the local ones delivered.
If the enqueue fails nothing has been delivered, the client hears 451, and its retry delivers
every recipient once. Only a local delivery failing *after* the queue took the message (the
store failing between two steps) can make a retry send the remote copy twice; pobox prefers
that to losing mail.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, getaddresses
from typing import Literal, Protocol

from pobox.errors import InvalidInput, NotFound, PoboxError, Temporary
from pobox.service.accounts import Accounts
from pobox.service.content import normalize_crlf
from pobox.service.delivery import Delivery, Envelope
from pobox.service.domains import ServedDomains
from pobox.store.api import Account, AccountId, Store

log = logging.getLogger("pobox.submission")

#: Seconds an account's list of aliases is trusted (MAIL FROM and DATA both need it)
ALIASES_TTL = 5.0


class OutboundQueue(Protocol):
    """What submission needs of the outbound queue (pobox.relay.queue.OutboundQueue)."""

    async def enqueue(self, sender: str, recipients: Sequence[str], message: bytes) -> str: ...


class NotYourAddress(InvalidInput):
    """A sender or From address that is not the account's (SMTP 553 5.7.1)."""


class NoSuchRecipient(NotFound):
    """An address in a domain pobox serves that is no account or alias (SMTP 550 5.1.1)."""


class NoRelay(PoboxError):
    """A remote recipient, and no outbound queue to send it to (SMTP 550 5.7.1)."""


class BadMessage(InvalidInput):
    """A message submission cannot send as it is, e.g. without a From header (550 5.6.0)."""


@dataclass(frozen=True, slots=True)
class Submitted:
    #: the outbound queue's id ("" when every recipient was local)
    queue_id: str
    local: tuple[str, ...]
    remote: tuple[str, ...]
    #: the Message-ID the message went out with
    message_id: str


# -- the header block: pure functions -------------------------------------------------------
def split_head(message: bytes) -> tuple[bytes, bytes]:
    """The header block (with its last CRLF, without the empty line) and the rest (from the
    empty line on). A message without an empty line is all header."""
    if message.startswith(b"\r\n"):
        return b"", message
    end = message.find(b"\r\n\r\n")
    if end < 0:
        head = message if message.endswith(b"\r\n") or not message else message + b"\r\n"
        return head, b""
    return message[: end + 2], message[end + 2 :]


def header_fields(head: bytes) -> list[tuple[str, str]]:
    """(lower-cased name, unfolded value) for each field of a header block; UTF-8 (RFC 6532),
    undecodable octets replaced."""
    fields: list[tuple[str, str]] = []
    for raw in head.split(b"\r\n"):
        if not raw:
            continue
        if raw[:1] in (b" ", b"\t") and fields:
            last, text = fields[-1]
            fields[-1] = (last, text + " " + raw.decode("utf-8", "replace").strip())
            continue
        name, colon, value = raw.partition(b":")
        if not colon:
            continue
        label = name.decode("utf-8", "replace").strip().lower()
        fields.append((label, value.decode("utf-8", "replace").strip()))
    return fields


def from_addresses(fields: list[tuple[str, str]]) -> list[str]:
    """The addresses of the From field(s)."""
    values = [value for name, value in fields if name == "from"]
    return [address for _, address in getaddresses(values)]


def new_message_id(hostname: str) -> str:
    return f"<{secrets.token_hex(12)}@{hostname}>"


def complete_headers(message: bytes, hostname: str, now: float | None = None) -> tuple[bytes, str]:
    """*message* with a Date and a Message-ID added where missing (at the end of the header
    block), and its Message-ID."""
    head, rest = split_head(message)
    fields = header_fields(head)
    names = {name for name, _ in fields}
    added: list[bytes] = []
    message_id = next((value for name, value in fields if name == "message-id"), "")
    if "date" not in names:
        when = datetime.fromtimestamp(time.time() if now is None else now, UTC).astimezone()
        added.append(f"Date: {format_datetime(when)}\r\n".encode("ascii"))
    if "message-id" not in names:
        message_id = new_message_id(hostname)
        added.append(f"Message-ID: {message_id}\r\n".encode("ascii", "replace"))
    if not added:
        return message, message_id
    if not rest:
        rest = b"\r\n"
    return head + b"".join(added) + rest, message_id


class Submission:
    """Checks and routing of submitted mail, for every front end that sends."""

    def __init__(
        self,
        store: Store,
        accounts: Accounts,
        delivery: Delivery,
        domains: ServedDomains,
        hostname: str,
        queue: OutboundQueue | None = None,
    ) -> None:
        self.store = store
        self.accounts = accounts
        self.delivery = delivery
        self.domains = domains
        self.hostname = hostname
        self.queue = queue
        self._aliases: dict[AccountId, tuple[float, frozenset[str]]] = {}

    async def owned_addresses(self, account: Account) -> frozenset[str]:
        """The account's address and its aliases, lower-cased."""
        now = time.monotonic()
        cached = self._aliases.get(account.id)
        if cached is not None and now - cached[0] < ALIASES_TTL:
            return cached[1]
        aliases = await self.store.list_aliases(account.id)
        owned = frozenset([account.address.lower(), *(alias.lower() for alias, _ in aliases)])
        if len(self._aliases) > 10000:
            self._aliases.clear()
        self._aliases[account.id] = (now, owned)
        return owned

    async def check_sender(self, account: Account, address: str) -> None:
        """Raise :class:`NotYourAddress` unless *address* is the account's or an alias."""
        if address.lower() not in await self.owned_addresses(account):
            raise NotYourAddress(f"<{address[:200]}> is not an address of {account.address}")

    async def route(self, address: str) -> Literal["local", "remote"]:
        """Where a recipient goes: "local" (an account or alias) or "remote" (the outbound
        queue). Raises :class:`NoSuchRecipient` for an unknown address in a served domain and
        :class:`NoRelay` for a remote one when there is no queue."""
        if await self.delivery.resolve(address) is not None:
            return "local"
        if await self.domains.serves(address):
            raise NoSuchRecipient(f"<{address[:200]}>: no such user here")
        if self.queue is None:
            raise NoRelay("sending to other domains is not configured here")
        return "remote"

    async def submit(
        self,
        account: Account,
        sender: str,
        recipients: Sequence[str],
        message: bytes,
        *,
        peer: str = "",
        helo: str = "",
        protocol: str = "ESMTPSA",
    ) -> Submitted:
        """Check, complete and send *message* for *account*. Returns once every local copy
        and the queued remote copy are durable; raises :class:`NotYourAddress`,
        :class:`BadMessage`, :class:`NoSuchRecipient`, :class:`NoRelay` or
        :class:`~pobox.errors.Temporary` (nothing was delivered to anyone when the queue
        failed; see the module docstring)."""
        if not recipients:
            raise InvalidInput("a message needs recipients")
        await self.check_sender(account, sender)
        message = normalize_crlf(message)
        head, _ = split_head(message)
        senders = from_addresses(header_fields(head))
        if not senders or not any(senders):
            raise BadMessage("the message has no From address")
        owned = await self.owned_addresses(account)
        for address in senders:
            if address.lower() not in owned:
                raise NotYourAddress(
                    f"From: <{address[:200]}> is not an address of {account.address}"
                )
        message, message_id = complete_headers(message, self.hostname)
        local: list[str] = []
        remote: list[str] = []
        for recipient in recipients:
            (local if await self.route(recipient) == "local" else remote).append(recipient)
        queue_id = ""
        if remote:
            assert self.queue is not None  # route() said so
            try:
                queue_id = await self.queue.enqueue(sender, remote, message)
            except Exception as exc:
                log.warning("submission from %s: cannot enqueue: %s", account.address, exc)
                raise Temporary(f"the outbound queue cannot take the message: {exc}") from exc
        if local:
            envelope = Envelope(sender, tuple(local), helo=helo, peer=peer, protocol=protocol)
            results = await self.delivery.deliver(envelope, message)
            failed = [r for r in results if not r.delivered]
            if any(r.temporary for r in failed):
                raise Temporary("a local delivery failed; try again later")
            for result in failed:  # the account went away since RCPT, or it is full: rare
                log.warning(
                    "submission from %s: %s not delivered: %s",
                    account.address,
                    result.recipient,
                    result.reason,
                )
            full = [r.recipient for r in failed if r.over_quota]
            if full:  # the sender heard 250: tell them in their INBOX (docs/quota.md)
                await self._full_notice(account, full, head)
        return Submitted(queue_id, tuple(local), tuple(remote), message_id)

    async def _full_notice(self, account: Account, recipients: list[str], head: bytes) -> None:
        notice = EmailMessage(policy=SMTP_POLICY)
        notice["From"] = f"Mail Delivery System <MAILER-DAEMON@{self.hostname}>"
        notice["To"] = f"<{account.address}>"
        notice["Subject"] = "Undelivered Mail: mailbox full"
        notice["Date"] = format_datetime(datetime.now(UTC))
        notice["Message-ID"] = new_message_id(self.hostname)
        notice["Auto-Submitted"] = "auto-replied"
        names = ", ".join(f"<{r}>" for r in recipients)
        notice.set_content(
            f"Your message could not be delivered to {names}: the mailbox is full "
            "(552 5.2.2); nothing was stored for them.\n\n"
            "The message's header:\n\n" + head.decode("utf-8", "replace").replace("\r\n", "\n")
        )
        envelope = Envelope("", (account.address,), protocol="local")
        (result,) = await self.delivery.deliver(envelope, notice.as_bytes())
        if not result.delivered:
            log.warning("notice to %s not delivered: %s", account.address, result.reason)
