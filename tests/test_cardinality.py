"""No input can make the series count grow without bound; the output stays valid."""

from __future__ import annotations

import contextlib
import subprocess
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from dpagent.telemetry import OperationTimer, instrument, record_failure, render
from dpagent.telemetry.metrics import OTHER, OperationMetrics, clean_label_value

AGENT = "vehicle_applications"


def series_count(registry: CollectorRegistry, name: str) -> int:
    return sum(
        1 for family in registry.collect() for sample in family.samples if sample.name == name
    )


def make_exception(name: str) -> Exception:
    # Exception classes named from data: the worst case for the error_type label.
    return type(name, (Exception,), {})("fuzzed")


def promtool_check_metrics(text: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, timeout=60
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    # Class names cannot hold NUL or lone surrogates; record_failure() names can
    # (see below). Everything else Unicode has is fair game.
    names=st.lists(
        st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=300),
        min_size=50, max_size=200,
    ),
    metadata=st.dictionaries(
        st.text(max_size=40),
        st.one_of(
            st.text(), st.integers(), st.floats(allow_nan=True), st.none(), st.binary(),
            st.lists(st.integers()), st.dictionaries(st.text(max_size=5), st.text(max_size=5)),
        ),
        max_size=8,
    ),
)  # fmt: skip
@pytest.mark.usefixtures("quiet_operation_logs")
def test_fuzzed_error_types_and_metadata_stay_under_the_cap(
    names: list[str], metadata: dict[str, object]
) -> None:
    registry = CollectorRegistry()
    cap = 20
    metrics = OperationMetrics(registry, max_error_types=cap)
    # The module-level cache maps registries to families; use these ones.
    from dpagent.telemetry import metrics as metrics_module

    metrics_module._BY_REGISTRY[registry] = metrics

    @instrument(AGENT, "parse", metadata=metadata, registry=registry)
    def parse(error: Exception) -> None:
        raise error

    for name in names:
        with contextlib.suppress(Exception):
            parse(make_exception(name))

    errors = series_count(registry, "dpagent_operation_errors_total")
    assert errors <= cap + 1  # the cap plus "other"
    total_failures = registry.get_sample_value(
        "dpagent_operations_total", {"agent": AGENT, "operation": "parse", "outcome": "failure"}
    )
    assert total_failures == len(names)  # folding loses no count
    by_type = [
        s.value
        for f in registry.collect()
        for s in f.samples
        if s.name == "dpagent_operation_errors_total"
    ]
    assert sum(by_type) == len(names)
    distinct = len({clean_label_value(name) for name in names})
    folded = registry.get_sample_value("dpagent_label_values_folded_total", {"label": "error_type"})
    if distinct > cap:
        assert folded is not None and folded > 0
        assert registry.get_sample_value(
            "dpagent_operation_errors_total",
            {"agent": AGENT, "operation": "parse", "error_type": OTHER},
        )
    else:
        assert folded == 0
    # Whatever the names were, a scrape of this registry is valid exposition.
    checked = promtool_check_metrics(render(registry))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_fuzzed_exposition_passes_promtool(registry: CollectorRegistry) -> None:
    names = [f'Error{i}\n"quoted"\\{i}' for i in range(300)] + ["", " ", "ü" * 500]

    @instrument(AGENT, "parse", metadata={"weird": object()}, registry=registry)
    def parse(error: Exception) -> None:
        raise error

    for name in names:
        with contextlib.suppress(Exception):
            parse(make_exception(name))
    result = promtool_check_metrics(render(registry))
    # promtool exits 0 when the text parses; lint warnings go to stdout with exit 3.
    assert result.returncode == 0, result.stdout + result.stderr
    assert series_count(registry, "dpagent_operation_errors_total") == 51


def test_names_with_lone_surrogates_keep_the_exposition_encodable(
    registry: CollectorRegistry,
) -> None:
    @instrument(AGENT, "parse", registry=registry)
    def parse(reason: str) -> None:
        record_failure(reason)

    parse("bad\udc80bytes")
    with OperationTimer(AGENT, "op\ud800", registry=registry):
        pass
    text = render(registry)
    assert rb"bad\\udc80bytes" in text  # escaped once by us, once by the format
    assert promtool_check_metrics(text).returncode == 0


def test_operation_names_built_from_data_are_capped(registry: CollectorRegistry) -> None:
    metrics = OperationMetrics(registry, max_operations_per_agent=10, max_agents=3)
    from dpagent.telemetry import metrics as metrics_module

    metrics_module._BY_REGISTRY[registry] = metrics
    for i in range(500):
        with OperationTimer(f"agent-{i % 7}", f"product-{i}", registry=registry):
            pass
    operations = {
        (s.labels["agent"], s.labels["operation"])
        for f in registry.collect()
        for s in f.samples
        if s.name == "dpagent_operations_total"
    }
    # 3 agents admitted (+ "other"), each with at most 10 operations (+ "other").
    assert len(operations) <= (3 + 1) * (10 + 1)
    assert (
        sum(
            s.value
            for f in registry.collect()
            for s in f.samples
            if s.name == "dpagent_operations_total"
        )
        == 500
    )
    assert registry.get_sample_value("dpagent_label_values_folded_total", {"label": "agent"})


@pytest.mark.usefixtures("quiet_operation_logs")
def test_eight_threads_of_fifty_thousand_calls_count_exactly(registry: CollectorRegistry) -> None:
    threads, calls = 8, 50_000

    @instrument(AGENT, "lookup", registry=registry)
    def lookup(i: int) -> None:
        if i % 1000 == 0:
            raise LookupError(i)

    def work() -> None:
        for i in range(calls):
            with contextlib.suppress(LookupError):
                lookup(i)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    labels = {"agent": AGENT, "operation": "lookup"}
    failures = threads * (calls // 1000)
    assert (
        registry.get_sample_value("dpagent_operations_total", {**labels, "outcome": "failure"})
        == failures
    )
    assert (
        registry.get_sample_value("dpagent_operations_total", {**labels, "outcome": "success"})
        == threads * calls - failures
    )
    assert (
        registry.get_sample_value("dpagent_operation_duration_seconds_count", labels)
        == threads * calls
    )
    assert registry.get_sample_value("dpagent_operations_in_progress", labels) == 0
    # The text output is parseable too.
    assert any(
        f.name == "dpagent_operations"
        for f in text_string_to_metric_families(render(registry).decode())
    )
