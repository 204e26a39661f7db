"""Quotas (RFC 9208; docs/quota.md): every account's limits, its usage, and the warnings.

The limits come from ``[quota]`` in the configuration, each overridable per account (account
settings ``quota.storage``, ``quota.messages``, ``quota.mailboxes``). The service hands them
to the store's writes (append, copy, create mailbox), which refuse a write past a limit with
OverQuota in the write's own transaction; expunging and deleting are never checked. After a
write that added mail, :meth:`Quotas.after_write` delivers a warning into the account's INBOX
when the usage crossed a warning level (docs/decisions/quota.md).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate

from pobox.config import QuotaConfig, parse_count, parse_size
from pobox.errors import InvalidInput, NoPermission, NotFound
from pobox.service.content import chunked, spool_message
from pobox.store.api import Account, AccountId, QuotaLimits, QuotaUsage, Store

log = logging.getLogger("pobox.quota")

#: The account settings that override ``[quota]``, with their validators.
SETTINGS = {
    "quota.storage": parse_size,
    "quota.messages": parse_count,
    "quota.mailboxes": parse_count,
}

#: IMAP resource names (RFC 9208 §5) and the account settings behind them.
RESOURCES = {"STORAGE": "quota.storage", "MESSAGE": "quota.messages", "MAILBOX": "quota.mailboxes"}

#: How long a process keeps an account's limits before it reads its settings again.
LIMITS_TTL = 5.0
#: How long after_write trusts a usage it read, plus what the process added since.
USAGE_TTL = 5.0


def _size_text(octets: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if octets < 1024 or unit == "TB":
            return f"{octets:.0f} {unit}" if unit == "bytes" else f"{octets:.1f} {unit}"
        octets /= 1024
    return f"{octets:.1f} TB"  # pragma: no cover


def percent(storage: int, messages: int, limits: QuotaLimits) -> float:
    """How full the account is: the larger share of a limited resource, in percent."""
    shares = [0.0]
    if limits.storage:
        shares.append(100.0 * storage / limits.storage)
    if limits.messages:
        shares.append(100.0 * messages / limits.messages)
    return max(shares)


def level(storage: int, messages: int, limits: QuotaLimits, thresholds: Sequence[int]) -> int:
    """The highest warning threshold the usage has reached (0: none)."""
    share = percent(storage, messages, limits)
    return max((t for t in thresholds if share >= t), default=0)


@dataclass(slots=True)
class _Seen:
    """An account's usage as this process last read it, plus what it added since."""

    at: float  # time.monotonic() of the read
    storage: int
    messages: int
    seen: int  # the warning level in force then


@dataclass(frozen=True, slots=True)
class QuotaReport:
    """An account's limits and usage, as GETQUOTA and ``pobox user list`` show them."""

    limits: QuotaLimits
    usage: QuotaUsage


class Quotas:
    def __init__(self, store: Store, config: QuotaConfig, hostname: str) -> None:
        self.store = store
        self.config = config
        self.hostname = hostname
        self._defaults = self._server_limits(config)
        self._cache: dict[AccountId, tuple[float, QuotaLimits]] = {}
        self._seen: dict[AccountId, _Seen] = {}
        #: seconds after which after_write reads the usage again even when what this process
        #: added cannot have crossed a level (other processes' mail, expunges)
        self.usage_ttl = USAGE_TTL

    @staticmethod
    def _server_limits(config: QuotaConfig) -> QuotaLimits:
        return QuotaLimits(
            storage=parse_size(config.storage),
            messages=config.messages or None,
            mailboxes=config.mailboxes or None,
        )

    def reconfigure(self, config: QuotaConfig, hostname: str) -> None:
        self.config = config
        self.hostname = hostname
        self._defaults = self._server_limits(config)
        self._cache.clear()
        self._seen.clear()

    # limits -------------------------------------------------------------------------------
    def limits(self, account: Account) -> QuotaLimits:
        """The account's limits: its own settings, else the server's."""
        values: dict[str, int | None] = {}
        for field, key in (
            ("storage", "quota.storage"),
            ("messages", "quota.messages"),
            ("mailboxes", "quota.mailboxes"),
        ):
            text = account.settings.get(key)
            if text is None:
                values[field] = getattr(self._defaults, field)
                continue
            try:
                values[field] = SETTINGS[key](text)
            except ValueError:  # set behind the CLI's back: the server's limit holds
                log.warning("account %s: ignoring bad setting %s=%r", account.address, key, text)
                values[field] = getattr(self._defaults, field)
        return QuotaLimits(**values)

    async def current_limits(self, account_id: AccountId) -> QuotaLimits:
        """The limits of an account (a mailbox's owner) with its settings as stored now, read
        again after LIMITS_TTL seconds (a long IMAP session sees a changed quota)."""
        now = time.monotonic()
        cached = self._cache.get(account_id)
        if cached is not None and now - cached[0] < LIMITS_TTL:
            return cached[1]
        account = await self.store.get_account_by_id(account_id)
        if account is None:
            raise NotFound("no such account")
        limits = self.limits(account)
        if len(self._cache) > 10000:
            self._cache.clear()
        self._cache[account_id] = (now, limits)
        return limits

    async def report(self, account: Account) -> QuotaReport:
        return QuotaReport(
            await self.current_limits(account.id), await self.store.quota_usage(account.id)
        )

    def is_admin(self, account: Account) -> bool:
        return account.address.lower() in {a.lower() for a in self.config.admins}

    async def set_limits(self, admin: Account, target: Account, limits: dict[str, int]) -> None:
        """SETQUOTA (RFC 9208 §4.1.3): *target*'s limits become exactly *limits* (IMAP
        resource names; STORAGE in units of 1024 octets), kept as its own settings; a resource
        not named has no limit any more."""
        if not self.is_admin(admin):
            raise NoPermission("only a quota administrator ([quota] admins) may change quotas")
        unknown = sorted(set(limits) - set(RESOURCES))
        if unknown:
            raise InvalidInput(f"unsupported resource {unknown[0]}")
        if any(value == 0 for value in limits.values()):
            raise InvalidInput("a limit of 0 is not supported; leave the resource out for none")
        settings: dict[str, int] = {}
        for resource, key in RESOURCES.items():
            value = limits.get(resource, 0)  # 0 in a setting: no limit
            settings[key] = value * 1024 if resource == "STORAGE" else value
            if settings[key] >= 10**15:
                raise InvalidInput(f"the {resource} limit {value} is too large")
        for key, number in settings.items():
            await self.store.set_account_setting(target.id, key, str(number))
        self._cache.pop(target.id, None)

    # warnings -----------------------------------------------------------------------------
    async def after_write(
        self,
        account: Account | AccountId,
        limits: QuotaLimits | None,
        added: tuple[int, int] | None = None,
    ) -> None:
        """After mail was added to an account (*added*: its octets and messages, when known): a
        warning into its INBOX when the usage crossed a warning level since the last one (once
        per crossing; docs/decisions/quota.md). Never raises: the write it follows succeeded."""
        try:
            await self._after_write(account, limits, added)
        except Exception:
            log.exception("quota warning for account %s failed", account)

    async def _after_write(
        self,
        who: Account | AccountId,
        limits: QuotaLimits | None,
        added: tuple[int, int] | None,
    ) -> None:
        thresholds = self.config.warn
        if limits is None or not thresholds or (limits.storage is None and limits.messages is None):
            return
        account_id = who.id if isinstance(who, Account) else who
        clock = time.monotonic()
        known = self._seen.get(account_id)
        if added is not None and known is not None and clock - known.at < self.usage_ttl:
            # what this process added since it last read the usage cannot have crossed a
            # level: no read (other writers' mail is seen at the next read)
            known.storage += added[0]
            known.messages += added[1]
            if level(known.storage, known.messages, limits, thresholds) <= known.seen:
                return
        usage = await self.store.quota_usage(account_id)
        now = level(usage.storage, usage.messages, limits, thresholds)
        low = level(usage.low_storage, usage.low_messages, limits, thresholds)
        seen = min(usage.warned, low)  # fell below since the last warning: warned again
        if now <= seen and seen == usage.warned:
            if len(self._seen) > 10000:
                self._seen.clear()
            self._seen[account_id] = _Seen(clock, usage.storage, usage.messages, seen)
            return
        self._seen.pop(account_id, None)  # read again next time
        if now > seen:
            account = who if isinstance(who, Account) else await self.store.get_account_by_id(who)
            inbox = await self.store.get_mailbox(account_id, "INBOX")
            if account is None or inbox is None:
                return
            message = await asyncio.to_thread(
                spool_message,
                self.store.new_spool(),
                chunked(self._warning(account, usage, limits)),
            )
            # the store takes the spool (a warning another writer sent first is discarded)
            if await self.store.quota_warn(account_id, usage.warned, now, inbox.id, message):
                log.info("quota warning %d%% delivered to %s", now, account.address)
        else:
            await self.store.quota_warn(account_id, usage.warned, seen)

    def _warning(self, account: Account, usage: QuotaUsage, limits: QuotaLimits) -> bytes:
        share = percent(usage.storage, usage.messages, limits)
        lines = [f"Your mailbox {account.address} is {share:.0f}% full."]
        if limits.storage:
            lines.append(f"Storage: {_size_text(usage.storage)} of {_size_text(limits.storage)}")
        if limits.messages:
            lines.append(f"Messages: {usage.messages} of {limits.messages}")
        lines += [
            "",
            "When it is full, new mail for you is refused and goes back to its senders.",
            "Delete messages you no longer need, empty the Trash, or ask your",
            "administrator for more room.",
        ]
        message = EmailMessage(policy=SMTP)
        message["From"] = f"Mail Delivery System <postmaster@{self.hostname}>"
        message["To"] = f"<{account.address}>"
        message["Subject"] = f"Your mailbox is {share:.0f}% full"
        message["Date"] = formatdate(localtime=True)
        message["Message-ID"] = f"<quota.{secrets.token_hex(8)}@{self.hostname}>"
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no automatic replies
        message.set_content("\n".join(lines) + "\n")
        return message.as_bytes()
