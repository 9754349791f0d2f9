"""The demo workload and its profiles, judged against THRESHOLDS.

The profile tests run the simulated workload on a fake clock: every simulated
wait advances it, and the instrumentation reads it, so the recorded durations
are the ones the profile would produce in real time (time_scale 1), without
waiting for them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry

from dpagent.agents import AGENTS
from dpagent.backends import Simulation
from dpagent.demo import DemoWorkload
from dpagent.pipeline import Pipeline
from dpagent.telemetry import THRESHOLDS

# The budget of the slow alert (DPAgentOperationSlow): more than 5% of operations.
SLOW_SHARE = 0.05


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClock]:
    clock = FakeClock()
    # dpagent.telemetry.instrument is shadowed by the instrument() function in
    # the package namespace; the module itself is in sys.modules.
    module = sys.modules["dpagent.telemetry.instrument"]
    assert hasattr(module, "_clock"), "the instrumentation's clock moved; update this fixture"
    monkeypatch.setattr(module, "_clock", clock)
    yield clock


@dataclass
class AgentHealth:
    success_ratio: float
    slow_share: float
    operations: float


def health(registry: CollectorRegistry) -> dict[str, AgentHealth]:
    """Per agent, what the success-rate and slow-operation alerts compute."""
    result = {}
    for agent, limits in THRESHOLDS.items():
        success = failure = count = fast = 0.0
        for family in registry.collect():
            for s in family.samples:
                if s.labels.get("agent") != agent:
                    continue
                if s.name == "dpagent_operations_total":
                    if s.labels["outcome"] == "success":
                        success += s.value
                    else:
                        failure += s.value
                elif s.name == "dpagent_operation_duration_seconds_count":
                    count += s.value
                elif (
                    s.name == "dpagent_operation_duration_seconds_bucket"
                    and float(s.labels["le"]) == limits.max_duration
                ):
                    fast += s.value
        result[agent] = AgentHealth(success / (success + failure), (count - fast) / count, count)
    return result


def run_profile(profile: str, clock: FakeClock, products: int = 300) -> dict[str, AgentHealth]:
    registry = CollectorRegistry()
    simulation = Simulation.create(profile, seed=11, time_scale=1.0, sleep=clock.sleep)
    pipeline = Pipeline.simulated(simulation, registry=registry, sleep=clock.sleep, clock=clock)
    for _ in range(products):
        pipeline.process(simulation.catalog.draw())
    return health(registry)


def assert_healthy(agent: str, observed: AgentHealth) -> None:
    limits = THRESHOLDS[agent]
    assert observed.success_ratio >= limits.min_success_rate + 0.02, (agent, observed)
    assert observed.slow_share < SLOW_SHARE / 2, (agent, observed)


@pytest.mark.usefixtures("quiet_operation_logs")
def test_healthy_profile_keeps_every_agent_inside_its_thresholds(fake_clock: FakeClock) -> None:
    for agent, observed in run_profile("healthy", fake_clock).items():
        assert_healthy(agent, observed)


@pytest.mark.usefixtures("quiet_operation_logs")
def test_degraded_profile_breaches_both_thresholds_of_vehicle_applications_only(
    fake_clock: FakeClock,
) -> None:
    observed = run_profile("degraded", fake_clock)
    limits = THRESHOLDS["vehicle_applications"]
    fitment = observed["vehicle_applications"]
    # Clearly past the line, so the alerts fire on any window, not by luck.
    assert fitment.success_ratio < limits.min_success_rate - 0.1, fitment
    assert fitment.slow_share > SLOW_SHARE * 1.5, fitment
    for agent in ("image_sourcing", "bigcommerce_upload"):
        assert_healthy(agent, observed[agent])


@pytest.mark.usefixtures("quiet_operation_logs")
def test_outage_makes_bigcommerce_fail_hard(fake_clock: FakeClock) -> None:
    observed = run_profile("outage", fake_clock, products=60)
    assert observed["bigcommerce_upload"].success_ratio == 0
    assert_healthy("image_sourcing", observed["image_sourcing"])
    assert_healthy("vehicle_applications", observed["vehicle_applications"])


@pytest.mark.usefixtures("quiet_operation_logs")
def test_throttled_profile_rate_limits_but_uploads_mostly_succeed(fake_clock: FakeClock) -> None:
    registry = CollectorRegistry()
    simulation = Simulation.create("throttled", seed=1, sleep=fake_clock.sleep)
    pipeline = Pipeline.simulated(simulation, registry=registry, sleep=fake_clock.sleep)
    for _ in range(100):
        pipeline.process(simulation.catalog.draw())
    limited = sum(
        s.value
        for f in registry.collect()
        for s in f.samples
        if s.name == "dpagent_bigcommerce_rate_limited_total"
    )
    requests = sum(
        s.value
        for f in registry.collect()
        for s in f.samples
        if s.name == "dpagent_bigcommerce_api_requests_total"
    )
    assert 0.15 < limited / requests < 0.35
    assert health(registry)["bigcommerce_upload"].success_ratio >= 0.9


@pytest.mark.usefixtures("quiet_operation_logs")
def test_demo_runs_batches_at_the_asked_rate_and_stops_on_time(registry: CollectorRegistry) -> None:
    workload = DemoWorkload(
        "healthy", rate=100, batch_size=5, seed=3, time_scale=0.001, registry=registry
    )
    started = time.monotonic()
    summary = workload.run(duration=1.0)
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 3.0
    assert 60 <= summary.products <= 140  # ~100 products/s, in batches
    assert summary.succeeded + summary.failed + summary.interrupted == summary.products
    for agent in AGENTS:
        assert registry.get_sample_value("dpagent_batch_size_items_count", {"agent": agent}) == (
            summary.batches
        )
        assert registry.get_sample_value("dpagent_batch_size_items_sum", {"agent": agent}) == (
            summary.products
        )
    hits = registry.get_sample_value(
        "dpagent_cache_requests_total",
        {"agent": "image_sourcing", "cache": "image_search", "result": "hit"},
    )
    assert hits is not None


def test_stop_ends_a_slow_demo_at_once(registry: CollectorRegistry) -> None:
    # At real time the degraded lookups take many seconds; stop() must not wait for them.
    workload = DemoWorkload("degraded", rate=50, seed=1, time_scale=1.0, registry=registry)
    import threading

    threading.Timer(0.5, workload.stop).start()
    started = time.monotonic()
    summary = workload.run()
    assert time.monotonic() - started < 3.0
    assert summary.products > 0


def test_a_backlog_beyond_concurrency_is_shed(registry: CollectorRegistry) -> None:
    workload = DemoWorkload(
        "degraded",
        rate=200,
        concurrency=2,
        batch_size=4,
        time_scale=1.0,
        drain_timeout=0,
        registry=registry,
    )
    summary = workload.run(duration=0.5)
    assert summary.shed > 0
    assert summary.products <= 2 * 4 + 20  # never more queued than the backlog allows


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        DemoWorkload(rate=0)
    with pytest.raises(ValueError, match="unknown profile"):
        DemoWorkload("sunny")
