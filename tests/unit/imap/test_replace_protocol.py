"""REPLACE and UID REPLACE (RFC 8508) stream their message like APPEND (sans-IO protocol)."""

from __future__ import annotations

from tests.unit.imap.test_protocol import merge_append_data, run

from pobox.imap.protocol import AppendAborted, AppendData, AppendEnd, AppendStart, BadCommand


def test_replace_streams_its_message() -> None:
    events = merge_append_data(run(b"a1 REPLACE 4 Drafts (\\Seen \\Draft) {5+}\r\nHello\r\n"))
    start, data, end = events
    assert isinstance(start, AppendStart)
    assert (start.replace, start.uid, start.command) == ("4", False, "REPLACE")
    assert (start.mailbox, start.flags, start.size) == (b"Drafts", ("\\Seen", "\\Draft"), 5)
    assert data == AppendData(b"Hello") and end == AppendEnd("a1")


def test_uid_replace_with_star_and_a_date() -> None:
    line = b'a2 uid replace * "Sent Items" "07-Feb-1994 22:43:04 -0800" {3+}\r\nabc\r\n'
    start = run(line)[0]
    assert isinstance(start, AppendStart)
    assert (start.replace, start.uid, start.command) == ("*", True, "UID REPLACE")
    assert start.mailbox == b"Sent Items" and start.internal_date is not None


def test_replace_takes_one_message() -> None:
    events = run(b"a3 REPLACE 1 INBOX {1+}\r\nx {1+}\r\ny\r\na4 NOOP\r\n")
    assert isinstance(events[0], AppendStart)
    aborted = [e for e in events if isinstance(e, AppendAborted)]
    assert aborted and aborted[0].tag == "a3" and "one message" in aborted[0].text
    assert not any(isinstance(e, AppendEnd) for e in events)


def test_replace_without_a_literal_or_number() -> None:
    (bad,) = run(b"a5 REPLACE 1 INBOX\r\n")
    assert isinstance(bad, BadCommand) and "needs a message literal" in bad.text
    (bad,) = run(b"a6 UID REPLACE 1 INBOX\r\n")
    assert isinstance(bad, BadCommand) and "needs a message literal" in bad.text
    (bad,) = run(b"a7 REPLACE 0 INBOX {1}\r\n")
    assert isinstance(bad, BadCommand) and bad.tag == "a7"
