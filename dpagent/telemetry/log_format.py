"""How a record becomes a line: JSON (python-json-logger), text, coloured console.

Every formatter here redacts (message, fields, exception text) and never raises:
a value JSON cannot encode is written as its ``repr``, a message whose ``%``
arguments do not fit is written as its parts, and a broken ``__repr__`` becomes
a placeholder. A log call must never be what breaks the application.

JSON keys, in order: ``timestamp`` (RFC 3339, UTC, microseconds), ``level``,
``logger``, ``message``, the record's fields (``extra=``, LogContext, the running
operation's ``agent``/``operation``, ``trace_id``, ``span_id``), then for an
exception ``exception_type``, ``exception_message`` and ``exception_stacktrace``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
from collections.abc import Mapping
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from .log_context import record_fields
from .redaction import redact_text, redact_value

__all__ = [
    "ConsoleFormatter",
    "JsonLineFormatter",
    "TextFormatter",
    "jsonable",
    "rfc3339",
    "safe_message",
    "safe_repr",
]

_MAX_DEPTH = 20
_second_cache: tuple[int, str] = (-1, "")


def rfc3339(created: float, digits: int = 6) -> str:
    """``2026-12-03T17:57:00.123456Z`` for a ``time.time()`` value."""
    global _second_cache
    second = int(created)
    cached = _second_cache  # one read: another thread may replace it
    if cached[0] == second:
        prefix = cached[1]
    else:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second_cache = (second, prefix)
    if digits == 3:
        return f"{prefix}.{int((created - second) * 1_000):03d}Z"
    return f"{prefix}.{int((created - second) * 1_000_000):06d}Z"


def safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__name__}>"


def safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return safe_repr(value)


def safe_message(record: logging.LogRecord) -> str:
    """``record.getMessage()``, or its parts when the arguments do not fit."""
    try:
        return record.getMessage()
    except Exception as exc:
        return (
            f"{safe_repr(record.msg)} % {safe_repr(record.args)} "
            f"[message formatting failed: {type(exc).__name__}: {safe_str(exc)}]"
        )


def json_default(value: object) -> Any:
    """For ``json.dumps``: dates as ISO 8601, anything else as its redacted repr."""
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    return redact_text(safe_repr(value))


def jsonable(value: Any, depth: int = 0) -> Any:
    """``value`` as plain JSON data (str keys, finite floats, no cycles)."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if depth >= _MAX_DEPTH:
        return safe_repr(value)
    if isinstance(value, Mapping):
        try:
            return {safe_str(k): jsonable(v, depth + 1) for k, v in value.items()}
        except Exception:
            return safe_repr(value)
    if isinstance(value, (list, tuple)):
        return [jsonable(v, depth + 1) for v in value]
    return json_default(value)


class JsonLineFormatter(JsonFormatter):
    """One JSON object per record, the keys Loki queries depend on (module doc)."""

    def __init__(self) -> None:
        super().__init__(json_default=json_default)

    def format(self, record: logging.LogRecord) -> str:
        try:
            return super().format(record)
        except Exception as exc:  # bad %-arguments, a broken __str__, ...
            return self._fallback(record, exc)

    def add_fields(
        self,
        log_data: dict[str, Any],
        record: logging.LogRecord,
        message_dict: dict[str, Any],
    ) -> None:
        log_data["timestamp"] = rfc3339(record.created)
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["message"] = redact_text(record.message)
        stacktrace = message_dict.pop("exc_info", None)
        stack_info = message_dict.pop("stack_info", None)
        for key, value in message_dict.items():  # logger.info({"k": "v"})
            log_data[str(key)] = redact_value(str(key), value)
        for key, value in record_fields(record):
            log_data[key] = redact_value(key, value)
        exc_info = record.exc_info
        if exc_info and exc_info[0] is not None:
            log_data["exception_type"] = exc_info[0].__name__
            log_data["exception_message"] = redact_text(safe_str(exc_info[1]))
        if stacktrace:
            log_data["exception_stacktrace"] = redact_text(str(stacktrace))
        if stack_info:
            log_data["stack_info"] = str(stack_info)

    def jsonify_log_record(self, log_data: dict[str, Any]) -> str:
        try:
            return json.dumps(
                log_data, default=json_default, allow_nan=False, separators=(",", ":")
            )
        except (TypeError, ValueError, RecursionError):
            # Non-str keys, NaN, a cycle: rebuild as plain data and try again.
            return json.dumps(jsonable(log_data), default=json_default, separators=(",", ":"))

    def _fallback(self, record: logging.LogRecord, error: Exception) -> str:
        try:
            record.message = safe_message(record)
            log_data: dict[str, Any] = {}
            extra: dict[str, Any] = {}
            if record.exc_info:
                extra["exc_info"] = logging.Formatter().formatException(record.exc_info)
            self.add_fields(log_data, record, extra)
            return self.jsonify_log_record(log_data)
        except Exception:
            return json.dumps(
                {
                    "timestamp": rfc3339(record.created),
                    "level": record.levelname,
                    "logger": record.name,
                    "message": redact_text(safe_repr(record.msg)),
                    "format_error": f"{type(error).__name__}: {safe_str(error)}",
                }
            )


def _text_value(key: str, value: Any) -> str:
    value = redact_value(key, value)
    if isinstance(value, str):
        if value and not any(c.isspace() or c in "\"'|=" for c in value):
            return value
        return json.dumps(value, ensure_ascii=False)
    if value is None or isinstance(value, (bool, int, float)):
        return str(value)
    try:
        return json.dumps(value, default=json_default, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return redact_text(safe_repr(value))


class TextFormatter(logging.Formatter):
    """``2026-12-03T17:57:00.123Z ERROR    logger: message | key=value ...``."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            return self._format(record)
        except Exception as exc:
            return (
                f"{rfc3339(record.created, 3)} {record.levelname:<8} {record.name}: "
                f"{redact_text(safe_repr(record.msg))} [format error: {type(exc).__name__}]"
            )

    def _timestamp(self, record: logging.LogRecord) -> str:
        return rfc3339(record.created, 3)

    def _level(self, record: logging.LogRecord) -> str:
        return f"{record.levelname:<8}"

    def _fields(self, text: str) -> str:
        return text

    def _format(self, record: logging.LogRecord) -> str:
        line = (
            f"{self._timestamp(record)} {self._level(record)} {record.name}: "
            f"{redact_text(safe_message(record))}"
        )
        fields = record_fields(record)
        if fields:
            line += self._fields(" | " + " ".join(f"{k}={_text_value(k, v)}" for k, v in fields))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)  # shared by handlers
        if record.exc_text:
            line += "\n" + redact_text(record.exc_text)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


_COLOURS = {
    logging.DEBUG: "\x1b[2m",  # dim
    logging.INFO: "\x1b[36m",  # cyan
    25: "\x1b[32m",  # SUCCESS: green
    logging.WARNING: "\x1b[33m",  # yellow
    logging.ERROR: "\x1b[31m",  # red
    logging.CRITICAL: "\x1b[1;31m",  # bold red
}
_RESET = "\x1b[0m"


class ConsoleFormatter(TextFormatter):
    """Text for people: local time, level coloured when ``colour`` is on."""

    def __init__(self, colour: bool) -> None:
        super().__init__()
        self.colour = colour

    def _timestamp(self, record: logging.LogRecord) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(record.created))
        return f"{clock}.{int(record.msecs):03d}"

    def _level(self, record: logging.LogRecord) -> str:
        level = f"{record.levelname:<8}"
        if not self.colour:
            return level
        # A custom level takes the colour of the standard level below it.
        below = [lv for lv in _COLOURS if lv <= record.levelno]
        colour = _COLOURS[max(below)] if below else _COLOURS[logging.DEBUG]
        return f"{colour}{level}{_RESET}"

    def _fields(self, text: str) -> str:
        return f"\x1b[2m{text}{_RESET}" if self.colour else text
