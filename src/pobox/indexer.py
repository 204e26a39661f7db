"""The full-text indexer's own process (docs/decisions/full-text-search.md).

``pobox serve`` (its first worker) starts one: a low-priority process (nice 10) that opens the
store and runs :class:`pobox.service.fulltext.Indexer`. Decoding text and filling the trigram
index cost about a millisecond a message; in a process of its own that work neither holds a
worker's GIL nor takes CPU time from sessions and deliveries while they want it (the kernel
gives a niced process what is left), and SEARCH scans whatever it has not reached yet. It ends
with the worker that started it: on SIGTERM, and by itself when that parent is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
from multiprocessing.process import BaseProcess

from pobox.config import Config
from pobox.service.fulltext import Indexer
from pobox.store.factory import create_store

log = logging.getLogger("pobox.fulltext")

#: How much lower the indexer's scheduling priority is than the server's.
NICENESS = 10


def start(config: Config) -> BaseProcess:
    """Start the indexer process for this server (the caller stops it: :func:`stop`)."""
    context = multiprocessing.get_context("spawn")
    process = context.Process(
        target=main, args=(config, os.getpid()), name="pobox-indexer", daemon=True
    )
    process.start()
    return process


async def stop(process: BaseProcess, timeout: float = 10.0) -> None:
    if process.is_alive() and process.pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, process.join, timeout)
    if process.is_alive():
        process.kill()
        await loop.run_in_executor(None, process.join, timeout)


async def supervise(config: Config) -> None:
    """Run an indexer process for as long as this task runs (cancel it to stop)."""
    process = start(config)
    try:
        while True:
            await asyncio.sleep(5.0)
            if not process.is_alive():  # it died (a crash, the OOM killer): start another
                log.warning(
                    "the indexer process ended (status %s); starting it again", process.exitcode
                )
                process = start(config)
    finally:
        await stop(process)


def main(config: Config, parent: int) -> None:
    """The indexer process."""
    from pobox.log import setup_logging
    from pobox.server import install_loop  # (imported here: pobox.server imports this module)

    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    setup_logging(
        config.server.log_level,
        prefix="indexer ",
        log_format=config.server.log_format,
        log_file=config.server.log_file,
    )
    install_loop(config)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(config, parent))


async def _run(config: Config, parent: int) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    store = create_store(config.store, config.data_path)
    await store.open()
    task = asyncio.create_task(Indexer(store).run(), name="fulltext-indexer")
    try:
        while not stopping.is_set() and os.getppid() == parent:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), 1.0)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await store.close()
