"""instrument() and OperationTimer: one call, one span, the contract's metrics."""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry

from dpagent import __version__
from dpagent.telemetry import (
    DURATION_BUCKETS,
    THRESHOLDS,
    OperationTimer,
    current_operation,
    instrument,
    record_failure,
)

AGENT = "image_sourcing"


def ops(registry: CollectorRegistry, operation: str, outcome: str) -> float | None:
    return registry.get_sample_value(
        "dpagent_operations_total",
        {"agent": AGENT, "operation": operation, "outcome": outcome},
    )


def errors(registry: CollectorRegistry, operation: str, error_type: str) -> float | None:
    return registry.get_sample_value(
        "dpagent_operation_errors_total",
        {"agent": AGENT, "operation": operation, "error_type": error_type},
    )


def in_progress(registry: CollectorRegistry, operation: str) -> float | None:
    return registry.get_sample_value(
        "dpagent_operations_in_progress", {"agent": AGENT, "operation": operation}
    )


def duration_count(registry: CollectorRegistry, operation: str) -> float | None:
    return registry.get_sample_value(
        "dpagent_operation_duration_seconds_count", {"agent": AGENT, "operation": operation}
    )


@pytest.fixture
def traced(registry: CollectorRegistry, tracer_provider: TracerProvider) -> dict[str, Any]:
    return {"registry": registry, "tracer_provider": tracer_provider}


def test_series_exist_at_zero_from_decoration(registry: CollectorRegistry) -> None:
    @instrument(AGENT, "search", registry=registry)
    def search() -> None:
        raise AssertionError("never called")

    assert ops(registry, "search", "success") == 0
    assert ops(registry, "search", "failure") == 0
    assert duration_count(registry, "search") == 0
    assert in_progress(registry, "search") == 0
    assert registry.get_sample_value("dpagent_build_info", {"version": __version__}) == 1


def test_sync_success_counts_and_span(
    traced: dict[str, Any], registry: CollectorRegistry, span_exporter: InMemorySpanExporter
) -> None:
    @instrument(AGENT, "search", metadata={"source": "google"}, **traced)
    def search(sku: str) -> list[str]:
        return [f"{sku}.jpg"]

    assert search("ABC") == ["ABC.jpg"]
    assert search.__name__ == "search"  # functools.wraps kept the identity
    assert ops(registry, "search", "success") == 1
    assert ops(registry, "search", "failure") == 0
    assert duration_count(registry, "search") == 1
    last = registry.get_sample_value(
        "dpagent_last_success_timestamp_seconds", {"agent": AGENT, "operation": "search"}
    )
    assert last is not None and last > 1.6e9

    (span,) = span_exporter.get_finished_spans()
    assert span.name == "image_sourcing.search"
    assert dict(span.attributes or {}) == {
        "source": "google",
        "dpagent.agent": AGENT,
        "dpagent.operation": "search",
        "dpagent.outcome": "success",
    }
    assert span.status.status_code == StatusCode.UNSET


def test_exception_is_the_same_object_with_its_traceback(
    traced: dict[str, Any], registry: CollectorRegistry, span_exporter: InMemorySpanExporter
) -> None:
    boom = TimeoutError("image host did not answer")

    @instrument(AGENT, "download", **traced)
    def download() -> None:
        raise boom

    with pytest.raises(TimeoutError) as caught:
        download()
    assert caught.value is boom
    frames = [frame.name for frame in traceback.extract_tb(caught.value.__traceback__)]
    assert frames[-1] == "download"  # the user's frame is still the innermost one

    assert ops(registry, "download", "failure") == 1
    assert ops(registry, "download", "success") == 0
    assert errors(registry, "download", "TimeoutError") == 1
    (span,) = span_exporter.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes is not None and span.attributes["dpagent.outcome"] == "failure"
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "TimeoutError"
    assert event.attributes["exception.message"] == "image host did not answer"


def test_failure_without_raising(
    traced: dict[str, Any], registry: CollectorRegistry, span_exporter: InMemorySpanExporter
) -> None:
    @instrument(AGENT, "search", **traced)
    def search(found: bool) -> list[str]:
        if not found:
            assert record_failure("NoImageFound", "no image for ABC-1")
            return []
        return ["a.jpg"]

    assert search(False) == []
    assert search(True) == ["a.jpg"]
    assert ops(registry, "search", "failure") == 1
    assert ops(registry, "search", "success") == 1
    assert errors(registry, "search", "NoImageFound") == 1
    failed, ok = span_exporter.get_finished_spans()
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.status.description == "no image for ABC-1"
    assert failed.events == ()  # nothing was raised, so no exception event
    assert ok.status.status_code == StatusCode.UNSET


def test_record_failure_outside_an_operation_does_nothing() -> None:
    assert current_operation() is None
    assert record_failure("NoImageFound") is False


def test_in_progress_is_one_inside_and_zero_after(registry: CollectorRegistry) -> None:
    seen: list[float | None] = []

    @instrument(AGENT, "score", registry=registry)
    def score() -> None:
        seen.append(in_progress(registry, "score"))

    score()
    assert seen == [1]
    assert in_progress(registry, "score") == 0


def test_async_function(traced: dict[str, Any], registry: CollectorRegistry) -> None:
    seen: list[float | None] = []

    @instrument(AGENT, "fetch", **traced)
    async def fetch(fail: bool) -> str:
        seen.append(in_progress(registry, "fetch"))
        await asyncio.sleep(0)
        if fail:
            raise ConnectionError("reset")
        return "ok"

    assert asyncio.run(fetch(False)) == "ok"
    with pytest.raises(ConnectionError):
        asyncio.run(fetch(True))
    assert seen == [1, 1]
    assert ops(registry, "fetch", "success") == 1
    assert ops(registry, "fetch", "failure") == 1
    assert errors(registry, "fetch", "ConnectionError") == 1
    assert in_progress(registry, "fetch") == 0


def test_generator_spans_the_whole_iteration(
    traced: dict[str, Any], registry: CollectorRegistry, span_exporter: InMemorySpanExporter
) -> None:
    @instrument(AGENT, "pages", **traced)
    def pages(n: int) -> Iterator[int]:
        yield from range(n)

    assert list(pages(3)) == [0, 1, 2]
    assert ops(registry, "pages", "success") == 1
    assert duration_count(registry, "pages") == 1
    assert len(span_exporter.get_finished_spans()) == 1


def test_generator_send_return_value_and_failure(registry: CollectorRegistry) -> None:
    @instrument(AGENT, "echo", registry=registry)
    def echo() -> Iterator[int]:
        received = yield 0
        while received is not None:
            if received < 0:
                raise ValueError("negative")
            received = yield received * 2

    gen = echo()
    assert next(gen) == 0
    assert gen.send(5) == 10
    with pytest.raises(ValueError, match="negative"):
        gen.send(-1)
    assert ops(registry, "echo", "failure") == 1
    assert errors(registry, "echo", "ValueError") == 1


def test_generator_closed_early_is_not_a_failure(registry: CollectorRegistry) -> None:
    @instrument(AGENT, "stream", registry=registry)
    def stream() -> Iterator[int]:
        yield from range(100)

    for item in stream():
        if item == 2:
            break
    assert ops(registry, "stream", "success") == 1
    assert ops(registry, "stream", "failure") == 0
    assert in_progress(registry, "stream") == 0


def test_generator_span_is_not_current_between_yields(
    traced: dict[str, Any], span_exporter: InMemorySpanExporter
) -> None:
    @instrument(AGENT, "outer", **traced)
    def outer() -> Iterator[int]:
        yield 1

    @instrument(AGENT, "consumer_side", **traced)
    def consumer_side() -> None:
        pass

    for _ in outer():
        consumer_side()  # the consumer's own work, not a child of "outer"
    spans = {s.name: s for s in span_exporter.get_finished_spans()}
    assert spans["image_sourcing.consumer_side"].parent is None


def test_async_generator(traced: dict[str, Any], registry: CollectorRegistry) -> None:
    @instrument(AGENT, "batches", **traced)
    async def batches(fail_at: int | None) -> AsyncIterator[int]:
        for i in range(3):
            if i == fail_at:
                raise KeyError(i)
            yield i

    async def consume(fail_at: int | None) -> list[int]:
        return [i async for i in batches(fail_at)]

    assert asyncio.run(consume(None)) == [0, 1, 2]
    with pytest.raises(KeyError):
        asyncio.run(consume(1))
    assert ops(registry, "batches", "success") == 1
    assert ops(registry, "batches", "failure") == 1
    assert errors(registry, "batches", "KeyError") == 1


def test_operation_timer_with_and_async_with(
    traced: dict[str, Any], registry: CollectorRegistry, span_exporter: InMemorySpanExporter
) -> None:
    with OperationTimer(AGENT, "resize", {"sku": "ABC-1"}, **traced) as timer:
        assert in_progress(registry, "resize") == 1
        timer.set_attribute("width", 800)
    assert timer.success is True
    assert timer.duration is not None and timer.duration >= 0

    async def run() -> OperationTimer:
        async with OperationTimer(AGENT, "resize", **traced) as t:
            t.mark_failure("TooSmall", "image is 10x10")
        return t

    failed = asyncio.run(run())
    assert failed.success is False
    assert ops(registry, "resize", "success") == 1
    assert ops(registry, "resize", "failure") == 1
    assert errors(registry, "resize", "TooSmall") == 1
    first, second = span_exporter.get_finished_spans()
    assert first.attributes is not None
    assert first.attributes["sku"] == "ABC-1" and first.attributes["width"] == 800
    assert second.status.status_code == StatusCode.ERROR


def test_operation_timer_reraises_and_counts(registry: CollectorRegistry) -> None:
    boom = RuntimeError("x")
    with pytest.raises(RuntimeError) as caught, OperationTimer(AGENT, "upload", registry=registry):
        raise boom
    assert caught.value is boom
    assert errors(registry, "upload", "RuntimeError") == 1


def test_nested_operations_make_parent_and_child_spans(
    traced: dict[str, Any], span_exporter: InMemorySpanExporter
) -> None:
    @instrument(AGENT, "download", **traced)
    def download() -> None:
        pass

    @instrument(AGENT, "process_product", **traced)
    def process() -> None:
        download()

    process()
    child, parent = span_exporter.get_finished_spans()
    assert child.parent is not None
    assert child.parent.span_id == parent.context.span_id
    assert child.context.trace_id == parent.context.trace_id


def test_secret_metadata_never_reaches_the_span(
    traced: dict[str, Any], span_exporter: InMemorySpanExporter
) -> None:
    @instrument(AGENT, "call", metadata={"X-Auth-Token": "s3cr3t", "sku": "A"}, **traced)
    def call() -> None:
        pass

    call()
    (span,) = span_exporter.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["X-Auth-Token"] == "[REDACTED]"
    assert "s3cr3t" not in repr(dict(span.attributes))


@pytest.mark.parametrize(
    ("agent", "operation", "error"),
    [("", "op", ValueError), ("a", "  ", ValueError), (None, "op", TypeError), ("a", 3, TypeError)],
)
def test_bad_names_are_a_clear_error_at_decoration(
    registry: CollectorRegistry, agent: Any, operation: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match=r"dpagent: (agent|operation)"):
        instrument(agent, operation, registry=registry)


def test_broken_span_processor_never_breaks_the_call(registry: CollectorRegistry) -> None:
    provider = TracerProvider()

    class BrokenProcessor:
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            raise RuntimeError("exporter bug")

        def on_end(self, span: Any) -> None:
            raise RuntimeError("exporter bug")

        def shutdown(self) -> None:
            pass

        def force_flush(self, timeout_millis: int = 0) -> bool:
            return True

    provider.add_span_processor(BrokenProcessor())  # type: ignore[arg-type]

    @instrument(AGENT, "resilient", registry=registry, tracer_provider=provider)
    def resilient() -> int:
        return 42

    assert resilient() == 42
    assert ops(registry, "resilient", "success") == 1


def test_every_threshold_is_an_exact_bucket_boundary() -> None:
    for agent, thresholds in THRESHOLDS.items():
        assert thresholds.max_duration in DURATION_BUCKETS, agent
    assert list(DURATION_BUCKETS) == sorted(DURATION_BUCKETS)


def test_current_operation_names_its_agent_and_operation(registry: CollectorRegistry) -> None:
    seen: list[tuple[str, str]] = []

    @instrument(AGENT, "outer", registry=registry)
    def outer() -> None:
        with OperationTimer("bigcommerce_upload", "inner", registry=registry):
            op = current_operation()
            assert op is not None
            seen.append((op.agent, op.operation))
        op = current_operation()
        assert op is not None
        seen.append((op.agent, op.operation))

    outer()
    assert seen == [("bigcommerce_upload", "inner"), (AGENT, "outer")]
    assert current_operation() is None


def test_generator_forwards_throw_like_yield_from(registry: CollectorRegistry) -> None:
    @instrument(AGENT, "resilient_pages", registry=registry)
    def pages() -> Iterator[str]:
        try:
            yield "first"
        except TimeoutError:
            yield "recovered"  # the generator handles what the consumer threw in
        yield "last"

    gen = pages()
    assert next(gen) == "first"
    assert gen.throw(TimeoutError()) == "recovered"
    assert list(gen) == ["last"]
    assert ops(registry, "resilient_pages", "success") == 1
    assert ops(registry, "resilient_pages", "failure") == 0


def test_async_generator_closed_early_is_not_a_failure(registry: CollectorRegistry) -> None:
    closed: list[bool] = []

    @instrument(AGENT, "feed", registry=registry)
    async def feed() -> AsyncIterator[int]:
        try:
            for i in range(100):
                yield i
        finally:
            closed.append(True)

    async def take_two() -> list[int]:
        taken = []
        stream = feed()
        async for item in stream:
            taken.append(item)
            if len(taken) == 2:
                break
        await stream.aclose()  # type: ignore[attr-defined]
        return taken

    assert asyncio.run(take_two()) == [0, 1]
    assert closed == [True]  # the user's finally ran
    assert ops(registry, "feed", "success") == 1
    assert ops(registry, "feed", "failure") == 0
    assert in_progress(registry, "feed") == 0
