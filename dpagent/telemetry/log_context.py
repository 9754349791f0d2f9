"""Context fields for log records: ``LogContext``, the running operation and the span.

Every record that reaches a dpagent handler is *stamped* once, in the thread or
task that logged it: the fields of the enclosing :class:`LogContext` blocks, the
``agent`` and ``operation`` of the instrumented operation that is running, and
the ``trace_id``/``span_id`` of the current span. Stamping at the source matters
because a record may be written later by another thread or process (the
multiprocess queue), where none of these are current any more.

The fields live in a :class:`contextvars.ContextVar`, so they follow threads
(each thread starts empty) and asyncio tasks (each task copies its creator's
context) without any locking.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Mapping
from types import MappingProxyType, TracebackType
from typing import Any, Generic, TypeVar

from opentelemetry import trace

__all__ = [
    "FIELD_PREFIX",
    "OUTPUT_KEYS",
    "RECORD_ATTRS",
    "STAMPED",
    "LogContext",
    "StampFilter",
    "current_fields",
    "field_name",
    "record_fields",
    "stamp",
]

# Attributes every LogRecord has. A field with one of these names would clobber
# the record (and stdlib raises for such an ``extra=`` key), so it is kept as
# ``field_<name>`` instead of being dropped or raising out of a log call.
RECORD_ATTRS: frozenset[str] = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
# The keys every JSON line starts with; a field of the same name is renamed too.
OUTPUT_KEYS: frozenset[str] = frozenset({"timestamp", "level", "logger", "message"})
FIELD_PREFIX = "field_"


def field_name(key: str) -> str:
    """``key`` as a record attribute: prefixed when it would clobber one."""
    return FIELD_PREFIX + key if key in RECORD_ATTRS else key


STAMPED = "_dpagent"  # underscore: formatters never write it


class _Scope:
    """The fields in force, and the operation that was running when ``agent`` or
    ``operation`` were last set by a LogContext."""

    __slots__ = ("fields", "operation")

    def __init__(self, fields: Mapping[str, Any], operation: object) -> None:
        self.fields = fields
        self.operation = operation


_EMPTY = _Scope(MappingProxyType({}), None)
_scope: contextvars.ContextVar[_Scope] = contextvars.ContextVar("dpagent_log_scope", default=_EMPTY)

_L = TypeVar("_L")


def _running_operation() -> Any:
    # instrument imports logs, which imports this module: resolve the accessor on
    # first use instead of at import.
    global _current_operation
    from .instrument import current_operation

    _current_operation = current_operation
    return current_operation()


_current_operation: Callable[[], Any] = _running_operation


class LogContext(Generic[_L]):
    """Attach ``fields`` to every record logged inside the block, by any logger.

    >>> log = get_agent_logger("image_sourcing")
    >>> with LogContext(log, sku="ABC-1", batch=7) as log:
    ...     log.info("downloading")          # carries sku and batch

    Blocks nest (inner values win for the same key) and are isolated per thread
    and per asyncio task. The block returns ``logger`` so the seed's
    ``with LogContext(logger, ...) as log`` keeps working; ``logger`` is
    otherwise unused, since the fields apply to every logger.
    """

    __slots__ = ("_tokens", "fields", "logger")

    def __init__(self, logger: _L, **fields: Any) -> None:
        self.logger = logger
        self.fields = fields
        self._tokens: list[contextvars.Token[_Scope]] = []

    def __enter__(self) -> _L:
        outer = _scope.get()
        operation = outer.operation
        if "agent" in self.fields or "operation" in self.fields:
            operation = _current_operation()
        merged = MappingProxyType({**outer.fields, **self.fields})
        self._tokens.append(_scope.set(_Scope(merged, operation)))
        return self.logger

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token = self._tokens.pop()
        try:
            _scope.reset(token)
        except ValueError:
            # Exited in another context than entered (a generator resumed
            # elsewhere): restore what that block saw instead of failing.
            _scope.set(token.old_value if token.old_value is not token.MISSING else _EMPTY)

    async def __aenter__(self) -> _L:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def current_fields() -> Mapping[str, Any]:
    """The LogContext fields in force here (read-only)."""
    return _scope.get().fields


def stamp(record: logging.LogRecord) -> None:
    """Add context fields and trace ids to ``record``, once.

    Precedence: ``extra=`` of the call (and an agent logger's own agent), then
    the innermost of LogContext and the running operation, then the outer one.
    Never raises: a failure here must not cost the record.
    """
    attrs = record.__dict__
    if STAMPED in attrs:
        return
    attrs[STAMPED] = True
    try:
        scope = _scope.get()
        fields = scope.fields
        call = _current_operation()
        # The running operation's names: instrument's call object carries its
        # site (the decorated agent and operation).
        site = getattr(call, "site", None)
        if site is not None:
            # An operation started inside the LogContext that named agent or
            # operation is the more specific of the two: its names win there.
            inner = call is not scope.operation
            for key, value in (("agent", site.agent), ("operation", site.operation)):
                if key not in attrs and (inner or key not in fields):
                    attrs[key] = value
        for key, value in fields.items():
            key = field_name(key)
            if key not in attrs:
                attrs[key] = value
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            attrs.setdefault("trace_id", format(span_context.trace_id, "032x"))
            attrs.setdefault("span_id", format(span_context.span_id, "016x"))
    except Exception:  # pragma: no cover - defensive: logging must go on
        pass


def record_fields(record: logging.LogRecord) -> list[tuple[str, Any]]:
    """The record's own fields (``extra=`` values, context fields, trace ids),
    named as they are written."""
    return [
        (FIELD_PREFIX + key if key in OUTPUT_KEYS else key, value)
        for key, value in record.__dict__.items()
        if key not in RECORD_ATTRS and not key.startswith("_")
    ]


class StampFilter(logging.Filter):
    """First filter of every dpagent handler: stamps records of any logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        stamp(record)
        return True
