"""Sort keys of RFC 5256 (SORT) and RFC 5957 (DISPLAYFROM, DISPLAYTO), from decoded header text.

Sans-IO. The store keeps each message's Subject, From, To and Cc decoded (RFC 2047) since
delivery; these functions turn them into what SORT compares, with the ``i;ascii-casemap``
collation (ASCII letters compared without case): :func:`collate`.
"""

from __future__ import annotations

import re
from email.utils import getaddresses
from functools import lru_cache

_WSP = re.compile(r"[ \t\r\n]+")
_TRAILER = re.compile(r"(?:[ \t]*\((?i:fwd)\))+[ \t]*$|[ \t]+$")
# subj-blob = "[" *BLOBCHAR "]" *WSP ; BLOBCHAR = any CHAR except "[" and "]"
_BLOB = r"\[[^\[\]]*\][ \t]*"
# subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
_LEADER = re.compile(rf"(?i:(?:{_BLOB})*(?:re|fwd?)[ \t]*(?:{_BLOB})?:)|[ \t]+")
_LEADING_BLOB = re.compile(_BLOB)
_FWD_WRAPPER = re.compile(r"^\[(?i:fwd):(.*)\]$", re.DOTALL)
#: A subject none of the steps changes: no leading white space, "[", "re" or "fw", no run of
#: white space or any but a plain space, and no trailing white space or ")".
_PLAIN = re.compile(r"(?![\[ ]|(?i:re|fw))(?:[^ \t\r\n]| (?! ))*(?<![ )])")
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def collate(text: str) -> str:
    """``i;ascii-casemap`` (RFC 4790): ASCII letters upper-cased, everything else as it is."""
    return text.translate(_ASCII_UPPER)


#: Distinct values remembered by each key function: senders and thread subjects repeat, so a
#: mailbox's keys are mostly computed once per distinct header, not once per message.
MEMO = 1 << 16


@lru_cache(maxsize=MEMO)
def base_subject(subject: str) -> str:
    """The base subject of RFC 5256 §2.1 (without the final collation)."""
    if _PLAIN.fullmatch(subject):  # nothing any step would remove: most subjects
        return subject
    return base_subject_steps(subject)


def base_subject_steps(subject: str) -> str:
    """RFC 5256 §2.1's steps one by one (:func:`base_subject` skips them when none applies)."""
    return subject_and_reply(subject)[0]


@lru_cache(maxsize=MEMO)
def subject_and_reply(subject: str) -> tuple[str, bool]:
    """The base subject, and whether extracting it removed a reply or forward mark (a
    ``Re:``/``Fwd:`` leader, a ``(fwd)`` trailer or a ``[fwd: ]`` wrapper): what THREAD=REFERENCES
    calls a reply or forward (RFC 5256 §2.2, step 6)."""
    reply = False
    text = _WSP.sub(" ", subject)  # (1) encoded words are decoded already; runs of WSP → SP
    while True:
        trimmed = _TRAILER.sub("", text)  # (2) trailing "(fwd)" and white space
        reply = reply or trimmed != text.rstrip(" \t")
        text = trimmed
        while True:
            before = text
            leader = _LEADER.match(text)
            if leader is not None:  # (3)
                reply = reply or bool(leader[0].strip(" \t"))
                text = text[leader.end() :]
            blob = _LEADING_BLOB.match(text)
            if blob is not None and text[blob.end() :]:  # (4) a blob, unless all that is left
                text = text[blob.end() :]
            if text == before:  # (5) until neither changes anything
                break
        wrapper = _FWD_WRAPPER.match(text)  # (6) "[fwd: ...]" around the rest
        if wrapper is None:
            return text, reply
        reply = True
        text = wrapper[1]


_SIMPLE = re.compile(r'"?([^"<>,@]*?)"?\s*<([^<>,"\s]+)>|([^<>,"\s]+@[^<>,"\s]+)')
# a group first (``name: a@b, c@d;`` or ``name:;``, as the store writes address fields out)
_GROUP = re.compile(r"\s*([^<>@,:;\"]*?)\s*:[^;:]*;")


@lru_cache(maxsize=MEMO)
def _first(field: str) -> tuple[str, str]:
    """(display name, addr-spec) of the first address in a decoded address header.

    When the field starts with a group, its first address is the group's start, whose only
    name is the group name (in an ENVELOPE it is the mailbox name of that entry, RFC 3501
    §7.4.2): it stands for both, as in Dovecot."""
    if not field:
        return "", ""
    group = _GROUP.match(field)
    if group is not None:
        return group[1], group[1]
    simple = _SIMPLE.fullmatch(field.strip())
    if simple is not None:  # the usual one address, `Name <a@b>` or `a@b`: no full parse
        if simple[3] is not None:
            return "", simple[3]
        return simple[1].strip(), simple[2]
    for name, address in getaddresses([field]):
        if name or address:
            return name, address
    return "", ""


def first_mailbox(field: str) -> str:
    """RFC 5256 FROM/TO/CC: the addr-mailbox (local part) of the first address; "" if none."""
    address = _first(field)[1]
    return address.rpartition("@")[0] or address


def display_name(field: str) -> str:
    """RFC 5957 DISPLAYFROM/DISPLAYTO: the first address's display name, else its addr-spec."""
    name, address = _first(field)
    return name.strip() or address
