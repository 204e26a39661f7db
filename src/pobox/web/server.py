"""The ``[web]`` listener: uvicorn serving the webmail in the worker's own event loop.

The listening socket is bound like every other listener's (SO_REUSEPORT across workers, bound
before root is dropped); uvicorn only runs the HTTP protocol on it. With a certificate the
listener speaks HTTPS with the same TLS context as IMAPS (a SIGHUP reload reaches new
connections through its SNI callback). ``[web] trusted_proxies`` are the addresses whose
X-Forwarded-For and X-Forwarded-Proto headers are believed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from dataclasses import dataclass

import uvicorn

from pobox.config import Config
from pobox.service.mail import MailService
from pobox.service.submission import Submission
from pobox.web.app import WebApp

log = logging.getLogger("pobox.web")

#: Seconds between sweeps of sessions that ran out.
PURGE_INTERVAL = 3600.0


@dataclass
class WebServer:
    app: WebApp
    server: uvicorn.Server
    listener: asyncio.Server
    purger: asyncio.Task[None]

    async def stop(self, grace: float) -> None:
        self.app.close()  # event streams end: their connections close
        self.purger.cancel()
        self.server.config.timeout_graceful_shutdown = max(int(grace), 1)
        await self.server.shutdown()


async def _purge(app: WebApp) -> None:
    while True:
        try:
            await app.state.sessions.purge()
        except Exception as exc:  # the store is busy or closing: the next round will do
            log.warning("webmail sessions not purged: %s", exc)
        await asyncio.sleep(PURGE_INTERVAL)


async def start_web(
    service: MailService,
    config: Config,
    sock: socket.socket,
    tls: ssl.SSLContext | None,
    submission: Submission | None,
) -> WebServer:
    # uvicorn's own log: its errors, not its "Shutting down" (pobox says when it stops)
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    app = WebApp(service, submission)
    uv_config = uvicorn.Config(
        app,
        http="h11",
        ws="none",
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=bool(config.web.trusted_proxies),
        forwarded_allow_ips=list(config.web.trusted_proxies) or None,
        timeout_keep_alive=30,
        h11_max_incomplete_event_size=64 * 1024,
    )
    uv_config.load()
    uv_config.ssl = tls
    server = uvicorn.Server(uv_config)
    # what uvicorn's own serve() does before startup (its main loop is ours: not run)
    server.lifespan = uv_config.lifespan_class(uv_config)
    try:
        await server.startup(sockets=[sock])
    except BaseException:
        sock.close()
        raise
    purger = asyncio.get_running_loop().create_task(_purge(app))
    return WebServer(app, server, server.servers[0], purger)
