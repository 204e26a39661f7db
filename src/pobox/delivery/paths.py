"""MAIL FROM and RCPT TO arguments (RFC 5321 §4.1.2, RFC 6531 §3.3): sans-IO, no aiosmtpd.

:func:`parse_path` turns the text after ``FROM:``/``TO:`` into the mailbox and its ESMTP
parameters, or a :class:`PathError` carrying the reply to send:

* ``501 5.5.4`` — the argument is not a path: no angle brackets and not a bare mailbox either
  (``MAIL FROM:garbage``), unbalanced brackets, bad parameters. A bare ``local@domain`` without
  brackets is accepted, as Postfix and Dovecot accept it.
* ``553 5.1.7`` (sender) / ``553 5.1.3`` (recipient) — the brackets are there but what is inside
  is not a mailbox (``<garbage>``, ``<a@>``, ``<a..b@c>``), or it is too long (RFC 5321
  §4.5.3.1: 64 octets of local part, 255 of domain, 256 of path).
* ``553 5.6.7`` — a non-ASCII address in a transaction that did not announce SMTPUTF8
  (RFC 6531 §3.4); ``501 5.6.7`` — octets that are not UTF-8 at all.

A source route (``<@a,@b:user@c>``) is accepted and dropped (RFC 5321 §4.1.1.3). The recipient
``<Postmaster>`` without a domain (RFC 5321 §4.5.1) comes back as ``postmaster``; the session
makes it ``postmaster@`` the configured hostname.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

#: RFC 5321 §4.5.3.1: the longest local part, domain and path (with the brackets) accepted
MAX_LOCAL = 64
MAX_DOMAIN = 255
MAX_PATH = 256

_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
_UTF8 = "\u0080-\U0010ffff"
_DOT_STRING = re.compile(rf"[{_ATEXT}{_UTF8}]+(?:\.[{_ATEXT}{_UTF8}]+)*")
_QUOTED = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*"')
_LABEL = re.compile(rf"[A-Za-z0-9{_UTF8}](?:[A-Za-z0-9{_UTF8}-]*[A-Za-z0-9{_UTF8}])?")
_IPV4 = re.compile(
    r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}"
)
_IPV6 = re.compile(r"IPv6:[0-9A-Fa-f:.]{2,45}")
_GENERAL = re.compile(r"[A-Za-z0-9-]*[A-Za-z0-9]:[\x21-\x5a\x5e-\x7e]+")
_ROUTE = re.compile(r"@[^,:]+(?:,@[^,:]+)*:")
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_VALUE = re.compile(r"[\x21-\x3c\x3e-\x7e\u0080-\U0010ffff]+")


@dataclass(frozen=True, slots=True)
class PathError:
    """The reply for an argument that is not acceptable."""

    reply: str


@dataclass(frozen=True, slots=True)
class Path:
    #: ``local@domain`` as given (without brackets and source route); "" for ``<>``
    address: str
    #: ESMTP parameters, keywords upper-cased; a keyword without ``=`` has the value True
    params: dict[str, str | bool]


def _is_utf8(text: str) -> bool:
    """False when *text* holds lone surrogates: the client sent octets that are not UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_domain(domain: str) -> bool:
    """A domain name (dot-separated LDH labels, or U-labels) or an address literal."""
    if not domain or len(domain) > MAX_DOMAIN:
        return False
    if domain.startswith("[") and domain.endswith("]"):
        inner = domain[1:-1]
        if _IPV4.fullmatch(inner):
            return True
        if _IPV6.fullmatch(inner):
            try:
                ipaddress.IPv6Address(inner[5:])
            except ValueError:
                return False
            return True
        return _GENERAL.fullmatch(inner) is not None and not inner.startswith("IPv6:")
    labels = domain.split(".")
    return all(len(label) <= 63 and _LABEL.fullmatch(label) for label in labels)


def is_mailbox(address: str) -> bool:
    """``Local-part "@" ( Domain / address-literal )`` of RFC 5321 §4.1.2 (with RFC 6531's
    UTF-8), within the length limits."""
    local, at, domain = address.rpartition("@")
    if not at or not local or len(local.encode("utf-8", "surrogateescape")) > MAX_LOCAL:
        return False
    if not (_DOT_STRING.fullmatch(local) or _QUOTED.fullmatch(local)):
        return False
    return is_domain(domain)


def _params(text: str) -> dict[str, str | bool] | None:
    params: dict[str, str | bool] = {}
    for item in text.split():
        keyword, eq, value = item.partition("=")
        if not _KEYWORD.fullmatch(keyword) or (eq and not _VALUE.fullmatch(value)):
            return None
        params[keyword.upper()] = value if eq else True
    return params


def parse_path(arg: str, *, sender: bool, smtputf8: bool | None = None) -> Path | PathError:
    """Parse the text after ``FROM:`` (*sender*) or ``TO:``.

    *smtputf8* says whether the transaction announced SMTPUTF8 (None for MAIL FROM, whose own
    parameters say it).
    """
    bad = "5.1.7" if sender else "5.1.3"
    what = "sender" if sender else "recipient"
    syntax = f"501 5.5.4 Syntax: {'MAIL FROM' if sender else 'RCPT TO'}:<address>"
    if not _is_utf8(arg):
        return PathError(f"501 5.6.7 the {what} address is not valid UTF-8")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in arg.replace("\t", " ")):
        return PathError(syntax)
    arg = arg.strip(" \t")
    if arg.startswith("<"):
        end = arg.find(">")
        if end < 0:
            return PathError(syntax)
        if arg.startswith('<"'):  # a quoted local part may hold ">": find the quote's end
            quoted = _QUOTED.match(arg, 1)
            if quoted is not None:
                end = arg.find(">", quoted.end())
                if end < 0:
                    return PathError(syntax)
        inner, rest = arg[1:end], arg[end + 1 :]
        if rest and not rest.startswith((" ", "\t")):
            return PathError(syntax)
        if end + 1 > MAX_PATH:
            return PathError(f"553 {bad} the {what} address is too long")
        route = _ROUTE.match(inner)
        if route is not None:
            inner = inner[route.end() :]
        if not sender and inner.lower() == "postmaster":  # RFC 5321 §4.5.1: no domain
            address = "postmaster"
        elif inner == "" and route is None:
            if not sender:
                return PathError(f"553 {bad} a recipient address is needed")
            address = ""
        elif not is_mailbox(inner):
            return PathError(f"553 {bad} <{inner[:100]}>: invalid {what} address")
        else:
            address = inner
    else:
        bare, _, rest = arg.partition(" ")
        if not bare or "@" not in bare or not is_mailbox(bare):
            return PathError(syntax)
        address = bare
    params = _params(rest)
    if params is None:
        return PathError(f"501 5.5.4 invalid {'MAIL' if sender else 'RCPT'} parameters")
    announced = params.get("SMTPUTF8", False) is True if sender else bool(smtputf8)
    if not address.isascii() and not announced:
        return PathError(f"553 5.6.7 non-ASCII {what} address needs SMTPUTF8")
    return Path(address, params)


def domain_of(address: str) -> str:
    """The domain of ``local@domain``, lower-cased (address literals as written)."""
    return address.rpartition("@")[2].lower()
