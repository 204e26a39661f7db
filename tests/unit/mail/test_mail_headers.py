from __future__ import annotations

from pobox.mail.headers import (
    decode_rfc2047,
    decode_rfc2231_value,
    join_rfc2231,
    parse_content_type,
    parse_disposition,
    parse_language,
    split_fields,
    unfold,
)


def test_split_fields_keeps_folds_and_strips_leading_blanks() -> None:
    block = b"Subject:   hello\r\n  world\r\nX-No-Colon\r\nTo: a@b\r\n\r\n"
    assert split_fields(block) == [
        (b"Subject", b"hello\r\n  world"),
        (b"X-No-Colon", b""),
        (b"To", b"a@b"),
    ]


def test_split_fields_lf_and_stops_at_blank_line() -> None:
    assert split_fields(b"A: 1\nB : 2\n\nC: 3\n") == [(b"A", b"1"), (b"B", b"2")]


def test_unfold() -> None:
    assert unfold(b"a\r\n b\n\tc") == b"a b\tc"


def test_rfc2047_b_and_q() -> None:
    assert decode_rfc2047(b"=?utf-8?B?SsO2cmc=?= <j@x>") == "Jörg <j@x>"
    assert decode_rfc2047(b"=?iso-8859-1?Q?Fran=E7ois_B?=") == "François B"


def test_rfc2047_adjacent_words_join_and_plain_text_kept() -> None:
    value = b"=?utf-8?Q?a?= =?utf-8?Q?b?= plain =?utf-8?Q?c?="
    assert decode_rfc2047(value) == "ab plain c"


def test_rfc2047_bad_input_is_kept() -> None:
    assert decode_rfc2047(b"=?x-unknown?Q?abc?=") == "abc"
    assert decode_rfc2047(b"=?utf-8?B?***?=") == "=?utf-8?B?***?="
    assert decode_rfc2047(b"caf\xe9") == "café"
    assert decode_rfc2047(b"caf\xc3\xa9") == "café"


def test_content_type_basic() -> None:
    assert parse_content_type(b'TEXT/Plain; Charset="UTF-8"; format=flowed') == (
        b"TEXT",
        b"Plain",
        [(b"Charset", b"UTF-8"), (b"format", b"flowed")],
    )


def test_content_type_oddities() -> None:
    assert parse_content_type(b"text") == (b"text", b"", [])
    assert parse_content_type(b";charset=x") is None
    # junk ends parameter parsing, as in Dovecot
    assert parse_content_type(b'text/plain; charset=""; broken; x="y"') == (
        b"text",
        b"plain",
        [(b"charset", b"")],
    )
    assert parse_content_type(b'a/b; x="q\\"uote"') == (b"a", b"b", [(b"x", b'q"uote')])
    assert parse_content_type(b"a/b (comment) ; x = (c) y") == (b"a", b"b", [(b"x", b"y")])


def test_rfc2231_joining_like_dovecot() -> None:
    assert join_rfc2231([(b"name*0", b"a"), (b"name*1", b"b.txt")]) == [(b"name", b"ab.txt")]
    assert join_rfc2231(
        [(b"x", b"1"), (b"name*0*", b"utf-8''%E2%82"), (b"name*1*", b"%AC"), (b"name*2", b".t%")]
    ) == [(b"x", b"1"), (b"name*", b"utf-8''%E2%82%AC.t%25")]
    assert join_rfc2231([(b"name*0", b"a b"), (b"name*1*", b"%41")]) == [(b"name*", b"''a b%41")]
    assert join_rfc2231([(b"filename*", b"utf-8''%E2%82%AC")]) == [
        (b"filename*", b"utf-8''%E2%82%AC")
    ]
    # a gap ends the value
    assert join_rfc2231([(b"n*0", b"a"), (b"n*2", b"c")]) == [(b"n", b"a")]


def test_rfc2231_decode() -> None:
    assert decode_rfc2231_value(b"utf-8''%E2%82%AC.txt") == "€.txt"
    assert decode_rfc2231_value(b"iso-8859-1'de'F%FC%DFe") == "Füße"
    assert decode_rfc2231_value(b"''a%20b") == "a b"


def test_disposition_and_language() -> None:
    assert parse_disposition(b"attachment; filename=a.txt") == (
        b"attachment",
        [(b"filename", b"a.txt")],
    )
    assert parse_disposition(b"") is None
    assert parse_language(b"en-US,   de (comment), fr") == [b"en-US", b"de", b"fr"]
