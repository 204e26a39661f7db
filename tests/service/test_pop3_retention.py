"""POP3 retention policies at the service level: delete, keep, keep-days:N, recovery, IMAP's view.

A POP3 session's UPDATE state is `Maildrop.commit()`; these tests drive the maildrop the way the
POP3 session does (open → mark → commit → close) and look at the store the way IMAP does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from tests.conftest import FakeClock

from pobox.errors import Expunged, InUse
from pobox.service.delivery import Envelope
from pobox.service.mail import MailService
from pobox.service.policy import Retention
from pobox.service.view import MailboxView
from pobox.store.api import SEEN, Mailbox, MessageMeta

ADDRESS = "r@example.org"


async def setup(service: MailService, retention: str | None, count: int = 2) -> Mailbox:
    await service.accounts.add(ADDRESS, "pw")
    if retention is not None:
        await service.accounts.set_setting(ADDRESS, "pop3.retention", retention)
    for n in range(1, count + 1):
        envelope = Envelope("s@example.org", (ADDRESS,))
        (result,) = await service.delivery.deliver(envelope, b"Subject: %d\r\n\r\nbody\r\n" % n)
        assert result.delivered
    account = await service.accounts.require(ADDRESS)
    inbox = await service.store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    return inbox


async def pop3_session(
    service: MailService, dele: list[int], retr: tuple[int, ...] = ()
) -> list[str]:
    """One POP3 session: RETR and DELE the given numbers, then QUIT. Returns the listed UIDLs."""
    account = await service.accounts.require(ADDRESS)
    drop = await service.open_maildrop(account)
    try:
        listed = [m.uidl for _, m in drop.visible()]
        for number in retr:
            message = drop.get(number)
            assert message is not None
            content = await drop.open_content(message)
            content.close()
            await drop.mark_seen(message)
        for number in dele:
            message = drop.get(number)
            assert message is not None
            message.deleted = True
        await drop.commit()
    finally:
        await drop.close()
    return listed


async def inbox_messages(service: MailService, inbox: Mailbox) -> list[MessageMeta]:
    return await service.store.list_messages(inbox.id)


async def test_delete_expunges_and_undelete_restores_the_same_uidl(service: MailService) -> None:
    inbox = await setup(service, None)  # the default policy is delete
    assert service.policies.retention(await service.accounts.require(ADDRESS)) == Retention(
        "delete"
    )
    uidls = await pop3_session(service, dele=[1])
    assert len(await inbox_messages(service, inbox)) == 1
    (item,) = await service.recoverable(ADDRESS)
    assert item.uidl == uidls[0] and not item.still_present
    # the next session no longer lists it; undelete brings it back under its old UIDL
    assert await pop3_session(service, dele=[]) == uidls[1:]
    assert await service.undelete(ADDRESS) == 1
    assert sorted(await pop3_session(service, dele=[])) == sorted(uidls)
    assert await service.recoverable(ADDRESS) == []


async def test_delete_recovery_copies_are_purged_after_the_window(service: MailService) -> None:
    await setup(service, "delete")
    await pop3_session(service, dele=[1, 2])
    assert len(await service.recoverable(ADDRESS)) == 2
    days = service.config.pop3.recovery_days
    # expunge records the wall-clock time of the deletion
    now = datetime.now(UTC)
    assert await service.policies.sweep(now + timedelta(days=days) - timedelta(hours=1)) == (0, 0)
    assert len(await service.recoverable(ADDRESS)) == 2
    assert await service.policies.sweep(now + timedelta(days=days, hours=1)) == (0, 2)
    assert await service.recoverable(ADDRESS) == []
    assert await service.undelete(ADDRESS) == 0


async def test_keep_leaves_mail_in_inbox_seen_and_hides_it_from_pop3(
    service: MailService, clock: FakeClock
) -> None:
    inbox = await setup(service, "keep")
    uidls = await pop3_session(service, dele=[1], retr=(2,))
    messages = await inbox_messages(service, inbox)
    assert len(messages) == 2
    assert all(SEEN in m.flags for m in messages)  # DELE under keep also marks \Seen
    assert await pop3_session(service, dele=[]) == uidls[1:]
    # within the recovery window, undelete shows it to POP3 again
    clock.now += timedelta(days=1)
    assert await service.undelete(ADDRESS) == 1
    assert await pop3_session(service, dele=[]) == uidls
    # deleted again: the sweeper never removes it, however late (only the recovery entry goes)
    await pop3_session(service, dele=[1])
    clock.now += timedelta(days=3650)
    assert (await service.policies.sweep())[0] == 0
    assert len(await inbox_messages(service, inbox)) == 2
    assert await service.recoverable(ADDRESS) == []
    assert await pop3_session(service, dele=[]) == uidls[1:]


async def test_keep_days_expunges_only_after_n_days(service: MailService, clock: FakeClock) -> None:
    inbox = await setup(service, "keep-days:10")
    uidls = await pop3_session(service, dele=[1])
    assert len(await inbox_messages(service, inbox)) == 2
    assert await pop3_session(service, dele=[]) == uidls[1:]
    deleted_at = clock.now
    clock.now = deleted_at + timedelta(days=10) - timedelta(minutes=1)
    assert (await service.policies.sweep())[0] == 0
    assert len(await inbox_messages(service, inbox)) == 2
    clock.now = deleted_at + timedelta(days=10, minutes=1)
    assert (await service.policies.sweep())[0] == 1
    (left,) = await inbox_messages(service, inbox)
    assert left.uid == 2
    # still recoverable after the expunge, with its UIDL
    (item,) = await service.recoverable(ADDRESS)
    assert item.uidl == uidls[0] and not item.still_present
    # past the recovery window the copy is purged
    clock.now += timedelta(days=service.config.pop3.recovery_days + 1)
    await service.policies.sweep(datetime.now(UTC) + timedelta(days=365))
    assert await service.recoverable(ADDRESS) == []


async def test_keep_days_recovery_within_window(service: MailService, clock: FakeClock) -> None:
    await setup(service, "keep-days:30")
    uidls = await pop3_session(service, dele=[1, 2])
    assert await pop3_session(service, dele=[]) == []
    clock.now += timedelta(days=2)
    assert await service.undelete(ADDRESS) == 2
    assert await pop3_session(service, dele=[]) == uidls
    clock.now += timedelta(days=60)
    assert (await service.policies.sweep())[0] == 0  # no longer hidden: nothing to expire


@pytest.mark.parametrize("policy", ["delete", "keep", "keep-days:30"])
def test_expire_capability_is_truthful(policy: str) -> None:
    # RFC 2449 §6.7: mail a client leaves on the server is never removed by any policy
    assert Retention.parse(policy).expire_capability() == "NEVER"


async def test_imap_view_sees_the_pop3_expunge(service: MailService) -> None:
    inbox = await setup(service, "delete", count=3)
    view = await MailboxView.open(service.store, inbox)
    assert len(view) == 3
    await pop3_session(service, dele=[2])
    update = await view.refresh()
    assert update.expunged == [2]
    assert len(view) == 2


async def test_imap_view_sees_only_seen_under_keep(service: MailService) -> None:
    inbox = await setup(service, "keep", count=2)
    view = await MailboxView.open(service.store, inbox)
    await pop3_session(service, dele=[1])
    update = await view.refresh()
    assert update.expunged == []
    assert [(msn, SEEN in meta.flags) for msn, meta in update.flags] == [(1, True)]


async def test_imap_expunge_during_a_pop3_session(service: MailService) -> None:
    inbox = await setup(service, "delete", count=2)
    account = await service.accounts.require(ADDRESS)
    drop = await service.open_maildrop(account)
    try:
        with pytest.raises(InUse):
            await service.open_maildrop(account)
        await service.store.expunge(inbox.id, [drop.messages[0].meta.uid])  # IMAP EXPUNGE
        first = drop.get(1)
        assert first is not None
        with pytest.raises(Expunged):
            await drop.open_content(first)
        first.deleted = True
        second = drop.get(2)
        assert second is not None
        second.deleted = True
        assert await drop.commit() == 1  # only the one still there is counted
    finally:
        await drop.close()
    assert await inbox_messages(service, inbox) == []
    assert len(await service.recoverable(ADDRESS)) == 1  # IMAP's expunge is not POP3's
