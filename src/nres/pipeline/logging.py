"""Logging setup for the ``nres`` command line and batch drivers: levels, optional JSON lines.

Every nres module logs to a child of the ``"nres"`` logger; :func:`setup_logging` gives that logger
one handler. Plain text is ``2024-05-01T03:04:05.678Z INFO    nres.pipeline.batch: message``;
with ``json=True`` each record is one JSON object per line (``time``, ``level``, ``logger``,
``message``, the ``extra=`` fields of the call, and ``exception`` when there is one), which log
collectors parse without regular expressions (the original used a JSON formatter too;
idl-rv-ops.md 27).
"""

from __future__ import annotations

import json as _json
import logging
import sys
import time

__all__ = ["setup_logging", "JSONFormatter", "LEVELS", "LOGGER_NAME"]

#: Root of every nres logger.
LOGGER_NAME = "nres"
#: Accepted level names.
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# attributes every LogRecord has; anything else came from ``extra=``
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def _utc(record) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{stamp}.{int(record.msecs):03d}Z"


class JSONFormatter(logging.Formatter):
    """One JSON object per record (keys ``time``, ``level``, ``logger``, ``message`` + extras)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": _utc(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return _json.dumps(out, default=str)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = f"{_utc(record)} {record.levelname:<8s}{record.name}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def setup_logging(level="INFO", *, json: bool = False, stream=None) -> logging.Logger:
    """Configure the ``nres`` logger: one handler at ``level``, text or JSON lines.

    Parameters
    ----------
    level : str or int
        DEBUG, INFO, WARNING, ERROR or CRITICAL (case-insensitive), or a ``logging`` level number.
    json : bool
        Write JSON lines instead of text.
    stream : file-like, optional
        Where to write (default ``sys.stderr``).

    Returns
    -------
    logging.Logger
        The ``nres`` logger. Calling again replaces the handler (no duplicate lines).
    """
    from ..errors import InvalidParameterError

    if isinstance(level, str):
        name = level.strip().upper()
        if name not in LEVELS:
            raise InvalidParameterError(f"log level: expected one of {', '.join(LEVELS)}, got {level!r}")
        level = getattr(logging, name)
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        if getattr(handler, "_nres", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler._nres = True
    handler.setFormatter(JSONFormatter() if json else _TextFormatter())
    logger.addHandler(handler)
    logger.setLevel(int(level))
    logger.propagate = False
    return logger
