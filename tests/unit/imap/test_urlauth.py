"""URLAUTH (RFC 4467): its URLs, its commands' grammar, and the service's tokens and checks."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pobox.imap.capabilities import capabilities
from pobox.imap.grammar import CommandError, parse_command
from pobox.imap.imapurl import (
    UrlError,
    has_urlauth,
    parse_auth_url,
    parse_message_url,
    url_userid,
)
from pobox.imap.urlauth_grammar import (
    GenUrlAuth,
    GenUrlAuthResponse,
    ResetKey,
    UrlFetch,
    urlfetch_prefix,
)
from pobox.service.urlauth import UrlAuth, token
from pobox.store.api import Account, AccountId

RFC = "imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred"


def test_the_rfc_url_parts() -> None:
    full = parse_auth_url(RFC + ":internal:91354a473744909de610943775f92038", rump=False)
    assert full.rump == RFC  # exactly as written: no case-folding, no decoding
    assert (full.access, full.access_user, full.mechanism, full.token) == (
        "submit",
        "fred@example.com",  # a bare userid is at the URL's host
        "INTERNAL",
        "91354a473744909de610943775f92038",
    )
    assert full.owner == "joe@example.com"
    where = full.message
    assert (where.user, where.host, where.mailbox, where.uid, where.section) == (
        "joe",
        "example.com",
        "INBOX",
        20,
        "1.2",
    )
    rump = parse_auth_url(RFC, rump=True)
    assert rump.rump == RFC and rump.mechanism is None and rump.token is None


def test_expire_access_and_owner_forms() -> None:
    url = parse_auth_url(
        "imap://joe%40example.org@mail.example.org/INBOX;UIDVALIDITY=7/;UID=3/;PARTIAL=0.10"
        ";EXPIRE=2026-12-08T10:00:00.5+02:00;URLAUTH=USER+ann%40example.org",
        rump=True,
    )
    assert url.expire == dt.datetime(2026, 12, 8, 8, 0, 0, 500000, tzinfo=dt.UTC)
    assert (url.access, url.access_user) == ("user", "ann@example.org")
    assert (url.message.user, url.message.uidvalidity, url.message.partial) == (
        "joe@example.org",
        7,
        (0, 10),
    )
    # a raw "@" in the user is read up to the last one
    raw = parse_auth_url("imap://joe@example.org@host/INBOX/;UID=1;URLAUTH=anonymous", rump=True)
    assert (raw.owner, raw.message.host, raw.access) == ("joe@example.org", "host", "anonymous")
    ported = parse_auth_url("imap://joe@h:143/INBOX/;UID=1;URLAUTH=user+ann", rump=True)
    assert (ported.owner, ported.access_user) == ("joe@h", "ann@h")
    assert url_userid("joe", None) == "joe" and url_userid("a@b", "h") == "a@b"
    assert parse_auth_url(RFC.replace("submit+fred", "AuthUser"), rump=True).access == "authuser"


@pytest.mark.parametrize(
    ("url", "rump"),
    [
        ("imap://joe@h/INBOX/;UID=1", True),  # no URLAUTH
        ("/INBOX/;UID=1;URLAUTH=anonymous", True),  # relative
        ("imap://h/INBOX/;UID=1;URLAUTH=anonymous", True),  # no owner
        ("imap://joe@h/INBOX;URLAUTH=anonymous", True),  # a whole mailbox
        ("imap://joe@h/INBOX/;UID=1;URLAUTH=anonymous:internal:" + "a" * 32, True),
        ("imap://joe@h/INBOX/;UID=1;URLAUTH=anonymous", False),  # no token
        ("imap://joe@h/INBOX/;UID=1;URLAUTH=anonymous:internal:abc", False),  # short token
        ("imap://joe@h/INBOX/;UID=1;URLAUTH=anonymous:in/ternal:" + "a" * 32, False),
        ("imap://joe@h/INBOX/;UID=1;URLAUTH=anonymous:internal:" + "g" * 32, False),
        ("imap://joe@h/INBOX/;UID=1;URLAUTH=anyone", True),
        ("imap://joe@h/INBOX/;UID=1;URLAUTH=user+", True),
        ("imap://joe@h/INBOX/;UID=1;URLAUTH=user+a:b", True),
        ("imap://joe@h/INBOX/;UID=1;EXPIRE=2026-12-08;URLAUTH=authuser", True),
        ("imap://joe@h/INBOX/;UID=1;EXPIRE=2026-13-08T00:00:00Z;URLAUTH=authuser", True),
        ("imap://joe@h/INBOX/;UID=1;URLAUTH=authuser;URLAUTH=authuser", True),
    ],
)
def test_urls_refused(url: str, rump: bool) -> None:
    with pytest.raises(UrlError):
        parse_auth_url(url, rump=rump)


def test_plain_parsing_refuses_urlauth() -> None:
    assert has_urlauth(RFC) and not has_urlauth("/INBOX/;UID=1")
    with pytest.raises(UrlError):
        parse_message_url(RFC)


@given(st.text(max_size=80))
def test_any_text_parses_or_is_refused(text: str) -> None:
    for rump in (True, False):
        try:
            parse_auth_url(text, rump=rump)
        except UrlError:
            pass


def parse(line: bytes) -> object:
    return parse_command([line], [])


def test_the_commands() -> None:
    assert parse(b"a31 RESETKEY") == ResetKey("a31")
    assert parse(b"a32 RESETKEY inbox") == ResetKey("a32", b"INBOX")
    assert parse(b"a33 RESETKEY INBOX xsample internal") == ResetKey(
        "a33", b"INBOX", ("XSAMPLE", "INTERNAL")
    )
    assert parse(b'a777 GENURLAUTH "' + RFC.encode() + b'" INTERNAL') == GenUrlAuth(
        "a777", ((RFC.encode(), "INTERNAL"),)
    )
    assert parse(b"a1 GENURLAUTH u1 internal u2 X.Y-1") == GenUrlAuth(
        "a1", ((b"u1", "INTERNAL"), (b"u2", "X.Y-1"))
    )
    assert parse(b'a002 URLFETCH "u1" u2') == UrlFetch("a002", (b"u1", b"u2"))


@pytest.mark.parametrize(
    "line",
    [
        b"a RESETKEY ",
        b"a RESETKEY INBOX x+y",
        b"a GENURLAUTH",
        b"a GENURLAUTH url",
        b"a GENURLAUTH url INTERNAL url2",
        b"a URLFETCH",
        b"a URLFETCH ",
    ],
)
def test_malformed_commands_are_bad(line: bytes) -> None:
    with pytest.raises(CommandError):
        parse(line)


def test_the_responses() -> None:
    url = (RFC + ":internal:91354a473744909de610943775f92038").encode()
    assert GenUrlAuthResponse((url,)).render() == b'* GENURLAUTH "' + url + b'"\r\n'
    assert urlfetch_prefix(url, 28) == b'* URLFETCH "' + url + b'" {28}\r\n'
    assert urlfetch_prefix(b"bogus", None) == b'* URLFETCH "bogus" NIL\r\n'
    assert "URLAUTH" in capabilities(authenticated=True, append_limit=1)
    assert "URLAUTH" not in capabilities(authenticated=False, append_limit=1)


def test_the_token_is_hmac_sha256_of_the_rump() -> None:
    key = bytes(range(32))
    expected = "01" + hmac.new(key, RFC.encode(), hashlib.sha256).hexdigest()
    assert token(key, RFC) == expected and len(expected) == 66  # 01: the algorithm's number
    assert token(key, RFC.replace("fred", "Fred")) != expected


def _account(address: str) -> Account:
    return Account(AccountId(1), address, "")


def test_who_may_use_a_url() -> None:
    urlauth = UrlAuth(None, None, submitters=("Submit@example.org",))  # type: ignore[arg-type]
    fred, submit = _account("fred@example.org"), _account("submit@example.org")
    assert urlauth.permits(fred, "user", "Fred@example.org")
    assert not urlauth.permits(fred, "user", "ann@example.org")
    assert not urlauth.permits(fred, "submit", "fred@example.org")
    assert urlauth.permits(submit, "submit", "fred@example.org")
    assert urlauth.permits(fred, "authuser", None) and urlauth.permits(fred, "anonymous", None)
    assert not urlauth.permits(fred, "other", None)
