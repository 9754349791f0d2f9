"""``instrument`` and ``OperationTimer``: the one wrapper around an operation.

Everything that can be decided once is decided at decoration: the wrapper kind
(function, coroutine, generator, async generator), the metric children (so the
success and failure series exist at 0 from that moment), the span name and the
static attributes. A call then does: clock, gauge, optional span, the user's code,
clock, counter, histogram (with an exemplar when the span is sampled), gauges,
and a log record for failures.

Telemetry never breaks the instrumented code: a failure inside dpagent is logged
once on the ``dpagent.telemetry`` logger and the call goes on; the user's own
exception is re-raised with a bare ``raise``, the same object with its traceback.
"""

from __future__ import annotations

import bisect
import contextlib
import contextvars
import functools
import inspect
import logging
import time
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from types import TracebackType
from typing import Any, TypeVar, cast

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode, TracerProvider
from prometheus_client import CollectorRegistry

from . import logs
from .metrics import BoundOperation, get_metrics, validate_name
from .tracing import GLOBAL_TRACING, get_tracer, metadata_attributes, tracing_enabled

__all__ = ["OperationTimer", "current_operation", "instrument", "record_failure"]

F = TypeVar("F", bound=Callable[..., Any])

_internal_log = logging.getLogger("dpagent.telemetry")
EXEMPLAR_INTERVAL_SECONDS = 1.0
_clock = time.perf_counter
_wall = time.time

_current: contextvars.ContextVar[_Call | None] = contextvars.ContextVar(
    "dpagent_current_operation", default=None
)


class _Call:
    """The state of one running operation.

    Defaults live on the class, so a call without a span or a failure costs one
    bare object: this is on every instrumented call's path.
    """

    site: _Site
    span: Span | None = None
    error_type: str | None = None
    error_message: str | None = None
    context_token: object = None
    current_token: contextvars.Token[_Call | None] | None = None
    start: float = 0.0
    duration: float | None = None
    failed: bool = False

    @property
    def agent(self) -> str:
        return self.site.agent

    @property
    def operation(self) -> str:
        return self.site.operation

    def activate(self) -> None:
        """Make this operation (and its span) current in this context."""
        self.current_token = _current.set(self)
        if self.span is not None:
            self.context_token = otel_context.attach(trace.set_span_in_context(self.span))

    def deactivate(self) -> None:
        if self.context_token is not None:
            # Detaching in another context fails; OTel already logs that.
            with contextlib.suppress(Exception):
                otel_context.detach(cast(Any, self.context_token))
            self.context_token = None
        if self.current_token is not None:
            try:
                _current.reset(self.current_token)
            except ValueError:  # token from another context (a moved generator)
                _current.set(None)
            self.current_token = None

    def mark_failure(self, error_type: str, message: str | None = None) -> None:
        self.error_type = error_type
        self.error_message = message


class _Site:
    """One instrumented ``(agent, operation)``: what every call shares."""

    def __init__(
        self,
        agent: str,
        operation: str,
        metadata: Mapping[str, Any] | None,
        registry: CollectorRegistry | None,
        tracer_provider: TracerProvider | None,
    ) -> None:
        self.agent = validate_name("agent", agent)
        self.operation = validate_name("operation", operation)
        self.span_name = f"{agent}.{operation}"
        self.attributes = {
            **metadata_attributes(metadata),
            "dpagent.agent": agent,
            "dpagent.operation": operation,
        }
        self.metrics: BoundOperation = get_metrics(registry).bind(agent, operation)
        self.tracer = get_tracer(tracer_provider)
        # An explicit provider is decided now; the global one may appear later.
        self.explicit_tracing: bool | None = (
            None if tracer_provider is None else tracing_enabled(tracer_provider)
        )
        self.buckets = get_metrics(registry).buckets
        self._exemplar_next = [0.0] * (len(self.buckets) + 1)
        self._complained = False

    def enter(self, metadata: Mapping[str, Any] | None = None) -> _Call:
        """Start an operation and make it current; never raises."""
        call = _Call()
        call.site = self
        call.current_token = _current.set(call)
        now = _clock()
        try:
            self.metrics.running(1)
            explicit = self.explicit_tracing
            tracing = GLOBAL_TRACING
            if (
                explicit
                if explicit is not None
                else tracing.enabled or (now >= tracing.next_check and tracing.check(now))
            ):
                attributes = self.attributes
                if metadata:
                    attributes = {**metadata_attributes(metadata), **attributes}
                span = self.tracer.start_span(self.span_name, attributes=attributes)
                call.span = span
                call.context_token = otel_context.attach(trace.set_span_in_context(span))
                now = _clock()  # starting the span is not the operation's time
        except Exception:
            self._complain("starting")
        call.start = now
        return call

    def exit(self, call: _Call, exc: BaseException | None) -> None:
        """Record the outcome and restore the context; never raises."""
        now = _clock()
        duration = now - call.start
        if duration < 0.0:  # clamp, as prometheus_client does
            duration = 0.0
        call.duration = duration
        try:
            if exc is None and call.error_type is None and call.span is None:
                # The common case, kept short: a success without a span.
                metrics = self.metrics
                metrics.success.inc()
                metrics.duration.observe(duration)
                metrics.stopped()
                if metrics.live:
                    metrics.last_success_clock = now
                else:
                    metrics.set_last_success(_wall())
                if logs.completions_logged():
                    logs.operation_finished(
                        self.agent, self.operation, "success", duration, None, None, None
                    )
            else:
                self._finish(call, exc, duration)
        except Exception:
            self._complain("recording")
        if call.context_token is None:
            # deactivate(), inlined for the common case: no span to detach.
            try:
                _current.reset(call.current_token)  # type: ignore[arg-type]
            except ValueError:  # token from another context (a moved generator)
                _current.set(None)
            call.current_token = None
        else:
            call.deactivate()

    def _finish(self, call: _Call, exc: BaseException | None, duration: float) -> None:
        if exc is not None and not isinstance(exc, GeneratorExit):
            call.error_type = type(exc).__name__
            call.error_message = str(exc)
        failed = call.failed = call.error_type is not None
        outcome = "failure" if failed else "success"
        metrics = self.metrics
        (metrics.failure if failed else metrics.success).inc()
        span = call.span
        exemplar = None
        if span is not None:
            span_context = span.get_span_context()
            if span_context.trace_flags.sampled and self._exemplar_due(duration, call.start):
                exemplar = {
                    "trace_id": format(span_context.trace_id, "032x"),
                    "span_id": format(span_context.span_id, "016x"),
                }
        metrics.duration.observe(duration, exemplar)
        metrics.stopped()
        if failed:
            metrics.error(cast(str, call.error_type)).inc()
        else:
            metrics.set_last_success(_wall())
        if span is not None:
            span.set_attribute("dpagent.outcome", outcome)
            if failed:
                if exc is not None:
                    span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, call.error_message or call.error_type))
        # Logged while the span is still current, so the record carries its ids.
        logs.operation_finished(
            self.agent, self.operation, outcome, duration,
            call.error_type, call.error_message, exc,
        )  # fmt: skip
        if span is not None:
            span.end()

    def _exemplar_due(self, duration: float, now: float) -> bool:
        """At most one new exemplar per bucket per second.

        A scrape exports only the latest exemplar of each bucket, so replacing
        it more often than Prometheus can scrape is invisible, while setting one
        costs more than the observation itself (prometheus_client validates it).
        """
        index = bisect.bisect_left(self.buckets, duration)
        if now < self._exemplar_next[index]:
            return False
        self._exemplar_next[index] = now + EXEMPLAR_INTERVAL_SECONDS
        return True

    def _complain(self, what: str) -> None:
        # Once per site: a broken exporter must not flood the application's logs.
        if not self._complained:
            self._complained = True
            _internal_log.warning(
                "dpagent: %s telemetry for %s failed; the operation itself is unaffected",
                what,
                self.span_name,
                exc_info=True,
            )


def instrument(
    agent: str,
    operation: str,
    *,
    metadata: Mapping[str, Any] | None = None,
    registry: CollectorRegistry | None = None,
    tracer_provider: TracerProvider | None = None,
) -> Callable[[F], F]:
    """Decorate a function, coroutine function, generator or async generator.

    Each call emits a span ``{agent}.{operation}``, the ``dpagent_*`` metrics and,
    on failure, one ERROR log record with the span's trace id. ``metadata`` is
    added to every span as attributes (never as metric labels). Inside the call,
    :func:`record_failure` marks the operation failed without raising.
    """
    site = _Site(agent, operation, metadata, registry, tracer_provider)

    def decorate(func: F) -> F:
        if inspect.isasyncgenfunction(func):
            wrapper: Callable[..., Any] = _wrap_async_generator(func, site)
        elif inspect.isgeneratorfunction(func):
            wrapper = _wrap_generator(func, site)
        elif inspect.iscoroutinefunction(func):
            wrapper = _wrap_coroutine(func, site)
        else:
            wrapper = _wrap_function(func, site)
        return cast(F, functools.wraps(func)(wrapper))

    return decorate


def _wrap_function(func: Callable[..., Any], site: _Site) -> Callable[..., Any]:
    enter, exit_ = site.enter, site.exit  # bound once: two lookups fewer per call

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        call = enter()
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            exit_(call, exc)
            raise
        exit_(call, None)
        return result

    return wrapper


def _wrap_coroutine(func: Callable[..., Any], site: _Site) -> Callable[..., Any]:
    enter, exit_ = site.enter, site.exit

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        call = enter()
        try:
            result = await func(*args, **kwargs)
        except BaseException as exc:
            exit_(call, exc)
            raise
        exit_(call, None)
        return result

    return wrapper


def _wrap_generator(func: Callable[..., Generator[Any, Any, Any]], site: _Site) -> Any:
    # The operation spans the whole iteration, but its span is current only while
    # the generator's own code runs: between yields the consumer's code runs, and
    # spans it starts must not become children of ours. Each step forwards what
    # the consumer sent or threw, as `yield from` would.
    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        call = site.enter()
        try:
            gen = func(*args, **kwargs)
        except BaseException as exc:
            site.exit(call, exc)
            raise
        call.deactivate()  # each step below makes it current again
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            call.activate()
            try:
                item = gen.send(sent) if thrown is None else gen.throw(thrown)
            except StopIteration as stop:
                site.exit(call, None)
                return stop.value
            except BaseException as exc:
                site.exit(call, exc)
                raise
            finally:
                del thrown  # no reference cycle through the traceback
            call.deactivate()
            sent, thrown = None, None
            try:
                sent = yield item
            except GeneratorExit as closing:  # the consumer stopped early: not a failure
                call.activate()
                try:
                    gen.close()
                except BaseException as exc:
                    site.exit(call, exc)
                    raise
                site.exit(call, closing)
                raise
            except BaseException as exc:
                thrown = exc

    return wrapper


def _wrap_async_generator(func: Callable[..., AsyncGenerator[Any, Any]], site: _Site) -> Any:
    # The same protocol as _wrap_generator, with asend/athrow/aclose.
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        call = site.enter()
        try:
            agen = func(*args, **kwargs)
        except BaseException as exc:
            site.exit(call, exc)
            raise
        call.deactivate()  # each step below makes it current again
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            call.activate()
            try:
                item = await (agen.asend(sent) if thrown is None else agen.athrow(thrown))
            except StopAsyncIteration:
                site.exit(call, None)
                return
            except BaseException as exc:
                site.exit(call, exc)
                raise
            finally:
                del thrown
            call.deactivate()
            sent, thrown = None, None
            try:
                sent = yield item
            except GeneratorExit as closing:
                call.activate()
                try:
                    await agen.aclose()
                except BaseException as exc:
                    site.exit(call, exc)
                    raise
                site.exit(call, closing)
                raise
            except BaseException as exc:
                thrown = exc

    return wrapper


_SITES: dict[tuple[str, str, int, int], _Site] = {}
# OperationTimer names may be built from data at run time; the metric labels are
# capped in metrics.py, and this cache is capped so it cannot grow either.
_MAX_CACHED_SITES = 10_000


def _site_for(
    agent: str,
    operation: str,
    registry: CollectorRegistry | None,
    tracer_provider: TracerProvider | None,
) -> _Site:
    key = (agent, operation, id(registry), id(tracer_provider))
    site = _SITES.get(key)
    if site is None or site.metrics is not get_metrics(registry).bind(agent, operation):
        site = _Site(agent, operation, None, registry, tracer_provider)
        if len(_SITES) < _MAX_CACHED_SITES:
            _SITES[key] = site
    return site


class OperationTimer:
    """``instrument`` as a context manager, for ``with`` and ``async with``.

    >>> with OperationTimer("image_sourcing", "download", {"sku": "ABC-1"}) as op:
    ...     if not images:
    ...         op.mark_failure("NoImageFound")

    After the block, ``duration`` (seconds) and ``success`` are set.
    """

    def __init__(
        self,
        agent: str,
        operation: str,
        metadata: Mapping[str, Any] | None = None,
        *,
        registry: CollectorRegistry | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.agent = agent
        self.operation = operation
        self.metadata: dict[str, Any] = dict(metadata or {})
        self._site = _site_for(agent, operation, registry, tracer_provider)
        self._call: _Call | None = None
        self.duration: float | None = None
        self.success: bool | None = None

    def __enter__(self) -> OperationTimer:
        self._call = self._site.enter(self.metadata)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        call = self._call
        if call is None:
            return
        self._site.exit(call, exc)
        self.duration = call.duration
        self.success = not call.failed
        self._call = None

    async def __aenter__(self) -> OperationTimer:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def mark_failure(self, error_type: str = "Failure", message: str | None = None) -> None:
        """Count this operation as failed without raising (e.g. "no image found")."""
        if self._call is not None:
            self._call.mark_failure(error_type, message)

    def set_attribute(self, key: str, value: Any) -> None:
        """Add one attribute to the operation's span (never a metric label)."""
        self.metadata[key] = value
        call = self._call
        if call is not None and call.span is not None:
            for name, coerced in metadata_attributes({key: value}).items():
                call.span.set_attribute(name, coerced)


def current_operation() -> _Call | None:
    """The innermost running instrumented operation in this context, if any."""
    return _current.get()


def record_failure(error_type: str = "Failure", message: str | None = None) -> bool:
    """Mark the current instrumented operation failed without raising.

    For results that are failures without being errors ("no image found"). The
    operation is counted with ``outcome="failure"`` and ``error_type``, and its
    span gets ERROR status. Returns False (and does nothing) outside one.
    """
    call = _current.get()
    if call is None:
        return False
    call.mark_failure(error_type, message)
    return True
