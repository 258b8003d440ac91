"""Structured logs: one JSON object per line, on stderr or a file.

Every line has ``ts`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger`` and
``event`` (a short snake_case name, the log message), plus the fields the caller passes
with :func:`log_event` — so operators can ``grep '"event": "hour_closed"'`` or feed the
file to any JSON-lines tool. An exception is logged as ``error`` (its type and message)
and ``traceback``.

    log = get_logger("gateway.results")
    log_event(log, logging.INFO, "hour_closed", station="yb-town-01", hour_ts=1764374400)
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Final, TextIO

_FIELDS_ATTR: Final = "lantian_fields"
ROOT_LOGGER: Final = "gateway"

_INSTALLED: list[logging.Handler] = []  # handlers configure() added

_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class JsonLinesFormatter(logging.Formatter):
    """Formats a record as one JSON line (see module doc)."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line: dict[str, Any] = {
            "ts": f"{ts}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, _FIELDS_ATTR, None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                line.setdefault(key, value)
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            line["error"] = f"{type(error).__name__}: {error}"
            line["traceback"] = "".join(traceback.format_exception(error)).rstrip()
        return json.dumps(line, ensure_ascii=False, default=str, separators=(", ", ": "))


def get_logger(name: str) -> logging.Logger:
    """A logger under the gateway's root (``gateway.<name>`` unless already under it)."""
    if name != ROOT_LOGGER and not name.startswith(ROOT_LOGGER + "."):
        name = f"{ROOT_LOGGER}.{name}"
    return logging.getLogger(name)


def log_event(
    logger: logging.Logger,
    level: int,
    event: str,
    *,
    exc_info: bool = False,
    **fields: Any,
) -> None:
    """Log ``event`` with structured ``fields`` (JSON-serialisable, else ``str()``)."""
    if logger.isEnabledFor(level):
        logger.log(level, event, exc_info=exc_info, extra={_FIELDS_ATTR: fields})


def configure(level: str = "info", file: Path | None = None, stream: TextIO | None = None) -> None:
    """Send the gateway's logs as JSON lines to ``file`` (appended) or ``stream`` (stderr).

    Replaces the handlers this function installed before; other loggers are untouched.
    """
    root = logging.getLogger(ROOT_LOGGER)
    while _INSTALLED:
        old = _INSTALLED.pop()
        root.removeHandler(old)
        old.close()
    handler: logging.Handler
    if file is not None:
        handler = logging.FileHandler(file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
    _INSTALLED.append(handler)
    handler.setFormatter(JsonLinesFormatter())
    root.addHandler(handler)
    root.setLevel(_LEVELS.get(level, logging.INFO))
    root.propagate = False
