"""THREAD=REFERENCES' parent ids kept with each content (schema 12, ``blobs.thread_refs``), on
both backends: what append stores, what ``field_values("references")`` reads, and that content
stored before the migration (NULL) threads the same through the stored structure."""

from __future__ import annotations

from tests.store.util import append

from pobox.mail.threading import render
from pobox.service.thread import thread
from pobox.store.api import MailboxId, MessageMeta, Store

# (Message-ID, References, In-Reply-To, Subject): replies, a missing parent, a reply known
# only by In-Reply-To, a loop, a malformed id, a subject-only thread, no ids at all
CORPUS = [
    ("<a@x>", None, None, "plan"),
    ("<b@x>", "<a@x>", "<a@x>", "Re: plan"),
    ("<c@x>", "<a@x> <b@x>", None, "Re: plan"),
    ("<d@x>", None, "<c@x> (sent by Carla) <zz@x>", "Re: plan"),
    ("<e@x>", "<missing@x> <gone@x>", None, "Re: lost parent"),
    ("<f@x>", "<g@x>", None, "loop"),
    ("<g@x>", "<f@x>", None, "Re: loop"),
    ("<h@x>", "not-an-id", "<a@x>", "Re: plan"),
    (None, None, None, "Fwd: budget"),
    ("<i@x>", None, None, "budget"),
    ("<j@x>", "  <a@x>\r\n\t<c@x>  ", None, "Re: plan"),
]
WANT = ["", "a@x", "a@x b@x", "c@x", "missing@x gone@x", "g@x", "f@x", "a@x", "", "", "a@x c@x"]


def _message(n: int, mid: str | None, refs: str | None, irt: str | None, subject: str) -> bytes:
    head = f"From: p{n}@example.org\r\nSubject: {subject}\r\n"
    head += f"Date: Thu, {1 + n:02d} Jan 2026 10:00:00 +0000\r\n"
    if mid:
        head += f"Message-ID: {mid}\r\n"
    if refs:
        head += f"References: {refs}\r\n"
    if irt:
        head += f"In-Reply-To: {irt}\r\n"
    return f"{head}\r\nbody {n}\r\n".encode()


async def _filled(store: Store, address: str) -> tuple[MailboxId, list[MessageMeta]]:
    account = await store.create_account(address, "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    metas = [await append(store, inbox.id, _message(n, *row)) for n, row in enumerate(CORPUS)]
    return inbox.id, metas


async def _forget_references(store: Store) -> None:
    """The column as migration 12 leaves content stored before it: dropped and added again by
    the migration itself (NULL everywhere)."""
    from pobox.store.postgres import schema as pg_schema
    from pobox.store.postgres.store import PostgresStore
    from pobox.store.sqlite import schema as sqlite_schema
    from pobox.store.sqlite.store import SqliteStore

    if isinstance(store, SqliteStore):

        def again(conn: object) -> None:
            conn.execute("ALTER TABLE blobs DROP COLUMN thread_refs")  # type: ignore[attr-defined]
            for statement in sqlite_schema.MIGRATIONS[11].split(";"):
                if statement.strip():
                    conn.execute(statement)  # type: ignore[attr-defined]

        await store._db.write(again)
    else:
        assert isinstance(store, PostgresStore)

        async def again_pg(tx: object) -> None:
            await tx.conn.execute("ALTER TABLE blobs DROP COLUMN thread_refs")  # type: ignore[attr-defined]
            await tx.conn.execute(pg_schema.MIGRATIONS[11])  # type: ignore[attr-defined]

        await store._write(again_pg)  # type: ignore[arg-type]


async def test_append_keeps_the_parent_ids(store: Store) -> None:
    inbox, metas = await _filled(store, "refs@example.org")
    stored = await store.field_values(inbox, "references")
    assert stored == {m.uid: want for m, want in zip(metas, WANT, strict=True)}
    some = [metas[3].uid, metas[0].uid]
    assert await store.field_values(inbox, "references", some) == {
        metas[3].uid: "c@x",
        metas[0].uid: "",
    }


async def test_content_from_before_the_migration_threads_the_same(store: Store) -> None:
    inbox, metas = await _filled(store, "old@example.org")
    want = {
        algorithm: render(await thread(store, inbox, algorithm, metas))
        for algorithm in ("REFERENCES", "ORDEREDSUBJECT")
    }
    # a's replies (d by In-Reply-To, h by In-Reply-To as its References holds no id), e under
    # its pruned dummies, the f/g loop broken, the forward of "budget" under the original
    assert want["REFERENCES"] == b"(1 (2 3 (4)(11))(8))(5)(7 6)(10 9)"
    await _forget_references(store)
    assert set((await store.field_values(inbox, "references")).values()) == {None}
    for algorithm, answer in want.items():
        assert render(await thread(store, inbox, algorithm, metas)) == answer
    # content stored after the migration gets the column again, beside the old
    late = await append(store, inbox, _message(20, "<k@x>", "<a@x> <j@x>", None, "Re: plan"))
    values = await store.field_values(inbox, "references", [late.uid, metas[1].uid])
    assert values == {late.uid: "a@x j@x", metas[1].uid: None}
    both = render(await thread(store, inbox, "REFERENCES", [*metas, late]))
    assert both == b"(1 (2 3 (4)(11 12))(8))(5)(7 6)(10 9)"
