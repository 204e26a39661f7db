"""What the transfer tests share: a store filled with everything a backup or an export must
bring back, and a backend-neutral view of what a store holds."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from tests.store.util import append, message_bytes

from pobox.service.passwords import hash_password
from pobox.store.api import FlagOp, Store

PASSWORD = "secret"
USERS = ("alice@example.org", "bob@example.org")


async def fill(store: Store, messages: int = 12) -> None:
    for index, address in enumerate(USERS):
        account = await store.create_account(address, hash_password(PASSWORD))
        await store.add_alias(f"alias{index}@example.org", account.id)
        await store.set_account_setting(account.id, "pop3.retention", "keep")
        await store.set_subscribed(account.id, "Lists/python", True)
        inbox = await store.get_mailbox(account.id, "INBOX")
        archive = await store.get_mailbox(account.id, "Archive")
        assert inbox is not None and archive is not None
        work = await store.create_mailbox(account.id, "Work")
        await store.create_mailbox(account.id, "Work/Reports")
        metas = []
        for n in range(messages):
            flags = frozenset({"\\Seen"} if n % 2 else set()) | (
                frozenset({"$Label1", "\\Flagged"}) if n % 3 == 0 else frozenset()
            )
            when = datetime(2025, 6, 1 + n % 28, 8, n % 60, tzinfo=UTC)
            size = 400_000 if n == 5 else 0  # one large message
            metas.append(
                await append(
                    store, inbox.id, message_bytes(n, size=size), flags=flags, internal_date=when
                )
            )
        await store.copy(inbox.id, [m.uid for m in metas[:4]], archive.id)
        await store.copy(inbox.id, [m.uid for m in metas[4:6]], work.id, move=True)
        await store.set_flags(inbox.id, [metas[7].uid], FlagOp.ADD, frozenset({"\\Answered"}))
        await store.expunge(inbox.id, [metas[8].uid])
        await store.expunge(inbox.id, [metas[9].uid], keep_recoverable=True)
        await store.pop3_hide(inbox.id, [metas[10].uid], datetime(2026, 1, 2, tzinfo=UTC))
        await store.expunge(inbox.id, [metas[11].uid], keep_recoverable=True)
        items = await store.list_recoverable(account.id)
        (last,) = [i for i in items if i.uid == metas[11].uid]
        await store.recover(account.id, [last.id])  # a new UID, the old UIDL (an override)
        await store.claim_recent(archive.id)


async def observed(store: Store) -> list[Any]:
    """Every account as the store keeps it, contents by SHA-256 (ids left out: they are the
    store's own)."""
    out: list[Any] = []
    async with store.snapshot() as snap:
        for image in await snap.accounts():
            digests: dict[str, str] = {}

            async def digest(key: str, cache: dict[str, str] = digests) -> str:
                if key not in cache:
                    cache[key] = hashlib.sha256(await snap.read_content(key)).hexdigest()
                return cache[key]

            mailboxes = []
            for mb in image.mailboxes:
                messages = [(m, await digest(m.content)) for m in mb.messages]
                mailboxes.append(
                    (
                        mb.name,
                        mb.uidvalidity,
                        mb.uidnext,
                        mb.highest_modseq,
                        mb.recent_floor,
                        mb.special_use,
                        mb.expunged,
                        [
                            (
                                m.uid,
                                m.modseq,
                                m.flags,
                                m.internal_date,
                                m.internal_tz,
                                m.save_date,
                                m.size,
                                d,
                                m.pop3_uidl,
                                m.pop3_hidden_at,
                            )
                            for m, d in messages
                        ],
                    )
                )
            recoverable = [
                (
                    r.mailbox_name,
                    r.uid,
                    r.uidl,
                    r.deleted_at,
                    r.still_present,
                    None if r.content is None else await digest(r.content),
                    r.flags,
                    r.size,
                )
                for r in image.recoverable
            ]
            out.append(
                (
                    image.address,
                    image.password_hash,
                    image.created,
                    dict(image.settings),
                    image.aliases,
                    image.subscriptions,
                    mailboxes,
                    recoverable,
                )
            )
    return out
