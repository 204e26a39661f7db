"""The server process: listeners, the retention sweeper, signals, graceful shutdown, workers.

``pobox serve`` runs :func:`run`. With ``server.workers = N`` (or ``--workers N``) the parent
starts N worker processes; each binds every listener with SO_REUSEPORT, so the kernel spreads
connections over them, and all of them share the one store (SQLite allows several processes;
change notifications cross processes through the store's change journal).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

from pobox.config import Config, ListenerConfig
from pobox.delivery.handlers import DeliveryHandler, LmtpServer, SmtpServer
from pobox.net.limits import ConnectionLimiter, SlotLimiter, limit_stream_handler
from pobox.net.tls import HANDSHAKE_TIMEOUT, TlsManager, is_loopback, upgrade
from pobox.service.mail import MailService
from pobox.status import StatusBoard

log = logging.getLogger("pobox.server")

StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
SWEEP_INTERVAL = 3600.0
SHUTDOWN_GRACE = 30.0
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
) -> asyncio.Server:
    try:
        if handler is not None:
            return await asyncio.start_server(
                handler,
                listener.listen,
                listener.port,
                reuse_port=reuse_port,
                limit=1 << 20,
                ssl=tls,
                # a handshake is not counted as a connection until it completes: bound its time
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT if tls is not None else None,
            )
        assert factory is not None
        return await loop.create_server(
            factory, listener.listen, listener.port, reuse_port=reuse_port
        )
    except OSError as exc:
        raise OSError(
            exc.errno,
            f"cannot listen for {name} on {listener.listen}:{listener.port}: {exc.strerror}",
        ) from None


async def start(config: Config, service: MailService, *, reuse_port: bool = False) -> Running:
    """Open every enabled listener; the caller runs the loop until ``running.stopping``."""
    loop = asyncio.get_running_loop()
    running = Running(service, tls=TlsManager.from_config(config))
    limit = config.delivery.max_message_size
    _warn_plaintext(config, running.tls)

    def limiter(name: str) -> ConnectionLimiter:
        limits = config.limits
        made = ConnectionLimiter(
            name.upper(), limits.max_connections, limits.max_connections_per_ip
        )
        running.limiters[name] = made
        return made

    if config.smtp.enabled:
        handler = DeliveryHandler(service.delivery, "ESMTP", config.delivery.max_recipients)
        smtp = partial(
            SmtpServer,
            handler,
            data_size_limit=limit,
            enable_SMTPUTF8=True,
            hostname=config.hostname,
            ident="pobox ESMTP",
            timeout=config.smtp.timeout,
            limiter=limiter("smtp"),
        )

        def factory(tls: TlsManager | None = running.tls) -> SmtpServer:
            # read per connection: after a reload, new STARTTLS handshakes use the new context
            return smtp(tls_context=tls.context if tls is not None else None)

        running.servers["smtp"] = await _listen(
            loop, "SMTP", config.smtp, factory, None, reuse_port
        )
    if config.lmtp.enabled:
        handler = DeliveryHandler(service.delivery, "LMTP", config.delivery.max_recipients)
        lmtp_factory = partial(
            LmtpServer,
            handler,
            data_size_limit=limit,
            enable_SMTPUTF8=True,
            hostname=config.hostname,
            ident="pobox LMTP",
            timeout=config.lmtp.timeout,
            limiter=limiter("lmtp"),
        )
        running.servers["lmtp"] = await _listen(
            loop, "LMTP", config.lmtp, lmtp_factory, None, reuse_port
        )
    running.account_slots = SlotLimiter(config.limits.max_imap_sessions_per_account)
    handlers = _stream_handlers(service, running.tls, running.account_slots)
    for name in ("pop3", "imap", "pop3s", "imaps"):
        listener: ListenerConfig = getattr(config, name)
        implicit = name.endswith("s")
        if not listener.enabled or name not in handlers or (implicit and running.tls is None):
            continue
        refusal = _REFUSALS[name.removesuffix("s")]
        limited = limit_stream_handler(handlers[name], limiter(name), refusal)
        context = running.tls.context if implicit and running.tls is not None else None
        running.servers[name] = await _listen(
            loop, name.upper(), listener, None, limited, reuse_port, context
        )
    return running


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


def reload_tls(running: Running) -> None:
    """SIGHUP: a new certificate for new handshakes; open sessions keep theirs."""
    if running.tls is None:
        log.warning("SIGHUP: TLS was not configured at startup; restart pobox to enable it")
        return
    running.tls.reload()


async def sweeper(service: MailService, interval: float = SWEEP_INTERVAL) -> None:
    while True:
        try:
            await service.policies.sweep()
        except Exception:
            log.exception("retention sweep failed; trying again later")
        await asyncio.sleep(interval)


async def stop(running: Running) -> None:
    for server in running.servers.values():
        server.close()
    try:
        await asyncio.wait_for(running.service.delivery.wait_idle(), SHUTDOWN_GRACE)
    except TimeoutError:
        log.warning("deliveries still running after %.0fs; stopping anyway", SHUTDOWN_GRACE)
    for task in running.tasks:
        task.cancel()
    for task in running.tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for server in running.servers.values():
        with contextlib.suppress(Exception):
            server.close_clients()  # type: ignore[attr-defined]
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
    service = await MailService.open(config)
    try:
        running = await start(config, service, reuse_port=reuse_port)
    except BaseException:
        await service.close()
        raise
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, running.stopping.set)
    loop.add_signal_handler(signal.SIGHUP, reload_tls, running)
    if worker == 0:
        running.tasks.append(loop.create_task(sweeper(service)))
    board = StatusBoard(config.data_path, worker, running.counters)
    running.tasks.append(loop.create_task(board.run()))
    if ready is not None:
        ready(running)
    log.info("worker %d (pid %d) serving", worker, os.getpid())
    await running.stopping.wait()
    log.info("worker %d shutting down", worker)
    await stop(running)


def _install_loop(config: Config) -> None:
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


def run_worker(config: Config, worker: int, reuse_port: bool) -> None:
    from pobox.log import setup_logging

    setup_logging(config.server.log_level, prefix=f"w{worker} " if reuse_port else "")
    _install_loop(config)
    asyncio.run(serve(config, worker=worker, reuse_port=reuse_port))


def run(config: Config, workers: int, ready: Callable[[Running], None] | None = None) -> None:
    """Serve until SIGTERM/SIGINT. With several workers, this process supervises them."""
    if workers <= 1:
        _install_loop(config)
        asyncio.run(serve(config, ready=ready))
        return
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=run_worker, args=(config, n, True), name=f"pobox-worker-{n}")
        for n in range(workers)
    ]
    for process in processes:
        process.start()

    def forward(signum: int, _frame: object) -> None:
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGTERM)

    def forward_hup(signum: int, _frame: object) -> None:
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGHUP)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, forward_hup)
    for process in processes:
        process.join()
