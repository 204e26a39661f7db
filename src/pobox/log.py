"""Logging: one line per event, to stderr or to a file.

``[server] log_format``: ``text`` (the default: time, worker, level, logger, then the message,
whose facts are ``key=value`` pairs) or ``json`` (one object per line with the same fields).
``[server] log_file``: empty for standard error (journald, containers), else a file that SIGHUP
reopens (:func:`reopen_logs`), for logrotate. No log call may carry a password, a session cookie
or message content: authentication logs name the user and the remote address only.

:func:`log_event` writes the one line per session and per delivery: ``event=NAME key=value …``
in text (values quoted as JSON strings when they hold spaces, quotes, ``=`` or control
characters, so a client cannot forge a line or a field), and the same facts as fields of the
object in JSON. :func:`reconfigure_logging` applies a reloaded ``[server]`` (SIGHUP).
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import TextIO

_file_handlers: list[ReopeningFileHandler] = []
#: the worker prefix given to :func:`setup_logging`, kept for :func:`reconfigure_logging`
_prefix = ""
#: characters a text value may hold unquoted
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@.:_-+/[]<>,")


def _text_value(value: object) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    text = str(value)
    if all(ch in _PLAIN for ch in text):
        return text
    return json.dumps(text, ensure_ascii=True)


def format_facts(event: str, facts: dict[str, object]) -> str:
    """``event=NAME key=value …`` as a text log line shows them."""
    return " ".join(
        [f"event={_text_value(event)}", *(f"{k}={_text_value(v)}" for k, v in facts.items())]
    )


def log_event(logger: logging.Logger, event: str, **facts: object) -> None:
    """Log one event with its facts (never a password, a cookie or message content): text
    ``event=NAME key=value …``, or the facts as fields of the JSON object."""
    if not logger.isEnabledFor(logging.INFO):
        return
    fields: dict[str, object] = {"event": event}
    for key, value in facts.items():
        fields[key] = round(value, 3) if isinstance(value, float) else value
    logger.info("%s", format_facts(event, facts), extra={"facts": fields})


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
        facts = getattr(record, "facts", None)
        if isinstance(facts, dict):
            for key, value in facts.items():
                document.setdefault(key, value)
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
    global _prefix
    _prefix = prefix
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


def reconfigure_logging(level: str, log_format: str, log_file: str) -> None:
    """SIGHUP with a changed ``[server] log_level``, ``log_format`` or ``log_file``: the same
    worker prefix, the new settings (a log file is opened anew)."""
    setup_logging(level, _prefix, log_format=log_format, log_file=log_file)
