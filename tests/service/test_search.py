"""SEARCH evaluation: every key of RFC 3501/9051 through the protocol-neutral query algebra."""

from __future__ import annotations

import base64
import binascii
import quopri
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timezone
from typing import cast
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.helpers.columns import Columns
from tests.store.util import append

from pobox.mail.text import _base64, _quoted_printable
from pobox.service.delivery import Envelope
from pobox.service.mail import MailService
from pobox.service.search import (
    All,
    And,
    Bcc,
    Body,
    Cc,
    ColumnRecords,
    FlagIs,
    From,
    Header,
    InternalDate,
    ModSeqAtLeast,
    New,
    Not,
    Old,
    Or,
    Query,
    RecentIs,
    SentDate,
    SeqIn,
    Size,
    Subject,
    Text,
    To,
    UidIn,
    resolve_sequences,
    search,
)
from pobox.store.api import BlobId, FlagOp, MailboxId, MessageMeta, ModSeq, Store, Uid

PARIS = ZoneInfo("Europe/Paris")


@dataclass
class Box:
    store: Store
    mailbox: MailboxId

    async def add(
        self,
        content: bytes,
        flags: frozenset[str] = frozenset(),
        internal_date: datetime | None = None,
    ) -> Uid:
        meta = await append(
            self.store, self.mailbox, content, flags=flags, internal_date=internal_date
        )
        return meta.uid

    async def view(self) -> list[MessageMeta]:
        return await self.store.list_messages(self.mailbox)

    async def find(
        self,
        query: Query,
        *,
        recent: Sequence[int] = (),
        view: Sequence[MessageMeta] | None = None,
        zone: timezone | ZoneInfo | None = UTC,
    ) -> list[int]:
        messages = await self.view() if view is None else view
        found = await search(
            self.store,
            self.mailbox,
            query,
            messages,
            recent_uids=frozenset(Uid(u) for u in recent),
            zone=zone,
        )
        return [int(u) for u in found]


@pytest.fixture
async def box(service: MailService) -> AsyncIterator[Box]:
    account = await service.store.create_account("search@example.com", "x")
    inbox = await service.store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    yield Box(service.store, inbox.id)


def msg(
    subject: str = "hello",
    body: str = "nothing to see\r\n",
    *,
    headers: str = "",
    sender: str = "alice@example.org",
) -> bytes:
    return (
        f"From: {sender}\r\nTo: bob@example.com\r\nSubject: {subject}\r\n{headers}\r\n{body}"
    ).encode()


# ---- flags, recent, sizes, sets -------------------------------------------------------------


async def test_flag_keys(box: Box) -> None:
    plain = await box.add(msg())
    seen = await box.add(msg(), frozenset({"\\Seen"}))
    answered = await box.add(msg(), frozenset({"\\Answered", "\\Seen"}))
    flagged = await box.add(msg(), frozenset({"\\Flagged"}))
    deleted = await box.add(msg(), frozenset({"\\Deleted"}))
    draft = await box.add(msg(), frozenset({"\\Draft", "$Label1"}))
    everything = [plain, seen, answered, flagged, deleted, draft]

    assert await box.find(All()) == everything
    assert await box.find(And(())) == everything
    assert await box.find(FlagIs("\\Seen", True)) == [seen, answered]
    assert await box.find(FlagIs("\\Seen", False)) == [plain, flagged, deleted, draft]
    assert await box.find(FlagIs("\\Answered", True)) == [answered]
    assert await box.find(FlagIs("\\Answered", False)) == [u for u in everything if u != answered]
    assert await box.find(FlagIs("\\Flagged", True)) == [flagged]
    assert await box.find(FlagIs("\\Flagged", False)) == [u for u in everything if u != flagged]
    assert await box.find(FlagIs("\\Deleted", True)) == [deleted]
    assert await box.find(FlagIs("\\Deleted", False)) == [u for u in everything if u != deleted]
    assert await box.find(FlagIs("\\Draft", True)) == [draft]
    assert await box.find(FlagIs("\\Draft", False)) == [u for u in everything if u != draft]
    # system flags and keywords compare case-insensitively
    assert await box.find(FlagIs("\\SEEN", True)) == [seen, answered]
    assert await box.find(FlagIs("$label1", True)) == [draft]  # KEYWORD
    assert await box.find(FlagIs("$Label1", False)) == everything[:-1]  # UNKEYWORD
    assert await box.find(FlagIs("NoSuchKeyword", True)) == []
    assert await box.find(FlagIs("NoSuchKeyword", False)) == everything


async def test_recent_new_old(box: Box) -> None:
    a = await box.add(msg(), frozenset({"\\Seen"}))
    b = await box.add(msg())
    c = await box.add(msg())
    recent = [b, c]
    await box.store.set_flags(box.mailbox, [Uid(c)], FlagOp.ADD, frozenset({"\\Seen"}))
    assert await box.find(RecentIs(True), recent=recent) == [b, c]
    assert await box.find(FlagIs("\\Recent", True), recent=recent) == [b, c]
    assert await box.find(FlagIs("\\Recent", False), recent=recent) == [a]
    assert await box.find(New(), recent=recent) == [b]  # RECENT UNSEEN
    assert await box.find(Old(), recent=recent) == [a]  # NOT RECENT
    assert await box.find(New()) == []


async def test_larger_smaller_boundaries(box: Box) -> None:
    uids = [await box.add(msg(body="x" * n)) for n in (0, 10, 20)]
    sizes = [m.size for m in await box.view()]
    small, middle, big = sizes
    assert await box.find(Size(larger=middle)) == [uids[2]]  # strictly larger
    assert await box.find(Size(larger=middle - 1)) == uids[1:]
    assert await box.find(Size(smaller=middle)) == [uids[0]]  # strictly smaller
    assert await box.find(Size(smaller=middle + 1)) == uids[:2]
    assert await box.find(Size(larger=small, smaller=big)) == [uids[1]]
    assert await box.find(Size(larger=big)) == []
    assert await box.find(Size(smaller=0)) == []
    assert await box.find(Size()) == uids


async def test_uid_and_sequence_sets(box: Box) -> None:
    uids = [await box.add(msg()) for _ in range(6)]
    await box.store.expunge(box.mailbox, [Uid(uids[1]), Uid(uids[4])])
    kept = [uids[0], uids[2], uids[3], uids[5]]
    assert await box.find(UidIn(((uids[0], uids[2]),))) == [uids[0], uids[2]]
    assert await box.find(UidIn(((uids[5], uids[2]),))) == [uids[2], uids[3], uids[5]]  # 6:3
    assert await box.find(UidIn(((99, 100),))) == []
    assert await box.find(UidIn(((1, 1), (4, 4), (6, 6)))) == [1, 4, 6]
    # sequence numbers count in the view: 2 is the second message of the view
    assert await box.find(SeqIn(((2, 2),))) == [kept[1]]
    assert await box.find(SeqIn(((2, 3), (4, 4)))) == kept[1:]
    assert await box.find(SeqIn(((4, 1),))) == kept
    assert await box.find(SeqIn(((3, 99),))) == kept[2:]  # past the end: clamped
    assert await box.find(SeqIn(((7, 9),))) == []
    view = await box.view()
    resolved = resolve_sequences(Not(SeqIn(((1, 2),))), view)
    assert resolved == Not(UidIn(((kept[0], kept[1]),)))
    assert await box.find(resolved) == kept[2:]
    # a smaller view (a session that has not heard of the later messages)
    assert await box.find(SeqIn(((2, 99),)), view=view[:2]) == [kept[1]]


async def test_modseq(box: Box) -> None:
    a = await box.add(msg())
    b = await box.add(msg())
    (changed,) = await box.store.set_flags(box.mailbox, [Uid(a)], FlagOp.ADD, frozenset({"x"}))
    assert await box.find(ModSeqAtLeast(changed.modseq)) == [a]
    assert await box.find(ModSeqAtLeast(0)) == [a, b]


# ---- dates ----------------------------------------------------------------------------------


async def test_internal_date_in_server_zone(box: Box) -> None:
    # 2026-03-01 23:30 UTC is 2026-03-02 00:30 in Paris
    late = await box.add(msg(), internal_date=datetime(2026, 3, 1, 23, 30, tzinfo=UTC))
    early = await box.add(msg(), internal_date=datetime(2026, 3, 1, 0, 0, tzinfo=UTC))
    last = await box.add(msg(), internal_date=datetime(2026, 3, 2, 23, 59, 59, tzinfo=UTC))
    day1, day2 = date(2026, 3, 1), date(2026, 3, 2)

    assert await box.find(InternalDate("on", day1), zone=UTC) == [late, early]
    assert await box.find(InternalDate("on", day2), zone=UTC) == [last]
    assert await box.find(InternalDate("before", day2), zone=UTC) == [late, early]
    assert await box.find(InternalDate("since", day2), zone=UTC) == [last]
    assert await box.find(InternalDate("before", day1), zone=UTC) == []
    assert await box.find(InternalDate("since", day1), zone=UTC) == [late, early, last]

    assert await box.find(InternalDate("on", day1), zone=PARIS) == [early]
    assert await box.find(InternalDate("on", day2), zone=PARIS) == [late]
    assert await box.find(InternalDate("since", day2), zone=PARIS) == [late, last]
    assert await box.find(InternalDate("before", day2), zone=PARIS) == [early]
    # 2026-03-02 23:59:59 UTC is already 2026-03-03 in Paris
    assert await box.find(InternalDate("on", date(2026, 3, 3)), zone=PARIS) == [last]
    # default: the process's local zone
    local_day = datetime(2026, 3, 1, 23, 30, tzinfo=UTC).astimezone().date()
    assert late in await box.find(InternalDate("on", local_day), zone=None)


async def test_internal_date_across_dst(box: Box) -> None:
    # Paris goes to summer time on 2026-03-29: that day has 23 hours
    before_midnight = datetime(2026, 3, 29, 21, 59, tzinfo=UTC)  # 23:59 CEST
    after_midnight = datetime(2026, 3, 29, 22, 0, tzinfo=UTC)  # 00:00 CEST on the 30th
    a = await box.add(msg(), internal_date=before_midnight)
    b = await box.add(msg(), internal_date=after_midnight)
    assert await box.find(InternalDate("on", date(2026, 3, 29)), zone=PARIS) == [a]
    assert await box.find(InternalDate("on", date(2026, 3, 30)), zone=PARIS) == [b]


async def test_sent_date_in_the_headers_own_zone(box: Box) -> None:
    # written on Feb 2 in New York; in UTC it is already Feb 3
    evening = await box.add(msg(headers="Date: Mon, 2 Feb 2026 23:30:00 -0500\r\n"))
    # written on Feb 3 in Tokyo; in UTC it is still Feb 2
    morning = await box.add(msg(headers="Date: Tue, 3 Feb 2026 08:00:00 +0900\r\n"))
    far = await box.add(msg(headers="Date: 10 Jan 2026 12:00:00 +0000\r\n"))
    undated = await box.add(msg())
    broken = await box.add(msg(headers="Date: not a date\r\n"))
    feb2, feb3 = date(2026, 2, 2), date(2026, 2, 3)

    assert await box.find(SentDate("on", feb2)) == [evening]
    assert await box.find(SentDate("on", feb3)) == [morning]
    assert await box.find(SentDate("before", feb3)) == [evening, far, undated, broken]
    assert await box.find(SentDate("since", feb3)) == [morning]
    assert await box.find(SentDate("since", feb2)) == [evening, morning]
    assert await box.find(SentDate("before", feb2)) == [far, undated, broken]
    assert await box.find(SentDate("on", date(2026, 1, 10))) == [far]
    # no usable Date: counts as 1970-01-01 (as Dovecot)
    assert await box.find(SentDate("on", date(1970, 1, 1))) == [undated, broken]
    assert await box.find(SentDate("since", date(1970, 1, 2))) == [evening, morning, far]


# ---- header fields --------------------------------------------------------------------------


async def test_address_and_subject_keys(box: Box) -> None:
    a = await box.add(
        msg(
            "Quarterly report",
            headers="Cc: Carol <carol@example.net>\r\nBcc: dave@example.net\r\n",
            sender='"Alice Liddell" <alice@example.org>',
        )
    )
    b = await box.add(msg("Re: lunch", sender="=?utf-8?q?Andr=C3=A9?= <andre@example.fr>"))
    assert await box.find(From("alice")) == [a]
    assert await box.find(From("ALICE LIDDELL")) == [a]
    assert await box.find(From("andré")) == [b]
    assert await box.find(From("ANDRÉ")) == [b]
    assert await box.find(From("example")) == [a, b]
    assert await box.find(To("bob@example.com")) == [a, b]
    assert await box.find(Cc("carol")) == [a]
    assert await box.find(Bcc("dave@")) == [a]
    assert await box.find(Bcc("carol")) == []
    assert await box.find(Subject("REPORT")) == [a]
    assert await box.find(Subject("re:")) == [b]
    assert await box.find(Header("subject", "lunch")) == [b]
    assert await box.find(Header("Message-ID", "nothing")) == []


async def test_rfc2047_subjects_and_non_ascii_case(box: Box) -> None:
    q = await box.add(msg("=?iso-8859-1?q?=C9l=E9phant_=E0_Paris?="))
    b = await box.add(msg("=?utf-8?b?" + base64.b64encode("Crème brûlée".encode()).decode() + "?="))
    split = await box.add(msg("=?utf-8?q?Gr=C3=BC?= =?utf-8?q?=C3=9Fe?="))
    assert await box.find(Subject("éléphant")) == [q]
    assert await box.find(Subject("ÉLÉPHANT À")) == [q]
    assert await box.find(Subject("crème BRÛLÉE")) == [b]
    assert await box.find(Subject("grüße")) == [split]
    assert await box.find(Subject("GRÜSSE")) == [split]  # full case folding: ß ~ ss
    # decomposed é (e + combining acute) finds the composed one
    assert await box.find(Subject("e\u0301le\u0301phant")) == [q]


async def test_header_key(box: Box) -> None:
    a = await box.add(msg(headers="X-Mailer: =?utf-8?q?Sp=C3=A9cial?= Mailer 2.0\r\n"))
    b = await box.add(msg(headers="X-Mailer:\r\nX-Spam-Flag: YES\r\n"))
    c = await box.add(msg(headers="X-Folded: first\r\n  second line\r\n"))
    assert await box.find(Header("X-Mailer", "spécial mailer")) == [a]
    assert await box.find(Header("x-mailer", "")) == [a, b]  # empty value: field present
    assert await box.find(Header("X-Spam-Flag", "yes")) == [b]
    assert await box.find(Header("X-Folded", "first  second")) == [c]  # unfolded
    assert await box.find(Header("X-Absent", "")) == []
    assert await box.find(Header("Subject", "")) == [a, b, c]
    assert await box.find(Header("Cc", "")) == []
    assert await box.find(Not(Header("X-Mailer", ""))) == [c]


# ---- bodies ---------------------------------------------------------------------------------


def mime(parts: str, boundary: str = "b1", subject: str = "mime") -> bytes:
    head = (
        f"From: m@example.org\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
    )
    return (head + parts).encode("latin-1")


def part(content_type: str, body: str, cte: str | None = None, boundary: str = "b1") -> str:
    extra = f"Content-Transfer-Encoding: {cte}\r\n" if cte else ""
    return f"--{boundary}\r\nContent-Type: {content_type}\r\n{extra}\r\n{body}\r\n"


async def test_body_decodes_transfer_encodings_and_charsets(box: Box) -> None:
    b64 = base64.encodebytes("Le café est prêt, Jérôme.\r\n".encode()).decode()
    encoded = await box.add(
        mime(part("text/plain; charset=utf-8", b64, "base64") + "--b1--\r\n", subject="b64")
    )
    qp_text = quopri.encodestring("Ärger über Öl — naïve façade".encode()).decode()
    qp = await box.add(
        mime(part("text/plain; charset=UTF-8", qp_text, "quoted-printable") + "--b1--\r\n")
    )
    latin = await box.add(
        (
            "From: l@example.org\r\nSubject: latin\r\nContent-Type: text/plain; "
            "charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            "Déjà vu à Montréal\r\n"
        ).encode("latin-1")
    )
    qp_latin = await box.add(
        mime(part("text/plain; charset=iso-8859-1", "Soci=E9t=E9 G=E9n=E9rale", "quoted-printable"))
    )
    plain = await box.add(msg("plain", "Just ASCII words here\r\n"))

    assert await box.find(Body("CAFÉ EST")) == [encoded]
    assert await box.find(Body("jérôme")) == [encoded]
    assert await box.find(Body("über öl")) == [qp]
    assert await box.find(Body("NAÏVE FAÇADE")) == [qp]
    assert await box.find(Body("déjà vu à montréal")) == [latin]
    assert await box.find(Body("société générale")) == [qp_latin]
    assert await box.find(Body("ascii WORDS")) == [plain]
    # the encoded form is not what is searched
    assert await box.find(Body("=E9")) == []
    assert await box.find(Body(b64.split()[0][:12])) == []


async def test_body_walks_nested_multiparts_but_not_attachments(box: Box) -> None:
    inner = (
        part("text/plain", "deep inside the alternative", boundary="b2")
        + part("text/html; charset=utf-8", "<p>html <b>needle</b></p>", boundary="b2")
        + "--b2--\r\n"
    )
    attachment = base64.encodebytes(b"secret attachment words").decode()
    nested = await box.add(
        mime(
            part("text/plain", "first part")
            + f'--b1\r\nContent-Type: multipart/alternative; boundary="b2"\r\n\r\n{inner}\r\n'
            + part("application/octet-stream", attachment, "base64")
            + "--b1--\r\n"
        )
    )
    forwarded = (
        "From: inner@example.net\r\nSubject: =?utf-8?q?Transf=C3=A9r=C3=A9?=\r\n\r\n"
        "forwarded body text\r\n"
    )
    rfc822 = await box.add(mime(part("message/rfc822", forwarded) + "--b1--\r\n"))

    assert await box.find(Body("deep inside")) == [nested]
    assert await box.find(Body("NEEDLE")) == [nested]
    assert await box.find(Body("first part")) == [nested]
    assert await box.find(Body("secret attachment")) == []  # not a text part
    assert await box.find(Body("forwarded body")) == [rfc822]
    assert await box.find(Body("transféré")) == [rfc822]  # the encapsulated header is body
    assert await box.find(Body("inner@example.net")) == [rfc822]
    assert await box.find(Body("m@example.org")) == []  # the outer header is not


async def test_text_is_header_and_body(box: Box) -> None:
    a = await box.add(msg("Zebra crossing", "the body has giraffes\r\n"))
    b = await box.add(msg("Other", "a zebra in the body\r\n", headers="X-Tag: okapi\r\n"))
    assert await box.find(Text("zebra")) == [a, b]
    assert await box.find(Body("zebra")) == [b]
    assert await box.find(Text("GIRAFFES")) == [a]
    assert await box.find(Text("okapi")) == [b]
    assert await box.find(Text("x-tag: okapi")) == [b]
    assert await box.find(Text("")) == [a, b]
    assert await box.find(Body("")) == [a, b]


async def test_large_bodies_are_streamed_across_chunks(box: Box) -> None:
    # the words straddle the 64 KiB read boundary, in the decoded text and in the raw file
    filler = "é" * 40000  # 80,000 octets in UTF-8
    text = filler + "BOUNDARY-CROSSING needle" + "z" * 5000 + "\r\n"
    b64 = base64.encodebytes(text.encode()).decode()
    encoded = await box.add(mime(part("text/plain; charset=utf-8", b64, "base64") + "--b1--\r\n"))
    qp_text = quopri.encodestring(text.encode()).decode()
    qp = await box.add(
        mime(part("text/plain; charset=utf-8", qp_text, "quoted-printable") + "--b1--\r\n")
    )
    raw = "From: r@example.org\r\nSubject: raw\r\n\r\n" + "a" * 65530 + "straddling word\r\n"
    plain = await box.add(raw.encode())
    assert await box.find(Body("boundary-crossing NEEDLE")) == [encoded, qp]
    assert await box.find(Body("éébou")) == [encoded, qp]
    assert await box.find(Body("straddling")) == [plain]


async def test_malformed_content_does_not_break_search(box: Box) -> None:
    bad = await box.add(
        mime(
            part("text/plain; charset=x-unknown-charset", "unknown charset text")
            + part("text/plain; charset=hex", "hex is no charset")
            + part("text/plain", "!!!not base64 at all ===", "base64")
            + part("text/plain", "broken =ZZ qp =", "quoted-printable")
            + "--b1--\r\n"
        )
    )
    assert await box.find(Body("unknown charset text")) == [bad]
    assert await box.find(Body("hex is no charset")) == [bad]
    assert await box.find(Body("broken =zz qp")) == [bad]


# ---- combinations, cost order, delivery -----------------------------------------------------


async def test_or_not_and_combinations(box: Box) -> None:
    a = await box.add(msg("alpha", "one\r\n"), frozenset({"\\Seen"}))
    b = await box.add(msg("beta", "two\r\n"))
    c = await box.add(msg("gamma", "three\r\n"), frozenset({"\\Flagged"}))
    assert await box.find(Or(Subject("alpha"), Body("three"))) == [a, c]
    assert await box.find(Or(FlagIs("\\Seen"), Subject("beta"))) == [a, b]
    assert await box.find(Not(Or(Subject("alpha"), Subject("beta")))) == [c]
    assert await box.find(And((FlagIs("\\Seen", False), Not(Body("two"))))) == [c]
    assert await box.find(And((Subject("a"), FlagIs("\\Flagged"), Body("three")))) == [c]
    assert await box.find(Or(Or(Subject("alpha"), Subject("beta")), Not(All()))) == [a, b]
    assert await box.find(Not(Not(Text("gamma")))) == [c]
    assert await box.find(And((UidIn(((b, c),)), Or(Body("one"), Body("two"))))) == [b]


async def test_expensive_terms_only_see_remaining_messages(box: Box) -> None:
    uids = [await box.add(msg(f"m{n}", f"body {n}\r\n")) for n in range(5)]
    opened: list[BlobId] = []
    calls: list[int] = []
    real_open = box.store.open_contents

    async def counting(blobs):  # type: ignore[no-untyped-def]
        blobs = list(blobs)
        calls.append(len(blobs))
        opened.extend(blobs)
        return await real_open(blobs)

    box.store.open_contents = counting  # type: ignore[method-assign]
    try:
        found = await box.find(And((Body("body"), UidIn(((uids[1], uids[2]),)))))
    finally:
        del box.store.open_contents
    assert found == uids[1:3]
    assert len(opened) == 2
    assert calls == [2]  # one batched store call, not one per message


async def test_messages_expunged_meanwhile(box: Box) -> None:
    a = await box.add(msg("keep"))
    b = await box.add(msg("gone"))
    view = await box.view()
    await box.store.expunge(box.mailbox, [Uid(b)])
    assert await box.find(Subject("e"), view=view) == [a]
    assert await box.find(Body("nothing"), view=view) == [a]
    assert await box.find(Header("X-None", ""), view=view) == []
    assert await box.find(FlagIs("\\Seen", False), view=view) == [a, b]


async def test_delivered_messages(service: MailService) -> None:
    await service.accounts.add("rcpt@example.com", "pw")
    content = (
        b"From: =?utf-8?q?Fran=C3=A7ois?= <f@example.fr>\r\nSubject: livraison\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes("Où est la bibliothèque ?".encode())
    )
    (result,) = await service.delivery.deliver(Envelope("", ("rcpt@example.com",)), content)
    assert result.delivered and result.uid is not None
    account = await service.accounts.require("rcpt@example.com")
    inbox = await service.store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    view = await service.store.list_messages(inbox.id)
    assert await search(service.store, inbox.id, From("FRANÇOIS"), view) == [result.uid]
    assert await search(service.store, inbox.id, Body("BIBLIOTHÈQUE"), view) == [result.uid]
    assert await search(service.store, inbox.id, Text("received: from"), view) == [result.uid]
    assert await search(service.store, inbox.id, Header("Return-Path", ""), view) == [result.uid]


# ---- property test: the in-memory subset against a naive evaluator --------------------------

FLAGS = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "$Junk", "work")
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def _meta(uid: int, flags: frozenset[str], size: int) -> MessageMeta:
    return MessageMeta(
        MailboxId(1), Uid(uid), ModSeq(uid), flags, _EPOCH, _EPOCH, size, BlobId(uid)
    )


@st.composite
def mailboxes(draw: st.DrawFn) -> tuple[list[MessageMeta], frozenset[Uid]]:
    uids = sorted(draw(st.sets(st.integers(1, 40), max_size=15)))
    metas = [
        _meta(
            uid,
            draw(st.frozensets(st.sampled_from(FLAGS), max_size=4)),
            draw(st.integers(0, 60)),
        )
        for uid in uids
    ]
    recent = draw(st.frozensets(st.sampled_from(uids))) if uids else frozenset()
    return metas, frozenset(Uid(u) for u in recent)


_ranges = st.lists(st.tuples(st.integers(1, 45), st.integers(1, 45)), min_size=1, max_size=3)
_leaves: st.SearchStrategy[Query] = st.one_of(
    st.builds(All),
    st.builds(FlagIs, st.sampled_from((*FLAGS, "\\SEEN", "WORK", "\\Recent")), st.booleans()),
    st.builds(RecentIs, st.booleans()),
    st.builds(UidIn, _ranges.map(tuple)),
    st.builds(SeqIn, _ranges.map(tuple)),
    st.builds(Size, st.none() | st.integers(0, 60), st.none() | st.integers(0, 60)),
    st.builds(ModSeqAtLeast, st.integers(0, 45)),
)
queries: st.SearchStrategy[Query] = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.builds(Not, inner),
        st.builds(Or, inner, inner),
        st.lists(inner, max_size=3).map(lambda terms: And(tuple(terms))),
    ),
    max_leaves=8,
)


def naive(query: Query, meta: MessageMeta, msn: int, recent: frozenset[Uid]) -> bool:
    """The definition, one message at a time."""

    def in_ranges(n: int, ranges: tuple[tuple[int, int], ...]) -> bool:
        return any(min(a, b) <= n <= max(a, b) for a, b in ranges)

    if isinstance(query, All):
        return True
    if isinstance(query, And):
        return all(naive(t, meta, msn, recent) for t in query.terms)
    if isinstance(query, Or):
        return naive(query.left, meta, msn, recent) or naive(query.right, meta, msn, recent)
    if isinstance(query, Not):
        return not naive(query.term, meta, msn, recent)
    if isinstance(query, FlagIs):
        if query.flag.lower() == "\\recent":
            return (meta.uid in recent) == query.present
        has = query.flag.lower() in {f.lower() for f in meta.flags}
        return has == query.present
    if isinstance(query, RecentIs):
        return (meta.uid in recent) == query.present
    if isinstance(query, UidIn):
        return in_ranges(meta.uid, query.ranges)
    if isinstance(query, SeqIn):
        return in_ranges(msn, query.ranges)
    if isinstance(query, Size):
        return (query.larger is None or meta.size > query.larger) and (
            query.smaller is None or meta.size < query.smaller
        )
    if isinstance(query, ModSeqAtLeast):
        return meta.modseq >= query.modseq
    raise AssertionError(query)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mailboxes(), queries)
async def test_in_memory_terms_match_the_naive_evaluator(
    box_and_recent: tuple[list[MessageMeta], frozenset[Uid]], query: Query
) -> None:
    metas, recent = box_and_recent
    no_store = cast(Store, None)  # the in-memory subset never touches the store
    got = await search(no_store, MailboxId(1), query, metas, recent_uids=recent)
    want = [m.uid for i, m in enumerate(metas, 1) if naive(query, m, i, recent)]
    assert got == want


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mailboxes(), queries)
async def test_terms_answered_from_index_columns_match_the_naive_evaluator(
    box_and_recent: tuple[list[MessageMeta], frozenset[Uid]], query: Query
) -> None:
    metas, recent = box_and_recent
    made: list[int] = []

    def record(position: int) -> MessageMeta:
        made.append(position)
        return metas[position]

    records = ColumnRecords(Columns(metas), len(metas), record)
    no_store = cast(Store, None)  # the in-memory subset never touches the store
    got = await search(no_store, MailboxId(1), query, records, recent_uids=recent)
    want = [m.uid for i, m in enumerate(metas, 1) if naive(query, m, i, recent)]
    assert got == want
    assert made == []  # answered from the columns alone


# ---- streaming decoders: any chunking gives the one-shot result ------------------------------


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    pieces, last = [], 0
    for point in [*points, len(data)]:
        pieces.append(data[last:point])
        last = point
    return pieces


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(0, 600), max_size=12))
def test_streamed_base64_matches_one_shot(payload: bytes, cuts: list[int]) -> None:
    encoded = base64.encodebytes(payload)
    assert b"".join(_base64(_split(encoded, cuts))) == payload


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(0, 900), max_size=12), st.booleans())
def test_streamed_quoted_printable_matches_one_shot(
    payload: bytes, cuts: list[int], crlf: bool
) -> None:
    encoded = quopri.encodestring(payload)
    if crlf:
        encoded = encoded.replace(b"\n", b"\r\n")
    one_shot = binascii.a2b_qp(encoded)
    assert b"".join(_quoted_printable(_split(encoded, cuts))) == one_shot
    # one long line without line ends (soft breaks removed) as well
    long_line = encoded.replace(b"=\r\n", b"").replace(b"=\n", b"").replace(b"\n", b"")
    assert b"".join(_quoted_printable(_split(long_line, cuts))) == binascii.a2b_qp(long_line)
