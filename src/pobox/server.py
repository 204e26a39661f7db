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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

from pobox.config import Config, ListenerConfig
from pobox.delivery.handlers import DeliveryHandler, LmtpServer, SmtpServer
from pobox.service.mail import MailService

log = logging.getLogger("pobox.server")

StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
SWEEP_INTERVAL = 3600.0
SHUTDOWN_GRACE = 30.0


@dataclass
class Running:
    service: MailService
    servers: dict[str, asyncio.Server] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def port(self, name: str) -> int:
        sockets = self.servers[name].sockets
        return int(sockets[0].getsockname()[1])


def _stream_handlers(service: MailService) -> dict[str, StreamHandler]:
    """The stream-based protocols (POP3, IMAP), by listener name."""
    from pobox.imap.session import make_handler as imap_handler

    handlers: dict[str, StreamHandler] = {"imap": imap_handler(service, service.config)}
    try:
        from pobox.pop3.session import make_handler as pop3_handler
    except ImportError:  # the POP3 package is not built yet
        pass
    else:
        handlers["pop3"] = pop3_handler(service, service.config)
    return handlers


async def _listen(
    loop: asyncio.AbstractEventLoop,
    name: str,
    listener: ListenerConfig,
    factory: Callable[[], asyncio.BaseProtocol] | None,
    handler: StreamHandler | None,
    reuse_port: bool,
) -> asyncio.Server:
    try:
        if handler is not None:
            return await asyncio.start_server(
                handler, listener.listen, listener.port, reuse_port=reuse_port, limit=1 << 20
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
    running = Running(service)
    limit = config.delivery.max_message_size
    if config.smtp.enabled:
        handler = DeliveryHandler(service.delivery, "ESMTP", config.delivery.max_recipients)
        factory = partial(
            SmtpServer,
            handler,
            data_size_limit=limit,
            enable_SMTPUTF8=True,
            hostname=config.hostname,
            ident="pobox ESMTP",
            timeout=config.smtp.timeout,
        )
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
        )
        running.servers["lmtp"] = await _listen(
            loop, "LMTP", config.lmtp, lmtp_factory, None, reuse_port
        )
    handlers = _stream_handlers(service)
    for name in ("pop3", "imap"):
        listener: ListenerConfig = getattr(config, name)
        if listener.enabled and name in handlers:
            running.servers[name] = await _listen(
                loop, name.upper(), listener, None, handlers[name], reuse_port
            )
    return running


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
    names = {"imap": "IMAP", "pop3": "POP3", "smtp": "SMTP", "lmtp": "LMTP"}
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
    if worker == 0:
        running.tasks.append(loop.create_task(sweeper(service)))
    if ready is not None:
        ready(running)
    log.info("worker %d (pid %d) serving", worker, os.getpid())
    await running.stopping.wait()
    log.info("worker %d shutting down", worker)
    await stop(running)


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def run_worker(config: Config, worker: int, reuse_port: bool) -> None:
    from pobox.log import setup_logging

    setup_logging(config.server.log_level, prefix=f"w{worker} " if reuse_port else "")
    _install_uvloop()
    asyncio.run(serve(config, worker=worker, reuse_port=reuse_port))


def run(config: Config, workers: int, ready: Callable[[Running], None] | None = None) -> None:
    """Serve until SIGTERM/SIGINT. With several workers, this process supervises them."""
    if workers <= 1:
        _install_uvloop()
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

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for process in processes:
        process.join()
