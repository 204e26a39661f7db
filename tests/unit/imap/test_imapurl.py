"""IMAP URLs of messages (RFC 5092) as CATENATE takes them (RFC 4469)."""

from __future__ import annotations

import pytest

from pobox.imap.imapurl import MessageUrl, UrlError, parse_message_url


def test_relative_urls_of_rfc_4469() -> None:
    assert parse_message_url("/Drafts;UIDVALIDITY=385759045/;UID=20/;section=1.MIME") == (
        MessageUrl("Drafts", 20, 385759045, "1.MIME")
    )
    assert parse_message_url("/Drafts;UIDVALIDITY=385759045/;UID=30") == MessageUrl(
        "Drafts", 30, 385759045
    )
    assert parse_message_url("/INBOX/;uid=7/;SECTION=HEADER/;partial=10.20") == MessageUrl(
        "INBOX", 7, None, "HEADER", (10, 20)
    )
    assert parse_message_url("/INBOX/;UID=7/;PARTIAL=5").partial == (5, None)


def test_mailbox_names_are_percent_decoded() -> None:
    assert parse_message_url("/Lists/Work%20Stuff/;UID=1").mailbox == "Lists/Work Stuff"
    assert parse_message_url("/Caf%C3%A9/;UID=1").mailbox == "Café"
    assert parse_message_url("/Caf&AOk-/;UID=1").mailbox == "Café"  # modified UTF-7 too
    section = parse_message_url("/INBOX/;UID=1/;SECTION=HEADER.FIELDS%20(Subject)").section
    assert section == "HEADER.FIELDS (Subject)"


def test_absolute_urls_keep_user_and_host() -> None:
    url = parse_message_url("imap://joe@example.org/INBOX;UIDVALIDITY=3/;UID=9")
    assert (url.user, url.host, url.mailbox, url.uid, url.uidvalidity) == (
        "joe",
        "example.org",
        "INBOX",
        9,
        3,
    )
    assert parse_message_url("imap://mail.example.org:143/INBOX/;UID=1").user is None


@pytest.mark.parametrize(
    "url",
    [
        "",
        "INBOX/;UID=1",
        "/INBOX",
        "/INBOX/;UID=0",
        "/INBOX/;UID=x",
        "/;UID=1",
        "/INBOX;FOO=1/;UID=1",
        "/INBOX/;UID=1/;URLAUTH=anonymous",
        "/INBOX/;SECTION=1/;UID=1",
        "/INBOX/;UID=1/;PARTIAL=a",
        "/INBOX/;UID=1/;SECTION=",
        "/INBOX?SUBJECT%20x",
        "/INBOX/;UID=99999999999",
        "/%FF/;UID=1",
        "imap://",
    ],
)
def test_urls_refused(url: str) -> None:
    with pytest.raises(UrlError):
        parse_message_url(url)
