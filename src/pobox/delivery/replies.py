"""Every SMTP/LMTP reply pobox builds, in one place (RFC 5321 codes, RFC 3463 enhanced codes)."""

from __future__ import annotations

from pobox.service.delivery import DeliveryResult

OK = "250 2.0.0 OK"
RCPT_OK = "250 2.1.5 OK"
NO_SUCH_USER = "550 5.1.1 <{}>: no such user here"
BAD_ADDRESS = "501 5.1.3 bad recipient address syntax"
TOO_MANY_RECIPIENTS = "452 4.5.3 too many recipients"
TEMPORARY = "451 4.3.0 temporary failure, please try again later"
#: RFC 3463 X.2.2: mailbox full (docs/quota.md); 452 when [quota] over_quota_tempfail
MAILBOX_FULL = "552 5.2.2 <{}>: mailbox full"
MAILBOX_FULL_TEMPORARY = "452 4.2.2 <{}>: mailbox full, try again later"


def delivered(result: DeliveryResult, queue_hint: str = "") -> str:
    if result.delivered:
        return f"250 2.0.0 <{result.recipient}> delivered{queue_hint}"
    if result.over_quota:
        return (MAILBOX_FULL_TEMPORARY if result.temporary else MAILBOX_FULL).format(
            result.recipient
        )
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
    if any(r.temporary and not r.over_quota for r in results):
        return TEMPORARY
    full = [r for r in results if r.over_quota]
    if full:
        # some delivered, or only for now: the client tries again, and a recipient still full
        # is refused at RCPT then (as for any temporary failure, the others get it twice)
        if len(full) < len(results) or any(r.temporary for r in full):
            return "452 4.2.2 mailbox full, try again later"
        return "552 5.2.2 mailbox full"
    return "554 5.0.0 no recipient could be delivered"


RELAY_DENIED = "554 5.7.1 <{}>: relay access denied"
AUTH_NOT_OFFERED = "502 5.5.1 AUTH is not offered here: submit mail on the submission port"
SENDER_OK = "250 2.1.0 OK"

#: RFC 3463 codes for replies that came without one (aiosmtpd's own), by basic code
_ENHANCED_DEFAULTS = {
    "221": "2.0.0",
    "250": "2.0.0",
    "252": "2.0.0",
    "421": "4.3.0",
    "450": "4.2.0",
    "451": "4.3.0",
    "452": "4.3.1",
    "454": "4.7.0",
    "500": "5.5.2",
    "501": "5.5.4",
    "502": "5.5.1",
    "503": "5.5.1",
    "504": "5.5.4",
    "530": "5.7.0",
    "535": "5.7.8",
    "538": "5.7.11",
    "550": "5.0.0",
    "552": "5.3.4",
    "553": "5.1.0",
    "554": "5.0.0",
    "555": "5.5.4",
}


def _has_enhanced(text: str) -> bool:
    head = text.split(" ", 1)[0].split(".")
    return len(head) == 3 and head[0] in ("2", "4", "5") and all(p.isdigit() for p in head[1:])


def enhance(status: str) -> str:
    """Give every 2xx/4xx/5xx line of *status* an enhanced status code (RFC 2034: once
    ENHANCEDSTATUSCODES is advertised, all such replies but the greeting and the EHLO/LHLO
    answer carry one). Lines that have one, and 3xx lines, are left as they are."""
    out = []
    for line in status.split("\r\n"):
        code, sep, text = line[:3], line[3:4], line[4:]
        if (
            len(line) >= 3
            and code.isdigit()
            and code[0] in "245"
            and sep in ("", " ", "-")
            and not _has_enhanced(text)
        ):
            default = _ENHANCED_DEFAULTS.get(code, f"{code[0]}.0.0")
            line = f"{code}{sep or ' '}{default} {text}".rstrip()
        out.append(line)
    return "\r\n".join(out)
