"""Metric families, buckets and the label guard, on an injectable registry.

The hot path talks to prometheus_client directly: children are resolved once per
``(agent, operation)`` and cached in :class:`OperationMetrics`, so a call does one
counter ``inc``, one histogram ``observe`` and the gauge updates, nothing else.

Nothing is registered at import time. :func:`get_metrics` builds the families for
a registry the first time it is asked for one; tests pass a fresh
``CollectorRegistry()`` and get a fresh set.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

from .. import __version__

__all__ = [
    "DEFAULT_MAX_AGENTS",
    "DEFAULT_MAX_ERROR_TYPES",
    "DEFAULT_MAX_OPERATIONS_PER_AGENT",
    "DURATION_BUCKETS",
    "OTHER",
    "BoundOperation",
    "LabelGuard",
    "OperationMetrics",
    "clean_label_value",
    "get_metrics",
    "validate_name",
]

# Each agent's max_duration (thresholds.py) is an exact boundary here, so the
# slow-operation alert reads the `le` bucket at the threshold; a test pins that.
DURATION_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 45, 60, 90, 120, 300, 600,
)  # fmt: skip

OTHER = "other"
# The clock of durations; the hot path stores its reading as the last success
# time and the collector converts it to Unix time at scrape.
CLOCK = time.perf_counter
DEFAULT_MAX_ERROR_TYPES = 50
DEFAULT_MAX_OPERATIONS_PER_AGENT = 200
DEFAULT_MAX_AGENTS = 100
# Longer label values are cut: a 10 kB exception class name is still one series,
# but nobody should have to scroll through it in Grafana.
MAX_LABEL_LENGTH = 120


def validate_name(kind: str, value: object) -> str:
    """Check a code-declared label value (agent or operation); clear error if bad."""
    if not isinstance(value, str):
        raise TypeError(f"dpagent: {kind} must be a str, got {type(value).__name__}: {value!r}")
    if not value.strip():
        raise ValueError(f"dpagent: {kind} must be a non-empty string, got {value!r}")
    if len(value) > MAX_LABEL_LENGTH:
        raise ValueError(
            f"dpagent: {kind} is {len(value)} characters long, the limit is {MAX_LABEL_LENGTH}"
        )
    return value


def clean_label_value(value: str) -> str:
    """A label value any exposition format can encode: short, valid UTF-8."""
    value = value[:MAX_LABEL_LENGTH] or "unknown"
    # Lone surrogates (from badly decoded input) would make every later scrape
    # fail to encode; escape them instead.
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


class LabelGuard:
    """Admits at most ``limit`` distinct values; later ones become ``other``.

    Every folded value is counted in ``dpagent_label_values_folded_total{label}``
    so an operator can see that the cap is being hit and raise it.
    """

    def __init__(self, label: str, limit: int, folded: Counter) -> None:
        if limit < 1:
            raise ValueError(f"dpagent: the {label} cap must be >= 1, got {limit}")
        self._label = label
        self._limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._folded = folded.labels(label)

    def admit(self, value: str) -> str:
        if value in self._seen:  # the common case takes no lock
            return value
        value = clean_label_value(value)
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) < self._limit:
                self._seen.add(value)
                return value
        self._folded.inc()
        return OTHER


class BoundOperation:
    """The metric children of one ``(agent, operation)``, resolved once.

    ``running`` and ``stopped`` are what the hot path calls around an operation.
    In a single process (``live``) they touch no lock: the in-progress count is
    the length of a deque (append and pop are atomic) and the last success is
    one store of the monotonic clock (``last_success_clock``);
    :class:`_LiveGaugeCollector` turns both into gauges at scrape time. In
    multiprocess mode they update the file-backed gauges.
    """

    __slots__ = (
        "_error_children",
        "_error_guard",
        "_errors",
        "_running",
        "agent",
        "duration",
        "failure",
        "last_success_clock",
        "live",
        "operation",
        "running",
        "set_last_success",
        "stopped",
        "success",
    )  # fmt: skip

    def __init__(
        self,
        metrics: OperationMetrics,
        agent: str,
        operation: str,
    ) -> None:
        self.agent = agent
        self.operation = operation
        self.success = metrics.operations.labels(agent, operation, "success")
        self.failure = metrics.operations.labels(agent, operation, "failure")
        self.duration = metrics.duration.labels(agent, operation)
        self._errors = metrics.errors
        self._error_guard = LabelGuard("error_type", metrics.max_error_types, metrics.folded)
        self._error_children: dict[str, Any] = {}
        self.last_success_clock = 0.0
        self._running: deque[int] = deque()
        self.live = not metrics.multiprocess
        if self.live:
            self.running: Callable[[int], None] = self._running.append
            self.stopped: Callable[[], object] = self._running.pop
            self.set_last_success: Callable[[float], None] = self._set_last_success_clock
        else:
            in_progress = metrics.in_progress.labels(agent, operation)
            self.running = in_progress.inc
            self.stopped = in_progress.dec
            self.set_last_success = metrics.last_success.labels(agent, operation).set

    def _set_last_success_clock(self, unix_time: float) -> None:
        self.last_success_clock = CLOCK() - (time.time() - unix_time)

    @property
    def in_progress(self) -> int:
        return len(self._running)

    @property
    def last_success_time(self) -> float:
        """Unix time of the last success (0 if none), from the monotonic clock."""
        if not self.last_success_clock:
            return 0.0
        return time.time() - (CLOCK() - self.last_success_clock)

    def error(self, error_type: str) -> Any:
        """The errors counter child for ``error_type``, bounded by the guard."""
        child = self._error_children.get(error_type)
        if child is None:
            label = self._error_guard.admit(error_type)
            child = self._errors.labels(self.agent, self.operation, label)
            if label != OTHER:
                # Only admitted names are cached: caching every folded name
                # would itself be unbounded memory.
                self._error_children[error_type] = child
        return child


class _LiveGaugeCollector:
    """In-progress and last-success gauges, read from the bound operations."""

    def __init__(self, metrics: OperationMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> list[GaugeMetricFamily]:
        return self._families([])

    def collect(self) -> list[GaugeMetricFamily]:
        return self._families(self._metrics.bound_operations())

    @staticmethod
    def _families(bound: list[BoundOperation]) -> list[GaugeMetricFamily]:
        in_progress = GaugeMetricFamily(
            "dpagent_operations_in_progress", IN_PROGRESS_HELP, labels=["agent", "operation"]
        )
        last_success = GaugeMetricFamily(
            "dpagent_last_success_timestamp_seconds", LAST_SUCCESS_HELP,
            labels=["agent", "operation"],
        )  # fmt: skip
        for op in bound:
            in_progress.add_metric([op.agent, op.operation], op.in_progress)
            last_success.add_metric([op.agent, op.operation], op.last_success_time)
        return [in_progress, last_success]


IN_PROGRESS_HELP = "Operations currently running."
LAST_SUCCESS_HELP = "Unix time of the last successful operation (0: none yet)."


class OperationMetrics:
    """The contract's metric families, registered on one registry."""

    def __init__(
        self,
        registry: CollectorRegistry = REGISTRY,
        *,
        max_error_types: int = DEFAULT_MAX_ERROR_TYPES,
        max_operations_per_agent: int = DEFAULT_MAX_OPERATIONS_PER_AGENT,
        max_agents: int = DEFAULT_MAX_AGENTS,
        buckets: tuple[float, ...] = DURATION_BUCKETS,
    ) -> None:
        self.registry = registry
        self.buckets = tuple(float(b) for b in buckets)
        self.max_error_types = max_error_types
        self.operations = Counter(
            "dpagent_operations",
            "Operations finished, by outcome (success or failure).",
            ["agent", "operation", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "dpagent_operation_duration_seconds",
            "Wall-clock duration of operations, successful or not.",
            ["agent", "operation"],
            buckets=buckets,
            registry=registry,
        )
        self.errors = Counter(
            "dpagent_operation_errors",
            "Failed operations by error type (exception class name, capped per operation).",
            ["agent", "operation", "error_type"],
            registry=registry,
        )
        # In multiprocess mode each worker has its own gauge file: in-progress
        # operations add up across live workers, the last success is the most
        # recent any worker saw, and build info is the same everywhere. In one
        # process a lock-free collector serves the same two gauges.
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        if self.multiprocess:
            self.in_progress = Gauge(
                "dpagent_operations_in_progress", IN_PROGRESS_HELP, ["agent", "operation"],
                registry=registry, multiprocess_mode="livesum",
            )  # fmt: skip
            self.last_success = Gauge(
                "dpagent_last_success_timestamp_seconds", LAST_SUCCESS_HELP,
                ["agent", "operation"], registry=registry, multiprocess_mode="mostrecent",
            )  # fmt: skip
        else:
            registry.register(_LiveGaugeCollector(self))
        self.build_info = Gauge(
            "dpagent_build_info",
            "dpagent version; the value is always 1.",
            ["version"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.folded = Counter(
            "dpagent_label_values_folded",
            "Label values folded into 'other' because a cardinality cap was reached.",
            ["label"],
            registry=registry,
        )
        self.build_info.labels(__version__).set(1)
        self._agent_guard = LabelGuard("agent", max_agents, self.folded)
        self._operation_guards: dict[str, LabelGuard] = {}
        self._max_operations = max_operations_per_agent
        self._bound: dict[tuple[str, str], BoundOperation] = {}
        self._lock = threading.Lock()

    def bind(self, agent: str, operation: str) -> BoundOperation:
        """Children for ``(agent, operation)``, created (at zero) on first use."""
        bound = self._bound.get((agent, operation))
        if bound is not None:
            return bound
        with self._lock:
            bound = self._bound.get((agent, operation))
            if bound is not None:
                return bound
            validate_name("agent", agent)
            validate_name("operation", operation)
            agent_label = self._agent_guard.admit(agent)
            guard = self._operation_guards.get(agent_label)
            if guard is None:
                guard = LabelGuard("operation", self._max_operations, self.folded)
                self._operation_guards[agent_label] = guard
            op_label = guard.admit(operation)
            bound = self._bound.get((agent_label, op_label))
            if bound is None:
                bound = self._make(agent_label, op_label)
                self._bound[(agent_label, op_label)] = bound
            if len(self._bound) < self._bound_cap():
                self._bound[(agent, operation)] = bound
            return bound

    def _bound_cap(self) -> int:
        # Distinct names that were folded into "other" are not cached, so the
        # cache stays as bounded as the series it points to.
        return self._agent_guard._limit * (self._max_operations + 1) + 1

    def _make(self, agent: str, operation: str) -> BoundOperation:
        # Both outcomes exist at 0 from the start, so success ratios and rate()
        # work before the first failure ever happens.
        return BoundOperation(self, agent, operation)

    def bound_operations(self) -> list[BoundOperation]:
        """Each admitted ``(agent, operation)`` once (folded names share one)."""
        with self._lock:
            unique = {id(b): b for b in self._bound.values()}
        return list(unique.values())


_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, OperationMetrics] = (
    weakref.WeakKeyDictionary()
)
_BY_REGISTRY_LOCK = threading.Lock()
_DEFAULT_OPTIONS: dict[str, int] = {}


def set_default_limits(options: Mapping[str, int]) -> None:
    """Limits used when a registry's families are first built (see ``configure``)."""
    _DEFAULT_OPTIONS.update(options)


def get_metrics(registry: CollectorRegistry | None = None) -> OperationMetrics:
    """The families registered on ``registry`` (default: the global one)."""
    registry = REGISTRY if registry is None else registry
    metrics = _BY_REGISTRY.get(registry)
    if metrics is None:
        with _BY_REGISTRY_LOCK:
            metrics = _BY_REGISTRY.get(registry)
            if metrics is None:
                metrics = OperationMetrics(
                    registry, max_error_types=_DEFAULT_OPTIONS.get("max_error_types", 50)
                )
                _BY_REGISTRY[registry] = metrics
    return metrics
