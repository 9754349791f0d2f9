"""Getting metrics out: exemplars, HTTPS, multiprocess, the Pushgateway helper."""

from __future__ import annotations

import logging
import os
import socket
import ssl
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.parser import text_string_to_metric_families as parse_text_format

from dpagent.telemetry import instrument, push_to_gateway, render, start_metrics_server


def test_exemplar_carries_the_span_trace_id(
    registry: CollectorRegistry,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
) -> None:
    @instrument("vehicle_applications", "parse", registry=registry, tracer_provider=tracer_provider)
    def parse() -> None:
        pass

    parse()
    (span,) = span_exporter.get_finished_spans()
    text = render(registry, openmetrics=True).decode()
    exemplars = [
        sample.exemplar
        for family in text_string_to_metric_families(text)
        if family.name == "dpagent_operation_duration_seconds"
        for sample in family.samples
        if sample.exemplar is not None
    ]
    assert len(exemplars) == 1
    assert exemplars[0].labels == {
        "trace_id": format(span.context.trace_id, "032x"),
        "span_id": format(span.context.span_id, "016x"),
    }
    # The classic text format has no exemplars; scrapers must ask for OpenMetrics.
    assert "trace_id" not in render(registry).decode()


def test_no_exemplar_without_a_sampled_span(registry: CollectorRegistry) -> None:
    @instrument("vehicle_applications", "parse", registry=registry)
    def parse() -> None:
        pass

    parse()
    assert "trace_id" not in render(registry, openmetrics=True).decode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_metrics_server_binds_loopback_and_serves_both_formats(
    registry: CollectorRegistry,
) -> None:
    @instrument("image_sourcing", "search", registry=registry)
    def search() -> None:
        pass

    search()
    server = start_metrics_server(0, registry=registry)
    try:
        assert server.server.server_address[0] == "127.0.0.1"
        body = urllib.request.urlopen(server.url, timeout=5).read().decode()
        assert 'dpagent_operations_total{agent="image_sourcing"' in body
        request = urllib.request.Request(
            server.url, headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.headers["Content-Type"].startswith("application/openmetrics-text")
            assert response.read().decode().rstrip().endswith("# EOF")
    finally:
        server.stop()


def test_port_in_use_is_a_clear_error(registry: CollectorRegistry) -> None:
    server = start_metrics_server(0, registry=registry)
    try:
        with pytest.raises(OSError, match=rf"cannot serve /metrics on 127.0.0.1:{server.port}"):
            start_metrics_server(server.port, registry=registry)
    finally:
        server.stop()


def test_metrics_over_https_with_a_self_signed_certificate(
    registry: CollectorRegistry, tmp_path: Path
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip

    @instrument("bigcommerce_upload", "create_product", registry=registry)
    def create() -> None:
        pass

    create()
    server = start_metrics_server(0, registry=registry, certfile=str(cert), keyfile=str(key))
    try:
        assert server.url.startswith("https://127.0.0.1:")
        trusting = ssl.create_default_context(cafile=str(cert))
        body = urllib.request.urlopen(server.url, context=trusting, timeout=5).read().decode()
        assert 'operation="create_product",outcome="success"} 1.0' in body
        # A client that does not trust the certificate is refused.
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.urlopen(server.url, timeout=5)
    finally:
        server.stop()


def test_https_needs_both_files(registry: CollectorRegistry) -> None:
    with pytest.raises(ValueError, match="both certfile and keyfile"):
        start_metrics_server(0, registry=registry, certfile="/tmp/only-cert.pem")


def test_push_to_a_dead_pushgateway_reports_and_returns(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    with caplog.at_level(logging.ERROR, logger="dpagent.telemetry"):
        assert push_to_gateway(url, job="batch", registry=registry, timeout=2) is False
    (record,) = caplog.records
    assert record.getMessage().startswith(
        f"dpagent: could not push metrics to the Pushgateway at {url} (job=batch)"
    )


def test_push_to_a_malformed_url_reports_and_returns(registry: CollectorRegistry) -> None:
    assert push_to_gateway("not a url", job="batch", registry=registry) is False


WORKER = textwrap.dedent(
    """
    import sys
    from dpagent.telemetry import instrument

    @instrument("image_sourcing", "download")
    def download(i):
        if i % 10 == 0:
            raise IOError("broken image")

    for i in range(int(sys.argv[1])):
        try:
            download(i)
        except OSError:
            pass
    """
)


def test_multiprocess_mode_one_scrape_sums_all_workers(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for calls in ("100", "250"):
        subprocess.run([sys.executable, "-c", WORKER, calls], env=env, check=True, timeout=60)
    scrape = subprocess.run(
        [sys.executable, "-c", "from dpagent.telemetry import render; print(render().decode())"],
        env=env, check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    families = {f.name: f for f in parse_text_format(scrape.stdout)}
    totals = {
        s.labels["outcome"]: s.value
        for s in families["dpagent_operations"].samples
        if s.name == "dpagent_operations_total"
    }
    # 100 calls: 10 failures; 250 calls: 25 failures.
    assert totals == {"success": 315.0, "failure": 35.0}
    errors = [
        s.value for s in families["dpagent_operation_errors"].samples
        if s.name == "dpagent_operation_errors_total" and s.labels["error_type"] == "OSError"
    ]  # fmt: skip
    assert errors == [35.0]
    # Both workers have exited, so no in-progress operations remain ("livesum").
    in_progress = [s.value for s in families["dpagent_operations_in_progress"].samples]
    assert sum(in_progress) == 0


def test_exemplars_are_replaced_at_most_once_a_second_per_bucket(
    registry: CollectorRegistry,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
) -> None:
    @instrument("vehicle_applications", "parse", registry=registry, tracer_provider=tracer_provider)
    def parse() -> None:
        pass

    parse()
    parse()  # same bucket, same second: a scrape could not tell them apart
    first, _second = span_exporter.get_finished_spans()
    text = render(registry, openmetrics=True).decode()
    assert text.count("trace_id=") == 1
    assert f'trace_id="{format(first.context.trace_id, "032x")}"' in text


def test_push_add_to_a_real_pushgateway_keeps_earlier_pushes(
    registry: CollectorRegistry, pushgateway_factory: Any
) -> None:
    gateway = pushgateway_factory()

    @instrument("bigcommerce_upload", "create_product", registry=registry)
    def create() -> None:
        pass

    for _ in range(3):
        create()
    key = {"batch": "2026-12-03"}
    assert push_to_gateway(gateway.url, job="dpagent_batch", grouping_key=key, registry=registry)
    # A second push under the same job and key with other metric names: push-add
    # (POST) replaces only the names it sends, so the first push's counts remain.
    other = CollectorRegistry()
    Counter("dpagent_batch_runs", "Batch runs.", registry=other).inc()
    assert push_to_gateway(gateway.url, job="dpagent_batch", grouping_key=key, registry=other)
    families = {f.name: f for f in parse_text_format(gateway.metrics_text())}
    (runs,) = [s for s in families["dpagent_batch_runs"].samples if s.name.endswith("_total")]
    assert (runs.labels["batch"], runs.labels["job"], runs.value) == (
        "2026-12-03",
        "dpagent_batch",
        1.0,
    )
    pushed = {
        (s.labels["agent"], s.labels["outcome"], s.labels["batch"], s.labels["job"]): s.value
        for s in families["dpagent_operations"].samples
        if s.name == "dpagent_operations_total"
    }
    assert pushed[("bigcommerce_upload", "success", "2026-12-03", "dpagent_batch")] == 3
