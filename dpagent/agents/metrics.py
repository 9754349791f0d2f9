"""The agent-specific metric families, beside the core ``dpagent_*`` ones.

Names and labels are fixed (dashboards and alert rules use them verbatim); they
are listed in ``docs/agents.md``. Like the core families these are built lazily,
once per registry, never at import: :func:`get_agent_metrics` with a fresh
``CollectorRegistry()`` gives a fresh set.

Every label value is bounded: sources, endpoints, methods and caches come from
the fixed sets below, and anything else a backend reports (an unexpected
source, a status code) passes a :class:`~dpagent.telemetry.metrics.LabelGuard`
and is folded into ``other`` past its cap.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from ..telemetry import get_metrics
from ..telemetry.metrics import LabelGuard

__all__ = [
    "AGENTS",
    "CACHES",
    "ENDPOINTS",
    "FITMENT_AGENT",
    "FITMENT_SOURCES",
    "IMAGE_AGENT",
    "IMAGE_SOURCES",
    "UPLOAD_AGENT",
    "AgentMetrics",
    "get_agent_metrics",
]

IMAGE_AGENT = "image_sourcing"
FITMENT_AGENT = "vehicle_applications"
UPLOAD_AGENT = "bigcommerce_upload"
AGENTS = (IMAGE_AGENT, FITMENT_AGENT, UPLOAD_AGENT)

IMAGE_SOURCES = ("manufacturer", "supplier_feed", "google", "bing", "amazon")
FITMENT_SOURCES = ("official", "fallback")
# Path templates, never filled-in paths: a product id in a label would be one
# series per product.
ENDPOINTS: Mapping[str, tuple[str, ...]] = {
    "/v3/catalog/brands": ("GET", "POST"),
    "/v3/catalog/products": ("POST",),
    "/v3/catalog/products/{product_id}/images": ("POST",),
    "/v3/catalog/products/{product_id}/metafields": ("POST",),
}
CACHES: Mapping[str, tuple[str, ...]] = {
    IMAGE_AGENT: ("image_search",),
    FITMENT_AGENT: ("official_fitment",),
    UPLOAD_AGENT: ("brand_id",),
}
# Status codes whose series exist from the start, so the status-code panels and
# the 429 / 5xx ratios have a zero to compare with. Others appear when seen.
INITIAL_STATUS_CODES = ("200", "429", "500", "503")
TIMEOUT_STATUS = "timeout"  # no HTTP answer at all

QUALITY_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
DIVERSITY_BUCKETS = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)
API_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_SIZE_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)

_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
MAX_SOURCES = 20
MAX_STATUS_CODES = 30
MAX_ENDPOINTS = 30
MAX_CACHES = 20
MAX_AGENTS = 20


class AgentMetrics:
    """The agent-specific families on one registry, with their label guards."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        folded = get_metrics(registry).folded
        self._agents = LabelGuard("agent", MAX_AGENTS, folded)
        self._sources = LabelGuard("source", MAX_SOURCES, folded)
        self._status_codes = LabelGuard("status_code", MAX_STATUS_CODES, folded)
        self._endpoints = LabelGuard("endpoint", MAX_ENDPOINTS, folded)
        self._caches = LabelGuard("cache", MAX_CACHES, folded)
        self.image_quality = Histogram(
            "dpagent_image_quality_score",
            "Quality score (0..1) of each downloaded image, by source.",
            ["agent", "source"],
            buckets=QUALITY_BUCKETS,
            registry=registry,
        )
        self.images_found = Counter(
            "dpagent_images_found",
            "Image candidates found, by source.",
            ["agent", "source"],
            registry=registry,
        )
        self.source_diversity = Histogram(
            "dpagent_image_source_diversity",
            "Distinct sources among the images kept for one product.",
            ["agent"],
            buckets=DIVERSITY_BUCKETS,
            registry=registry,
        )
        self.fitment_records = Counter(
            "dpagent_fitment_records",
            "Vehicle-application records produced, official data or parsed fallback.",
            ["agent", "source"],
            registry=registry,
        )
        self.api_duration = Histogram(
            "dpagent_bigcommerce_api_request_duration_seconds",
            "Duration of each BigCommerce API request (one attempt), by endpoint template.",
            ["agent", "endpoint", "method"],
            buckets=API_DURATION_BUCKETS,
            registry=registry,
        )
        self.api_requests = Counter(
            "dpagent_bigcommerce_api_requests",
            "BigCommerce API requests (one per attempt) by HTTP status code "
            "('timeout' when no answer came).",
            ["agent", "endpoint", "method", "status_code"],
            registry=registry,
        )
        self.rate_limited = Counter(
            "dpagent_bigcommerce_rate_limited",
            "BigCommerce answers with HTTP 429 (rate limited).",
            ["agent", "endpoint"],
            registry=registry,
        )
        self.cache_requests = Counter(
            "dpagent_cache_requests",
            "Cache lookups by result (hit or miss).",
            ["agent", "cache", "result"],
            registry=registry,
        )
        self.batch_items = Counter(
            "dpagent_batch_items_processed",
            "Items (products) an agent finished in a batch, by outcome.",
            ["agent", "outcome"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "dpagent_batch_size_items",
            "Items per batch, observed once per agent when a batch starts.",
            ["agent"],
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self._preinitialise()

    def _preinitialise(self) -> None:
        # Every known combination exists at 0 from the start, so rate(), ratios
        # and "no 429s yet" read as 0 instead of "no data".
        for source in IMAGE_SOURCES:
            self.image_quality.labels(IMAGE_AGENT, self._sources.admit(source))
            self.images_found.labels(IMAGE_AGENT, source)
        self.source_diversity.labels(IMAGE_AGENT)
        for source in FITMENT_SOURCES:
            self.fitment_records.labels(FITMENT_AGENT, source)
        for endpoint, methods in ENDPOINTS.items():
            self._endpoints.admit(endpoint)
            self.rate_limited.labels(UPLOAD_AGENT, endpoint)
            for method in methods:
                self.api_duration.labels(UPLOAD_AGENT, endpoint, method)
                for code in INITIAL_STATUS_CODES:
                    self.api_requests.labels(
                        UPLOAD_AGENT, endpoint, method, self._status_codes.admit(code)
                    )
        for agent, caches in CACHES.items():
            self._agents.admit(agent)
            for cache in caches:
                for result in ("hit", "miss"):
                    self.cache_requests.labels(agent, self._caches.admit(cache), result)
        for agent in AGENTS:
            self.batch_size.labels(agent)
            for outcome in ("success", "failure"):
                self.batch_items.labels(agent, outcome)

    # One method per thing an agent observes; each bounds its labels.

    def image_found(self, agent: str, source: str, count: int) -> None:
        self.images_found.labels(self._agents.admit(agent), self._sources.admit(source)).inc(count)

    def image_scored(self, agent: str, source: str, score: float) -> None:
        self.image_quality.labels(self._agents.admit(agent), self._sources.admit(source)).observe(
            min(max(score, 0.0), 1.0)
        )

    def source_diversity_observed(self, agent: str, distinct_sources: int) -> None:
        self.source_diversity.labels(self._agents.admit(agent)).observe(distinct_sources)

    def fitment_found(self, agent: str, source: str, records: int) -> None:
        if source not in FITMENT_SOURCES:
            raise ValueError(f"fitment source must be one of {FITMENT_SOURCES}, got {source!r}")
        self.fitment_records.labels(self._agents.admit(agent), source).inc(records)

    def api_request(
        self, agent: str, endpoint: str, method: str, status_code: int | str, duration: float
    ) -> None:
        agent = self._agents.admit(agent)
        endpoint = self._endpoints.admit(endpoint)
        method = method.upper() if method.upper() in _METHODS else "other"
        self.api_duration.labels(agent, endpoint, method).observe(max(duration, 0.0))
        code = self._status_codes.admit(str(status_code))
        self.api_requests.labels(agent, endpoint, method, code).inc()

    def rate_limit_hit(self, agent: str, endpoint: str) -> None:
        self.rate_limited.labels(self._agents.admit(agent), self._endpoints.admit(endpoint)).inc()

    def cache_lookup(self, agent: str, cache: str, hit: bool) -> None:
        self.cache_requests.labels(
            self._agents.admit(agent), self._caches.admit(cache), "hit" if hit else "miss"
        ).inc()

    def batch_item(self, agent: str, success: bool) -> None:
        self.batch_items.labels(
            self._agents.admit(agent), "success" if success else "failure"
        ).inc()

    def batch_started(self, agent: str, items: int) -> None:
        self.batch_size.labels(self._agents.admit(agent)).observe(items)


_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, AgentMetrics] = (
    weakref.WeakKeyDictionary()
)
_LOCK = threading.Lock()


def get_agent_metrics(registry: CollectorRegistry | None = None) -> AgentMetrics:
    """The agent-specific families on ``registry`` (default: the global one)."""
    registry = REGISTRY if registry is None else registry
    metrics = _BY_REGISTRY.get(registry)
    if metrics is None:
        with _LOCK:
            metrics = _BY_REGISTRY.get(registry)
            if metrics is None:
                metrics = AgentMetrics(registry)
                _BY_REGISTRY[registry] = metrics
    return metrics
