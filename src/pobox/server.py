"""The server process: listeners, the retention sweeper, signals, graceful shutdown, workers.

``pobox serve`` runs :func:`run`. With ``server.workers = N`` (or ``--workers N``) the parent
starts N worker processes; each binds every listener with SO_REUSEPORT, so the kernel spreads
connections over them, and all of them share the one store (SQLite allows several processes;
change notifications cross processes through the store's change journal).

Started as root with ``[server] user`` set, each worker binds its listening sockets first, then
becomes that user (supplementary groups, group, user) before it opens the store or reads a
certificate, so every file it creates belongs to that user (docs/deployment.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import pwd
import signal
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from pobox import __version__, indexer, metrics
from pobox.config import Config, ListenerConfig, load_config, parse_listen, reload_config
from pobox.credential_share import CredentialShare
from pobox.delivery.handlers import DeliveryHandler, LmtpServer, SmtpServer
from pobox.delivery.submission import SubmissionHandler, SubmissionServer
from pobox.errors import ConfigError
from pobox.net.limits import ConnectionLimiter, SlotLimiter, limit_stream_handler
from pobox.net.metrics_http import serve_metrics
from pobox.net.tls import HANDSHAKE_TIMEOUT, TlsManager, is_loopback, upgrade
from pobox.relay.queue import OutboundQueue
from pobox.relay.runner import Runner
from pobox.service.credentials import set_process_key
from pobox.service.domains import ServedDomains
from pobox.service.mail import MailService
from pobox.service.submission import Submission
from pobox.status import StatusBoard, hold_serving_lock, memory, run_dir

if TYPE_CHECKING:
    from pobox.web.server import WebServer

log = logging.getLogger("pobox.server")

StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
#: Seconds between two counts of the whole store (worker 0; pobox status, metrics).
STORE_COUNT_INTERVAL = 60.0
#: Seconds between two updates of the metrics that are looked at rather than counted.
METRICS_INTERVAL = 5.0
#: Seconds sessions cut off after ``[server] shutdown_grace`` get to unwind.
FORCE_GRACE = 2.0
#: What a client over a connection limit hears before the connection is closed.
_REFUSALS: dict[str, Callable[[str], bytes]] = {
    "imap": lambda reason: f"* BYE [UNAVAILABLE] {reason}, try again later\r\n".encode(),
    "pop3": lambda reason: f"-ERR [SYS/TEMP] {reason}, try again later\r\n".encode(),
}


@dataclass
class Running:
    service: MailService
    servers: dict[str, asyncio.Server] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    limiters: dict[str, ConnectionLimiter] = field(default_factory=dict)
    #: IMAP sessions per account (one count for IMAP and IMAPS)
    account_slots: SlotLimiter | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    #: the TLS context(s); None when no certificate is configured (no IMAPS/POP3S/STARTTLS)
    tls: TlsManager | None = None
    #: the configuration in force (replaced by a reload), and what the file said at startup
    config: Config = field(default_factory=Config)
    started: Config = field(default_factory=Config)
    #: the stream sessions' handlers by listener name, rebuilt by a reload
    handlers: dict[str, StreamHandler] = field(default_factory=dict)
    delivery_handlers: list[DeliveryHandler] = field(default_factory=list)
    #: the domains served (inbound relay check, submission routing), and the outbound queue
    #: submission hands remote recipients to (pobox.relay)
    domains: ServedDomains | None = None
    outbound: OutboundQueue | None = None
    submission_handler: SubmissionHandler | None = None
    #: the webmail (pobox.web), when [web] is enabled
    web: WebServer | None = None

    def port(self, name: str) -> int:
        sockets = self.servers[name].sockets
        return int(sockets[0].getsockname()[1])

    def counters(self) -> dict[str, dict[str, object]]:
        """Open connections per listener (and IMAP sessions per account), for ``pobox status``."""
        out: dict[str, dict[str, object]] = {
            name: limiter.snapshot() for name, limiter in self.limiters.items()
        }
        if self.account_slots is not None:
            out["imap-sessions"] = self.account_slots.snapshot()
        return out


def _stream_handlers(
    service: MailService, tls: TlsManager | None, account_slots: SlotLimiter
) -> dict[str, StreamHandler]:
    """The stream-based protocols (POP3, IMAP), by listener name; the implicit-TLS listeners
    (POP3S, IMAPS) share the handler of their protocol."""
    # the command handlers too: left to the first command, importing them cost its client
    # a quarter of a second
    import pobox.imap.handlers  # noqa: F401
    from pobox.imap.session import make_handler as imap_handler

    handlers: dict[str, StreamHandler] = {
        "imap": imap_handler(service, service.config, tls=tls, account_slots=account_slots)
    }
    try:
        from pobox.pop3.session import make_handler as pop3_handler
    except ImportError:  # the POP3 package is not built yet
        pass
    else:
        stls = None
        if tls is not None:
            manager = tls

            async def stls(writer: asyncio.StreamWriter) -> None:
                await upgrade(writer, manager.context)

        handlers["pop3"] = pop3_handler(service, service.config, starttls=stls)
    handlers["imaps"] = handlers["imap"]
    if "pop3" in handlers:
        handlers["pop3s"] = handlers["pop3"]
    return handlers


async def _listen(
    loop: asyncio.AbstractEventLoop,
    name: str,
    listener: ListenerConfig,
    factory: Callable[[], asyncio.BaseProtocol] | None,
    handler: StreamHandler | None,
    reuse_port: bool,
    tls: ssl.SSLContext | None = None,
    sock: socket.socket | None = None,
) -> asyncio.Server:
    # a socket bound before the privileges were dropped, or host and port to bind now
    host = None if sock is not None else listener.listen
    port = None if sock is not None else listener.port
    reuse = reuse_port if sock is None else None
    try:
        if handler is not None:
            return await asyncio.start_server(
                handler,
                host,
                port,
                sock=sock,
                reuse_port=reuse,
                limit=1 << 20,
                ssl=tls,
                # a handshake is not counted as a connection until it completes: bound its time
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT if tls is not None else None,
            )
        assert factory is not None
        # implicit TLS (submissions): a handshake is not a connection until it completes
        handshake = HANDSHAKE_TIMEOUT if tls is not None else None
        if sock is not None:
            return await loop.create_server(
                factory, sock=sock, ssl=tls, ssl_handshake_timeout=handshake
            )
        return await loop.create_server(
            factory,
            listener.listen,
            listener.port,
            reuse_port=reuse_port,
            ssl=tls,
            ssl_handshake_timeout=handshake,
        )
    except OSError as exc:
        raise OSError(
            exc.errno,
            f"cannot listen for {name} on {listener.listen}:{listener.port}: {exc.strerror}",
        ) from None


async def start(
    config: Config,
    service: MailService,
    *,
    reuse_port: bool = False,
    sockets: Mapping[str, socket.socket] | None = None,
    tls: TlsManager | None = None,
) -> Running:
    """Open every enabled listener; the caller runs the loop until ``running.stopping``.

    *sockets* (with *tls*, the manager used to decide on them) are listening sockets bound
    beforehand by :func:`bind_sockets`, by listener name."""
    loop = asyncio.get_running_loop()
    if sockets is None:
        tls = TlsManager.from_config(config)
    running = Running(service, tls=tls, config=config, started=_as_started(config))
    bound = dict(sockets or {})
    _warn_plaintext(config, running.tls)

    def limiter(name: str) -> ConnectionLimiter:
        limits = config.limits
        made = ConnectionLimiter(
            name.upper(), limits.max_connections, limits.max_connections_per_ip
        )
        running.limiters[name] = made
        return made

    running.domains = ServedDomains(service.store, config.delivery.domains)
    running.outbound = OutboundQueue(service.store)
    if config.smtp.enabled:
        handler = DeliveryHandler(
            service.delivery, "ESMTP", config.delivery.max_recipients, running.domains
        )
        running.delivery_handlers.append(handler)
        smtp_limiter = limiter("smtp")

        def factory(handler: DeliveryHandler = handler) -> SmtpServer:
            # read per connection: after a reload, new connections get the new settings and
            # new STARTTLS handshakes the new context
            now = running.config
            return SmtpServer(
                handler,
                data_size_limit=now.delivery.max_message_size,
                enable_SMTPUTF8=True,
                hostname=now.hostname,
                ident="pobox ESMTP",
                timeout=now.smtp.timeout,
                limiter=smtp_limiter,
                drain=service.drain,
                tls_context=running.tls.context if running.tls is not None else None,
            )

        running.servers["smtp"] = await _listen(
            loop, "SMTP", config.smtp, factory, None, reuse_port, sock=bound.pop("smtp", None)
        )
    if config.lmtp.enabled:
        handler = DeliveryHandler(
            service.delivery, "LMTP", config.delivery.max_recipients, running.domains
        )
        running.delivery_handlers.append(handler)
        lmtp_limiter = limiter("lmtp")

        def lmtp_factory(handler: DeliveryHandler = handler) -> LmtpServer:
            now = running.config
            return LmtpServer(
                handler,
                data_size_limit=now.delivery.max_message_size,
                enable_SMTPUTF8=True,
                hostname=now.hostname,
                ident="pobox LMTP",
                timeout=now.lmtp.timeout,
                limiter=lmtp_limiter,
                drain=service.drain,
            )

        running.servers["lmtp"] = await _listen(
            loop, "LMTP", config.lmtp, lmtp_factory, None, reuse_port, sock=bound.pop("lmtp", None)
        )
    await _start_submission(loop, running, limiter, reuse_port, bound)
    running.account_slots = SlotLimiter(config.limits.max_imap_sessions_per_account)
    running.handlers = _stream_handlers(service, running.tls, running.account_slots)
    for name in ("pop3", "imap", "pop3s", "imaps"):
        listener: ListenerConfig = getattr(config, name)
        implicit = name.endswith("s")
        if (
            not listener.enabled
            or name not in running.handlers
            or (implicit and running.tls is None)
        ):
            continue
        refusal = _REFUSALS[name.removesuffix("s")]
        limited = limit_stream_handler(_current(running, name), limiter(name), refusal)
        context = running.tls.context if implicit and running.tls is not None else None
        running.servers[name] = await _listen(
            loop, name.upper(), listener, None, limited, reuse_port, context, bound.pop(name, None)
        )
    if config.web.enabled:
        await _start_web(running, reuse_port, bound.pop("web", None))
    for unused in bound.values():
        unused.close()
    return running


async def _start_web(running: Running, reuse_port: bool, sock: socket.socket | None) -> None:
    """``[web]``: the webmail, HTTPS when a certificate is configured (docs/webmail.md)."""
    from pobox.web.server import start_web  # Starlette and uvicorn load only when it runs

    config, service = running.config, running.service
    assert running.domains is not None
    submission = Submission(
        service.store,
        service.accounts,
        service.delivery,
        running.domains,
        config.hostname,
        running.outbound,
    )
    if sock is None:
        sock = _bind("WEB", config.web, reuse_port)
    context = running.tls.context if running.tls is not None else None
    running.web = await start_web(service, config, sock, context, submission)
    running.servers["web"] = running.web.listener


async def _start_submission(
    loop: asyncio.AbstractEventLoop,
    running: Running,
    limiter: Callable[[str], ConnectionLimiter],
    reuse_port: bool,
    bound: dict[str, socket.socket],
) -> None:
    """``[submission]`` (STARTTLS, then AUTH) and ``[submissions]`` (implicit TLS; only with a
    certificate): SMTP AUTH, then pobox.service.submission."""
    config, service = running.config, running.service
    assert running.domains is not None
    submission = Submission(
        service.store,
        service.accounts,
        service.delivery,
        running.domains,
        config.hostname,
        running.outbound,
    )
    handler = SubmissionHandler(submission, config.delivery.max_recipients)
    running.submission_handler = handler
    if config.submission.enabled and running.tls is None and not config.tls.allow_plaintext_auth:
        log.warning(
            "SUBMISSION runs without TLS: no client can log in to send mail "
            "(configure [tls], or set tls.allow_plaintext_auth; see docs/delivery.md)"
        )
    for name in ("submission", "submissions"):
        listener: ListenerConfig = getattr(config, name)
        implicit = name == "submissions"
        if not listener.enabled or (implicit and running.tls is None):
            continue
        counted = limiter(name)

        def factory(
            name: str = name, counted: ConnectionLimiter = counted, implicit: bool = implicit
        ) -> SubmissionServer:
            now = running.config
            submission.hostname = now.hostname
            starttls = running.tls.context if running.tls is not None and not implicit else None
            return SubmissionServer(
                handler,
                authenticator=service.auth,
                allow_plaintext_auth=now.tls.allow_plaintext_auth,
                data_size_limit=now.delivery.max_message_size,
                enable_SMTPUTF8=True,
                hostname=now.hostname,
                ident="pobox ESMTP submission",
                timeout=getattr(now, name).timeout,
                limiter=counted,
                drain=service.drain,
                tls_context=starttls,
            )

        context = running.tls.context if implicit and running.tls is not None else None
        running.servers[name] = await _listen(
            loop, name.upper(), listener, factory, None, reuse_port, context, bound.pop(name, None)
        )


def _current(running: Running, name: str) -> StreamHandler:
    """The listener's handler as it is now: a reload replaces ``running.handlers``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await running.handlers[name](reader, writer)

    return handle


def _as_started(config: Config) -> Config:
    """What the configuration file said when the server started (before ``--data`` and
    ``--workers``), to tell which restart-only settings a reload changes."""
    if config.source == "(defaults)":
        return config
    try:
        return load_config(config.source)
    except ConfigError:  # changed since it was read a moment ago: compare with what runs
        return config


def bind_sockets(config: Config, reuse_port: bool, with_tls: bool) -> dict[str, socket.socket]:
    """Listening sockets for every enabled listener (the implicit-TLS ones only *with_tls*), as
    asyncio would bind them: for binding privileged ports before dropping root."""
    sockets: dict[str, socket.socket] = {}
    try:
        names = ("smtp", "lmtp", "pop3", "imap", "pop3s", "imaps", "submission", "submissions")
        for name in (*names, "web"):
            listener: ListenerConfig = getattr(config, name)
            if not listener.enabled or (name.endswith("s") and not with_tls):
                continue
            sockets[name] = _bind(name.upper(), listener, reuse_port)
        if config.metrics.listen:
            host, port = parse_listen(config.metrics.listen)
            metrics_listener = ListenerConfig(listen=host, port=port)
            sockets["metrics"] = _bind("metrics", metrics_listener, reuse_port)
    except BaseException:
        for sock in sockets.values():
            sock.close()
        raise
    return sockets


def _bind(name: str, listener: ListenerConfig, reuse_port: bool) -> socket.socket:
    where = f"{listener.listen}:{listener.port}"
    try:
        infos = socket.getaddrinfo(
            listener.listen or None,
            listener.port,
            type=socket.SOCK_STREAM,
            flags=socket.AI_PASSIVE,
        )
        if len({info[4] for info in infos}) > 1:
            raise ConfigError(
                f"{name} listen = {listener.listen!r} names several addresses; with"
                " [server] user set, give one IP address per listener"
            )
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:  # as asyncio does: IPv6 only
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(100)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock
    except OSError as exc:
        raise OSError(
            exc.errno, f"cannot listen for {name} on {where}: {exc.strerror or exc}"
        ) from None


def target_user(config: Config) -> pwd.struct_passwd | None:
    """The account ``[server] user`` names, when this process runs as root and must switch."""
    name = config.server.user
    if not name:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ConfigError(f"{config.source}: key 'server.user': no such user {name!r}") from None
    if os.geteuid() != 0:
        if os.geteuid() != entry.pw_uid:
            log.warning("not started as root: server.user %r ignored", name)
        return None
    return entry


def _preload() -> None:
    """Import every pobox module (and so the standard library modules they use) while still
    root: the interpreter may live where the service user cannot read (e.g. under /root)."""
    import importlib
    import pkgutil

    import pobox

    for module in pkgutil.walk_packages(pobox.__path__, "pobox."):
        if module.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(module.name)
        except ImportError:  # an optional part not built or not installed
            log.debug("not preloaded: %s", module.name)


def drop_privileges(entry: pwd.struct_passwd, data_path: os.PathLike[str] | str) -> None:
    """Become *entry*'s user for good (groups first, then group, then user), then check that
    the data directory is usable."""
    _preload()
    os.initgroups(entry.pw_name, entry.pw_gid)
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    os.environ["HOME"] = entry.pw_dir
    os.environ["USER"] = os.environ["LOGNAME"] = entry.pw_name
    if not os.access(data_path, os.R_OK | os.W_OK | os.X_OK):
        raise ConfigError(
            f"the data directory {data_path} is not writable by the user {entry.pw_name!r}"
            f" (server.user): chown -R {entry.pw_name}: {data_path}"
        )
    log.info("running as user %s (uid %d)", entry.pw_name, entry.pw_uid)


def _warn_plaintext(config: Config, tls: TlsManager | None) -> None:
    """Say so at startup when remote clients will not be able to log in."""
    if tls is not None or config.tls.allow_plaintext_auth:
        return
    for name in ("imap", "pop3"):
        listener: ListenerConfig = getattr(config, name)
        if listener.enabled and not is_loopback(listener.listen):
            log.warning(
                "%s listens on %s without TLS: clients that are not local cannot log in "
                "(configure [tls], or set tls.allow_plaintext_auth; see docs/tls.md)",
                name.upper(),
                listener.listen,
            )


def hangup(running: Running) -> None:
    """SIGHUP: reopen the log file, read the configuration again, reload the certificate."""
    from pobox.log import reopen_logs

    reopen_logs()
    reload_configuration(running)
    reload_tls(running)


def reload_configuration(running: Running) -> bool:
    """Read the configuration file again and apply what can change while serving (the table
    in docs/configuration.md); settings that need a restart are logged and kept. A file with
    an error is refused as a whole. True when the new configuration is in force."""
    source = running.config.source
    if source == "(defaults)":
        log.info("SIGHUP: no configuration file to read again (pobox runs on the defaults)")
        return False
    try:
        config, kept = reload_config(running.config, running.started)
    except ConfigError as exc:
        log.error("configuration reload refused, the running configuration stays: %s", exc)
        return False
    for key in kept:
        log.warning(
            "configuration reload: %s changed in %s but needs a restart; still using %r",
            key,
            source,
            _setting(running.config, key),
        )
    old = running.config.server
    new = config.server
    if (new.log_level, new.log_format, new.log_file) != (
        old.log_level,
        old.log_format,
        old.log_file,
    ):
        from pobox.log import reconfigure_logging

        try:
            reconfigure_logging(new.log_level, new.log_format, new.log_file)
        except OSError as exc:
            log.error(
                "configuration reload refused: cannot open server.log_file %s: %s",
                new.log_file,
                exc.strerror,
            )
            return False
    running.config = config
    running.service.reconfigure(config)
    if running.tls is not None:
        running.tls.config = config
    limits = config.limits
    for limiter in running.limiters.values():
        limiter.max_total = limits.max_connections
        limiter.max_per_ip = limits.max_connections_per_ip
    if running.account_slots is not None:
        running.account_slots.limit = limits.max_imap_sessions_per_account
    for handler in running.delivery_handlers:
        handler.max_recipients = config.delivery.max_recipients
    if running.submission_handler is not None:
        running.submission_handler.max_recipients = config.delivery.max_recipients
    if running.domains is not None:
        running.domains.reconfigure(config.delivery.domains)
    if running.account_slots is not None:
        running.handlers = _stream_handlers(running.service, running.tls, running.account_slots)
    log.info("configuration reloaded from %s", source)
    return True


def _setting(config: Config, key: str) -> object:
    value: object = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _control(service: MailService, request: Mapping[str, object]) -> object:
    """Carry out a control file written by the command line (pobox.status.send_control)."""
    if request.get("action") == "unblock":
        return {"lifted": service.auth.unblock(str(request.get("target", "")))}
    return {"error": f"unknown action {request.get('action')!r}"}


def reload_tls(running: Running) -> None:
    """SIGHUP: a new certificate for new handshakes; open sessions keep theirs."""
    if running.tls is None:
        log.warning("SIGHUP: TLS was not configured at startup; restart pobox to enable it")
        return
    running.tls.reload()


async def sweeper(service: MailService, interval: float | None = None) -> None:
    """POP3 retention, then the folder policies (docs/policies.md), every ``[policy]
    interval`` seconds."""
    while True:
        try:
            await service.policies.sweep()
            await service.folder_policies.sweep()
        except Exception:
            metrics.sweep("failed")
            log.exception("retention sweep failed; trying again later")
        else:
            metrics.sweep("ok")
        await asyncio.sleep(interval or service.config.policy.interval)


class StoreCounter:
    """Worker 0 counts the store now and then (one read): for ``pobox status`` and the
    metrics. Counting is a scan of the message table, so not more often than *interval*."""

    def __init__(self, service: MailService) -> None:
        self.service = service
        self.totals: dict[str, int] = {}

    async def run(self, interval: float = STORE_COUNT_INTERVAL) -> None:
        while True:
            try:
                totals = await self.service.store.totals()
            except Exception as exc:
                log.warning("cannot count the store: %s", exc)
            else:
                self.totals = {
                    "accounts": totals.accounts,
                    "mailboxes": totals.mailboxes,
                    "messages": totals.messages,
                    "octets": totals.octets,
                }
                with contextlib.suppress(Exception):  # the outbound queue (pobox.relay)
                    self.totals["queue"] = await self.service.store.queue_length()
                metrics.store_totals(
                    totals.accounts, totals.mailboxes, totals.messages, totals.octets
                )
            await asyncio.sleep(interval)


async def stop(running: Running) -> None:
    """SIGTERM: stop accepting, ask every session to end (IMAP BYE, POP3 -ERR without UPDATE,
    SMTP/LMTP 421 once the DATA under way is answered), wait for them up to ``[server]
    shutdown_grace`` seconds, then cut off the rest."""
    for server in running.servers.values():
        server.close()
    drain = running.service.drain
    grace = running.config.server.shutdown_grace
    drain.begin()
    if not await drain.wait(grace):
        left = drain.force()
        log.warning("%d session(s) still open after shutdown_grace=%gs; closed", left, grace)
        await drain.wait(FORCE_GRACE)
    if running.web is not None:
        await running.web.stop(FORCE_GRACE)
    try:
        await asyncio.wait_for(running.service.delivery.wait_idle(), FORCE_GRACE)
    except TimeoutError:
        log.warning("deliveries still running after the shutdown grace; stopping anyway")
    for task in running.tasks:
        task.cancel()
    for task in running.tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await running.service.close()


def announce(config: Config, running: Running) -> str:
    lines = [f"pobox is serving the store in {config.data_path.resolve()}"]
    names = {
        "imap": "IMAP",
        "imaps": "IMAPS",
        "pop3": "POP3",
        "pop3s": "POP3S",
        "smtp": "SMTP",
        "lmtp": "LMTP",
        "submission": "SUBMISSION",
        "submissions": "SUBMISSIONS",
        "web": "WEB",
    }
    for key, label in names.items():
        if key in running.servers:
            listener: ListenerConfig = getattr(config, key)
            lines.append(f"  {label:5} {listener.listen}:{running.port(key)}")
    return "\n".join(lines)


async def serve(
    config: Config,
    *,
    worker: int = 0,
    reuse_port: bool = False,
    ready: Callable[[Running], None] | None = None,
) -> None:
    sockets: dict[str, socket.socket] | None = None
    tls: TlsManager | None = None
    user = target_user(config)
    if user is not None:
        # bind the (privileged) ports as root, then never be root again
        tls = TlsManager.from_config(config)
        sockets = bind_sockets(config, reuse_port, tls is not None)
        try:
            drop_privileges(user, config.data_path)
        except BaseException:
            for sock in sockets.values():
                sock.close()
            raise
    try:
        # shared with every other worker; `pobox store copy` takes it exclusively
        lock = hold_serving_lock(config.data_path)
    except BaseException:
        for sock in (sockets or {}).values():
            sock.close()
        raise
    try:
        await _serve_store(config, worker, reuse_port, ready, sockets, tls)
    finally:
        os.close(lock)


async def _serve_store(
    config: Config,
    worker: int,
    reuse_port: bool,
    ready: Callable[[Running], None] | None,
    sockets: dict[str, socket.socket] | None,
    tls: TlsManager | None,
) -> None:
    exporter: asyncio.Server | None = None
    try:
        exporter = await _start_metrics(config, worker, reuse_port, sockets)
        service = await MailService.open(config)
    except BaseException:
        _stop_metrics(exporter)
        for sock in (sockets or {}).values():
            sock.close()
        raise
    try:
        running = await start(config, service, reuse_port=reuse_port, sockets=sockets, tls=tls)
    except BaseException:
        _stop_metrics(exporter)
        await service.close()
        raise
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, running.stopping.set)
    loop.add_signal_handler(signal.SIGHUP, hangup, running)
    counter = StoreCounter(service)
    if worker == 0:
        running.tasks.append(loop.create_task(sweeper(service)))
        running.tasks.append(loop.create_task(counter.run()))
        # the outbound queue's runner: one per server (per node), docs/relay.md
        running.tasks.append(loop.create_task(Runner.for_service(service).serve()))
        if config.search.index:  # a process of its own, at a lower priority (pobox.indexer)
            running.tasks.append(loop.create_task(indexer.supervise(config)))
    listening = {
        name: f"{getattr(config, name).listen}:{running.port(name)}" for name in running.servers
    }
    board = StatusBoard(
        config.data_path,
        worker,
        running.counters,
        details=lambda: {
            "blocks": service.auth.blocks(),
            "version": __version__,
            "listeners": listening,
            "memory": memory(),
            **({"store": counter.totals} if counter.totals else {}),
        },
        control=partial(_control, service),
    )
    running.tasks.append(loop.create_task(board.run()))
    share = CredentialShare(run_dir(config.data_path), worker, service.auth.cache)
    if reuse_port:  # several workers: verify a password once for all of them
        share.start()
    if exporter is not None:
        running.tasks.append(loop.create_task(_update_metrics(service)))
    if ready is not None:
        ready(running)
    elif worker == 0:  # several workers: the first says where they listen
        log.info("%s", announce(config, running).replace("\n", "; "))
    log.info("worker %d (pid %d) serving", worker, os.getpid())
    await running.stopping.wait()
    log.info("worker %d shutting down", worker)
    share.close()
    await stop(running)
    _stop_metrics(exporter)


async def _start_metrics(
    config: Config, worker: int, reuse_port: bool, sockets: dict[str, socket.socket] | None
) -> asyncio.Server | None:
    """``[metrics] listen``: count from now on, and answer scrapes (docs/decisions/metrics.md)."""
    if not config.metrics.listen:
        return None
    sock = sockets.pop("metrics", None) if sockets is not None else None
    metrics.enable(metrics.metrics_dir(config.data_path), worker)
    try:
        return await serve_metrics(
            config.metrics.listen, metrics.exposition, reuse_port=reuse_port, sock=sock
        )
    except BaseException:
        metrics.disable()
        raise


def _stop_metrics(exporter: asyncio.Server | None) -> None:
    if exporter is not None:
        exporter.close()
        metrics.disable()


async def _update_metrics(service: MailService, interval: float = METRICS_INTERVAL) -> None:
    """The gauges nothing moves by itself: blocks in force, memory."""
    while True:
        metrics.update(service.auth.blocks())
        await asyncio.sleep(interval)


def install_loop(config: Config) -> None:
    """``[server] event_loop``: uvloop (the default) or the standard library's loop."""
    if config.server.event_loop != "uvloop":
        asyncio.set_event_loop_policy(None)
        return
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        log.warning("uvloop is not installed; using the standard event loop")
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def run_worker(config: Config, worker: int, reuse_port: bool, key: bytes | None = None) -> None:
    """One worker process; *key* is the supervisor's credential key (pobox.credential_share)."""
    from pobox.log import setup_logging

    if key is not None:
        set_process_key(key)

    setup_logging(
        config.server.log_level,
        prefix=f"w{worker} " if reuse_port else "",
        log_format=config.server.log_format,
        log_file=config.server.log_file,
    )
    install_loop(config)
    asyncio.run(serve(config, worker=worker, reuse_port=reuse_port))


def run(config: Config, workers: int, ready: Callable[[Running], None] | None = None) -> None:
    """Serve until SIGTERM/SIGINT. With several workers, this process supervises them."""
    if workers <= 1:
        install_loop(config)
        asyncio.run(serve(config, ready=ready))
        return
    context = multiprocessing.get_context("spawn")
    key = os.urandom(32)  # one credential key for every worker, handed over in memory
    processes = [
        context.Process(target=run_worker, args=(config, n, True, key), name=f"pobox-worker-{n}")
        for n in range(workers)
    ]
    for process in processes:
        process.start()

    def forward(signum: int, _frame: object) -> None:
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGTERM)

    def forward_hup(signum: int, _frame: object) -> None:
        from pobox.log import reopen_logs

        reopen_logs()
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGHUP)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, forward_hup)
    for process in processes:
        process.join()
