"""performance_monitor: recording, and stats/export read back from a real Prometheus."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from servers import PrometheusServer, free_port

from dpagent.backends import Simulation
from dpagent.demo import DemoWorkload
from dpagent.pipeline import Pipeline, run_batch
from dpagent.telemetry import THRESHOLDS, start_metrics_server
from dpagent.telemetry.monitor import (
    EXPORT_FORMAT,
    PerformanceMonitor,
    PrometheusQueryError,
    PrometheusUnavailable,
)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


# --- recording ------------------------------------------------------------------------


def test_record_instant_metric_feeds_the_contract_series(registry: CollectorRegistry) -> None:
    monitor = PerformanceMonitor(registry=registry)
    monitor.record_instant_metric("image_sourcing", "legacy_step", True, 1.5)
    monitor.record_instant_metric("image_sourcing", "legacy_step", True, 0.5, {"sku": "A"})
    monitor.record_instant_metric(
        "image_sourcing", "legacy_step", False, 70.0, {"error_type": "Timeout", "error": "slow"}
    )
    monitor.record_instant_metric("custom_agent", "anything", False, 0.1)
    labels = {"agent": "image_sourcing", "operation": "legacy_step"}
    assert value(registry, "dpagent_operations_total", **labels, outcome="success") == 2
    assert value(registry, "dpagent_operations_total", **labels, outcome="failure") == 1
    assert value(registry, "dpagent_operation_errors_total", **labels, error_type="Timeout") == 1
    assert value(registry, "dpagent_operation_duration_seconds_count", **labels) == 3
    assert value(registry, "dpagent_operation_duration_seconds_sum", **labels) == 72.0
    assert value(registry, "dpagent_operation_duration_seconds_bucket", **labels, le="60.0") == 2
    assert value(registry, "dpagent_last_success_timestamp_seconds", **labels) > 0
    assert value(registry, "dpagent_operation_errors_total", agent="custom_agent",
                 operation="anything", error_type="Failure") == 1  # fmt: skip


@pytest.mark.parametrize("duration", [-1.0, float("nan"), float("inf")])
def test_record_instant_metric_rejects_impossible_durations(
    registry: CollectorRegistry, duration: float
) -> None:
    with pytest.raises(ValueError, match="duration"):
        PerformanceMonitor(registry=registry).record_instant_metric("a", "b", True, duration)


# --- reading: errors ------------------------------------------------------------------


def test_unreachable_prometheus_is_one_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PrometheusUnavailable, match=f"cannot reach Prometheus at {url}"):
        PerformanceMonitor(url).get_performance_stats()


def test_the_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("DPAGENT_PROMETHEUS_URL", url)
    with pytest.raises(PrometheusUnavailable, match=url):
        PerformanceMonitor().get_performance_stats()


@pytest.fixture
def not_prometheus() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = b"<html>hello</html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_a_server_that_is_not_prometheus_is_named(not_prometheus: str) -> None:
    with pytest.raises(PrometheusUnavailable, match="a Prometheus server"):
        PerformanceMonitor(not_prometheus).get_performance_stats()


@pytest.mark.parametrize("url", ["", "prometheus:9090", "ftp://x"])
def test_a_url_that_is_not_http_is_refused(url: str) -> None:
    with pytest.raises(PrometheusUnavailable, match="not an http"):
        PerformanceMonitor(url or "file:///x").get_performance_stats()


def test_bad_arguments_are_refused_before_any_request() -> None:
    monitor = PerformanceMonitor("http://127.0.0.1:1")
    with pytest.raises(ValueError, match="hours"):
        monitor.get_performance_stats(0)
    with pytest.raises(ValueError, match="selector"):
        monitor.get_performance_stats(1, selector='job="x"} or vector(1)')


# --- reading: against a real Prometheus -----------------------------------------------


def registry_counts(*registries: CollectorRegistry) -> Counter[tuple[str, str, str]]:
    counts: Counter[tuple[str, str, str]] = Counter()
    for registry in registries:
        for family in registry.collect():
            for s in family.samples:
                if s.name == "dpagent_operations_total":
                    labels = s.labels
                    counts[(labels["agent"], labels["operation"], labels["outcome"])] += int(
                        s.value
                    )
    return counts


def registry_duration(
    registry: CollectorRegistry, agent: str, operation: str
) -> tuple[float, float]:
    labels = {"agent": agent, "operation": operation}
    return (
        value(registry, "dpagent_operation_duration_seconds_sum", **labels),
        value(registry, "dpagent_operation_duration_seconds_count", **labels),
    )


def address(url: str) -> str:
    return url.split("//", 1)[1].split("/", 1)[0]


def scraped_totals(prom: PrometheusServer) -> dict[str, float]:
    result = prom.query('sum by (instance) (dpagent_operations_total{job="dpagent"})')
    return {s["metric"]["instance"]: float(s["value"][1]) for s in result}


@pytest.mark.servers
@pytest.mark.usefixtures("quiet_operation_logs")
def test_stats_and_export_report_exactly_what_a_batch_and_a_demo_did(
    prometheus_factory: Any, tmp_path: Path
) -> None:
    batch_registry, demo_registry = CollectorRegistry(), CollectorRegistry()
    batch_server = start_metrics_server(0, registry=batch_registry)
    demo_server = start_metrics_server(0, registry=demo_registry)
    try:
        # The batch finishes before Prometheus first scrapes it: its series are
        # born with their final values, where increase() sees no increase at all.
        simulation = Simulation.create("healthy", seed=21, time_scale=0.005)
        products = [simulation.catalog.product(i) for i in range(25)]
        summary = run_batch(Pipeline.simulated(simulation, registry=batch_registry), products)
        assert len(summary.results) == 25

        # Declares the demo's operations: their series exist at 0 from here on.
        workload = DemoWorkload(
            "degraded", rate=60, seed=5, time_scale=0.005, registry=demo_registry
        )
        prom = prometheus_factory(
            targets={"dpagent": [address(batch_server.url), address(demo_server.url)]}
        )
        prom.wait_for(lambda p: len(scraped_totals(p)) == 2, timeout=30, message="both scraped")
        # The demo runs while Prometheus scrapes it every second.
        demo = workload.run(duration=3)
        assert demo.products > 50

        expected = {
            address(batch_server.url): sum(registry_counts(batch_registry).values()),
            address(demo_server.url): sum(registry_counts(demo_registry).values()),
        }
        prom.wait_for(
            lambda p: scraped_totals(p) == expected, timeout=30, message="the final values"
        )

        monitor = PerformanceMonitor(prom.url)
        stats = monitor.get_performance_stats(hours=1)
        counts = registry_counts(batch_registry, demo_registry)
        agents = stats["agents"]
        assert list(agents) == list(THRESHOLDS)
        for agent, entry in agents.items():
            for operation, op in entry["operations"].items():
                successes = counts[(agent, operation, "success")]
                failures = counts[(agent, operation, "failure")]
                assert (op["successes"], op["failures"], op["total"]) == (
                    successes, failures, successes + failures,
                ), (agent, operation)  # fmt: skip
                total_sum = total_count = 0.0
                for registry in (batch_registry, demo_registry):
                    s, c = registry_duration(registry, agent, operation)
                    total_sum, total_count = total_sum + s, total_count + c
                assert op["avg_duration"] == pytest.approx(total_sum / total_count, rel=1e-6)
                assert op["p95_duration"] is not None and op["p95_duration"] > 0
                assert op["success_rate"] == pytest.approx(successes / (successes + failures))
            assert entry["total"] == sum(op["total"] for op in entry["operations"].values())
            assert entry["thresholds"] == THRESHOLDS[agent].as_dict()
        # One upload_product operation per product that reached the upload stage.
        uploads = agents["bigcommerce_upload"]["operations"]["upload_product"]["total"]
        demo_uploads = demo.agents["bigcommerce_upload"]
        assert uploads == 25 + demo_uploads["succeeded"] + demo_uploads["failed"]
        assert agents["vehicle_applications"]["healthy"] is False  # the degraded demo

        # Only the batch, by selector: exactly its 25 products, where increase() says 0.
        batch_only = monitor.get_performance_stats(
            hours=1, selector=f'instance="{address(batch_server.url)}"'
        )
        upload = batch_only["agents"]["bigcommerce_upload"]["operations"]["upload_product"]
        assert upload["total"] == 25
        naive = prom.query(
            f'sum(increase(dpagent_operations_total{{instance="{address(batch_server.url)}",'
            f'operation="upload_product"}}[1h]))'
        )
        assert float(naive[0]["value"][1]) == 0

        target = tmp_path / "exports" / "metrics.json"
        returned = monitor.export_metrics(target, hours=1, step=1)
        document = json.loads(target.read_text())
        assert document == json.loads(json.dumps(returned))
        assert document["format"] == EXPORT_FORMAT and document["version"] == 1
        assert document["window"]["step_seconds"] == 1
        assert document["summary"]["agents"] == stats["agents"]
        series = document["series"]
        assert set(series) == {
            "operations", "success_ratio", "duration_p95_seconds", "duration_avg_seconds",
            "in_progress",
        }  # fmt: skip
        assert {s["labels"]["agent"] for s in series["success_ratio"]["series"]} == set(THRESHOLDS)
        points = [p for s in series["operations"]["series"] for p in s["values"]]
        assert points and all(isinstance(t, float) for t, _ in points)
    finally:
        batch_server.stop()
        demo_server.stop()


@pytest.mark.servers
def test_a_query_prometheus_rejects_is_a_query_error(prometheus_factory: Any) -> None:
    prom = prometheus_factory()
    with pytest.raises(PrometheusQueryError, match="rejected a query"):
        PerformanceMonitor(prom.url).get_performance_stats(1, selector='job=~"("')
