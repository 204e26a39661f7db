"""Delivery status notifications (RFC 3464): bounces and delay notices to the sender.

A notice is a ``multipart/report; report-type=delivery-status`` message (RFC 6522) with three
parts: a human-readable explanation, the ``message/delivery-status`` fields (one per-message
group, then one group per recipient: Final-Recipient, Action, Status, Diagnostic-Code, ...), and
the original message's header as ``text/rfc822-headers``. It is sent with the null
reverse-path ``<>`` and is never answered by another notice (RFC 5321 §4.5.5, §6.1).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, formatdate

ACTION_FAILED = "failed"
ACTION_DELAYED = "delayed"

_REPLY = re.compile(r"^([245])\d\d(?:[ -]|$)")
_ENHANCED = re.compile(r"(?:^|\s)([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")
#: longest original header kept in a notice
MAX_HEADER = 64 * 1024


@dataclass(frozen=True, slots=True)
class RecipientReport:
    """One recipient's line in a notice. *error* is the queue's last_error: a next hop's
    reply (``"550 5.1.1 ..."``) or a problem of our own (``"4.4.1 ..."``)."""

    recipient: str
    action: str  # ACTION_FAILED or ACTION_DELAYED
    error: str
    status: str = ""  # overrides the status read from *error* (e.g. 4.4.7 on expiry)
    remote_mta: str = ""


def status_of(error: str) -> str:
    """The RFC 3463 status code of a reply or problem text: its enhanced code when it has one,
    else the reply code's class (``X.0.0``)."""
    found = _ENHANCED.search(error[:40])
    if found is not None:
        return ".".join(found.groups())
    reply = _REPLY.match(error)
    if reply is not None:
        return f"{reply.group(1)}.0.0"
    return "4.0.0"


def diagnostic_of(error: str) -> str:
    """The Diagnostic-Code value: ``smtp; <reply>`` for a next hop's reply, ``x-pobox; <text>``
    for a problem of pobox's own."""
    text = " ".join(error.split())
    if _REPLY.match(text):
        return f"smtp; {text}"
    return f"x-pobox; {text}"


def _address_type(address: str) -> str:
    return f"rfc822; {address}" if address.isascii() else f"utf-8; {address}"


def original_headers(content: bytes) -> bytes:
    """The header section of *content* (up to the empty line), CRLF line ends."""
    end = content.find(b"\r\n\r\n")
    if end < 0:
        end = content.find(b"\n\n")
    head = content if end < 0 else content[:end]
    head = head[:MAX_HEADER]
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    return b"".join(line + b"\r\n" for line in lines if line)


def _human(action: str, hostname: str, reports: Sequence[RecipientReport]) -> str:
    if action == ACTION_FAILED:
        lead = [
            f"This is the mail system at {hostname}.",
            "",
            "Your message could not be delivered to the recipients below. It has been",
            "given up on; the technical report follows.",
        ]
    else:
        lead = [
            f"This is the mail system at {hostname}.",
            "",
            "Your message has not been delivered yet to the recipients below. It is still",
            "being retried; you do not need to send it again. You will be told if it is",
            "given up on.",
        ]
    lines = [*lead, ""]
    for report in reports:
        lines.append(f"<{report.recipient}>: {' '.join(report.error.split())}")
    return "\r\n".join(lines) + "\r\n"


def build_report(
    *,
    hostname: str,
    original_sender: str,
    reports: Sequence[RecipientReport],
    content: bytes,
    arrival: float,
    now: float,
    retry_until: float | None = None,
    queue_id: str = "",
) -> bytes:
    """A notice for *original_sender* about *reports* (all of one action), as message bytes."""
    if not reports:
        raise ValueError("a delivery status notification needs a recipient")
    action = reports[0].action
    boundary = f"=_pobox_{secrets.token_hex(12)}"
    subject = (
        "Undelivered Mail Returned to Sender"
        if action == ACTION_FAILED
        else "Delayed Mail (still being retried)"
    )
    when = formatdate(now, localtime=False, usegmt=True)
    header = [
        f"From: Mail Delivery System <MAILER-DAEMON@{hostname}>",
        f"To: <{original_sender}>",
        f"Subject: {subject}",
        f"Date: {when}",
        f"Message-ID: <{secrets.token_hex(12)}@{hostname}>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "Content-Transfer-Encoding: 8bit",
    ]
    per_message = [f"Reporting-MTA: dns; {hostname}"]
    if queue_id:
        per_message.append(f"X-Pobox-Queue-ID: {queue_id}")
    per_message.append(f"Arrival-Date: {_date(arrival)}")
    groups = ["\r\n".join(per_message)]
    for report in reports:
        fields = [
            f"Final-Recipient: {_address_type(report.recipient)}",
            f"Action: {report.action}",
            f"Status: {report.status or status_of(report.error)}",
        ]
        if report.remote_mta:
            fields.append(f"Remote-MTA: dns; {report.remote_mta}")
        fields.append(f"Diagnostic-Code: {diagnostic_of(report.error)}")
        fields.append(f"Last-Attempt-Date: {_date(now)}")
        if report.action == ACTION_DELAYED and retry_until is not None:
            fields.append(f"Will-Retry-Until: {_date(retry_until)}")
        groups.append("\r\n".join(fields))
    status_part = "\r\n\r\n".join(groups) + "\r\n"
    body = (
        f"This is a MIME-formatted delivery status notification.\r\n"
        f"\r\n--{boundary}\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Description: Notification\r\n\r\n"
        f"{_human(action, hostname, reports)}"
        f"\r\n--{boundary}\r\n"
        f"Content-Type: message/delivery-status\r\n"
        f"Content-Description: Delivery report\r\n\r\n"
        f"{status_part}"
        f"\r\n--{boundary}\r\n"
        f"Content-Type: text/rfc822-headers\r\n"
        f"Content-Description: Undelivered message headers\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return ("\r\n".join(header) + "\r\n\r\n").encode() + body + original_headers(content) + tail


def _date(moment: float) -> str:
    return format_datetime(datetime.fromtimestamp(moment, UTC), usegmt=True)
