"""Logging: one line per event, to stderr or to a file.

``[server] log_format``: ``text`` (the default: time, worker, level, logger, then the message,
whose facts are ``key=value`` pairs) or ``json`` (one object per line with the same fields).
``[server] log_file``: empty for standard error (journald, containers), else a file that SIGHUP
reopens (:func:`reopen_logs`), for logrotate. No log call may carry a password, a session cookie
or message content: authentication logs name the user and the remote address only.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import TextIO

_file_handlers: list[ReopeningFileHandler] = []


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), worker, level, logger, message."""

    def __init__(self, worker: str = "") -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        document: dict[str, object] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.worker:
            document["worker"] = self.worker
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False)


class ReopeningFileHandler(logging.StreamHandler[TextIO]):
    """Appends to a file; :meth:`reopen` (on SIGHUP) starts on the file now at that path."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(self._open())

    def _open(self) -> TextIO:
        return open(self.path, "a", encoding="utf-8", errors="backslashreplace")

    def reopen(self) -> None:
        try:
            stream = self._open()
        except OSError as exc:
            logging.getLogger("pobox.log").warning(
                "cannot reopen the log file %s: %s; still writing to the old one",
                self.path,
                exc.strerror,
            )
            return
        self.acquire()
        try:
            old, self.stream = self.stream, stream
        finally:
            self.release()
        old.close()

    def close(self) -> None:
        self.acquire()
        try:
            if not self.stream.closed:
                self.stream.close()
        finally:
            self.release()
        super().close()


def setup_logging(
    level: str = "info", prefix: str = "", *, log_format: str = "text", log_file: str = ""
) -> None:
    handler: logging.StreamHandler[TextIO]
    if log_file:
        handler = ReopeningFileHandler(log_file)
        _file_handlers[:] = [handler]
    else:
        handler = logging.StreamHandler(sys.stderr)
        _file_handlers.clear()
    if log_format == "json":
        handler.setFormatter(JsonFormatter(prefix.strip()))
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, ReopeningFileHandler):
            old.close()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # aiosmtpd logs every command at INFO; keep its connection chatter out of our log
    logging.getLogger("mail.log").setLevel(logging.WARNING)


def reopen_logs() -> None:
    """SIGHUP: reopen the log file (after logrotate moved it); nothing to do for stderr."""
    for handler in _file_handlers:
        handler.reopen()
