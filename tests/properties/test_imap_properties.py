"""Hypothesis properties of the IMAP protocol layer (research/aesthetics.md §4.5).

1. A generated command, written by a client-side encoder, parses back equal.
2. Arbitrary bytes only ever produce events, never exceptions.
3. The same input split at arbitrary points yields the same events.
4. Modified UTF-7 round-trips any mailbox name.
5. Sequence sets round-trip through format/parse, and resolve() agrees with a naive model.
"""

from __future__ import annotations

import datetime as dt
import os
import random

from hypothesis import example, given, settings
from hypothesis import strategies as st

from pobox.imap import mutf7
from pobox.imap.commands import (
    Authenticate,
    Capability,
    Check,
    Close,
    Command,
    Copy,
    Create,
    Delete,
    Enable,
    Examine,
    Expunge,
    Fetch,
    FetchAttribute,
    FetchBinary,
    FetchBinarySize,
    FetchBody,
    FetchSimple,
    Id,
    Idle,
    List,
    Login,
    Logout,
    Lsub,
    Move,
    Namespace,
    Noop,
    Parameter,
    Rename,
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
    SearchOr,
    SearchSequence,
    SearchSize,
    SearchText,
    SearchUid,
    Select,
    StartTls,
    Status,
    Store,
    StoreMode,
    Subscribe,
    Unselect,
    Unsubscribe,
)
from pobox.imap.protocol import (
    AppendData,
    AppendStart,
    AuthenticateResponse,
    CommandReceived,
    ContinuationNeeded,
    Event,
    ImapLimits,
    ImapServerProtocol,
    NeedData,
)
from pobox.imap.sequences import SequenceSet

# POBOX_HYPOTHESIS_SCALE=10 runs ten times the examples (longer local or nightly runs).
SCALE = int(os.environ.get("POBOX_HYPOTHESIS_SCALE", "1"))
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

# --------------------------------------------------------------------------- a client-side encoder


class Encoder:
    """Writes commands the way assorted clients do: random keyword case, and strings as atoms,
    quoted strings or (synchronizing or not) literals."""

    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd

    def kw(self, word: str) -> bytes:
        return self.rnd.choice([word.upper(), word.lower(), word.capitalize()]).encode()

    def astring(self, data: bytes) -> bytes:
        atom_ok = (
            bool(data)
            and all(c > 0x20 and c < 0x7F and c not in b'(){%*"\\' for c in data)
            and data.upper() != b"NIL"
        )
        quote_ok = all(0x20 <= c < 0x7F for c in data)
        choices = ["literal"]
        if atom_ok:
            choices.append("atom")
        if quote_ok:
            choices.append("quoted")
        how = self.rnd.choice(choices)
        if how == "atom":
            return data
        if how == "quoted":
            return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
        plus = self.rnd.choice([b"", b"+"])
        return b"{%d%s}\r\n%s" % (len(data), plus, data)

    def string(self, data: bytes) -> bytes:
        out = self.astring(data)
        return out if out[:1] in (b'"', b"{") else b'"' + data + b'"'

    def flag(self, flag: str) -> bytes:
        if flag.startswith("\\") and self.rnd.random() < 0.5:
            return flag.lower().encode()
        return flag.encode()

    def flags(self, flags: tuple[str, ...]) -> bytes:
        return b"(" + b" ".join(self.flag(f) for f in flags) + b")"

    def date(self, day: dt.date) -> bytes:
        text = f"{day.day}-{MONTHS[day.month - 1]}-{day.year:04d}".encode()
        return b'"' + text + b'"' if self.rnd.random() < 0.5 else text

    def key(self, key: SearchKey) -> bytes:
        match key:
            case SearchAll():
                return self.kw("ALL")
            case SearchFlag(flag, present):
                names = {v: k for k, v in _FLAG_KEYS.items()}
                if (flag, present) in names:
                    return self.kw(names[(flag, present)])
                return self.kw("KEYWORD" if present else "UNKEYWORD") + b" " + self.flag(flag)
            case SearchField(field, value):
                return self.kw(field) + b" " + self.astring(value)
            case SearchHeader(name, value):
                return self.kw("HEADER") + b" " + self.astring(name) + b" " + self.astring(value)
            case SearchBody(value):
                return self.kw("BODY") + b" " + self.astring(value)
            case SearchText(value):
                return self.kw("TEXT") + b" " + self.astring(value)
            case SearchDate(relation, day, sent):
                return self.kw(("SENT" if sent else "") + relation) + b" " + self.date(day)
            case SearchSize(larger, size):
                return self.kw("LARGER" if larger else "SMALLER") + b" %d" % size
            case SearchAge(older, seconds):
                return self.kw("OLDER" if older else "YOUNGER") + b" %d" % seconds
            case SearchSequence(seqs):
                return seqs.format().encode()
            case SearchUid(seqs):
                return self.kw("UID") + b" " + seqs.format().encode()
            case SearchModSeq(modseq, None, None):
                return self.kw("MODSEQ") + b" %d" % modseq
            case SearchNot(inner):
                return self.kw("NOT") + b" " + self.key(inner)
            case SearchOr(left, right):
                return self.kw("OR") + b" " + self.key(left) + b" " + self.key(right)
            case SearchAnd(keys):
                return b"(" + b" ".join(self.key(k) for k in keys) + b")"
        raise AssertionError(key)

    def fetch_att(self, att: FetchAttribute) -> bytes:
        partial = b""
        match att:
            case FetchSimple(name):
                return self.kw(name)
            case FetchBody(peek, _, _, _, part, section):
                if part is not None:
                    partial = b"<%d.%d>" % part
                return self.kw("BODY.PEEK" if peek else "BODY") + b"[" + section + b"]" + partial
            case FetchBinary(peek, _, part, section):
                if part is not None:
                    partial = b"<%d.%d>" % part
                return (
                    self.kw("BINARY.PEEK" if peek else "BINARY") + b"[" + section + b"]" + partial
                )
            case FetchBinarySize(_, section):
                return self.kw("BINARY.SIZE") + b"[" + section + b"]"
        raise AssertionError(att)

    def params(self, params: tuple[Parameter, ...]) -> bytes:
        items = []
        for p in params:
            items.append(self.kw(p.name) + (b"" if p.value is None else b" " + _ext(p.value)))
        return b"(" + b" ".join(items) + b")"

    def command(self, cmd: Command) -> bytes:
        t = cmd.tag.encode()
        uid = self.kw("UID") + b" " if getattr(cmd, "uid", False) else b""
        match cmd:
            case Capability() | Noop() | Logout() | Check() | Close() | Unselect() | Namespace():
                return t + b" " + self.kw(cmd.NAME)
            case Expunge(_, None):
                return t + b" " + self.kw("EXPUNGE")
            case Expunge(_, seqs) if seqs is not None:
                return (
                    t
                    + b" "
                    + self.kw("UID")
                    + b" "
                    + self.kw("EXPUNGE")
                    + b" "
                    + seqs.format().encode()
                )
            case Login(_, user, password):
                return (
                    t
                    + b" "
                    + self.kw("LOGIN")
                    + b" "
                    + self.astring(user)
                    + b" "
                    + self.astring(password)
                )
            case Enable(_, caps):
                return t + b" " + self.kw("ENABLE") + b"".join(b" " + c.encode() for c in caps)
            case (
                Select(_, mailbox, params)
                | Examine(_, mailbox, params)
                | Create(_, mailbox, params)
            ):
                out = t + b" " + self.kw(cmd.NAME) + b" " + self.astring(mailbox)
                return out + (b" " + self.params(params) if params else b"")
            case Delete(_, mailbox) | Subscribe(_, mailbox) | Unsubscribe(_, mailbox):
                return t + b" " + self.kw(cmd.NAME) + b" " + self.astring(mailbox)
            case Rename(_, old, new, ()):
                return (
                    t
                    + b" "
                    + self.kw("RENAME")
                    + b" "
                    + self.astring(old)
                    + b" "
                    + self.astring(new)
                )
            case Status(_, mailbox, items):
                body = b" ".join(self.kw(i) for i in items)
                return (
                    t
                    + b" "
                    + self.kw("STATUS")
                    + b" "
                    + self.astring(mailbox)
                    + b" ("
                    + body
                    + b")"
                )
            case Lsub(_, ref, pattern):
                return (
                    t
                    + b" "
                    + self.kw("LSUB")
                    + b" "
                    + self.astring(ref)
                    + b" "
                    + self.string(pattern)
                )
            case List(_, ref, patterns, selection, return_options, status_items, extended):
                out = t + b" " + self.kw("LIST")
                if extended:
                    out += b" (" + b" ".join(self.kw(s) for s in selection) + b")"
                out += b" " + self.astring(ref) + b" "
                if extended:
                    out += b"(" + b" ".join(self.string(p) for p in patterns) + b")"
                    opts = [self.kw(o) for o in return_options]
                    if status_items is not None:
                        opts.append(
                            self.kw("STATUS")
                            + b" ("
                            + b" ".join(self.kw(s) for s in status_items)
                            + b")"
                        )
                    out += b" " + self.kw("RETURN") + b" (" + b" ".join(opts) + b")"
                else:
                    out += self.string(patterns[0])
                return out
            case Copy(_, _, seqs, mailbox) | Move(_, _, seqs, mailbox):
                return (
                    t
                    + b" "
                    + uid
                    + self.kw(cmd.NAME)
                    + b" "
                    + seqs.format().encode()
                    + b" "
                    + self.astring(mailbox)
                )
            case Store(_, _, seqs, mode, silent, flags, modifiers):
                out = t + b" " + uid + self.kw("STORE") + b" " + seqs.format().encode()
                if modifiers:
                    out += b" " + self.params(modifiers)
                item = (
                    mode.value.encode() + self.kw("FLAGS") + (self.kw(".SILENT") if silent else b"")
                )
                return out + b" " + item + b" " + self.flags(flags)
            case Fetch(_, _, seqs, atts, modifiers):
                out = t + b" " + uid + self.kw("FETCH") + b" " + seqs.format().encode() + b" "
                if len(atts) == 1 and self.rnd.random() < 0.5:
                    out += self.fetch_att(atts[0])
                else:
                    out += b"(" + b" ".join(self.fetch_att(a) for a in atts) + b")"
                return out + (b" " + self.params(modifiers) if modifiers else b"")
            case Search(_, _, key, charset, return_options):
                out = t + b" " + uid + self.kw("SEARCH")
                if return_options is not None:
                    out += (
                        b" "
                        + self.kw("RETURN")
                        + b" ("
                        + b" ".join(self.kw(o) for o in return_options)
                        + b")"
                    )
                if charset is not None:
                    out += b" " + self.kw("CHARSET") + b" " + charset.encode()
                if isinstance(key, SearchAnd) and self.rnd.random() < 0.5 and len(key.keys) > 1:
                    # several top-level keys are an implicit AND
                    return out + b" " + b" ".join(self.key(k) for k in key.keys)
                return out + b" " + self.key(key)
            case Id(_, None):
                return t + b" " + self.kw("ID") + b" NIL"
            case Id(_, params) if params is not None:
                pairs: list[bytes] = []
                for k, v in params:
                    pairs.append(self.string(k.encode()))
                    pairs.append(b"NIL" if v is None else self.string(v.encode()))
                return t + b" " + self.kw("ID") + b" (" + b" ".join(pairs) + b")"
        raise AssertionError(cmd)


def _ext(value: bytes | tuple[object, ...]) -> bytes:
    if isinstance(value, bytes):
        return value
    return b"(" + b" ".join(_ext(v) for v in value) + b")"  # type: ignore[arg-type]


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

# --------------------------------------------------------------------------- strategies

ATOM = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.$",
    min_size=1,
    max_size=12,
)
TAG = ATOM.filter(lambda s: s.upper() not in ("NIL",))
ANY_BYTES = st.binary(max_size=30).filter(lambda b: b"\x00" not in b)
MAILBOX = ANY_BYTES.map(lambda b: b"INBOX" if b.upper() == b"INBOX" else b)
NUMBER = st.integers(min_value=1, max_value=0xFFFFFFFF)
BOUND = st.one_of(NUMBER, st.none())
SEQSET = st.one_of(
    st.lists(st.tuples(BOUND, BOUND), min_size=1, max_size=5).map(lambda r: SequenceSet(tuple(r))),
    st.just(SequenceSet(saved=True)),
)
SYSTEM_FLAG = st.sampled_from(["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"])
FLAG = st.one_of(SYSTEM_FLAG, ATOM.filter(lambda s: s.upper() != "NIL"))
DATE = st.dates(min_value=dt.date(1000, 1, 1), max_value=dt.date(9999, 12, 31))
LABEL = st.from_regex(r"\A[A-Z][A-Z0-9.-]{0,10}\Z")  # tagged-ext-label
PARAM_VALUE = st.one_of(
    st.integers(min_value=0, max_value=2**63 - 1).map(lambda n: str(n).encode()),
    st.lists(
        st.integers(min_value=0, max_value=10**9).map(lambda n: str(n).encode()), max_size=3
    ).map(tuple),
)
PARAMS = st.lists(
    st.builds(Parameter, LABEL, st.one_of(st.none(), PARAM_VALUE)), min_size=1, max_size=3
).map(tuple)

SEARCH_KEY: st.SearchStrategy[SearchKey] = st.recursive(
    st.one_of(
        st.just(SearchAll()),
        st.builds(SearchFlag, FLAG, st.booleans()),
        st.builds(SearchField, st.sampled_from(["BCC", "CC", "FROM", "SUBJECT", "TO"]), ANY_BYTES),
        st.builds(SearchHeader, ATOM.map(str.encode), ANY_BYTES),
        st.builds(SearchBody, ANY_BYTES),
        st.builds(SearchText, ANY_BYTES),
        st.builds(SearchDate, st.sampled_from(["BEFORE", "ON", "SINCE"]), DATE, st.booleans()),
        st.builds(SearchSize, st.booleans(), st.integers(min_value=0, max_value=2**40)),
        st.builds(SearchAge, st.booleans(), NUMBER),
        st.builds(SearchSequence, SEQSET),
        st.builds(SearchUid, SEQSET),
        st.builds(SearchModSeq, st.integers(min_value=0, max_value=2**63 - 1)),
    ),
    lambda inner: st.one_of(
        st.builds(SearchNot, inner),
        st.builds(SearchOr, inner, inner),
        st.lists(inner, min_size=1, max_size=3).map(lambda ks: SearchAnd(tuple(ks))),
    ),
    max_leaves=8,
)

ID_TEXT = st.text(
    st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]), max_size=8
)
PART = st.lists(st.integers(min_value=1, max_value=50), max_size=3).map(tuple)
PARTIAL = st.one_of(st.none(), st.tuples(st.integers(0, 10**6), st.integers(1, 10**6)))


@st.composite
def fetch_body(draw: st.DrawFn) -> FetchBody:
    part = draw(PART)
    texts = [None, "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT"] + (
        ["MIME"] if part else []
    )
    text = draw(st.sampled_from(texts))
    fields: tuple[bytes, ...] = ()
    items = [str(p).encode() for p in part]
    if text is not None:
        items.append(draw(st.sampled_from([text, text.lower()])).encode())
    section = b".".join(items)
    if text is not None and text.startswith("HEADER.FIELDS"):
        fields = tuple(draw(st.lists(ATOM.map(str.encode), min_size=1, max_size=4)))
        section += b" (" + b" ".join(fields) + b")"
    return FetchBody(draw(st.booleans()), part, text, fields, draw(PARTIAL), section)


FETCH_ATT = st.one_of(
    st.sampled_from(
        [
            "ENVELOPE",
            "FLAGS",
            "INTERNALDATE",
            "RFC822",
            "RFC822.HEADER",
            "RFC822.SIZE",
            "RFC822.TEXT",
            "BODY",
            "BODYSTRUCTURE",
            "UID",
            "MODSEQ",
        ]
    ).map(FetchSimple),
    fetch_body(),
    st.builds(
        lambda peek, part, partial: FetchBinary(
            peek, part, partial, b".".join(b"%d" % p for p in part)
        ),
        st.booleans(),
        PART,
        PARTIAL,
    ),
    PART.map(lambda part: FetchBinarySize(part, b".".join(b"%d" % p for p in part))),
)
STATUS_ITEMS = st.lists(
    st.sampled_from(
        [
            "MESSAGES",
            "UIDNEXT",
            "UIDVALIDITY",
            "UNSEEN",
            "DELETED",
            "SIZE",
            "RECENT",
            "HIGHESTMODSEQ",
        ]
    ),
    min_size=1,
    max_size=4,
).map(tuple)

COMMAND: st.SearchStrategy[Command] = st.one_of(
    st.builds(
        lambda t, c: c(t),
        TAG,
        st.sampled_from([Capability, Noop, Logout, Check, Close, Unselect, Namespace]),
    ),
    st.builds(Expunge, TAG, st.one_of(st.none(), SEQSET)),
    st.builds(Login, TAG, ANY_BYTES, ANY_BYTES),
    st.builds(Enable, TAG, st.lists(ATOM.map(str.upper), min_size=1, max_size=3).map(tuple)),
    st.builds(Select, TAG, MAILBOX, st.one_of(st.just(()), PARAMS)),
    st.builds(Examine, TAG, MAILBOX, st.one_of(st.just(()), PARAMS)),
    st.builds(Create, TAG, MAILBOX, st.one_of(st.just(()), PARAMS)),
    st.builds(Delete, TAG, MAILBOX),
    st.builds(Subscribe, TAG, MAILBOX),
    st.builds(Unsubscribe, TAG, MAILBOX),
    st.builds(Rename, TAG, MAILBOX, MAILBOX),
    st.builds(Status, TAG, MAILBOX, STATUS_ITEMS),
    st.builds(Lsub, TAG, ANY_BYTES, ANY_BYTES),
    st.builds(lambda t, r, p: List(t, r, (p,)), TAG, ANY_BYTES, ANY_BYTES),
    st.builds(
        lambda t, r, ps, sel, ret, stat: List(t, r, tuple(ps), tuple(sel), tuple(ret), stat, True),
        TAG,
        ANY_BYTES,
        st.lists(ANY_BYTES, min_size=1, max_size=3),
        st.lists(
            st.sampled_from(["SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"]), max_size=2
        ),
        st.lists(st.sampled_from(["SUBSCRIBED", "CHILDREN", "SPECIAL-USE"]), max_size=2),
        st.one_of(st.none(), STATUS_ITEMS),
    ),
    st.builds(Copy, TAG, st.booleans(), SEQSET, MAILBOX),
    st.builds(Move, TAG, st.booleans(), SEQSET, MAILBOX),
    st.builds(
        Store,
        TAG,
        st.booleans(),
        SEQSET,
        st.sampled_from(list(StoreMode)),
        st.booleans(),
        st.lists(FLAG, max_size=4).map(tuple),
        st.one_of(st.just(()), PARAMS),
    ),
    st.builds(
        Fetch,
        TAG,
        st.booleans(),
        SEQSET,
        st.lists(FETCH_ATT, min_size=1, max_size=4).map(tuple),
        st.one_of(st.just(()), PARAMS),
    ),
    st.builds(
        Search,
        TAG,
        st.booleans(),
        SEARCH_KEY,
        st.one_of(st.none(), st.sampled_from(["UTF-8", "US-ASCII"])),
        st.one_of(
            st.none(),
            # each option once: a repeated one is BAD (pobox.imap.search_grammar)
            st.lists(
                st.sampled_from(["MIN", "MAX", "ALL", "COUNT", "SAVE"]), max_size=3, unique=True
            ).map(tuple),
        ),
    ),
    st.builds(
        Id,
        TAG,
        st.one_of(
            st.none(),
            st.lists(st.tuples(ID_TEXT, st.one_of(st.none(), ID_TEXT)), max_size=3).map(tuple),
        ),
    ),
)


# --------------------------------------------------------------------------- driving the protocol


def drive(chunks: list[bytes], limits: ImapLimits | None = None) -> list[Event]:
    """Feed chunks; accept literals, take IDLE/AUTHENTICATE, resume after STARTTLS."""
    p = ImapServerProtocol(limits)
    events: list[Event] = []
    for chunk in [*chunks, b""]:
        p.receive_data(chunk)
        while True:
            ev = p.next_event()
            if isinstance(ev, NeedData):
                break
            if isinstance(ev, AppendData) and events and isinstance(events[-1], AppendData):
                events[-1] = AppendData(events[-1].data + ev.data)
            else:
                events.append(ev)
            if isinstance(ev, ContinuationNeeded) or (isinstance(ev, AppendStart) and ev.sync):
                p.accept_literal()
            elif isinstance(ev, CommandReceived):
                if isinstance(ev.command, Idle):
                    p.enter_idle()
                elif isinstance(ev.command, Authenticate):
                    p.enter_authenticate(b"challenge")
                elif isinstance(ev.command, StartTls):
                    p.resume()
            elif isinstance(ev, AuthenticateResponse):
                p.resume()
            if type(ev).__name__ == "ConnectionClosed":
                return events
    return events


@settings(max_examples=300 * SCALE, deadline=None)
@given(COMMAND, st.randoms(use_true_random=False))
def test_encoded_command_parses_back_equal(cmd: Command, rnd: random.Random) -> None:
    wire = Encoder(rnd).command(cmd) + b"\r\n"
    events = drive([wire])
    received = [e for e in events if not isinstance(e, ContinuationNeeded)]
    assert received[0] == CommandReceived(cmd), wire


FRAGMENTS = st.sampled_from(
    [
        b"a1 ",
        b"APPEND ",
        b"box ",
        b"(\\Seen) ",
        b'"01-Jan-2024 00:00:00 +0000" ',
        b"UTF8 (",
        b"{3}\r\n",
        b"{3+}\r\n",
        b"~{2+}\r\n",
        b"{0}\r\n",
        b")",
        b"\r\n",
        b"\n",
        b"IDLE",
        b"DONE",
        b"LOGIN ",
        b"x ",
        b"FETCH 1:* (BODY.PEEK[HEADER.FIELDS (a b)]<0.5>)",
        b"SEARCH ",
        b"NOT ",
        b"(",
        b"OR ",
        b"ALL",
        b"UID ",
        b"STORE 1 +FLAGS (\\Seen)",
        b"AUTHENTICATE PLAIN",
        b"*",
        b"STARTTLS",
        b'"q\\"',
        b"\x00",
        b"\xff",
        b"{99999999999999999999}\r\n",
        b" ",
    ]
)
STREAM = st.one_of(st.binary(max_size=300), st.lists(FRAGMENTS, max_size=40).map(b"".join))
SMALL_LIMITS = ImapLimits(
    max_line=60, max_literal=40, max_literal_in_command=12, max_command=120, append_chunk=7
)
CORPUS = [
    b'a1 append "Sent" (\\Seen) "26-Aug-2026 10:11:12 +0200" UTF8 (~{5+}\r\nhello)\r\n',
    b"a1 IDLE\r\nDONE\r\na2 NOOP\r\n",
    b"a1 LOGIN {4}\r\nuser {4+}\r\npass\r\n",
    b"a1 UID SEARCH 4951:5000 NOT DELETED\r\n",
    b"a1 APPEND box {3+}\r\none {3+}\r\ntwo\r\n",
]


@settings(max_examples=500 * SCALE, deadline=None)
@given(STREAM, st.booleans())
@example(CORPUS[0], False)
@example(CORPUS[1], True)
@example(CORPUS[4], True)
def test_arbitrary_bytes_only_produce_events(data: bytes, small: bool) -> None:
    drive([data], SMALL_LIMITS if small else None)


@settings(max_examples=500 * SCALE, deadline=None)
@given(STREAM, st.lists(st.integers(min_value=0, max_value=400), max_size=8), st.booleans())
@example(CORPUS[0], [10, 60, 61], True)
@example(CORPUS[2], [13, 14, 15], False)
@example(CORPUS[3], [5], False)
def test_split_points_do_not_change_events(data: bytes, cuts: list[int], small: bool) -> None:
    limits = SMALL_LIMITS if small else None
    points = sorted({min(c, len(data)) for c in cuts})
    bounds = zip([0, *points], [*points, len(data)], strict=True)
    chunks = [data[a:b] for a, b in bounds if b > a]  # b"" would mean "peer closed"
    assert drive(chunks, limits) == drive([data], limits)


@given(st.text())
def test_mutf7_round_trip(name: str) -> None:
    wire = mutf7.encode(name)
    assert wire.isascii()
    assert mutf7.decode(wire) == name


@given(SEQSET)
def test_sequence_set_round_trip(seqs: SequenceSet) -> None:
    assert SequenceSet.parse(seqs.format()) == seqs


@given(
    st.lists(
        st.tuples(BOUND, BOUND).map(lambda r: (r[0] and r[0] % 60 + 1, r[1] and r[1] % 60 + 1)),
        min_size=1,
        max_size=5,
    ),
    st.integers(min_value=0, max_value=50),
)
def test_sequence_set_resolve_matches_model(
    ranges: list[tuple[int | None, int | None]], top: int
) -> None:
    seqs = SequenceSet(tuple(ranges))
    expected: set[int] = set()
    for lo, hi in ranges:
        a, b = (top if lo is None else lo), (top if hi is None else hi)
        expected |= {n for n in range(min(a, b), max(a, b) + 1) if 1 <= n <= top}
    assert list(seqs.iter_numbers(top)) == sorted(expected)
