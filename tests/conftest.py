"""Shared fixtures: a fresh registry and an in-memory tracer per test.

Server fixtures (real Prometheus, Alertmanager, Pushgateway) live in
``tests/servers.py`` and are imported here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

# Real Prometheus / Alertmanager / Pushgateway and a webhook receiver (see tests/servers.py).
from servers import (  # noqa: F401
    alertmanager_factory,
    prometheus_factory,
    pushgateway,
    pushgateway_factory,
    webhook_receiver,
)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def span_exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer_provider(span_exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
def quiet_operation_logs() -> Iterator[None]:
    """Silence the per-failure ERROR records in tests that fail thousands of calls."""
    logger = logging.getLogger("dpagent.operations")
    previous = logger.disabled
    logger.disabled = True
    yield
    logger.disabled = previous
