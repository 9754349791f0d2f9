"""BigCommerce upload: create the product, attach its images and fitment.

Operations (agent ``bigcommerce_upload``):

- ``create_product``: resolve the brand id (cached), then ``POST /v3/catalog/products``;
- ``upload_images``: one ``POST .../images`` per image;
- ``upload_product``: the whole stage, fitment metafield included.

Every HTTP attempt is measured in ``dpagent_bigcommerce_api_request_duration_seconds``
and counted in ``dpagent_bigcommerce_api_requests_total`` by endpoint template,
method and status code. A 429 is counted in ``dpagent_bigcommerce_rate_limited_total``
and honoured: the agent waits the delay the API announced
(``X-Rate-Limit-Time-Reset-Ms``, BigCommerce's own header, else ``Retry-After``)
before retrying. 5xx answers and timeouts are retried with exponential backoff;
other 4xx answers are not retried.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from ..backends.interfaces import (
    ApiResponse,
    BackendError,
    BackendTimeout,
    BigCommerceAPI,
    FitmentRecord,
    Product,
    UpstreamError,
)
from ..telemetry import OperationTimer, get_agent_logger, get_metrics
from .cache import LookupCache
from .image_sourcing import ScoredImage
from .metrics import TIMEOUT_STATUS, UPLOAD_AGENT, get_agent_metrics

__all__ = [
    "BRANDS",
    "IMAGES",
    "METAFIELDS",
    "PRODUCTS",
    "BigCommerceRequestError",
    "BigCommerceUploadAgent",
    "RateLimited",
    "RetryPolicy",
    "UploadResult",
    "retry_delay",
]

_log = get_agent_logger(UPLOAD_AGENT)

BRANDS = "/v3/catalog/brands"
PRODUCTS = "/v3/catalog/products"
IMAGES = "/v3/catalog/products/{product_id}/images"
METAFIELDS = "/v3/catalog/products/{product_id}/metafields"


class RateLimited(UpstreamError):
    """Still rate limited after the last retry, or asked to wait too long."""


class BigCommerceRequestError(UpstreamError):
    """A 4xx answer other than 429: the request itself is wrong; not retried."""


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    backoff: float = 0.5  # wait before the first retry of a 5xx or timeout; doubles
    max_backoff: float = 8.0
    max_retry_wait: float = 60.0  # a longer announced 429 delay is not waited for
    default_retry_after: float = 1.0  # a 429 without a delay header

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")

    def scaled(self, factor: float) -> RetryPolicy:
        """The same policy with every wait multiplied (for simulated time)."""
        return RetryPolicy(
            self.max_attempts,
            self.backoff * factor,
            self.max_backoff * factor,
            self.max_retry_wait * factor,
            self.default_retry_after * factor,
        )


def retry_delay(
    response: ApiResponse, default: float, now: Callable[[], float] = time.time
) -> float:
    """Seconds a 429 asks us to wait.

    BigCommerce sends ``X-Rate-Limit-Time-Reset-Ms``; other APIs send
    ``Retry-After`` as seconds or as an HTTP date. Unreadable or absent: ``default``.
    """
    reset_ms = response.header("X-Rate-Limit-Time-Reset-Ms")
    if reset_ms is not None:
        try:
            return max(float(reset_ms) / 1000, 0.0)
        except ValueError:
            pass
    retry_after = response.header("Retry-After")
    if retry_after is not None:
        try:
            return max(float(retry_after), 0.0)
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(retry_after)
        except (TypeError, ValueError):
            return default
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.timezone.utc)
        return max(when.timestamp() - now(), 0.0)
    return default


@dataclass(frozen=True)
class UploadResult:
    product_id: int | None = None
    images_uploaded: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.product_id is not None


class BigCommerceUploadAgent:
    """Uploads one product with its images and fitment."""

    operations = ("upload_product", "create_product", "upload_images")
    name = UPLOAD_AGENT

    def __init__(
        self,
        api: BigCommerceAPI,
        *,
        registry: CollectorRegistry | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Any] = time.sleep,
        clock: Callable[[], float] = time.perf_counter,
        brand_cache_size: int = 512,
        brand_cache_ttl: float | None = 3600.0,
    ) -> None:
        self.api = api
        self.registry = registry
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self.metrics = get_agent_metrics(registry)
        # Declared now, so their success and failure series exist at 0 before the first call.
        core = get_metrics(registry)
        for operation in self.operations:
            core.bind(self.name, operation)
        self.brand_cache: LookupCache[int] = LookupCache(
            self.name, "brand_id", self.metrics, max_entries=brand_cache_size, ttl=brand_cache_ttl
        )

    def process(
        self,
        product: Product,
        images: Sequence[ScoredImage] = (),
        fitment: Sequence[FitmentRecord] = (),
    ) -> UploadResult:
        product_id: int | None = None
        uploaded = 0
        try:
            with OperationTimer(
                self.name, "upload_product", {"sku": product.sku}, registry=self.registry
            ):
                product_id = self._create_product(product)
                if images:
                    uploaded = self._upload_images(product, product_id, images)
                if fitment:
                    self._call(
                        "POST",
                        METAFIELDS,
                        path_params={"product_id": product_id},
                        payload={
                            "namespace": "dpagent",
                            "key": "vehicle_applications",
                            "permission_set": "read",
                            "value": json.dumps(
                                [
                                    {
                                        "years": [r.year_start, r.year_end],
                                        "make": r.make,
                                        "model": r.model,
                                    }
                                    for r in fitment
                                ]
                            ),
                        },
                    )
        except BackendError as exc:
            _log.debug("upload of %s failed: %s: %s", product.sku, type(exc).__name__, exc)
            return UploadResult(product_id, uploaded, f"{type(exc).__name__}: {exc}")
        return UploadResult(product_id, uploaded)

    def _create_product(self, product: Product) -> int:
        with OperationTimer(
            self.name, "create_product", {"sku": product.sku}, registry=self.registry
        ):
            payload: dict[str, Any] = {
                "name": product.name,
                "sku": product.sku,
                "type": "physical",
                "weight": 0,
                "price": product.price if product.price is not None else 0,
                "description": product.description,
            }
            if product.brand:
                payload["brand_id"] = self._brand_id(product.brand)
            response = self._call("POST", PRODUCTS, payload=payload)
            return _resource_id(response, PRODUCTS)

    def _upload_images(
        self, product: Product, product_id: int, images: Sequence[ScoredImage]
    ) -> int:
        with OperationTimer(
            self.name, "upload_images", {"sku": product.sku, "images": len(images)},
            registry=self.registry,
        ):  # fmt: skip
            for position, image in enumerate(images):
                self._call(
                    "POST",
                    IMAGES,
                    path_params={"product_id": product_id},
                    payload={
                        "image_url": image.url,
                        "is_thumbnail": position == 0,
                        "sort_order": position,
                    },
                )
            return len(images)

    def _brand_id(self, brand: str) -> int:
        key = brand.strip().lower()
        hit, cached = self.brand_cache.get(key)
        if hit and cached is not None:
            return cached
        found = self._call("GET", BRANDS, query={"name": brand}).body.get("data") or []
        if found:
            brand_id = int(found[0]["id"])
        else:
            brand_id = _resource_id(self._call("POST", BRANDS, payload={"name": brand}), BRANDS)
        self.brand_cache.put(key, brand_id)
        return brand_id

    def _call(
        self,
        method: str,
        endpoint: str,
        *,
        path_params: Mapping[str, str | int] | None = None,
        query: Mapping[str, str] | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> ApiResponse:
        """One logical request: attempts, waits and retries, each attempt measured."""
        policy = self.retry
        what = f"BigCommerce {method} {endpoint}"
        for attempt in range(1, policy.max_attempts + 1):
            last = attempt == policy.max_attempts
            start = self._clock()
            try:
                response = self.api.request(
                    method, endpoint, path_params=path_params, query=query, payload=payload
                )
            except BackendTimeout:
                self.metrics.api_request(
                    self.name, endpoint, method, TIMEOUT_STATUS, self._clock() - start
                )
                if last:
                    raise
                self._sleep(self._backoff(attempt))
                continue
            status = response.status_code
            self.metrics.api_request(self.name, endpoint, method, status, self._clock() - start)
            if 200 <= status < 300:
                return response
            if status == 429:
                self.metrics.rate_limit_hit(self.name, endpoint)
                wait = retry_delay(response, policy.default_retry_after)
                if wait > policy.max_retry_wait:
                    raise RateLimited(
                        f"{what}: rate limited, asked to wait {wait:.1f}s "
                        f"(more than the {policy.max_retry_wait:g}s we wait)",
                        429,
                    )
                if last:
                    raise RateLimited(f"{what}: still rate limited after {attempt} attempts", 429)
                _log.info("%s: rate limited, waiting %.3fs as told", what, wait)
                self._sleep(wait)
                continue
            if status >= 500:
                if last:
                    raise UpstreamError(
                        f"{what} answered {status} after {attempt} attempts", status
                    )
                self._sleep(self._backoff(attempt))
                continue
            title = response.body.get("title", "")
            raise BigCommerceRequestError(f"{what} answered {status}: {title}", status)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _backoff(self, attempt: int) -> float:
        return float(min(self.retry.backoff * 2 ** (attempt - 1), self.retry.max_backoff))


def _resource_id(response: ApiResponse, endpoint: str) -> int:
    try:
        return int(response.body["data"]["id"])
    except (KeyError, TypeError, ValueError):
        raise UpstreamError(f"BigCommerce {endpoint}: the answer has no data.id") from None
