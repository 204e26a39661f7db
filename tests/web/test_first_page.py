"""The first list page of a large folder a worker has not ordered yet comes from one store query
(Store.date_page) while the index is ordered in the background
(docs/decisions/webmail-first-page.md): the same page as the index gives, both backends."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from tests.web.conftest import ALICE, Web

from pobox.service import webmail as webmail_module
from pobox.store.api import FlagOp, MailboxId, Uid


def message(n: int, date: str | None) -> bytes:
    head = f"From: Carol <carol@example.net>\r\nTo: {ALICE}\r\nSubject: number {n}\r\n"
    if date is not None:
        head += f"Date: {date}\r\n"
    return f"{head}Message-ID: <first-{n}@example.net>\r\n\r\nbody {n}\r\n".encode()


def rows(page: str) -> list[tuple[str, str]]:
    """(UID, row class) of each listed message, in order."""
    return re.findall(r'<tr class="([^"]*)" data-uid="(\d+)">', page)


@pytest.fixture
def small_is_large(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webmail_module, "COLD_PAGE_MIN", 0)


async def test_the_cold_first_page_is_the_page_the_index_gives(
    web: Web, small_is_large: None
) -> None:
    # dates out of arrival order, equal dates (ties go by UID), no Date: (the arrival stands in)
    for n in range(70):
        date = f"Mon, 7 Dec 2026 {10 + (n * 7) % 5}:{(n * 13) % 3:02}:00 +0000"
        await web.deliver(ALICE, message(n, None if n % 9 == 4 else date))
    await web.login()
    inbox = await web.folder_id(ALICE, "INBOX")
    await web.service.store.set_flags(
        MailboxId(inbox), [Uid(3), Uid(40)], FlagOp.ADD, frozenset({"\\Flagged", "\\Seen"})
    )
    webmail = web.app.state.webmail
    store = web.service.store
    asked: list[Any] = []
    real = store.date_page

    async def counted(*args: Any, **kwargs: Any) -> Any:
        asked.append(args)
        return await real(*args, **kwargs)

    store.date_page = counted  # type: ignore[method-assign]
    release = asyncio.Event()
    warm = webmail._warm_order

    async def held(*args: Any) -> None:
        await release.wait()
        await warm(*args)

    webmail._warm_order = held  # type: ignore[method-assign]
    try:
        cold = {}
        for rev in ("1", "0"):
            page = await web.client.get(f"/f/{inbox}?sort=date&rev={rev}")
            assert page.status_code == 200
            cold[rev] = page.text
        assert len(asked) == 2
        assert "Page 1 of 2" in cold["1"] and "70 messages" in cold["1"]
        # asked again before the folder changes: the kept answer, no query
        again = await web.client.get(f"/f/{inbox}")
        assert rows(again.text) == rows(cold["1"]) and len(asked) == 2
        # a change to the folder (a flag) is seen on the next first page
        first = rows(cold["1"])[0]
        assert first[0] == "unseen"
        await store.set_flags(
            MailboxId(inbox), [Uid(int(first[1]))], FlagOp.ADD, frozenset({"\\Seen"})
        )
        changed = await web.client.get(f"/f/{inbox}")
        assert len(asked) == 3
        assert rows(changed.text)[0] == ("", first[1])
        await store.set_flags(
            MailboxId(inbox), [Uid(int(first[1]))], FlagOp.REMOVE, frozenset({"\\Seen"})
        )
        release.set()
        await asyncio.gather(*webmail._warming.values())
        assert not webmail._warming
        warm_pages = {}
        for rev in ("1", "0"):
            page = await web.client.get(f"/f/{inbox}?sort=date&rev={rev}")
            warm_pages[rev] = page.text
        assert len(asked) == 3  # from the index now
        for rev in ("1", "0"):
            assert rows(warm_pages[rev]) == rows(cold[rev])
            assert len(rows(cold[rev])) == 50
        assert (" flagged", "3") in rows(cold["0"]) + rows(cold["1"])
        # SORT's DATE key: the sent date, else the arrival; equal keys by UID
        metas = await store.list_messages(MailboxId(inbox))
        sent = await store.field_values(MailboxId(inbox), "sent_date")
        keys = {
            int(m.uid): (
                m.internal_date.timestamp() if sent[m.uid] is None else float(sent[m.uid] or 0),
                int(m.uid),
            )
            for m in metas
        }
        ordered = [str(u) for u in sorted(keys, key=keys.__getitem__)]
        assert [uid for _, uid in rows(cold["0"])] == ordered[:50]
        assert [uid for _, uid in rows(cold["1"])] == ordered[::-1][:50]
    finally:
        release.set()
        store.date_page = real  # type: ignore[method-assign]


async def test_a_small_folder_is_ordered_through_its_index(web: Web) -> None:
    for n in range(5):
        await web.deliver(ALICE, message(n, f"Mon, 7 Dec 2026 10:0{n}:00 +0000"))
    await web.login()
    inbox = await web.folder_id(ALICE, "INBOX")
    page = await web.client.get(f"/f/{inbox}")
    assert [uid for _, uid in rows(page.text)] == ["5", "4", "3", "2", "1"]
    assert not web.app.state.webmail._warming
