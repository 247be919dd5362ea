"""Package logger and a once-only log helper (backend choices are reported once per process)."""

from __future__ import annotations

import logging

logger = logging.getLogger("vis4mer")
_already_logged: set[tuple[str, str]] = set()


def log_once(key: str, message: str, level: int = logging.INFO) -> None:
    """Log `message` the first time `key` is seen with that message in this process."""
    if (key, message) in _already_logged:
        return
    _already_logged.add((key, message))
    logger.log(level, message)
