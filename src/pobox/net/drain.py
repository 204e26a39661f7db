"""Graceful shutdown: the open sessions of a process, told when the server stops (SIGTERM).

Every session (IMAP, POP3, SMTP, LMTP) registers a callback while it is open. On SIGTERM the
server stops accepting, then :meth:`Drain.begin` calls each callback with ``force=False``: a
session says goodbye at its next safe point (IMAP ``* BYE``, POP3 ``-ERR`` without entering
UPDATE, SMTP/LMTP ``421 4.3.2`` once the DATA under way has been answered) and closes. Sessions
still open after ``[server] shutdown_grace`` seconds get ``force=True``: they are cut off.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger("pobox.net")

#: ``callback(force)``: ask a session to end (``force``: now, whatever it is doing)
Callback = Callable[[bool], None]


class Drain:
    def __init__(self) -> None:
        self.draining = False
        self._sessions: dict[object, Callback] = {}
        self._empty: asyncio.Event | None = None

    def __len__(self) -> int:
        return len(self._sessions)

    def register(self, key: object, callback: Callback) -> None:
        """*key*'s session is open; a session opened while draining is told at once."""
        self._sessions[key] = callback
        if self.draining:
            asyncio.get_running_loop().call_soon(self._call, callback, False)

    def unregister(self, key: object) -> None:
        self._sessions.pop(key, None)
        if not self._sessions and self._empty is not None:
            self._empty.set()

    @staticmethod
    def _call(callback: Callback, force: bool) -> None:
        try:
            callback(force)
        except Exception:
            log.exception("a session could not be told of the shutdown")

    def begin(self) -> None:
        """Ask every open session to end at its next safe point."""
        self.draining = True
        for callback in list(self._sessions.values()):
            self._call(callback, False)

    async def wait(self, timeout: float) -> bool:
        """Wait until every session has ended, at most *timeout* seconds; True if they have."""
        if not self._sessions:
            return True
        self._empty = asyncio.Event()
        try:
            await asyncio.wait_for(self._empty.wait(), timeout)
        except TimeoutError:
            return not self._sessions
        return True

    def force(self) -> int:
        """Cut off the sessions still open; returns how many there were."""
        left = list(self._sessions.values())
        for callback in left:
            self._call(callback, True)
        return len(left)
