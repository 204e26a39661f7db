"""The full-text index never disagrees with a scan (docs/decisions/full-text-search.md).

Random messages (non-ASCII text, RFC 2047 headers, quoted-printable with soft line breaks,
base64, HTML with character references, attachments with RFC 2231 file names, encapsulated
messages) and random search strings, many of them cut from the messages' own text: SEARCH
answered by the index (with some contents not indexed yet) equals SEARCH answered by scanning
every message, on both backends.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import SMTP

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tests.helpers.columns import column_records
from tests.store.util import append

import pobox.service.search as search_module
from pobox.service import fulltext
from pobox.service.search import Bcc, Body, Cc, From, Header, Query, Subject, Text, To, search
from pobox.store.api import FlagOp, MailboxId, MessageMeta, Store, TextMatches

# Latin, accents (precomposed and combining), sharp s (folds to "ss"), Greek sigma in its three
# forms, dotted and dotless i, a ligature, CJK, markup and quoting characters, white space.
ALPHABET = [
    *"abcxyz ABC",
    "\u00e9", "\u00c9", "\u00df", "\u1e9e", "\u03a3", "\u03c3", "\u03c2", "\u0130", "\u0131",
    "i", "\u0301", "\ufb01", "\u20ac", "\u65e5", "\u672c", "\u00a0",
    *"<>&;\"'=-_%.\n\t",
]  # fmt: skip
words = st.text(alphabet=st.sampled_from(ALPHABET), min_size=0, max_size=40)


@st.composite
def messages(draw: st.DrawFn) -> tuple[bytes, str]:
    """A message, and text a search might want to find in it."""
    msg = EmailMessage(policy=SMTP)
    subject, name, body = draw(words), draw(words), draw(words)
    msg["Subject"] = subject.replace("\n", " ")
    display = name.replace("\n", " ").replace('"', "")
    msg["From"] = f'"{display}" <a{draw(st.integers(0, 9))}@example.org>'
    msg["To"] = "Rcpt <to@example.com>"
    if draw(st.booleans()):
        msg["Cc"] = (
            f"=?utf-8?q?{draw(st.sampled_from(['caf=C3=A9', 'na=C3=AFve', 'plain']))}?= <c@x.org>"
        )
    msg["X-Tag"] = draw(words).replace("\n", " ")
    kind = draw(st.sampled_from(["plain", "qp", "base64", "html", "mixed", "nested"]))
    html = "<p>" + body.replace("&", "&amp;").replace("<", "&lt;") + "</p><script>hidden()</script>"
    if kind == "plain":
        msg.set_content(body, cte="8bit")
    elif kind == "qp":
        # long lines: the encoder breaks them with soft line breaks, sometimes inside a word
        msg.set_content((body + " ") * draw(st.integers(1, 8)), cte="quoted-printable")
    elif kind == "base64":
        msg.set_content(body, charset=draw(st.sampled_from(["utf-8", "utf-16"])), cte="base64")
    elif kind == "html":
        msg.set_content(html, subtype="html", cte=draw(st.sampled_from(["8bit", "base64"])))
    elif kind == "mixed":
        msg.set_content(body, cte="quoted-printable")
        msg.add_alternative(html, subtype="html")
        msg.add_attachment(
            b"%PDF-1.4 binary" + body.encode(),
            maintype="application",
            subtype="pdf",
            filename=draw(words).replace("\n", "") + ".pdf",
        )
    else:
        inner = EmailMessage(policy=SMTP)
        inner["Subject"] = draw(words).replace("\n", " ")
        inner.set_content(body)
        msg.set_content("see the attached message")
        msg.add_attachment(inner)
    hay = " ".join([subject, name, body, str(msg["X-Tag"])])
    return _as_bytes(msg), hay


def _as_bytes(msg: EmailMessage) -> bytes:
    for n, part in enumerate(msg.walk()):  # fixed boundaries: the email package would draw
        if part.is_multipart():  # them from `random`, which hypothesis forbids
            part.set_boundary(f"=_part{n}_=")
    return msg.as_bytes()


@st.composite
def needles(draw: st.DrawFn, hays: list[str]) -> str:
    hay = draw(st.sampled_from(hays)) if hays else ""
    how = draw(st.sampled_from(["cut", "cut-upper", "random", "markup"]))
    if how == "random" or len(hay) < 1:
        return draw(words)
    if how == "markup":
        return draw(st.sampled_from(["<p>", "&amp;", "hidden()", "script", "=\r\n", "pdf", "=c3"]))
    start = draw(st.integers(0, len(hay) - 1))
    cut = hay[start : start + draw(st.integers(1, 14))]
    return cut.upper() if how == "cut-upper" else cut


def queries(needle: str) -> Iterator[Query]:
    yield Body(needle)
    yield Text(needle)
    for term in (Subject, From, To, Cc, Bcc):
        yield term(needle)
    yield Header("X-Tag", needle)


_accounts = itertools.count()


async def _answers(
    store: Store, mailbox: MailboxId, metas: list[MessageMeta], query: Query
) -> tuple[list[int], list[int]]:
    saved = search_module.INDEX_MIN
    try:
        search_module.INDEX_MIN = 0  # ask the index even for a handful of messages
        indexed = await search(store, mailbox, query, metas)
        # the same through the index's columns (what a session's view passes)
        columns = await search(store, mailbox, query, column_records(metas))
        search_module.INDEX_MIN = 10**9  # scan everything
        scanned = await search(store, mailbox, query, metas)
    finally:
        search_module.INDEX_MIN = saved
    assert columns == indexed, query
    return indexed, scanned


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data(), batch=st.lists(messages(), min_size=1, max_size=8))
async def test_index_and_scan_agree(
    store: Store, data: st.DataObject, batch: list[tuple[bytes, str]]
) -> None:
    account = await store.create_account(f"p{next(_accounts)}@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    metas = [await append(store, inbox.id, raw) for raw, _ in batch]
    # index some of the contents (the rest is what a delivery a moment ago looks like)
    await fulltext.index_batch(store, data.draw(st.integers(0, len(metas))), account.id)
    hays = [hay for _, hay in batch]
    for _ in range(6):
        needle = data.draw(needles(hays))
        for query in queries(needle):
            indexed, scanned = await _answers(store, inbox.id, metas, query)
            assert indexed == scanned, (query, indexed, scanned)
            event("found" if indexed else "found nothing")


async def test_index_finds_what_the_rfc_says_and_nothing_else(store: Store) -> None:
    account = await store.create_account("fixed@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    html = EmailMessage(policy=SMTP)
    html["Subject"] = "Grüße aus Köln"  # sent as RFC 2047 encoded words
    html["From"] = "Zoë Ünal <zoe@example.org>"
    html.set_content(
        "<html><head><style>p {color: red}</style></head><body><p>Caf&eacute; &amp; cr&#232;me"
        "</p><script>var secret = 1;</script>line<br>break</body></html>",
        subtype="html",
        cte="quoted-printable",
    )
    html.add_attachment(
        b"data", maintype="application", subtype="octet-stream", filename="Rechnung März.pdf"
    )
    qp = EmailMessage(policy=SMTP)
    qp["Subject"] = "plain"
    qp.set_content("word " * 30 + "supercalifragilistic" + " end", cte="quoted-printable")
    first = await append(store, inbox.id, _as_bytes(html))
    second = await append(store, inbox.id, qp.as_bytes())
    assert b"=\r\n" in qp.as_bytes()  # a soft line break in the encoded text
    while await fulltext.index_batch(store, 10, account.id) is not None:
        pass
    metas = [first, second]
    expect = {
        Body("café & crème"): [first.uid],
        Body("CAFÉ"): [first.uid],
        Body("color: red"): [],  # style sheets are not text
        Body("secret"): [],  # nor scripts
        Body("&amp;"): [],  # references are decoded
        Body("<p>"): [],  # tags are not text
        Body("rechnung märz"): [first.uid],  # attachment file names
        Body("supercalifragilistic"): [second.uid],
        Body("word word"): [second.uid],
        Text("grüße aus"): [first.uid],
        Subject("GRÜSSE"): [first.uid],  # Unicode case folding: ß folds to ss
        From("zoë ünal"): [first.uid],
        Body("grüße"): [],  # the header is not the body
    }
    for query, uids in expect.items():
        indexed, scanned = await _answers(store, inbox.id, metas, query)
        assert indexed == scanned == uids, query


async def test_search_asks_the_index_above_the_threshold(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = await store.create_account("big@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    metas = []
    for n in range(search_module.INDEX_MIN + 6):
        raw = f"Subject: note {n}\r\n\r\n{'needle' if n % 7 == 0 else 'hay'} {n}\r\n".encode()
        metas.append(await append(store, inbox.id, raw))
    await fulltext.index_batch(store, len(metas) - 3, account.id)  # the newest three are not
    calls: list[TextMatches] = []
    real = store.search_text

    async def spy(*args: object) -> TextMatches:
        result = await real(*args)  # type: ignore[arg-type]
        calls.append(result)
        return result

    monkeypatch.setattr(store, "search_text", spy)
    found = await search(store, inbox.id, Body("NEEDLE"), metas)
    assert found == [m.uid for n, m in enumerate(metas) if n % 7 == 0]
    assert len(calls) == 1 and len(calls[0].unindexed) == 3
    # two characters: no trigram, a scan answers
    assert await search(store, inbox.id, Body("ne"), metas) == found
    assert len(calls) == 1


async def test_index_follows_move_and_expunge(store: Store) -> None:
    account = await store.create_account("mover@example.org", "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    archive = await store.get_mailbox(account.id, "Archive")
    assert inbox is not None and archive is not None
    for n in range(6):
        await append(store, inbox.id, f"Subject: n{n}\r\n\r\nkiwi {n % 2}\r\n".encode())
    while await fulltext.index_batch(store, 10, account.id) is not None:
        pass
    uids = [m.uid for m in await store.list_messages(inbox.id)]
    await store.copy(inbox.id, uids[:2], archive.id, move=True)
    await store.set_flags(inbox.id, [uids[2]], FlagOp.ADD, frozenset({"\\Deleted"}))
    await store.expunge(inbox.id, [uids[2]])
    for mailbox in (inbox, archive):
        metas = await store.list_messages(mailbox.id)
        for needle in ("KIWI 0", "kiwi 1", "kiwi"):
            indexed, scanned = await _answers(store, mailbox.id, metas, Body(needle))
            assert indexed == scanned
    left = await store.list_messages(inbox.id)
    indexed, _ = await _answers(store, inbox.id, left, Body("kiwi 0"))
    assert indexed == [uids[4]]  # 0 and 2 are gone (moved, expunged); 4 is left
    moved = await store.list_messages(archive.id)
    indexed, _ = await _answers(store, archive.id, moved, Body("kiwi"))
    assert indexed == [m.uid for m in moved] and len(moved) == 2
