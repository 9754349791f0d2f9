"""``configure()``: the application's one, opt-in set-up call.

Library code (``instrument``, ``OperationTimer``) only uses the OpenTelemetry API
and prometheus_client, and works without this call: metrics are recorded, spans
are skipped. ``configure()`` installs what an application decides: the tracing
SDK and its exporter, the OTel meter provider that shares the Prometheus
registry, logging outputs, and the /metrics server.

It is idempotent: a second call with the same settings does nothing; one with
different settings warns and keeps the first (providers cannot be swapped
safely once spans and instruments hold references to them).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace import sampling as otel_sampling
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from prometheus_client import REGISTRY, CollectorRegistry

from .. import __version__
from . import logs
from .config import Settings, resolve
from .exposition import MetricsServer, multiprocess_dir, start_metrics_server
from .metrics import set_default_limits
from .tracing import refresh as refresh_tracing
from .tracing import tracing_enabled

__all__ = ["configure", "configured_settings"]

_log = logging.getLogger("dpagent.telemetry")

_state: dict[str, Any] = {}


def configured_settings() -> Settings | None:
    """The settings of the first successful ``configure()``, or None."""
    settings: Settings | None = _state.get("settings")
    return settings


def configure(
    *,
    service_name: str | None = None,
    traces_exporter: str | None = None,
    otlp_endpoint: str | None = None,
    otlp_timeout: float | None = None,
    sampler: str | None = None,
    sampler_arg: float | None = None,
    metrics_port: int | None = None,
    metrics_addr: str | None = None,
    metrics_certfile: str | None = None,
    metrics_keyfile: str | None = None,
    otel_metrics: bool | None = None,
    max_error_types: int | None = None,
    pushgateway_url: str | None = None,
    prometheus_url: str | None = None,
    log_dir: str | None = None,
    log_level: str | None = None,
    log_files: bool | None = None,
    log_json_stdout: bool | None = None,
    log_max_bytes: int | None = None,
    log_backups: int | None = None,
    log_operations_level: str | None = None,
    registry: CollectorRegistry | None = None,
) -> Settings:
    """Set up tracing, logging and the metrics server; argument > env > default.

    Every argument and its environment variable are listed in
    :data:`dpagent.telemetry.config.SETTINGS` and the README. Returns the
    resolved settings. Raises ``ValueError`` for a bad environment value.
    """
    arguments = {k: v for k, v in locals().items() if k != "registry" and v is not None}
    settings = resolve(arguments)
    previous = configured_settings()
    if previous is not None:
        if previous != settings:
            changed = sorted(k for k in settings if settings[k] != previous.get(k))
            warnings.warn(
                "dpagent.configure() was already called; keeping the first settings "
                f"(differences ignored: {', '.join(changed)})",
                RuntimeWarning,
                stacklevel=2,
            )
        return previous
    target = REGISTRY if registry is None else registry
    set_default_limits({"max_error_types": settings.max_error_types})
    logs.configure_logging(settings)
    _setup_tracing(settings)
    if settings.otel_metrics and multiprocess_dir() is None:
        _setup_otel_metrics(settings, target)
    server: MetricsServer | None = None
    if settings.metrics_port is not None:
        server = start_metrics_server(
            settings.metrics_port,
            addr=settings.metrics_addr,
            registry=registry,
            certfile=settings.metrics_certfile,
            keyfile=settings.metrics_keyfile,
        )
        _log.info("dpagent: serving metrics at %s", server.url)
    _state["settings"] = settings
    _state["metrics_server"] = server
    return settings


def metrics_server() -> MetricsServer | None:
    server: MetricsServer | None = _state.get("metrics_server")
    return server


def _resource(settings: Settings) -> Resource:
    return Resource.create({"service.name": settings.service_name, "service.version": __version__})


def _sampler(settings: Settings) -> otel_sampling.Sampler:
    name: str = settings.sampler
    root: otel_sampling.Sampler
    if name.endswith("always_on"):
        root = otel_sampling.ALWAYS_ON
    elif name.endswith("always_off"):
        root = otel_sampling.ALWAYS_OFF
    else:
        root = otel_sampling.TraceIdRatioBased(float(settings.sampler_arg))
    return otel_sampling.ParentBased(root) if name.startswith("parentbased_") else root


def _exporter(settings: Settings) -> SpanExporter | None:
    import os

    kind = settings.traces_exporter
    has_endpoint = bool(
        settings.otlp_endpoint or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
    if kind is None:
        kind = "otlp" if has_endpoint else "none"
    if kind == "none":
        return None
    if kind == "console":
        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    endpoint = None
    if settings.otlp_endpoint and not os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        endpoint = settings.otlp_endpoint.rstrip("/") + "/v1/traces"
    return OTLPSpanExporter(endpoint=endpoint, timeout=settings.otlp_timeout)


def _setup_tracing(settings: Settings) -> None:
    exporter = _exporter(settings)
    if exporter is None:
        return
    if tracing_enabled():
        _log.warning(
            "dpagent: a tracer provider is already installed; leaving it in place "
            "(add your exporter to it instead of asking configure() for one)"
        )
        return
    provider = TracerProvider(resource=_resource(settings), sampler=_sampler(settings))
    # Batching keeps export off the request path: a slow or dead collector costs
    # the application a bounded queue, never a blocked call.
    provider.add_span_processor(
        BatchSpanProcessor(exporter, export_timeout_millis=int(settings.otlp_timeout * 1000))
    )
    trace.set_tracer_provider(provider)
    refresh_tracing()


def _setup_otel_metrics(settings: Settings, registry: CollectorRegistry) -> None:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider

    reader = PrometheusMetricReader(registry=registry)
    otel_metrics.set_meter_provider(
        MeterProvider(resource=_resource(settings), metric_readers=[reader])
    )
