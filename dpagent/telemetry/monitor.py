"""``performance_monitor``: the seed's stats API, now read from Prometheus.

``record_instant_metric`` feeds the same ``dpagent_*`` series as ``instrument``
(for an operation timed elsewhere). ``get_performance_stats`` and
``export_metrics`` ask Prometheus' HTTP API (``DPAGENT_PROMETHEUS_URL``,
default ``http://127.0.0.1:9090``) with PromQL, so they describe every process
Prometheus scrapes, and the Pushgateway's batch runs, not just this one.

Counts are exact. ``increase()`` extrapolates to the window's edges and
ignores the first value of a series that appears inside the window (a batch
pushed once, a process that did work before its first scrape), so it would
report 40.7 or 0 operations where 40 happened. Instead, per series::

    last value in the window  -  value at the window's start (0 if none)

which is exact for counters, and falls back to ``increase()`` only for series
whose counter reset (a restarted process) in or at the edge of the window.
Averages and p95 are computed from the same exact differences of the
histogram's ``_sum``, ``_count`` and ``_bucket`` series (p95 with
``histogram_quantile``, so it is interpolated within a bucket).

This module imports nothing from outside :mod:`dpagent.telemetry` and uses the
standard library's urllib for HTTP.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from . import logs
from .metrics import get_metrics
from .sdk import configured_settings
from .thresholds import THRESHOLDS

__all__ = [
    "DEFAULT_PROMETHEUS_URL",
    "EXPORT_FORMAT",
    "PROMETHEUS_URL_ENV",
    "PerformanceMonitor",
    "PrometheusError",
    "PrometheusQueryError",
    "PrometheusUnavailable",
    "exact_increase",
    "performance_monitor",
]

PROMETHEUS_URL_ENV = "DPAGENT_PROMETHEUS_URL"
DEFAULT_PROMETHEUS_URL = "http://127.0.0.1:9090"
EXPORT_FORMAT = "dpagent-metrics-export"
EXPORT_VERSION = 1
# The staleness lookback: the value "at" the window's start is the last sample
# in the 5 minutes before it, as an instant query would see it.
_LOOKBACK_SECONDS = 300
_MAX_POINTS = 720  # per exported series, when no step is given

_log = logging.getLogger("dpagent.telemetry")
# Prometheus is reached directly; an http_proxy meant for the internet must
# not capture http://prometheus:9090 or 127.0.0.1.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_SELECTOR = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*\s*(=|!=|=~|!~)\s*"(\\.|[^"\\])*"\s*,?\s*)*')


class PrometheusError(Exception):
    """Prometheus could not answer; the message is one line for a human."""


class PrometheusUnavailable(PrometheusError):
    """Prometheus is unreachable (refused, timed out, DNS, not Prometheus)."""


class PrometheusQueryError(PrometheusError):
    """Prometheus answered, with an error (bad query, too much data, ...)."""


def exact_increase(selector: str, window_seconds: int) -> str:
    """PromQL for each series' exact increase over the last ``window_seconds``.

    ``selector`` is a metric name with optional matchers. See the module
    docstring for why this is not ``increase()``.
    """
    w = f"{window_seconds}s"
    last = f"last_over_time({selector}[{w}])"
    start = f"last_over_time({selector}[{_LOOKBACK_SECONDS}s] offset {w})"
    resets = f"resets({selector}[{window_seconds + _LOOKBACK_SECONDS}s])"
    exact = f"(({last} - ({start} or {last} * 0)) >= 0) unless ({resets} > 0)"
    return f"(({exact}) or increase({selector}[{w}]))"


def _number(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None


def _iso(timestamp: float) -> str:
    return (
        datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z")
    )


class PrometheusClient:
    """The two calls of Prometheus' HTTP API this module needs."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise PrometheusUnavailable(
                f"Prometheus URL {url!r} is not an http(s) URL (set {PROMETHEUS_URL_ENV} "
                "or pass --prometheus-url, e.g. http://127.0.0.1:9090)"
            )
        self.url = url.rstrip("/")
        self.timeout = timeout

    def query(self, promql: str, at: float) -> list[dict[str, Any]]:
        data = self._call("query", {"query": promql, "time": f"{at:.3f}"})
        if data.get("resultType") != "vector":
            raise PrometheusQueryError(
                f"expected a vector from {promql!r}, got {data.get('resultType')}"
            )
        return list(data.get("result") or [])

    def query_range(self, promql: str, start: float, end: float, step: int) -> list[dict[str, Any]]:
        data = self._call(
            "query_range",
            {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step}s"},
        )
        return list(data.get("result") or [])

    def _call(self, endpoint: str, params: Mapping[str, str]) -> dict[str, Any]:
        url = f"{self.url}/api/v1/{endpoint}"
        body = urllib.parse.urlencode(params).encode()
        request = urllib.request.Request(
            url, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        try:
            with _OPENER.open(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            # 400 (bad query) and 422/503 (execution) carry a JSON error body.
            detail = _error_detail(exc.read())
            if exc.code in (400, 422, 503) and detail:
                raise PrometheusQueryError(
                    f"Prometheus at {self.url} rejected a query: {detail}"
                ) from None
            raise PrometheusUnavailable(
                f"Prometheus at {self.url} answered HTTP {exc.code} {exc.reason}"
                + (f": {detail}" if detail else "")
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PrometheusUnavailable(
                f"cannot reach Prometheus at {self.url}: {reason}"
            ) from None
        try:
            answer = json.loads(raw)
        except ValueError:
            raise PrometheusUnavailable(
                f"{url} did not answer with JSON: is {self.url} a Prometheus server?"
            ) from None
        if not isinstance(answer, dict) or answer.get("status") != "success":
            error = answer.get("error") if isinstance(answer, dict) else None
            raise PrometheusQueryError(f"Prometheus at {self.url}: {error or 'unexpected answer'}")
        data = answer.get("data")
        return data if isinstance(data, dict) else {}


def _error_detail(raw: bytes) -> str:
    try:
        answer = json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace").strip()[:200]
    return str(answer.get("error", "")) if isinstance(answer, dict) else ""


def _empty_stats() -> dict[str, Any]:
    return {"total": 0, "successes": 0, "failures": 0, "success_rate": None,
            "avg_duration": None, "p95_duration": None}  # fmt: skip


class PerformanceMonitor:
    """Record operations timed elsewhere; read stats and exports from Prometheus.

    ``prometheus_url`` (default: ``$DPAGENT_PROMETHEUS_URL``, else
    ``http://127.0.0.1:9090``) is resolved at each call, so setting the
    environment variable after import works. ``registry`` is where
    :meth:`record_instant_metric` records (default: the global one).
    """

    def __init__(
        self,
        prometheus_url: str | None = None,
        *,
        registry: CollectorRegistry | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.prometheus_url = prometheus_url
        self.registry = registry
        self.timeout = timeout

    # --- recording ------------------------------------------------------------------

    def record_instant_metric(
        self,
        agent: str,
        operation: str,
        success: bool,
        duration: float,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Count one finished operation of ``duration`` seconds.

        The same series as ``instrument`` (``dpagent_operations_total``, the
        duration histogram, errors, last success). On failure the error type is
        ``metadata["error_type"]`` (default ``Failure``) and the message
        ``metadata["error"]``; other metadata goes to the log record only.
        """
        if not isinstance(duration, (int, float)) or not math.isfinite(duration) or duration < 0:
            raise ValueError(
                f"dpagent: duration must be a finite number of seconds >= 0, got {duration!r}"
            )
        bound = get_metrics(self.registry).bind(agent, operation)
        error_type: str | None = None
        message: str | None = None
        if success:
            bound.success.inc()
            bound.set_last_success(time.time())
        else:
            meta = metadata or {}
            error_type = str(meta.get("error_type") or "Failure")
            message = str(meta["error"]) if meta.get("error") is not None else None
            bound.failure.inc()
            bound.error(error_type).inc()
        bound.duration.observe(float(duration))
        logs.operation_finished(
            agent, operation, "success" if success else "failure", float(duration),
            error_type, message, None,
        )  # fmt: skip

    # --- reading --------------------------------------------------------------------

    def resolved_url(self, url: str | None = None) -> str:
        configured = configured_settings()
        return (
            url
            or self.prometheus_url
            or (configured.prometheus_url if configured is not None else None)
            or os.environ.get(PROMETHEUS_URL_ENV)
            or DEFAULT_PROMETHEUS_URL
        )

    def get_performance_stats(
        self,
        hours: float = 24,
        *,
        prometheus_url: str | None = None,
        selector: str = "",
        at: float | None = None,
    ) -> dict[str, Any]:
        """Per agent and per operation over the last ``hours``: exact totals,
        successes, failures, success rate, average and p95 duration (seconds),
        and per agent its thresholds and the share of operations slower than its
        max_duration (what the slow alert reads).

        ``selector`` adds label matchers to every query (``job="dpagent"``).
        Raises :class:`PrometheusError` when Prometheus cannot answer. The
        layout is documented in ``docs/agents.md``.
        """
        window = _window_seconds(hours)
        matchers = _matchers(selector)
        client = PrometheusClient(self.resolved_url(prometheus_url), self.timeout)
        end = time.time() if at is None else at

        def inc(name: str, extra: str = "") -> str:
            inner = ",".join(m for m in (matchers, extra) if m)
            return exact_increase(f"{name}{{{inner}}}", window)

        hist = "dpagent_operation_duration_seconds"
        operations = client.query(
            f"sum by (agent, operation, outcome) ({inc('dpagent_operations_total')})", end
        )
        sums = client.query(f"sum by (agent, operation) ({inc(hist + '_sum')})", end)
        counts = client.query(f"sum by (agent, operation) ({inc(hist + '_count')})", end)
        p95_ops = client.query(
            f"histogram_quantile(0.95, sum by (agent, operation, le) ({inc(hist + '_bucket')}))",
            end,
        )
        p95_agents = client.query(
            f"histogram_quantile(0.95, sum by (agent, le) ({inc(hist + '_bucket')}))", end
        )
        agent_buckets = client.query(f"sum by (agent, le) ({inc(hist + '_bucket')})", end)

        agents: dict[str, dict[str, Any]] = {}

        def op_entry(labels: Mapping[str, str]) -> dict[str, Any] | None:
            agent, operation = labels.get("agent"), labels.get("operation")
            if agent is None or operation is None:
                return None
            entry = agents.setdefault(agent, {"operations": {}})
            result: dict[str, Any] = entry["operations"].setdefault(operation, _empty_stats())
            return result

        for sample in operations:
            entry = op_entry(sample["metric"])
            value = _number(sample["value"][1])
            if entry is None or value is None:
                continue
            key = "successes" if sample["metric"].get("outcome") == "success" else "failures"
            entry[key] += round(value)
        duration_sum: dict[tuple[str, str], float] = {}
        duration_count: dict[tuple[str, str], float] = {}
        for samples, into in ((sums, duration_sum), (counts, duration_count)):
            for sample in samples:
                labels = sample["metric"]
                value = _number(sample["value"][1])
                if value is not None and "agent" in labels and "operation" in labels:
                    into[(labels["agent"], labels["operation"])] = value
        for sample in p95_ops:
            entry = op_entry(sample["metric"])
            if entry is not None:
                entry["p95_duration"] = _number(sample["value"][1])

        for agent, entry in agents.items():
            total_sum = total_count = 0.0
            for operation, stats in entry["operations"].items():
                stats["total"] = stats["successes"] + stats["failures"]
                if stats["total"]:
                    stats["success_rate"] = stats["successes"] / stats["total"]
                else:
                    stats["p95_duration"] = None
                count = duration_count.get((agent, operation), 0.0)
                if count > 0:
                    stats["avg_duration"] = duration_sum.get((agent, operation), 0.0) / count
                    total_sum += duration_sum.get((agent, operation), 0.0)
                    total_count += count
            ops = entry["operations"]
            entry.update(_empty_stats())
            entry["successes"] = sum(s["successes"] for s in ops.values())
            entry["failures"] = sum(s["failures"] for s in ops.values())
            entry["total"] = entry["successes"] + entry["failures"]
            if entry["total"]:
                entry["success_rate"] = entry["successes"] / entry["total"]
            if total_count > 0:
                entry["avg_duration"] = total_sum / total_count
            limits = THRESHOLDS.get(agent)
            entry["thresholds"] = limits.as_dict() if limits else None
            entry["slow_ratio"] = None
        for sample in p95_agents:
            agent = sample["metric"].get("agent")
            if agent in agents and agents[agent]["total"]:
                agents[agent]["p95_duration"] = _number(sample["value"][1])
        _slow_ratios(agents, agent_buckets)
        ordered = dict(sorted(agents.items(), key=lambda item: _agent_order(item[0])))
        for entry in ordered.values():
            entry["operations"] = dict(sorted(entry.pop("operations").items()))
            entry["healthy"] = _healthy(entry)
        return {
            "window_hours": hours,
            "start": _iso(end - window),
            "end": _iso(end),
            "prometheus_url": client.url,
            "selector": matchers,
            "agents": ordered,
        }

    def export_metrics(
        self,
        path: str | os.PathLike[str],
        hours: float = 168,
        *,
        prometheus_url: str | None = None,
        selector: str = "",
        step: int | None = None,
    ) -> dict[str, Any]:
        """Write the stats of the last ``hours`` plus range series to ``path``
        (JSON, format documented in ``docs/agents.md``) and return the document.

        Raises :class:`PrometheusError` when Prometheus cannot answer, before
        anything is written; ``OSError`` when ``path`` cannot be written.
        """
        window = _window_seconds(hours)
        end = time.time()
        start = end - window
        if step is None:
            step = max(15, math.ceil(window / _MAX_POINTS))
        if step < 1:
            raise ValueError(f"step must be >= 1 second, got {step}")
        summary = self.get_performance_stats(
            hours, prometheus_url=prometheus_url, selector=selector, at=end
        )
        client = PrometheusClient(self.resolved_url(prometheus_url), self.timeout)
        matchers = _matchers(selector)
        series: dict[str, Any] = {}
        for name, (promql, unit, description) in _export_queries(matchers, max(step, 60)).items():
            result = client.query_range(promql, start, end, step)
            series[name] = {
                "query": promql,
                "unit": unit,
                "description": description,
                "series": [
                    {
                        "labels": sample["metric"],
                        "values": [[float(t), _number(v)] for t, v in sample.get("values", [])],
                    }
                    for sample in result
                ],
            }
        document = {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "generated_at": _iso(end),
            "prometheus_url": client.url,
            "selector": matchers,
            "window": {
                "hours": hours,
                "start": _iso(start),
                "end": _iso(end),
                "step_seconds": step,
            },
            "thresholds": {agent: t.as_dict() for agent, t in THRESHOLDS.items()},
            "summary": summary,
            "series": series,
        }
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        tmp.replace(target)
        return document


def _window_seconds(hours: float) -> int:
    if not isinstance(hours, (int, float)) or not math.isfinite(hours) or hours <= 0:
        raise ValueError(f"hours must be a positive number, got {hours!r}")
    return max(1, round(hours * 3600))


def _matchers(selector: str) -> str:
    """``job="x", env=~"p.*"`` (braces optional), checked so it cannot break a query."""
    text = selector.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    if text and not _SELECTOR.fullmatch(text):
        raise ValueError(f'selector must be label matchers like job="dpagent", got {selector!r}')
    return text.rstrip().rstrip(",")


def _slow_ratios(agents: dict[str, dict[str, Any]], buckets: list[dict[str, Any]]) -> None:
    """Share of an agent's operations above its max_duration, from the bucket at it."""
    at_limit: dict[str, float] = {}
    total: dict[str, float] = {}
    for sample in buckets:
        agent = sample["metric"].get("agent")
        limits = THRESHOLDS.get(agent or "")
        value = _number(sample["value"][1])
        if agent is None or limits is None or value is None:
            continue
        le = float(sample["metric"].get("le", "nan"))
        if le == limits.max_duration:
            at_limit[agent] = value
        elif math.isinf(le):
            total[agent] = value
    for agent, count in total.items():
        if agent in agents and count > 0 and agent in at_limit:
            agents[agent]["slow_ratio"] = max(count - at_limit[agent], 0.0) / count


def _healthy(entry: Mapping[str, Any]) -> bool | None:
    limits = entry.get("thresholds")
    if not limits or not entry.get("total"):
        return None
    ok = entry["success_rate"] >= limits["min_success_rate"]
    slow = entry.get("slow_ratio")
    return bool(ok and (slow is None or slow <= 0.05))


def _agent_order(agent: str) -> tuple[int, str]:
    names = list(THRESHOLDS)
    return (names.index(agent), agent) if agent in names else (len(names), agent)


def _export_queries(matchers: str, range_seconds: int) -> dict[str, tuple[str, str, str]]:
    def sel(name: str, extra: str = "") -> str:
        inner = ",".join(m for m in (matchers, extra) if m)
        return f"{name}{{{inner}}}"

    r = f"[{range_seconds}s]"
    ops = sel("dpagent_operations_total")
    successes = sel("dpagent_operations_total", 'outcome="success"')
    hist = "dpagent_operation_duration_seconds"
    duration_sum, duration_count = sel(hist + "_sum"), sel(hist + "_count")
    return {
        "operations": (
            f"sum by (agent, operation, outcome) (increase({ops}{r}))",
            "operations",
            f"operations finished in the {range_seconds}s before each point",
        ),
        "success_ratio": (
            f"sum by (agent) (rate({successes}{r})) / sum by (agent) (rate({ops}{r}))",
            "ratio",
            "share of successful operations, per agent",
        ),
        "duration_p95_seconds": (
            f"histogram_quantile(0.95, sum by (agent, le) (rate({sel(hist + '_bucket')}{r})))",
            "seconds",
            "95th percentile of operation duration, per agent",
        ),
        "duration_avg_seconds": (
            f"sum by (agent) (rate({duration_sum}{r}))"
            f" / sum by (agent) (rate({duration_count}{r}))",
            "seconds",
            "average operation duration, per agent",
        ),
        "in_progress": (
            f"sum by (agent) ({sel('dpagent_operations_in_progress')})",
            "operations",
            "operations running at each point, per agent",
        ),
    }


performance_monitor = PerformanceMonitor()
