"""The SMTP/LMTP words for a full mailbox (RFC 3463 X.2.2; docs/quota.md)."""

from __future__ import annotations

from pobox.delivery.replies import delivered, lmtp_data, smtp_data
from pobox.service.delivery import DeliveryResult

FULL = DeliveryResult("a@x.org", False, False, "full", over_quota=True)
FULL_FOR_NOW = DeliveryResult("a@x.org", False, True, "full", over_quota=True)
OK = DeliveryResult("b@x.org", True)


def test_lmtp_answers_each_recipient() -> None:
    assert delivered(FULL) == "552 5.2.2 <a@x.org>: mailbox full"
    assert delivered(FULL_FOR_NOW) == "452 4.2.2 <a@x.org>: mailbox full, try again later"
    assert lmtp_data([FULL, OK]).split("\r\n")[1].startswith("250 2.0.0 <b@x.org>")


def test_smtp_has_one_answer() -> None:
    assert smtp_data([FULL]) == "552 5.2.2 mailbox full"
    assert smtp_data([FULL_FOR_NOW]) == "452 4.2.2 mailbox full, try again later"
    # delivered to one, not the other: only "try again" keeps the full one's copy from being
    # lost (it is refused at RCPT next time when it is still full)
    assert smtp_data([FULL, OK]) == "452 4.2.2 mailbox full, try again later"
    assert smtp_data([OK]) == "250 2.0.0 OK"
