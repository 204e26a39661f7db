"""Every SMTP/LMTP reply pobox builds, in one place (RFC 5321 codes, RFC 3463 enhanced codes)."""

from __future__ import annotations

from pobox.service.delivery import DeliveryResult

OK = "250 2.0.0 OK"
RCPT_OK = "250 2.1.5 OK"
NO_SUCH_USER = "550 5.1.1 <{}>: no such user here"
BAD_ADDRESS = "501 5.1.3 bad recipient address syntax"
TOO_MANY_RECIPIENTS = "452 4.5.3 too many recipients"
TEMPORARY = "451 4.3.0 temporary failure, please try again later"


def delivered(result: DeliveryResult, queue_hint: str = "") -> str:
    if result.delivered:
        return f"250 2.0.0 <{result.recipient}> delivered{queue_hint}"
    if result.temporary:
        return f"451 4.3.0 <{result.recipient}> temporary failure, try again later"
    return NO_SUCH_USER.format(result.recipient)


def lmtp_data(results: list[DeliveryResult]) -> str:
    """RFC 2033 §4.2: one reply per accepted recipient, in RCPT order."""
    return "\r\n".join(delivered(r) for r in results)


def smtp_data(results: list[DeliveryResult]) -> str:
    """SMTP has one reply for all recipients: any temporary failure makes the client retry."""
    if all(r.delivered for r in results):
        return OK
    if any(r.temporary for r in results):
        return TEMPORARY
    return "554 5.0.0 no recipient could be delivered"
