"""PARTIAL ranges (RFC 9394 §4), SEARCH/SORT RETURN options (RFC 5267), CANCELUPDATE and NOTIFY
(RFC 5465 §8): the sans-IO grammar."""

from __future__ import annotations

import pytest

from pobox.imap.commands import Search, Sort
from pobox.imap.context_grammar import CancelUpdate, apply_partial, partial_from_text
from pobox.imap.grammar import CommandError, parse_command
from pobox.imap.lexer import ParseError
from pobox.imap.notify_grammar import Notify


def parse(line: str) -> object:
    return parse_command([line.encode()], [])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1:100", (1, 100)),
        ("100:1", (1, 100)),
        ("-1:-100", (-1, -100)),
        ("-100:-1", (-1, -100)),
        ("4294967295:1", (1, 4294967295)),
    ],
)
def test_partial_ranges(text: str, expected: tuple[int, int]) -> None:
    assert partial_from_text(text.encode()) == expected


@pytest.mark.parametrize("text", ["0:5", "1:*", "-1:5", "5", "1:4294967296", "1:-1", ":5", "a:b"])
def test_bad_partial_ranges(text: str) -> None:
    with pytest.raises(ParseError):
        partial_from_text(text.encode())


@pytest.mark.parametrize(
    ("partial", "expected"),
    [
        ((1, 3), [10, 20, 30]),
        ((4, 9), [40, 50]),
        ((6, 9), []),
        ((-1, -2), [40, 50]),
        ((-5, -9), [10]),
        ((-6, -9), []),
        ((-1, -100), [10, 20, 30, 40, 50]),
    ],
)
def test_apply_partial(partial: tuple[int, int], expected: list[int]) -> None:
    assert apply_partial([10, 20, 30, 40, 50], partial) == expected


def test_search_and_sort_return_options() -> None:
    search = parse("a UID SEARCH RETURN (MIN PARTIAL -1:-10 UPDATE) UNSEEN")
    assert isinstance(search, Search)
    assert search.return_options == ("MIN", "PARTIAL", "UPDATE")
    assert search.partial == (-1, -10)
    sort = parse("a SORT RETURN (CONTEXT PARTIAL 5:1) (DATE) UTF-8 ALL")
    assert isinstance(sort, Sort)
    assert sort.partial == (1, 5)
    assert sort.return_options == ("CONTEXT", "PARTIAL")


@pytest.mark.parametrize(
    "line",
    [
        "a SEARCH RETURN (PARTIAL 1:5 ALL) ALL",
        "a SEARCH RETURN (UPDATE UPDATE) ALL",
        'a SEARCH RETURN (PARTIAL "1:5") ALL',
        "a SORT RETURN (SAVE) (DATE) UTF-8 ALL",
        "a CANCELUPDATE",
        "a CANCELUPDATE a1",
        'a CANCELUPDATE "a1" b1',
    ],
)
def test_bad_commands(line: str) -> None:
    with pytest.raises(CommandError):
        parse(line)


def test_cancelupdate() -> None:
    assert parse('a CANCELUPDATE "a1" "b 2"') == CancelUpdate("a", ("a1", "b 2"))


def test_notify() -> None:
    cmd = parse(
        "a NOTIFY SET STATUS (selected (MessageNew (UID BODY.PEEK[HEADER]) messageexpunge))"
        " (subtree (Work INBOX) (MessageNew MessageExpunge FlagChange MailboxName))"
        " (mailboxes Lists NONE)"
    )
    assert isinstance(cmd, Notify)
    assert cmd.status
    assert cmd.groups is not None
    selected, subtree, lists = cmd.groups
    assert selected.filter == "SELECTED"
    assert selected.events == ("MessageNew", "MessageExpunge")
    assert selected.fetch is not None and len(selected.fetch) == 2
    assert subtree.mailboxes == (b"Work", b"INBOX")
    assert subtree.events[-1] == "MailboxName"
    assert lists.mailboxes == (b"Lists",) and lists.events == ()
    assert parse("a NOTIFY NONE") == Notify("a", None)
    unknown = parse("a NOTIFY SET (PERSONAL (MessageNew MessageExpunge X-Future))")
    assert isinstance(unknown, Notify) and unknown.groups is not None
    assert unknown.groups[0].events[-1] == "X-Future"  # the handler answers NO [BADEVENT]


@pytest.mark.parametrize(
    "line",
    [
        "a NOTIFY",
        "a NOTIFY SET",
        "a NOTIFY SET (SELECTED (MessageNew))",
        "a NOTIFY SET (SELECTED (MessageExpunge))",
        "a NOTIFY SET (SELECTED (FlagChange))",
        "a NOTIFY SET (SELECTED (MessageNew MessageExpunge AnnotationChange FlagChange)) x",
        "a NOTIFY SET (PERSONAL (MessageNew (UID) MessageExpunge))",
        "a NOTIFY SET (SELECTED NONE) (SELECTED-DELAYED NONE)",
        "a NOTIFY SET (FOLDERS NONE)",
        "a NOTIFY SET (SUBTREE NONE)",
        "a NOTIFY SET (PERSONAL (MessageNew MessageNew MessageExpunge))",
        "a NOTIFY MAYBE",
    ],
)
def test_bad_notify(line: str) -> None:
    with pytest.raises(CommandError):
        parse(line)
