"""Getting metrics out: the /metrics server, multiprocess mode, the Pushgateway.

Multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set before prometheus_client is
imported): every worker writes its values to files in that directory and the
server aggregates them per scrape. Counters and histograms are summed; gauges
follow the modes chosen in :mod:`.metrics` (in-progress: ``livesum``; last
success: ``mostrecent``; build info: ``max``). Call :func:`mark_process_dead`
when a worker exits so its live gauges disappear. Exemplars are not available in
this mode (a prometheus_client limitation).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client import exposition as prom_exposition
from prometheus_client import multiprocess as prom_multiprocess
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

__all__ = [
    "MetricsServer",
    "exposition_registry",
    "mark_process_dead",
    "multiprocess_dir",
    "push_to_gateway",
    "render",
    "start_metrics_server",
]

_log = logging.getLogger("dpagent.telemetry")


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def exposition_registry(registry: CollectorRegistry | None = None) -> CollectorRegistry:
    """The registry to scrape or push: an aggregating one in multiprocess mode."""
    path = multiprocess_dir()
    if path is None:
        return REGISTRY if registry is None else registry
    aggregate = CollectorRegistry()
    prom_multiprocess.MultiProcessCollector(aggregate, path=path)
    return aggregate


def render(registry: CollectorRegistry | None = None, *, openmetrics: bool = False) -> bytes:
    """The exposition text, as a scrape would get it."""
    target = exposition_registry(registry)
    return generate_openmetrics(target) if openmetrics else generate_latest(target)


def mark_process_dead(pid: int) -> None:
    """Forget a dead worker's live gauges (e.g. from gunicorn's ``child_exit``)."""
    path = multiprocess_dir()
    if path is not None:
        prom_multiprocess.mark_process_dead(pid, path)


@dataclass
class MetricsServer:
    """A running /metrics server; ``url`` is what a scrape config points at."""

    server: WSGIServer
    thread: threading.Thread
    url: str

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_metrics_server(
    port: int,
    addr: str = "127.0.0.1",
    registry: CollectorRegistry | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
) -> MetricsServer:
    """Serve /metrics (text format, or OpenMetrics when the scraper asks for it).

    Binds loopback unless told otherwise. ``port=0`` picks a free port (see
    ``.port``). With ``certfile`` and ``keyfile`` it serves HTTPS. A port in use
    is an ``OSError`` naming the address.
    """
    if (certfile is None) != (keyfile is None):
        raise ValueError("dpagent: HTTPS needs both certfile and keyfile")
    try:
        server, thread = prom_exposition.start_http_server(
            port, addr=addr, registry=exposition_registry(registry),
            certfile=certfile, keyfile=keyfile,
        )  # fmt: skip
    except OSError as exc:
        raise OSError(
            exc.errno, f"dpagent: cannot serve /metrics on {addr}:{port}: {exc.strerror}"
        ) from exc
    scheme = "https" if certfile else "http"
    host = f"[{addr}]" if ":" in addr else addr
    return MetricsServer(server, thread, f"{scheme}://{host}:{server.server_port}/metrics")


def push_to_gateway(
    gateway: str,
    job: str,
    grouping_key: dict[str, str] | None = None,
    registry: CollectorRegistry | None = None,
    timeout: float = 5.0,
) -> bool:
    """Push-add the registry's metrics for a batch run; never raises.

    Push-add (HTTP POST) replaces only the metric names pushed under this job and
    grouping key, so several stages of one batch can push separately. On failure
    it logs one clear line and returns False: a monitoring outage must not fail
    the batch it observes.
    """
    target = exposition_registry(registry)
    try:
        prom_exposition.pushadd_to_gateway(
            gateway, job=job, registry=target, grouping_key=grouping_key, timeout=timeout
        )
    except Exception as exc:  # URLError, HTTPError, timeouts, bad URLs
        _log.error(
            "dpagent: could not push metrics to the Pushgateway at %s (job=%s): %s",
            gateway, job, exc,
        )  # fmt: skip
        return False
    return True
