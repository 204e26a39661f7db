"""Logging: one line per event, to stderr."""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str = "info", prefix: str = "") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # aiosmtpd logs every command at INFO; keep its connection chatter out of our log
    logging.getLogger("mail.log").setLevel(logging.WARNING)
