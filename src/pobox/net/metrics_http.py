"""The Prometheus endpoint: ``GET /metrics`` over plain HTTP/1.1, one request per connection.

Every worker listens on ``[metrics] listen`` (SO_REUSEPORT, like the mail listeners); whichever
takes a scrape answers for all of them (pobox.metrics reads every worker's files). The page is
rendered in a thread, off the event loop. Its connections are not counted by the mail
listeners' limits; a request must arrive within :data:`REQUEST_TIMEOUT` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

from pobox.config import parse_listen
from pobox.net.limits import StreamHandler, close_stream

log = logging.getLogger("pobox.metrics")

#: Seconds a client gets to send its request.
REQUEST_TIMEOUT = 10.0
#: Largest request head accepted, in octets.
MAX_HEAD = 8192
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _response(status: str, body: bytes, head_only: bool, content_type: str) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + (b"" if head_only else body)


def make_handler(render: Callable[[], bytes]) -> StreamHandler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            method, target, _version = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            writer.write(_response("400 Bad Request", b"bad request\n", False, "text/plain"))
        except (TimeoutError, ConnectionError):
            pass
        else:
            path = target.split("?", 1)[0]
            head_only = method == "HEAD"
            if method not in ("GET", "HEAD"):
                reply = _response("405 Method Not Allowed", b"GET /metrics\n", False, "text/plain")
            elif path != "/metrics":
                reply = _response("404 Not Found", b"see /metrics\n", head_only, "text/plain")
            else:
                try:
                    body = await asyncio.get_running_loop().run_in_executor(None, render)
                except Exception:
                    log.exception("metrics could not be rendered")
                    body, status = b"internal error\n", "500 Internal Server Error"
                else:
                    status = "200 OK"
                reply = _response(status, body, head_only, CONTENT_TYPE)
            with contextlib.suppress(ConnectionError, RuntimeError):
                writer.write(reply)
        await close_stream(writer)

    return handle


async def serve_metrics(
    listen: str,
    render: Callable[[], bytes],
    *,
    reuse_port: bool = False,
    sock: socket.socket | None = None,
) -> asyncio.Server:
    """Listen on *listen* (or on *sock*, bound beforehand) and answer scrapes with *render*."""
    handler = make_handler(render)
    host, port = parse_listen(listen)
    try:
        if sock is not None:
            return await asyncio.start_server(handler, sock=sock, limit=MAX_HEAD)
        return await asyncio.start_server(
            handler,
            host,
            port,
            reuse_port=reuse_port,
            limit=MAX_HEAD,
        )
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen for metrics on {listen}: {exc.strerror}") from None
