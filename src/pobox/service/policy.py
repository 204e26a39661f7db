"""Retention: how long the server keeps mail a POP3 client deleted, and the sweeper."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pobox.config import Pop3Config, parse_retention
from pobox.store.api import Account, MailboxId, Store, Uid

log = logging.getLogger("pobox.policy")

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Retention:
    """delete: DELE+QUIT expunges; keep: hidden from POP3, kept; keep-days: kept N days."""

    kind: str
    days: int | None = None

    @classmethod
    def parse(cls, text: str) -> Retention:
        kind, days = parse_retention(text)
        return cls(kind, days)

    def expire_capability(self) -> str:
        """RFC 2449 §6.7 EXPIRE argument: the minimum time the server keeps mail a client leaves.

        Every policy keeps mail the client did not DELE for ever; the policies differ only in
        what happens after DELE+QUIT, when the message is gone from POP3 in any case. So the
        truthful value is NEVER for all of them ("0" would forbid leaving mail on the server and
        "N" would announce deletion of mail left there). See docs/pop3.md.
        """
        return "NEVER"

    def __str__(self) -> str:
        return self.kind if self.days is None else f"{self.kind}:{self.days}"


class Policies:
    def __init__(self, store: Store, pop3: Pop3Config, clock: Clock = utcnow) -> None:
        self.store = store
        self.pop3 = pop3
        self.clock = clock

    def retention(self, account: Account) -> Retention:
        text = account.settings.get("pop3.retention", self.pop3.retention)
        try:
            return Retention.parse(text)
        except ValueError:
            log.warning("account %s has a bad pop3.retention %r", account.address, text)
            return Retention.parse(self.pop3.retention)

    async def sweep(self, now: datetime | None = None) -> tuple[int, int]:
        """Expunge mail kept past its keep-days window; drop recovery copies past theirs.

        Returns (messages expunged, recovery copies purged).
        """
        now = now or self.clock()
        expunged = 0
        for account in await self.store.list_accounts():
            policy = self.retention(account)
            if policy.kind != "keep-days" or policy.days is None:
                continue
            cutoff = now - timedelta(days=policy.days)
            by_mailbox: dict[MailboxId, list[Uid]] = defaultdict(list)
            for mailbox_id, uid in await self.store.hidden_before(account.id, cutoff):
                by_mailbox[mailbox_id].append(uid)
            for mailbox_id, uids in by_mailbox.items():
                gone = await self.store.expunge(mailbox_id, uids, keep_recoverable=True)
                expunged += len(gone)
                log.info(
                    "retention expunged account=%s count=%d policy=%s",
                    account.address,
                    len(gone),
                    policy,
                )
        purged = await self.store.purge_recoverable(now - timedelta(days=self.pop3.recovery_days))
        return expunged, purged
