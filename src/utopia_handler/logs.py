"""Logging set-up and the one way to write an event: a name and key=value pairs.

Events carry order refs, site ids, steps, attempts and PowerCode ids only: never secrets or
customer personal data (names, addresses, e-mails, phones).
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path
from typing import Any

LOGGER_NAME = "utopia_handler"
_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
_HANDLER_MARK = "_utopia_handler_handler"


def setup_logging(
    log_file: Path | None, level: str = "INFO", *, to_stdout: bool = True, rotate: bool = True
) -> None:
    """Log to stdout and, when a path is given, to a rotating file (10 MB x 5).

    `rotate=False` is for a second process writing the same file (`serve`'s worker child): it
    appends and follows the file when the rotating process moves it, instead of rotating too,
    which would rename the file under the other process and lose lines.
    """
    root = logging.getLogger(LOGGER_NAME)
    root.setLevel(level)
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
            handler.close()
    formatter = logging.Formatter(_FORMAT)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)] if to_stdout else []
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.RotatingFileHandler(
                log_file, maxBytes=10_000_000, backupCount=5, encoding="utf-8"
            )
            if rotate
            else logging.handlers.WatchedFileHandler(log_file, encoding="utf-8")
        )
    for handler in handlers:
        handler.setFormatter(formatter)
        setattr(handler, _HANDLER_MARK, True)
        root.addHandler(handler)
    root.propagate = False


def _quote(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in ' ="'):
        return '"' + text.replace('"', "'") + '"'
    return text


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Write `event key=value ...`; fields that are None are left out."""
    pairs = " ".join(f"{key}={_quote(value)}" for key, value in fields.items() if value is not None)
    logger.log(level, f"{event} {pairs}" if pairs else event)
