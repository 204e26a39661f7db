"""SEARCH / UID SEARCH arguments: ``search-key`` of RFC 9051 and RFC 3501, plus RFC 4731 RETURN
options, RFC 5182 ``$``, RFC 5032 OLDER/YOUNGER, RFC 7162 MODSEQ and RFC 8514's save dates."""

from __future__ import annotations

from collections.abc import Callable

from pobox.imap.commands import (
    Search,
    SearchAge,
    SearchAll,
    SearchAnd,
    SearchBody,
    SearchDate,
    SearchField,
    SearchFlag,
    SearchHeader,
    SearchKey,
    SearchModSeq,
    SearchNot,
    SearchObjectId,
    SearchOr,
    SearchSaveDateSupported,
    SearchSequence,
    SearchSize,
    SearchText,
    SearchUid,
    Sort,
    Thread,
)
from pobox.imap.context_grammar import parse_partial
from pobox.imap.lexer import MAX_DEPTH, ParseError, Reader

__all__ = ["parse_search"]

_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "SEEN": ("\\Seen", True),
    "RECENT": ("\\Recent", True),
    "OLD": ("\\Recent", False),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
}
_FIELD_KEYS = frozenset({"BCC", "CC", "FROM", "SUBJECT", "TO"})
_DATE_KEYS = {
    "BEFORE": ("BEFORE", False),
    "ON": ("ON", False),
    "SINCE": ("SINCE", False),
    "SENTBEFORE": ("BEFORE", True),
    "SENTON": ("ON", True),
    "SENTSINCE": ("SINCE", True),
}
_OBJECTID_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_SAVED_KEYS = {"SAVEDBEFORE": "BEFORE", "SAVEDON": "ON", "SAVEDSINCE": "SINCE"}
#: RFC 4731, RFC 5182 SAVE, RFC 5267 UPDATE and CONTEXT (PARTIAL takes a range: parsed apart)
_RETURN_OPTIONS = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE", "UPDATE", "CONTEXT"})
_ENTRY_TYPES = frozenset({"PRIV", "SHARED", "ALL"})


def parse_search(r: Reader, tag: str, uid: bool) -> Search:
    """After ``SEARCH``: ``[SP "RETURN" SP "(" opts ")"] [SP "CHARSET" SP astring] 1*(SP key)``."""
    r.sp()
    return_options: tuple[str, ...] | None = None
    partial: tuple[int, int] | None = None
    if r.try_expect(b"RETURN "):
        return_options, partial = _return_options(r, _RETURN_OPTIONS, "SEARCH")
        r.sp()
    charset: str | None = None
    if r.try_expect(b"CHARSET "):
        charset = r.astring("a charset").decode("ascii", "replace").upper()
        r.sp()
    key = parse_search_program(r)
    return Search(
        tag, uid=uid, key=key, charset=charset, return_options=return_options, partial=partial
    )


def _return_options(
    r: Reader, known: frozenset[str], command: str
) -> tuple[tuple[str, ...], tuple[int, int] | None]:
    """``"(" [opt *(SP opt)] ")"``: RFC 4731 options, RFC 5267's UPDATE and CONTEXT, and
    ``PARTIAL range`` (RFC 9394 §4). Each at most once; PARTIAL and ALL exclude each other."""
    partial: tuple[int, int] | None = None

    def option() -> str:
        nonlocal partial
        name = r.keyword("a RETURN option")
        if name == "PARTIAL":
            r.sp()
            partial = parse_partial(r)
        elif name not in known:
            raise ParseError(f"unknown {command} RETURN option {name}")
        return name

    opts = r.paren_list(option, allow_empty=True)
    if len(set(opts)) != len(opts):
        raise ParseError(f"a {command} RETURN option is repeated")
    if partial is not None and "ALL" in opts:
        raise ParseError("PARTIAL conflicts with ALL")
    return tuple(opts), partial


#: RFC 5256 §3 sort keys and RFC 5957's DISPLAYFROM / DISPLAYTO.
SORT_KEYS = frozenset(
    {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}
)
#: ESORT (RFC 5267 §3): the RETURN options of SORT.
_SORT_RETURN_OPTIONS = frozenset({"MIN", "MAX", "ALL", "COUNT", "UPDATE", "CONTEXT"})


def parse_sort(r: Reader, tag: str, uid: bool) -> Sort:
    """After ``SORT``: ``[SP "RETURN" SP "(" opts ")"] SP "(" sort-criteria ")" SP charset
    1*(SP search-key)`` (RFC 5256 §5, RFC 5267 §3)."""
    r.sp()
    return_options: tuple[str, ...] | None = None
    partial: tuple[int, int] | None = None
    if r.try_expect(b"RETURN "):
        return_options, partial = _return_options(r, _SORT_RETURN_OPTIONS, "SORT")
        r.sp()

    def criterion() -> tuple[str, bool]:
        name = r.keyword("a sort key")
        reverse = name == "REVERSE"
        if reverse:
            r.sp()
            name = r.keyword("a sort key")
        if name not in SORT_KEYS:
            raise ParseError(f"unknown sort key {name}")
        return name, reverse

    criteria = tuple(r.paren_list(criterion))
    r.sp()
    charset = r.astring("a charset").decode("ascii", "replace").upper()
    r.sp()
    key = parse_search_program(r)
    return Sort(
        tag,
        uid=uid,
        criteria=criteria,
        charset=charset,
        key=key,
        return_options=return_options,
        partial=partial,
    )


def parse_thread(r: Reader, tag: str, uid: bool) -> Thread:
    """After ``THREAD``: ``SP thread-alg SP search-criteria`` where the criteria start with
    the charset (RFC 5256 §5)."""
    r.sp()
    algorithm = r.atom("a threading algorithm").decode("ascii", "replace").upper()
    r.sp()
    charset = r.astring("a charset").decode("ascii", "replace").upper()
    r.sp()
    key = parse_search_program(r)
    return Thread(tag, uid=uid, algorithm=algorithm, charset=charset, key=key)


def parse_search_program(r: Reader) -> SearchKey:
    """``1*(SP search-key)`` to the end of the command (the first SP already read): one key,
    or the And of several."""
    keys = [parse_search_key(r, 0)]
    while r.try_sp():
        keys.append(parse_search_key(r, 0))
    r.end()
    return keys[0] if len(keys) == 1 else SearchAnd(tuple(keys))


def parse_search_key(r: Reader, depth: int) -> SearchKey:
    if depth > MAX_DEPTH:
        raise ParseError("search program nested too deeply")
    c = r.peek()
    if c == 0x28:  # "("
        return SearchAnd(tuple(r.paren_list(lambda: parse_search_key(r, depth + 1))))
    if c is not None and (0x30 <= c <= 0x39 or c in b"*$"):
        return SearchSequence(r.sequence_set())
    name = r.keyword("a search key")
    flag = _FLAG_KEYS.get(name)
    if flag is not None:
        return SearchFlag(*flag)
    if name == "ALL":
        return SearchAll()
    if name == "NEW":
        return SearchAnd((SearchFlag("\\Recent"), SearchFlag("\\Seen", present=False)))
    if name in _FIELD_KEYS:
        r.sp()
        return SearchField(name, r.astring())
    if name in ("BODY", "TEXT"):
        r.sp()
        value = r.astring()
        return SearchBody(value) if name == "BODY" else SearchText(value)
    if name in _DATE_KEYS:
        relation, sent = _DATE_KEYS[name]
        r.sp()
        return SearchDate(relation, r.date(), sent=sent)
    if name in _SAVED_KEYS:
        r.sp()
        return SearchDate(_SAVED_KEYS[name], r.date(), saved=True)
    if name == "SAVEDATESUPPORTED":
        return SearchSaveDateSupported()
    if name in ("EMAILID", "THREADID"):
        r.sp()
        objectid = r.atom("an object id")
        if len(objectid) > 255 or not all(c in _OBJECTID_CHARS for c in objectid):
            raise ParseError(f"invalid {name}")
        return SearchObjectId(name, objectid.decode("ascii"))
    parser = _KEY_PARSERS.get(name)
    if parser is None:
        raise ParseError(f"unknown search key {name}")
    return parser(r, depth)


def _header(r: Reader, depth: int) -> SearchKey:
    r.sp()
    name = r.astring("a header field name")
    r.sp()
    return SearchHeader(name, r.astring())


def _keyword(present: bool) -> Callable[[Reader, int], SearchKey]:
    def parse(r: Reader, depth: int) -> SearchKey:
        r.sp()
        return SearchFlag(r.flag(), present=present)

    return parse


def _size(larger: bool) -> Callable[[Reader, int], SearchKey]:
    def parse(r: Reader, depth: int) -> SearchKey:
        r.sp()
        return SearchSize(larger, r.number())

    return parse


def _age(older: bool) -> Callable[[Reader, int], SearchKey]:
    def parse(r: Reader, depth: int) -> SearchKey:
        r.sp()
        return SearchAge(older, r.nz_number())

    return parse


def _not(r: Reader, depth: int) -> SearchKey:
    r.sp()
    return SearchNot(parse_search_key(r, depth + 1))


def _or(r: Reader, depth: int) -> SearchKey:
    r.sp()
    left = parse_search_key(r, depth + 1)
    r.sp()
    return SearchOr(left, parse_search_key(r, depth + 1))


def _uid(r: Reader, depth: int) -> SearchKey:
    r.sp()
    return SearchUid(r.sequence_set())


def _modseq(r: Reader, depth: int) -> SearchKey:
    r.sp()
    entry_name: bytes | None = None
    entry_type: str | None = None
    if r.peek() == 0x22:
        entry_name = r.quoted()
        r.sp()
        entry_type = r.keyword("an entry type")
        if entry_type not in _ENTRY_TYPES:
            raise ParseError(f"invalid MODSEQ entry type {entry_type}")
        r.sp()
    return SearchModSeq(r.number(), entry_name, entry_type)


_KEY_PARSERS: dict[str, Callable[[Reader, int], SearchKey]] = {
    "HEADER": _header,
    "KEYWORD": _keyword(True),
    "UNKEYWORD": _keyword(False),
    "LARGER": _size(True),
    "SMALLER": _size(False),
    "OLDER": _age(True),
    "YOUNGER": _age(False),
    "NOT": _not,
    "OR": _or,
    "UID": _uid,
    "MODSEQ": _modseq,
}
