"""What an instrumented call costs, as ratios against baselines measured in this run.

    python bench/bench_instrument.py [--calls 20000] [--repeats 7]

Prints the median ns per call of each variant and the ratios the issue sets
goals for. Absolute numbers depend on the machine; the ratios are the result.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from dpagent.telemetry import DURATION_BUCKETS, instrument, render


class DiscardingExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def sampled_provider() -> TracerProvider:
    provider = TracerProvider()  # default sampler: parent-based always-on
    provider.add_span_processor(BatchSpanProcessor(DiscardingExporter()))
    return provider


def work() -> int:
    return 1


def hand_written(registry: CollectorRegistry) -> Callable[[Callable[[], int]], Callable[[], int]]:
    """What a careful engineer writes by hand: counter by outcome + histogram."""
    calls = Counter("hand_ops", "", ["agent", "operation", "outcome"], registry=registry)
    duration = Histogram(
        "hand_seconds", "", ["agent", "operation"], buckets=DURATION_BUCKETS, registry=registry
    )
    ok = calls.labels("a", "op", "success")
    failed = calls.labels("a", "op", "failure")
    observe = duration.labels("a", "op").observe

    def decorate(func: Callable[[], int]) -> Callable[[], int]:
        def wrapper() -> int:
            start = time.perf_counter()
            try:
                result = func()
            except BaseException:
                failed.inc()
                observe(max(time.perf_counter() - start, 0))
                raise
            ok.inc()
            observe(max(time.perf_counter() - start, 0))
            return result

        return wrapper

    return decorate


def hand_written_with_span(
    registry: CollectorRegistry, provider: TracerProvider, *, attributes: bool = False
) -> Callable[[Callable[[], int]], Callable[[], int]]:
    """The issue's baseline; with ``attributes``, its span carries what dpagent's
    does (agent and operation at start, outcome at the end), so the two spans
    cost the SDK the same attribute validation."""
    metrics = hand_written(registry)
    tracer = provider.get_tracer("bench")
    static = {"dpagent.agent": "a", "dpagent.operation": "op"} if attributes else None

    def decorate(func: Callable[[], int]) -> Callable[[], int]:
        inner = metrics(func)

        def wrapper() -> int:
            with tracer.start_as_current_span("a.op", attributes=static) as span:
                result = inner()
                if attributes:
                    span.set_attribute("dpagent.outcome", "success")
                return result

        return wrapper

    return decorate


def per_call_ns(
    variants: dict[str, Callable[[], Any]], calls: int, repeats: int
) -> dict[str, float]:
    """Median ns per call of each variant, the variants interleaved round by round
    so that a slow patch of the machine (a VM neighbour, a frequency change)
    affects all of them alike instead of one."""
    for func in variants.values():
        for _ in range(min(calls, 2000)):  # warm caches and lazy paths
            func()
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, func in variants.items():
            start = time.perf_counter_ns()
            for _ in range(calls):
                func()
            samples[name].append((time.perf_counter_ns() - start) / calls)
    return {name: statistics.median(values) for name, values in samples.items()}


def render_ns(renders: dict[str, Callable[[], bytes]], rounds: int = 41) -> dict[str, float]:
    """Median ns per render of each, interleaved like per_call_ns."""
    samples: dict[str, list[float]] = {name: [] for name in renders}
    for _ in range(rounds):
        for name, produce in renders.items():
            start = time.perf_counter_ns()
            produce()
            samples[name].append(time.perf_counter_ns() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def render_comparison() -> tuple[float, float, int]:
    """/metrics at ~1,000 series: dpagent's families vs the same series by hand
    (outcome counter, histogram, in-progress and last-success gauges, build info,
    the folded-values counter), each rendered by prometheus_client."""
    ours = CollectorRegistry()
    bare = CollectorRegistry()
    labels = ["agent", "operation"]
    bare_ops = Counter("bare_ops", "", [*labels, "outcome"], registry=bare)
    bare_hist = Histogram("bare_seconds", "", labels, buckets=DURATION_BUCKETS, registry=bare)
    bare_running = Gauge("bare_in_progress", "", labels, registry=bare)
    bare_last = Gauge("bare_last_success", "", labels, registry=bare)
    Gauge("bare_build_info", "", ["version"], registry=bare).labels("0").set(1)
    bare_folded = Counter("bare_folded", "", ["label"], registry=bare)
    Counter("bare_errors", "", [*labels, "error_type"], registry=bare)
    for label in ("agent", "operation", "error_type"):
        bare_folded.labels(label)
    for i in range(40):
        instrument("agent", f"op{i}", registry=ours)(work)()
        bare_ops.labels("agent", f"op{i}", "success").inc()
        bare_ops.labels("agent", f"op{i}", "failure")
        bare_hist.labels("agent", f"op{i}").observe(0.001)
        bare_running.labels("agent", f"op{i}")
        bare_last.labels("agent", f"op{i}").set(time.time())
    series = sum(len(f.samples) for f in ours.collect())
    bare_series = sum(len(f.samples) for f in bare.collect())
    assert series == bare_series, (series, bare_series)  # the comparison is like for like
    medians = render_ns({"ours": lambda: render(ours), "bare": lambda: generate_latest(bare)})
    ours_ns, bare_ns = medians["ours"], medians["bare"]
    return ours_ns, bare_ns, series


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    n, r = args.calls, args.repeats

    provider = sampled_provider()
    variants: dict[str, Callable[[], int]] = {
        "bare call": work,
        "hand-written prometheus_client decorator": hand_written(CollectorRegistry())(work),
        "dpagent, metrics only (no tracing SDK)": instrument(
            "a", "op", registry=CollectorRegistry()
        )(work),
        "hand-written metrics + raw OTel span (sampled)": hand_written_with_span(
            CollectorRegistry(), provider
        )(work),
        "hand-written metrics + raw OTel span, same attributes": hand_written_with_span(
            CollectorRegistry(), provider, attributes=True
        )(work),
        "dpagent, metrics + sampled span": instrument(
            "a", "op", registry=CollectorRegistry(), tracer_provider=provider
        )(work),
    }
    results = per_call_ns(variants, n, r)
    provider.shutdown()

    print(f"median ns per call ({r} runs x {n:,} calls)")
    for name, ns in results.items():
        print(f"  {name:<54} {ns:>9,.0f}")
    ours_ns, bare_ns, series = render_comparison()
    print(f"/metrics render, {series:,} series (median of 41, interleaved)")
    print(f"  {'dpagent':<54} {ours_ns / 1000:>9,.0f} us")
    print(f"  {'bare prometheus_client, same shape':<54} {bare_ns / 1000:>9,.0f} us")

    metrics_ratio = (
        results["dpagent, metrics only (no tracing SDK)"]
        / results["hand-written prometheus_client decorator"]
    )
    span_ratio = (
        results["dpagent, metrics + sampled span"]
        / results["hand-written metrics + raw OTel span (sampled)"]
    )
    same_attributes = (
        results["dpagent, metrics + sampled span"]
        / results["hand-written metrics + raw OTel span, same attributes"]
    )
    print("ratios (goal)")
    print(f"  metrics-only vs hand-written decorator        {metrics_ratio:.2f}x  (<= 1.20x)")
    print(f"  sampled span vs raw metrics + OTel span        {span_ratio:.2f}x  (<= 1.00x)")
    print(f"  ... against a raw span with the same attributes {same_attributes:.2f}x")
    print(f"  /metrics render vs bare prometheus_client      {ours_ns / bare_ns:.2f}x  (<= 1.10x)")


if __name__ == "__main__":
    main()
