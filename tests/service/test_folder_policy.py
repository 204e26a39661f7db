"""Folder policies with a controllable clock (docs/policies.md), on both backends: messages
are expunged or archived at the right time and only then, into Archive/YYYY by year, with their
flags and dates; levels override each other key by key; a dry run changes nothing."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import FakeClock, make_config
from tests.helpers.postgres import session_database
from tests.store.util import append, message_bytes

from pobox.config import PolicyConfig
from pobox.errors import InvalidInput
from pobox.service.folder_policy import LOCK_NAME, Effective
from pobox.service.mail import MailService
from pobox.store.api import Account, AccountId, Mailbox, MailboxId, MessageMeta, Uid
from pobox.store.factory import create_store

ADDRESS = "tidy@example.org"


@pytest.fixture(params=["sqlite", "postgres"])
async def service(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[MailService]:
    schema: str | None = None
    spec = request.param
    if spec == "postgres":
        schema, spec = session_database().new_schema()
    config = make_config(tmp_path / "data", policy={"batch": 3})
    store = create_store(spec, tmp_path / "data")
    await store.open()
    svc = MailService(config, store, clock)
    try:
        yield svc
    finally:
        await svc.close()
        if schema is not None:
            session_database().drop_schema(schema)


async def mailbox(service: MailService, account: Account, name: str) -> Mailbox:
    found = await service.store.get_mailbox(account.id, name)
    assert found is not None, name
    return found


async def fill(
    service: MailService, box: Mailbox, dates: list[datetime], flags: frozenset[str] = frozenset()
) -> list[MessageMeta]:
    return [
        await append(service.store, box.id, message_bytes(n), internal_date=d, flags=flags)
        for n, d in enumerate(dates)
    ]


async def uids(service: MailService, box: Mailbox) -> list[int]:
    return [m.uid for m in await service.store.list_messages(box.id)]


async def test_trash_is_expunged_by_save_date_when_due_and_not_before(
    service: MailService, clock: FakeClock
) -> None:
    account = await service.accounts.add(ADDRESS, "pw")
    trash = await mailbox(service, account, "Trash")
    inbox = await mailbox(service, account, "INBOX")
    old = datetime(2001, 1, 1, tzinfo=UTC)  # the internal date does not count for expunge-after
    saved = await fill(service, trash, [old] * 7)
    await fill(service, inbox, [old] * 2)
    saved_at = max(m.save_date for m in saved)
    clock.now = saved_at + timedelta(days=30) - timedelta(minutes=1)
    outcome = await service.folder_policies.sweep()
    assert outcome is not None and outcome.total_expunged == 0
    assert len(await uids(service, trash)) == 7
    clock.now = saved_at + timedelta(days=30, seconds=1)
    outcome = await service.folder_policies.sweep()
    assert outcome is not None
    assert outcome.expunged == {(ADDRESS, "Trash"): 7}  # in batches of 3: 3 + 3 + 1
    assert await uids(service, trash) == []
    assert len(await uids(service, inbox)) == 2  # no policy for INBOX


async def test_archive_by_year_keeps_flags_and_dates(
    service: MailService, clock: FakeClock
) -> None:
    account = await service.accounts.add(ADDRESS, "pw")
    inbox = await mailbox(service, account, "INBOX")
    await service.folder_policies.set_policy(
        account, "INBOX", {"archive-after": "365d", "archive-by": "year"}
    )
    clock.now = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    dates = [
        datetime(2019, 5, 1, 8, 30, tzinfo=UTC),
        datetime(2024, 12, 31, 23, 59, tzinfo=UTC),
        datetime(2025, 1, 15, 11, 0, tzinfo=UTC),  # 365 days and an hour old: due
        datetime(2025, 1, 15, 13, 0, tzinfo=UTC),  # not quite 365 days old: stays
        datetime(2019, 1, 2, tzinfo=UTC),
    ]
    flags = frozenset({"\\Seen", "\\Flagged", "$Label1"})
    metas = await fill(service, inbox, dates, flags)
    outcome = await service.folder_policies.sweep()
    assert outcome is not None
    assert outcome.archived == {
        (ADDRESS, "INBOX", "Archive/2019"): 2,
        (ADDRESS, "INBOX", "Archive/2024"): 1,
        (ADDRESS, "INBOX", "Archive/2025"): 1,
    }
    assert await uids(service, inbox) == [metas[3].uid]
    expected = {
        "Archive/2019": [dates[0], dates[4]],
        "Archive/2024": [dates[1]],
        "Archive/2025": [dates[2]],
    }
    for name, wanted in expected.items():
        box = await mailbox(service, account, name)
        moved = await service.store.list_messages(box.id)
        assert sorted(m.internal_date for m in moved) == sorted(wanted), name
        assert all(m.flags == flags for m in moved), name
        assert box.subscribed
    assert (await mailbox(service, account, "Archive")).special_use == "\\Archive"
    # a later sweep finds nothing more to do; a year later the last one goes too
    again = await service.folder_policies.sweep()
    assert again is not None and again.total_archived == 0
    clock.now += timedelta(hours=2)
    again = await service.folder_policies.sweep()
    assert again is not None and again.archived == {(ADDRESS, "INBOX", "Archive/2025"): 1}


async def test_a_missing_archive_is_created_with_the_archive_attribute(
    service: MailService, clock: FakeClock
) -> None:
    account = await service.accounts.add(ADDRESS, "pw")
    await service.store.delete_mailbox((await mailbox(service, account, "Archive")).id)
    sent = await mailbox(service, account, "Sent")
    await fill(service, sent, [datetime(2020, 1, 1, tzinfo=UTC)] * 4)
    await service.folder_policies.set_policy(account, "\\Sent", {"archive-after": "30d"})
    outcome = await service.folder_policies.sweep()
    assert outcome is not None and outcome.archived == {(ADDRESS, "Sent", "Archive"): 4}
    archive = await mailbox(service, account, "Archive")
    assert archive.special_use == "\\Archive"
    assert len(await uids(service, archive)) == 4
    # the archive is never a source, even under a policy for every folder
    await service.folder_policies.set_policy(account, "*", {"archive-after": "1d"})
    outcome = await service.folder_policies.sweep()
    assert outcome is not None and outcome.total_archived == 0
    assert len(await uids(service, archive)) == 4


async def test_levels_override_key_by_key(service: MailService) -> None:
    service.folder_policies.config = PolicyConfig(
        rules=("* archive-by=year", "\\Sent archive-after=730d", "INBOX archive-after=1000d")
    )
    account = await service.accounts.add(ADDRESS, "pw")
    await service.store.create_mailbox(account.id, "Lists")
    policies = service.folder_policies
    await policies.set_policy(account, "*", {"expunge-after": "400d"})
    await policies.set_policy(account, "\\Trash", {"expunge-after": "7d"})
    await policies.set_policy(account, "Lists", {"expunge-after": "off", "archive-by": "none"})

    def table(effective: list[Effective]) -> dict[str, dict[str, tuple[str, str]]]:
        return {
            e.mailbox.name: {k: (s.value, s.source) for k, s in e.settings.items()}
            for e in effective
        }

    got = table(await policies.effective(account))
    assert got["Trash"] == {
        "expunge-after": ("7d", "account \\Trash"),
        "archive-by": ("year", "server *"),
    }
    assert got["Junk"]["expunge-after"] == ("400d", "account *")  # the account beats the server
    assert got["Sent"] == {
        "expunge-after": ("400d", "account *"),
        "archive-after": ("730d", "server \\Sent"),
        "archive-by": ("year", "server *"),
    }
    assert got["INBOX"]["archive-after"] == ("1000d", "server INBOX")
    assert got["Lists"] == {"expunge-after": ("off", "folder"), "archive-by": ("none", "folder")}
    lists = next(e for e in await policies.effective(account) if e.mailbox.name == "Lists")
    assert lists.expunge_after is None and not lists.by_year
    # removing the folder's settings lets the account's apply again
    assert await policies.delete_policy(account, "Lists") == 2
    got = table(await policies.effective(account))
    assert got["Lists"]["expunge-after"] == ("400d", "account *")


async def test_bad_settings_name_the_problem(service: MailService) -> None:
    account = await service.accounts.add(ADDRESS, "pw")
    for settings, words in [
        ({"expunge-after": "30x"}, "'30x' is not a duration"),
        ({"expunge-after": "0d"}, "'0d' is not a duration"),
        ({"archive-by": "month"}, "archive-by=year or archive-by=none"),
        ({"keep-for": "1d"}, "unknown policy setting 'keep-for'"),
    ]:
        with pytest.raises(InvalidInput, match=words):
            await service.folder_policies.set_policy(account, "INBOX", settings)
    assert await service.folder_policies.stored(account) == []


async def test_dry_run_changes_nothing(service: MailService, clock: FakeClock) -> None:
    account = await service.accounts.add(ADDRESS, "pw")
    inbox = await mailbox(service, account, "INBOX")
    trash = await mailbox(service, account, "Trash")
    await fill(service, inbox, [datetime(2018, 1, 1, tzinfo=UTC)] * 5)
    await fill(service, trash, [datetime(2018, 1, 1, tzinfo=UTC)] * 4)
    await service.folder_policies.set_policy(account, "INBOX", {"archive-after": "365d"})
    # Trash: expunge-after 30d (server) and, for the account, archive-after: expunge comes first
    await service.folder_policies.set_policy(account, "Trash", {"archive-after": "365d"})
    clock.now = datetime.now(UTC) + timedelta(days=31)
    before = {
        name: await uids(service, await mailbox(service, account, name))
        for name in ("INBOX", "Trash", "Archive")
    }
    planned = await service.folder_policies.sweep(dry_run=True)
    assert planned is not None
    assert planned.expunged == {(ADDRESS, "Trash"): 4}
    assert planned.archived == {(ADDRESS, "INBOX", "Archive"): 5}
    after = {
        name: await uids(service, await mailbox(service, account, name))
        for name in ("INBOX", "Trash", "Archive")
    }
    assert after == before
    done = await service.folder_policies.sweep()
    assert done is not None
    assert (done.expunged, done.archived) == (planned.expunged, planned.archived)


async def test_one_sweep_at_a_time(service: MailService, clock: FakeClock) -> None:
    account = await service.accounts.add(ADDRESS, "pw")
    trash = await mailbox(service, account, "Trash")
    await fill(service, trash, [datetime(2018, 1, 1, tzinfo=UTC)])
    clock.now = datetime.now(UTC) + timedelta(days=31)
    lock = await service.store.try_lock(AccountId(0), LOCK_NAME)
    assert lock is not None
    try:
        assert await service.folder_policies.sweep() is None  # someone else is sweeping
        assert len(await uids(service, trash)) == 1
    finally:
        await lock.release()
    outcome = await service.folder_policies.sweep()
    assert outcome is not None and outcome.total_expunged == 1


async def test_progress_counts_every_batch(service: MailService, clock: FakeClock) -> None:
    account = await service.accounts.add(ADDRESS, "pw")
    inbox = await mailbox(service, account, "INBOX")
    await fill(service, inbox, [datetime(2018, 1, 1, tzinfo=UTC)] * 8)
    await service.folder_policies.set_policy(account, "INBOX", {"archive-after": "30d"})
    seen: list[int] = []
    service.folder_policies.config = dataclasses.replace(service.folder_policies.config, batch=3)
    outcome = await service.folder_policies.sweep(progress=seen.append)
    assert outcome is not None and outcome.total_archived == 8
    assert seen == [3, 3, 2]


async def test_inbox_is_spelt_canonically(service: MailService) -> None:
    account = await service.accounts.add(ADDRESS, "pw")
    await service.folder_policies.set_policy(account, "inbox", {"archive-after": "1w"})
    stored = await service.folder_policies.stored(account)
    assert [(p.folder, p.key, p.value) for p in stored] == [("INBOX", "archive-after", "1w")]
    assert await service.folder_policies.delete_policy(account, "Inbox") == 1


async def test_one_failing_account_does_not_stop_the_others(
    service: MailService, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = await service.accounts.add("broken@example.org", "pw")
    fine = await service.accounts.add(ADDRESS, "pw")
    for account in (broken, fine):
        await fill(service, await mailbox(service, account, "Trash"), [clock.now])
    broken_trash = await mailbox(service, broken, "Trash")
    real = service.store.due_messages

    async def due(mailbox_id: MailboxId, *args: Any) -> list[tuple[Uid, datetime]]:
        if mailbox_id == broken_trash.id:
            raise RuntimeError("disk on fire")
        return await real(mailbox_id, *args)

    monkeypatch.setattr(service.store, "due_messages", due)
    clock.now = datetime.now(UTC) + timedelta(days=31)
    outcome = await service.folder_policies.sweep()
    assert outcome is not None
    assert outcome.failed == {"broken@example.org": "disk on fire"}
    assert outcome.expunged == {(ADDRESS, "Trash"): 1}
