"""RFC 5256 base subjects and the address keys of SORT (RFC 5256 §3, RFC 5957)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pobox.mail.sortkeys import (
    base_subject,
    base_subject_steps,
    collate,
    display_name,
    first_mailbox,
)


@pytest.mark.parametrize(
    ("subject", "base"),
    [
        ("Hello", "Hello"),
        ("Re: Hello", "Hello"),
        ("RE: re: Fwd: hello", "hello"),
        ("Re:Hello", "Hello"),
        ("Re [list]: Hello", "Hello"),  # subj-refwd may carry a blob before its colon
        ("[list] Re: Hello", "Hello"),  # leading blobs, then a leader
        ("[list] Hello", "Hello"),  # a blob goes when something is left
        ("[list]", "[list]"),  # ... and stays when nothing would be
        ("Hello (fwd)", "Hello"),
        ("Hello (FWD) (fwd)  ", "Hello"),
        ("[Fwd: Re: Hello]", "Hello"),  # the forward wrapper, then again from step 2
        ("[fwd: [fwd: Hello (fwd)]]", "Hello"),
        ("  Re:   lots\t of\r\n  space ", "lots of space"),
        ("Fw: Fwd: FW: x", "x"),
        ("Reply: not a leader", "Reply: not a leader"),
        ("", ""),
        ("Re:", ""),
    ],
)
def test_base_subject(subject: str, base: str) -> None:
    assert base_subject(subject) == base


def test_address_keys() -> None:
    assert first_mailbox("Alice Martin <alice@example.org>, bob@example.org") == "alice"
    assert first_mailbox("undisclosed-recipients:;") == "undisclosed-recipients"  # a group
    assert first_mailbox("") == ""
    assert display_name('"Zoë Ünal" <zoe@example.org>') == "Zoë Ünal"
    assert display_name("zoe@example.org") == "zoe@example.org"  # no name: the address
    assert collate("Zoë abc") == "ZOë ABC"  # i;ascii-casemap: ASCII letters only


@given(st.text(alphabet=st.sampled_from(list("reRfwdFWD[]():x \t\r\n")), max_size=30))
def test_the_shortcut_for_plain_subjects_changes_nothing(subject: str) -> None:
    assert base_subject(subject) == base_subject_steps(subject)


@pytest.mark.parametrize(
    ("field", "mailbox", "display"),
    [
        # the store writes groups out as "name: members;" (an empty group as "name:;")
        ("a: xx@xx.org, yy@yy.org;", "a", "a"),
        ("empty:;", "empty", "empty"),
        ("user2:blah@domain1.org;", "user2", "user2"),
        ("Undisclosed recipients:;", "Undisclosed recipients", "Undisclosed recipients"),
        # a display name with a colon is not a group
        ("Foo: Bar <a@b.c>", "a", "Foo: Bar"),
        ("Foo: Bar <a@b.c>, x: y@z.org;", "a", "Bar"),
    ],
)
def test_a_group_first_sorts_by_its_name(field: str, mailbox: str, display: str) -> None:
    # RFC 3501 §7.4.2: a group's start is an address whose mailbox name is the group name;
    # it is the field's first address for SORT FROM/TO/CC and DISPLAYFROM/DISPLAYTO
    assert first_mailbox(field) == mailbox
    assert display_name(field) == display
