"""The address tokenizer takes runs of blanks, atom text and quoted text in one regex step each;
these tests hold it to the octet-by-octet reading of RFC 5322 §3.2 it replaced (kept below as
the reference), on address-like text of every shape."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pobox.mail.envelope import _SPECIALS, _tokenize, parse_address_list

_ATOM, _QSTR, _COMMENT, _SPECIAL, _DLIT = range(5)


def _reference(s: bytes) -> tuple[list[tuple[int, bytes]], set[int]]:
    toks: list[tuple[int, bytes]] = []
    spaced: set[int] = set()
    i, n = 0, len(s)
    while i < n:
        c = s[i : i + 1]
        if c in (b" ", b"\t", b"\r", b"\n"):
            spaced.add(len(toks))
            i += 1
        elif c == b'"':
            out = bytearray()
            i += 1
            while i < n:
                ch = s[i]
                if ch == 0x5C and i + 1 < n:
                    out.append(s[i + 1])
                    i += 2
                    continue
                if ch == 0x22:
                    i += 1
                    break
                if ch not in (0x0D, 0x0A):
                    out.append(ch)
                i += 1
            toks.append((_QSTR, bytes(out)))
        elif c == b"(":
            depth = 0
            out = bytearray()
            while i < n:
                ch = s[i]
                if ch == 0x5C and i + 1 < n:
                    out.append(s[i + 1])
                    i += 2
                    continue
                if ch == 0x28:
                    depth += 1
                    if depth > 1:
                        out.append(ch)
                elif ch == 0x29:
                    depth -= 1
                    if depth == 0:
                        i += 1
                        break
                    out.append(ch)
                elif ch not in (0x0D, 0x0A):
                    out.append(ch)
                i += 1
            toks.append((_COMMENT, bytes(out)))
        elif c == b"[":
            j = s.find(b"]", i)
            j = n if j < 0 else j + 1
            toks.append((_DLIT, s[i:j].replace(b"\r", b"").replace(b"\n", b"")))
            i = j
        elif c in _SPECIALS:
            toks.append((_SPECIAL, c))
            i += 1
        else:
            j = i
            while j < n and s[j : j + 1] not in _SPECIALS and s[j] not in (0x20, 0x09, 0x0D, 0x0A):
                j += 1
            toks.append((_ATOM, s[i:j]))
            i = j
    return toks, spaced


_PIECES = st.sampled_from(
    [
        b"a",
        b"joe",
        b"j.doe",
        b"x-y_z+tag",
        b"\xc3\xa9",
        b" ",
        b"\t",
        b"\r\n ",
        b'"',
        b"\\",
        b'"Doe, John"',
        b'"a\\"b"',
        b"(comment)",
        b"(a (nested) one)",
        b"<",
        b">",
        b"@",
        b",",
        b";",
        b":",
        b".",
        b"[1.2.3.4]",
        b"[",
        b"]",
        b"=?utf-8?q?J=C3=B6rg?=",
        b"example.org",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES, max_size=24).map(b"".join))
def test_tokens_are_those_of_the_octet_by_octet_reading(value: bytes) -> None:
    assert _tokenize(value) == _reference(value)


@given(st.binary(max_size=80))
def test_any_octets_tokenize_alike(value: bytes) -> None:
    assert _tokenize(value) == _reference(value)


def test_parsed_addresses_are_cached_and_immutable() -> None:
    value = b'"Doe, John" <john@example.org>, jane@example.org'
    first = parse_address_list(value)
    assert parse_address_list(value) is first
    assert isinstance(first, tuple)
    assert [a.mailbox for a in first] == [b"john", b"jane"]
