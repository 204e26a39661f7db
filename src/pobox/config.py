"""Settings: one TOML file, every key with a default.

``load_config(path)`` turns the file into frozen dataclasses. An unknown key, a value of the wrong
type or a value out of range stops startup with a :class:`ConfigError` naming the key and the file.
docs/configuration.md lists every key; keep the two in step.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pobox.errors import ConfigError

RETENTION_HELP = "'delete', 'keep' or 'keep-days:N'"


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    enabled: bool = True
    listen: str = "127.0.0.1"
    port: int = 0


@dataclass(frozen=True, slots=True)
class ImapConfig(ListenerConfig):
    port: int = 1143
    max_line: int = 65536
    max_literal: int = 52428800
    idle_timeout: int = 1800
    max_bad_commands: int = 20
    #: accounts authorized as message submission entities: they may URLFETCH "submit+" URLs
    #: (RFC 4467 §3; docs/imap.md)
    urlauth_submitters: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Pop3Config(ListenerConfig):
    port: int = 1110
    idle_timeout: int = 600
    retention: str = "delete"
    recovery_days: int = 7
    max_auth_failures: int = 3
    auth_failure_delay: float = 2.0


@dataclass(frozen=True, slots=True)
class ImapsConfig(ListenerConfig):
    """IMAP over implicit TLS (RFC 8314); runs only when a certificate is available."""

    port: int = 1993


@dataclass(frozen=True, slots=True)
class Pop3sConfig(ListenerConfig):
    """POP3 over implicit TLS (RFC 8314); runs only when a certificate is available."""

    port: int = 1995


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """Certificate and key (PEM); empty: ``<data_dir>/tls/*.pem`` if present (docs/tls.md)."""

    cert: str = ""
    key: str = ""
    allow_plaintext_auth: bool = False


@dataclass(frozen=True, slots=True)
class SmtpConfig(ListenerConfig):
    port: int = 2525
    timeout: int = 300


@dataclass(frozen=True, slots=True)
class LmtpConfig(ListenerConfig):
    port: int = 2424
    timeout: int = 300


@dataclass(frozen=True, slots=True)
class SubmissionConfig(ListenerConfig):
    """Mail submission (RFC 6409): STARTTLS, then AUTH (docs/delivery.md)."""

    port: int = 2587
    timeout: int = 300


@dataclass(frozen=True, slots=True)
class SubmissionsConfig(ListenerConfig):
    """Mail submission over implicit TLS (RFC 8314); runs only when a certificate is available."""

    port: int = 2465
    timeout: int = 300


@dataclass(frozen=True, slots=True)
class WebConfig(ListenerConfig):
    """The webmail (docs/webmail.md); HTTPS when a certificate is available."""

    port: int = 8080
    #: seconds a webmail session lasts without a request
    session_idle: int = 3600
    #: seconds a webmail session lasts at most after its login
    session_max: int = 7 * 86400
    #: CIDR networks of reverse proxies whose X-Forwarded-For/-Proto headers are believed
    trusted_proxies: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    max_message_size: int = 52428800
    max_recipients: int = 100
    #: mail domains served besides those of the accounts and aliases (others: relay denied)
    domains: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """The outbound queue and where it sends (docs/relay.md)."""

    #: the smarthost every message goes through; "" sends to each domain's MX hosts
    host: str = ""
    port: int = 587
    #: "starttls" (required), "implicit" (TLS from the start) or "none" (plain text)
    tls: str = "starttls"
    username: str = ""
    password: str = ""
    #: seconds a message is retried before it is bounced (5 days)
    queue_lifetime: int = 5 * 86400
    #: seconds after which the sender gets a delay notice; 0: never
    delay_warning: int = 4 * 3600
    #: the first retry's delay in seconds; each next one doubles, up to retry_max
    retry_min: int = 300
    retry_max: int = 3600
    #: the port of MX hosts (25; another value is for tests)
    mx_port: int = 25
    #: seconds to wait for each reply of the next hop
    timeout: int = 300


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Failed-login penalties and the verified-credentials cache, shared by every protocol
    (docs/security.md)."""

    max_failures: int = 10
    block_seconds: int = 300
    penalty_max: float = 15.0
    #: seconds a password Argon2id accepted stays in the verified-credentials cache (0: no cache)
    cache_ttl: int = 3600
    #: CIDR networks whose addresses are never blocked per address (account blocks still apply)
    trusted_networks: tuple[str, ...] = ()
    #: Argon2id parameters for new password hashes (OWASP's first recommendation)
    argon2_memory_kib: int = 19 * 1024
    argon2_time_cost: int = 2
    argon2_lanes: int = 1


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Per-process connection and command limits (docs/security.md)."""

    max_connections: int = 1000
    max_connections_per_ip: int = 50
    max_imap_sessions_per_account: int = 50
    commands_per_second: int = 10000


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """The Prometheus endpoint (docs/deployment.md, Monitoring)."""

    #: "HOST:PORT" every worker serves /metrics on; "" (the default): no metrics
    listen: str = ""


@dataclass(frozen=True, slots=True)
class SearchConfig:
    """Full-text search (docs/decisions/full-text-search.md)."""

    #: keep the full-text index filled (a low-priority process of its own); false: SEARCH
    #: BODY/TEXT and the header keys read every message, as before the index
    index: bool = True


#: The settings of a folder policy (docs/policies.md) and what each accepts.
POLICY_KEYS = ("expunge-after", "archive-after", "archive-by")
DURATION_HELP = "a number followed by h, d or w (e.g. 30d), or off"
_DURATION = re.compile(r"([0-9]{1,6})([hdw])")
_DURATION_UNITS = {"h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: str) -> int | None:
    """A policy duration: '30d' -> seconds, 'off' -> None; a ValueError names the problem."""
    text = value.strip().lower()
    if text == "off":
        return None
    match = _DURATION.fullmatch(text)
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"{value!r} is not a duration; use {DURATION_HELP}")
    return int(match.group(1)) * _DURATION_UNITS[match.group(2)]


def check_policy_setting(key: str, value: str) -> str:
    """The canonical spelling of one folder-policy setting; a ValueError names the problem."""
    if key not in POLICY_KEYS:
        raise ValueError(f"unknown policy setting {key!r}; use {', '.join(POLICY_KEYS)}")
    if key == "archive-by":
        if value.strip().lower() not in ("year", "none"):
            raise ValueError(f"archive-by={value!r}: use archive-by=year or archive-by=none")
        return value.strip().lower()
    try:
        parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}") from None
    return value.strip().lower()


def parse_policy_rule(text: str) -> tuple[str, dict[str, str]]:
    """``[policy] rules`` entry 'FOLDER KEY=VALUE…' (FOLDER: a name, a special-use attribute
    such as \\Trash, or *) -> folder and settings; a ValueError names the problem."""
    words = text.split()
    settings: dict[str, str] = {}
    while words and "=" in words[-1]:
        key, _, value = words.pop().partition("=")
        settings.setdefault(key, check_policy_setting(key, value))
    folder = " ".join(words)
    if not folder or not settings:
        raise ValueError(
            f"{text!r} is not 'FOLDER KEY=VALUE...' (e.g. '\\Sent archive-after=365d')"
        )
    return folder, settings


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """Folder policies (docs/policies.md): server-wide defaults and the sweeper."""

    #: expunge-after for every account's Trash and Junk folders ("off": none)
    trash_expunge_after: str = "30d"
    junk_expunge_after: str = "30d"
    #: more server-wide defaults, each "FOLDER KEY=VALUE…"
    rules: tuple[str, ...] = ()
    #: seconds between sweeps (POP3 retention and folder policies)
    interval: float = 3600.0
    #: messages per store transaction
    batch: int = 500
    #: seconds to wait between batches (0: none); slows a sweep down on a busy server
    batch_pause: float = 0.0


@dataclass(frozen=True, slots=True)
class AclConfig:
    """Shared folders (RFC 4314 ACL; docs/decisions/shared-folders.md)."""

    #: where other accounts' shared folders appear: PREFIX/owner@domain/Folder
    shared_prefix: str = "Shared"
    #: owners may grant rights to "anyone" and "authenticated" (every account of the server)
    allow_anyone: bool = False


@dataclass(frozen=True, slots=True)
class MetadataConfig:
    """IMAP METADATA annotations (RFC 5464; docs/imap.md, docs/decisions/metadata.md)."""

    #: the largest value of one entry, in octets (SETMETADATA answers [METADATA MAXSIZE n])
    max_value_size: int = 65536
    #: entries one account may see on one mailbox, or on the server: the shared ones and its
    #: own private ones ([METADATA TOOMANY] past it)
    max_entries_per_mailbox: int = 100
    #: entries charged to one account: its private entries everywhere and the shared entries
    #: of its own mailboxes ([METADATA TOOMANY] past it)
    max_entries_per_account: int = 2000
    #: private (/private) entries are offered; false answers [METADATA NOPRIVATE]
    private_entries: bool = True
    #: the server's /shared/admin entry: how to reach the administrator (a mailto: or tel:
    #: URI); empty: no such entry
    admin: str = ""
    #: accounts that may set the server's /shared entries with SETMETADATA ""
    admins: tuple[str, ...] = ()


SIZE_HELP = "a number of octets, optionally with K, M, G or T (1024-based), e.g. 2G; 0: no limit"
_SIZE = re.compile(r"([0-9]{1,15})\s*([KMGT]?)B?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(value: str) -> int | None:
    """A quota size: '2G' -> octets, '0' (or 'unlimited') -> None; a ValueError names it."""
    text = value.strip()
    if text.lower() in ("unlimited", "none"):
        return None
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"{value!r} is not a size; use {SIZE_HELP}")
    octets = int(match.group(1)) * _SIZE_UNITS[match.group(2).upper()]
    return octets or None


def parse_count(value: str) -> int | None:
    """A quota count (messages, mailboxes): '100000' -> 100000, '0' (or 'unlimited') -> None."""
    text = value.strip()
    if text.lower() in ("unlimited", "none"):
        return None
    if not text.isdigit() or len(text) > 15:
        raise ValueError(f"{value!r} is not a count; use a whole number (0: no limit)")
    return int(text) or None


@dataclass(frozen=True, slots=True)
class QuotaConfig:
    """Quotas (docs/quota.md): every account's limits unless ``pobox user set ADDRESS
    quota.storage=… quota.messages=… quota.mailboxes=…`` sets its own."""

    #: octets of mail per account, e.g. "2G" (SIZE_HELP); "0": unlimited
    storage: str = "0"
    #: messages per account (0: unlimited)
    messages: int = 0
    #: mailboxes per account (0: unlimited)
    mailboxes: int = 0
    #: a delivery over quota is refused for now (452 4.2.2), not for good (552 5.2.2)
    over_quota_tempfail: bool = False
    #: percentages of a limit at which the account gets a warning message, once per crossing
    warn: tuple[int, ...] = (80, 95)
    #: accounts that may change any account's limits with IMAP SETQUOTA
    admins: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ServerConfig:
    #: worker processes: a number, or "auto" for one per core
    workers: int | str = "auto"
    log_level: str = "info"
    #: "uvloop" (the default) or "asyncio" (the standard library's loop)
    event_loop: str = "uvloop"
    #: run as this user after the listeners are open (when started as root); "" keeps the user
    user: str = ""
    #: "text" (key=value lines, the default) or "json" (one object per line)
    log_format: str = "text"
    #: log to this file (reopened on SIGHUP); "" logs to standard error
    log_file: str = ""
    #: seconds sessions get to end after SIGTERM before they are cut off
    shutdown_grace: float = 10.0


def resolve_workers(value: int | str) -> int:
    """The number of worker processes ``[server] workers`` (or ``--workers``) asks for."""
    if value == "auto":
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise ValueError(f"workers must be a number or 'auto', not {value!r}")


@dataclass(frozen=True, slots=True)
class Config:
    hostname: str = "localhost"
    data_dir: str = "./data"
    store: str = "sqlite"
    server: ServerConfig = field(default_factory=ServerConfig)
    imap: ImapConfig = field(default_factory=ImapConfig)
    pop3: Pop3Config = field(default_factory=Pop3Config)
    acl: AclConfig = field(default_factory=AclConfig)
    imaps: ImapsConfig = field(default_factory=ImapsConfig)
    pop3s: Pop3sConfig = field(default_factory=Pop3sConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    lmtp: LmtpConfig = field(default_factory=LmtpConfig)
    submission: SubmissionConfig = field(default_factory=SubmissionConfig)
    submissions: SubmissionsConfig = field(default_factory=SubmissionsConfig)
    web: WebConfig = field(default_factory=WebConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    relay: RelayConfig = field(default_factory=RelayConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    quota: QuotaConfig = field(default_factory=QuotaConfig)
    metadata: MetadataConfig = field(default_factory=MetadataConfig)
    source: str = "(defaults)"

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)


_RANGES: dict[str, tuple[int, int]] = {
    "port": (0, 65535),
    "workers": (1, 256),
    "max_line": (1024, 16 * 1024 * 1024),
    "max_literal": (1024, 2**40),
    "max_message_size": (1024, 2**40),
    "max_recipients": (1, 100000),
    "recovery_days": (0, 36500),
    "idle_timeout": (1, 7 * 86400),
    "timeout": (1, 86400),
    "max_bad_commands": (1, 10000),
    "max_auth_failures": (1, 1000),
    "max_failures": (1, 1000),
    "block_seconds": (1, 7 * 86400),
    "cache_ttl": (0, 7 * 86400),
    "argon2_memory_kib": (8 * 1024, 4 * 1024 * 1024),
    "argon2_time_cost": (1, 100),
    "argon2_lanes": (1, 64),
    "max_connections": (1, 1000000),
    "max_connections_per_ip": (1, 1000000),
    "max_imap_sessions_per_account": (1, 100000),
    "commands_per_second": (1, 1000000),
    "queue_lifetime": (60, 365 * 86400),
    "delay_warning": (0, 365 * 86400),
    "retry_min": (1, 86400),
    "retry_max": (1, 7 * 86400),
    "mx_port": (1, 65535),
    "batch": (1, 100000),
    "messages": (0, 10**12),
    "mailboxes": (0, 10**9),
    "session_idle": (60, 365 * 86400),
    "session_max": (60, 365 * 86400),
    "max_value_size": (1024, 16 * 1024 * 1024),
    "max_entries_per_mailbox": (10, 1000000),
    "max_entries_per_account": (10, 100000000),
}

_CHOICES: dict[str, tuple[str, ...]] = {
    "log_level": ("debug", "info", "warning", "error"),
    "event_loop": ("uvloop", "asyncio"),
    "log_format": ("text", "json"),
    "tls": ("starttls", "implicit", "none"),
}


def _check_network(where: str, value: str) -> str:
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        raise ConfigError(
            f"{where}: {value!r} is not an IP network"
            " (write e.g. '192.0.2.0/24' or '2001:db8::/32')"
        ) from None


_DOMAIN_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def _check_domain(where: str, value: str) -> str:
    domain = value.strip().lower().rstrip(".")
    if (
        not domain
        or len(domain) > 253
        or not all(_DOMAIN_LABEL.fullmatch(label) for label in domain.split("."))
    ):
        raise ConfigError(f"{where}: {value!r} is not a domain name (write e.g. 'example.org')")
    return domain


def parse_listen(value: str) -> tuple[str, int]:
    """``[metrics] listen``: ``HOST:PORT`` (``[IPv6]:PORT``) → host and port; a ValueError
    says what is wrong."""
    host, colon, port = value.strip().rpartition(":")
    example = "write e.g. '127.0.0.1:9154' or '[::1]:9154'"
    if not colon or not host or not port:
        raise ValueError(f"{value!r} is not HOST:PORT ({example})")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{value!r}: put an IPv6 address in brackets ({example})")
    if not host or any(ch.isspace() or ch in "[]/" for ch in host):
        raise ValueError(f"{value!r} does not name a host ({example})")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{value!r}: the port must be a number from 1 to 65535")
    return host, int(port)


def parse_retention(value: str) -> tuple[str, int | None]:
    """Parse a POP3 retention policy: 'delete', 'keep' or 'keep-days:N' (N is returned)."""
    if value in ("delete", "keep"):
        return value, None
    if value.startswith("keep-days:"):
        number = value.removeprefix("keep-days:")
        if number.isdigit() and 0 < int(number) <= 36500:
            return "keep-days", int(number)
    raise ValueError(f"{value!r} is not a POP3 retention policy; use {RETENTION_HELP}")


def _check_value(name: str, key: str, value: Any, expected: Any, source: str) -> Any:
    where = f"{source}: key {key!r}"
    if name == "workers" and value == "auto":
        return value
    if expected is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, not {value!r}")
        return value
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if name == "workers":
                raise ConfigError(f'{where} must be an integer or "auto", not {value!r}')
            raise ConfigError(f"{where} must be an integer, not {value!r}")
        low, high = _RANGES.get(name, (-(2**63), 2**63))
        if not low <= value <= high:
            raise ConfigError(f"{where} must be between {low} and {high}, not {value}")
        return value
    if expected is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, not {value!r}")
        if value < 0:
            raise ConfigError(f"{where} must not be negative")
        return float(value)
    if typing.get_origin(expected) is tuple and typing.get_args(expected)[0] is int:
        if not isinstance(value, list) or not all(  # quota.warn: percentages
            isinstance(item, int) and not isinstance(item, bool) and 0 < item <= 100
            for item in value
        ):
            raise ConfigError(f"{where} must be a list of percentages (1 to 100), not {value!r}")
        return tuple(sorted(set(value)))
    if typing.get_origin(expected) is tuple:  # a list of strings, e.g. trusted_networks
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{where} must be a list of strings, not {value!r}")
        if name in ("trusted_networks", "trusted_proxies"):
            return tuple(_check_network(where, item) for item in value)
        if name == "domains":
            return tuple(_check_domain(where, item) for item in value)
        return tuple(value)
    if expected is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, not {value!r}")
        if name in _CHOICES and value not in _CHOICES[name]:
            raise ConfigError(f"{where} must be one of {', '.join(_CHOICES[name])}, not {value!r}")
        if name == "retention":
            try:
                parse_retention(value)
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        if key == "acl.shared_prefix" and (
            not value or "/" in value or value.upper() == "INBOX" or not value.isprintable()
        ):
            raise ConfigError(f"{where} must be one mailbox name without '/', not {value!r}")
        if key == "metrics.listen" and value:
            try:
                parse_listen(value)
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        return value
    raise ConfigError(f"{where} has an unsupported type")  # pragma: no cover


def _check_policy(key: str, value: Any, source: str) -> None:
    """The [policy] values the types alone do not check (docs/policies.md)."""
    where = f"{source}: key {key!r}"
    try:
        if key in ("policy.trash_expunge_after", "policy.junk_expunge_after"):
            parse_duration(value)
        elif key == "policy.rules":
            for rule in value:
                parse_policy_rule(rule)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if key == "policy.interval" and value < 1:
        raise ConfigError(f"{where} must be at least 1 (seconds)")


def _build(cls: type[Any], table: dict[str, Any], prefix: str, source: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    values: dict[str, Any] = {}
    for key, value in table.items():
        full = f"{prefix}{key}"
        if key not in known:
            raise ConfigError(f"{source}: unknown key {full!r}")
        expected = hints[key]
        if dataclasses.is_dataclass(expected):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: key {full!r} must be a table ([{full}])")
            values[key] = _build(typing.cast(type[Any], expected), value, f"{full}.", source)
        else:
            if isinstance(expected, types.UnionType):  # workers: int | "auto"
                expected = typing.get_args(expected)[0]
            values[key] = _check_value(key, full, value, expected, source)
            if full.startswith("policy."):
                _check_policy(full, values[key], source)
            if full == "quota.storage":
                try:
                    parse_size(values[key])
                except ValueError as exc:
                    raise ConfigError(f"{source}: key {full!r}: {exc}") from None
    return cls(**values)


def load_config(
    path: str | os.PathLike[str] | None = None, *, data_dir: str | None = None
) -> Config:
    """Read the TOML file at *path* (or use defaults), then apply *data_dir* if given."""
    config = Config()
    if path is not None:
        source = str(path)
        try:
            with open(path, "rb") as fp:
                table = tomllib.load(fp)
        except FileNotFoundError:
            raise ConfigError(f"{source}: configuration file not found") from None
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read configuration file: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
        config = _build(Config, table, "", source)
        config = dataclasses.replace(config, source=source)
    if data_dir is not None:
        config = dataclasses.replace(config, data_dir=data_dir)
    return config


LISTENERS = (
    "imap",
    "imaps",
    "pop3",
    "pop3s",
    "smtp",
    "lmtp",
    "web",
    "submission",
    "submissions",
)
#: Settings a running server cannot change: a reload (SIGHUP) leaves them as they were.
RESTART_ONLY: tuple[str, ...] = (
    "data_dir",
    "store",
    "server.workers",
    "server.user",
    "server.event_loop",
    "metrics.listen",
    "web.trusted_proxies",
    *(f"{name}.{key}" for name in LISTENERS for key in ("enabled", "listen", "port")),
)


def _get(config: Config, key: str) -> Any:
    value: Any = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _with(config: Any, key: str, value: Any) -> Any:
    head, _, rest = key.partition(".")
    if not rest:
        return dataclasses.replace(config, **{head: value})
    return dataclasses.replace(config, **{head: _with(getattr(config, head), rest, value)})


def reload_config(running: Config, started: Config) -> tuple[Config, list[str]]:
    """Read *running*'s file again (SIGHUP). *started* is what the file said when the server
    started. Returns the configuration to apply — the file's, with every :data:`RESTART_ONLY`
    setting kept as it runs — and the restart-only keys the file now changes. Raises
    :class:`ConfigError` (naming the file and the key) for a file with an error."""
    fresh = load_config(running.source)
    changed = [key for key in RESTART_ONLY if _get(fresh, key) != _get(started, key)]
    applied = fresh
    for key in RESTART_ONLY:
        applied = _with(applied, key, _get(running, key))
    return applied, changed


def config_from_environment(
    config_path: str | None, data_dir: str | None, environ: typing.Mapping[str, str] = os.environ
) -> Config:
    """Apply the ``--config``/``POBOX_CONFIG`` and ``--data``/``POBOX_DATA`` rules."""
    path = config_path or environ.get("POBOX_CONFIG") or None
    data = data_dir or environ.get("POBOX_DATA") or None
    return load_config(path, data_dir=data)
