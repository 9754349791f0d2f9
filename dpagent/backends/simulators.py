"""Seeded simulators of the three upstreams, and the product catalogue.

They stand in for the real image search APIs, the fitment feed and BigCommerce
so the pipeline, the demo and the tests run anywhere. They are simulators, not
mocks: each call sleeps for a latency drawn from a lognormal distribution (the
usual shape of service latency: most calls near the median, a long right tail),
and fails the way the real service does: timeouts (a draw beyond the timeout
sleeps the whole timeout, then raises), 5xx answers, HTTP 429 with the
``Retry-After`` / ``X-Rate-Limit-Time-Reset-Ms`` delay, products nobody has
fitment data for, and descriptions whose fitment text cannot be parsed.

Determinism: every call draws from its own ``random.Random`` seeded by the seed,
the call's identity (kind, SKU, source, endpoint...) and how many times that
identity was called before. The same seed gives the same answers in the same
order per product, whatever the number of worker threads.

``time_scale`` multiplies every simulated wait (latencies, timeouts and the
rate-limit delay the simulator announces), so tests and quick demos can run a
realistic workload in a fraction of the time. ``sleep`` is injectable: tests
pass a fake that advances a fake clock.
"""

from __future__ import annotations

import math
import random
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..telemetry import THRESHOLDS
from .interfaces import (
    ApiResponse,
    BackendTimeout,
    DownloadedImage,
    FitmentRecord,
    ImageCandidate,
    Product,
    UpstreamError,
)

__all__ = [
    "PROFILES",
    "BigCommerceProfile",
    "CatalogProfile",
    "FitmentProfile",
    "ImageSearchProfile",
    "Latency",
    "SimulatedBigCommerce",
    "SimulatedCatalog",
    "SimulatedFitmentSource",
    "SimulatedImageSearch",
    "Simulation",
    "SimulationProfile",
]

Sleep = Callable[[float], Any]


@dataclass(frozen=True)
class Latency:
    """A lognormal latency: ``median`` seconds, ``sigma`` the spread of its log."""

    median: float
    sigma: float = 0.5

    def draw(self, rng: random.Random) -> float:
        return rng.lognormvariate(math.log(self.median), self.sigma)

    def share_above(self, seconds: float) -> float:
        """P(latency > seconds): what share of calls a profile makes that slow."""
        z = (math.log(seconds) - math.log(self.median)) / self.sigma
        return 0.5 * math.erfc(z / math.sqrt(2))


@dataclass(frozen=True)
class ImageSearchProfile:
    search: Latency = Latency(0.35, 0.5)
    download: Latency = Latency(0.2, 0.6)
    timeout: float = 10.0
    error_rate: float = 0.02  # 5xx answers, per search and per download
    no_results_rate: float = 0.15  # a source has nothing for this product
    max_candidates: int = 6


@dataclass(frozen=True)
class FitmentProfile:
    latency: Latency = Latency(0.6, 0.5)
    timeout: float = 20.0
    error_rate: float = 0.02
    not_found_rate: float = 0.25  # no official data: the agent falls back


@dataclass(frozen=True)
class BigCommerceProfile:
    latency: Latency = Latency(0.25, 0.5)
    timeout: float = 15.0
    rate_limit_rate: float = 0.02  # share of requests answered 429
    retry_after: tuple[float, float] = (0.5, 2.0)  # announced delay, uniform, seconds
    server_error_rate: float = 0.01  # 500 / 503
    brand_exists_rate: float = 0.8


@dataclass(frozen=True)
class CatalogProfile:
    unparseable_rate: float = 0.08  # descriptions without parseable fitment text
    size: int = 5000  # distinct SKUs the demo draws from (repeats give cache hits)


@dataclass(frozen=True)
class SimulationProfile:
    name: str
    description: str
    images: ImageSearchProfile = field(default_factory=ImageSearchProfile)
    fitment: FitmentProfile = field(default_factory=FitmentProfile)
    bigcommerce: BigCommerceProfile = field(default_factory=BigCommerceProfile)
    catalog: CatalogProfile = field(default_factory=CatalogProfile)


def _degraded() -> SimulationProfile:
    # Only the fitment feed degrades, so only vehicle_applications crosses its
    # thresholds. Both numbers derive from THRESHOLDS: the median latency is 40%
    # of max_duration with a wide spread, so ~13% of lookups take longer than
    # max_duration in real time (the slow alert needs > 5% of operations), and
    # the timeout sits 10% above max_duration, so timed-out lookups are slow
    # failures too. With the errors and the unparseable descriptions the agent's
    # success ratio lands near 0.6, under its 0.80 objective.
    limit = THRESHOLDS["vehicle_applications"].max_duration
    return SimulationProfile(
        name="degraded",
        description="the fitment feed is slow and failing: vehicle_applications breaches "
        "its success-rate and duration thresholds; the other agents stay healthy",
        fitment=FitmentProfile(
            latency=Latency(0.4 * limit, 0.8),
            timeout=1.1 * limit,
            error_rate=0.25,
            not_found_rate=0.2,
        ),
        catalog=CatalogProfile(unparseable_rate=0.6),
    )


PROFILES: Mapping[str, SimulationProfile] = {
    "healthy": SimulationProfile(
        name="healthy",
        description="every upstream within its usual latency and error rates",
    ),
    "degraded": _degraded(),
    "outage": SimulationProfile(
        name="outage",
        description="BigCommerce is down (every request answers 503): "
        "bigcommerce_upload fails hard",
        bigcommerce=BigCommerceProfile(latency=Latency(0.05, 0.3), server_error_rate=1.0),
    ),
    "throttled": SimulationProfile(
        name="throttled",
        description="BigCommerce rate-limits 25% of requests; the upload agent waits as "
        "told and retries, so uploads mostly succeed, slowly",
        bigcommerce=BigCommerceProfile(rate_limit_rate=0.25, retry_after=(1.0, 3.0)),
    ),
}


class _Seeded:
    """Per-call random streams, scaled waits."""

    # Call counts are kept per identity so a retry draws anew; the table is
    # capped (oldest identities forgotten) so a demo running for days stays small.
    _MAX_IDENTITIES = 100_000

    def __init__(self, seed: int, time_scale: float, sleep: Sleep) -> None:
        if time_scale < 0:
            raise ValueError(f"time_scale must be >= 0, got {time_scale}")
        self.seed = seed
        self.time_scale = time_scale
        self._sleep = sleep
        self._calls: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def _rng(self, *identity: object) -> random.Random:
        key = "|".join(str(part) for part in identity)
        with self._lock:
            count = self._calls.pop(key, 0)
            self._calls[key] = count + 1
            if len(self._calls) > self._MAX_IDENTITIES:
                self._calls.popitem(last=False)
        return random.Random(f"{self.seed}|{key}|{count}")

    def _wait(self, seconds: float) -> None:
        scaled = seconds * self.time_scale
        if scaled > 0:
            self._sleep(scaled)

    def _answer_time(self, rng: random.Random, latency: Latency, timeout: float, what: str) -> None:
        """Sleep the drawn latency, or the whole timeout and raise."""
        drawn = latency.draw(rng)
        if drawn >= timeout:
            self._wait(timeout)
            raise BackendTimeout(f"{what}: no answer within {timeout:g}s")
        self._wait(drawn)


# Per source: (shortest side range in px, watermark probability, white background probability)
_SOURCE_QUALITY: Mapping[str, tuple[tuple[int, int], float, float]] = {
    "manufacturer": ((1000, 3000), 0.02, 0.85),
    "supplier_feed": ((700, 2000), 0.05, 0.6),
    "google": ((250, 2000), 0.25, 0.3),
    "bing": ((250, 1600), 0.3, 0.3),
    "amazon": ((500, 1500), 0.05, 0.9),
}
_UNKNOWN_SOURCE_QUALITY = ((300, 1500), 0.2, 0.4)


class SimulatedImageSearch(_Seeded):
    """Image search over the named sources (see ``IMAGE_SOURCES``)."""

    def __init__(
        self,
        profile: ImageSearchProfile | None = None,
        *,
        seed: int = 0,
        time_scale: float = 1.0,
        sleep: Sleep = time.sleep,
    ) -> None:
        super().__init__(seed, time_scale, sleep)
        self.profile = profile or ImageSearchProfile()

    def search(self, product: Product, source: str) -> list[ImageCandidate]:
        p = self.profile
        rng = self._rng("search", product.sku, source)
        self._answer_time(rng, p.search, p.timeout, f"image search ({source})")
        if rng.random() < p.error_rate:
            raise UpstreamError(f"image search ({source}) answered 503", 503)
        if rng.random() < p.no_results_rate:
            return []
        count = rng.randint(1, p.max_candidates)
        return [
            ImageCandidate(f"https://images.example.com/{source}/{product.sku}/{i}.jpg", source)
            for i in range(count)
        ]

    def download(self, candidate: ImageCandidate) -> DownloadedImage:
        p = self.profile
        rng = self._rng("download", candidate.url)
        self._answer_time(rng, p.download, p.timeout, f"image download ({candidate.source})")
        if rng.random() < p.error_rate:
            raise UpstreamError(f"image download from {candidate.source} answered 502", 502)
        (low, high), watermark, white = _SOURCE_QUALITY.get(
            candidate.source, _UNKNOWN_SOURCE_QUALITY
        )
        short_side = rng.randint(low, high)
        long_side = int(short_side * rng.choice((1.0, 1.0, 1.25, 1.5, 2.0)))
        width, height = (long_side, short_side) if rng.random() < 0.7 else (short_side, long_side)
        return DownloadedImage(
            candidate=candidate,
            width=width,
            height=height,
            size_bytes=int(width * height * rng.uniform(0.15, 0.45)),
            has_watermark=rng.random() < watermark,
            white_background=rng.random() < white,
        )


_VEHICLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Ford", ("F-150", "Mustang", "Bronco", "Ranger", "Explorer")),
    ("Chevrolet", ("Silverado 1500", "Camaro", "Colorado", "Tahoe")),
    ("Ram", ("1500", "2500")),
    ("Toyota", ("Tacoma", "Tundra", "4Runner", "Supra")),
    ("Jeep", ("Wrangler", "Gladiator", "Grand Cherokee")),
    ("Dodge", ("Challenger", "Charger")),
    ("Subaru", ("WRX", "Outback")),
    ("Honda", ("Civic", "Accord")),
    ("Nissan", ("Frontier", "370Z")),
    ("GMC", ("Sierra 1500", "Canyon")),
)


def _vehicle_records(rng: random.Random, count: int) -> list[FitmentRecord]:
    records = []
    for _ in range(count):
        make, models = rng.choice(_VEHICLES)
        start = rng.randint(2005, 2022)
        records.append(
            FitmentRecord(start, min(start + rng.randint(0, 6), 2025), make, rng.choice(models))
        )
    return records


class SimulatedFitmentSource(_Seeded):
    """The official fitment feed: found, not found, slow, or failing."""

    def __init__(
        self,
        profile: FitmentProfile | None = None,
        *,
        seed: int = 0,
        time_scale: float = 1.0,
        sleep: Sleep = time.sleep,
    ) -> None:
        super().__init__(seed, time_scale, sleep)
        self.profile = profile or FitmentProfile()

    def official_fitment(self, sku: str) -> list[FitmentRecord] | None:
        p = self.profile
        rng = self._rng("fitment", sku)
        self._answer_time(rng, p.latency, p.timeout, "fitment feed")
        if rng.random() < p.error_rate:
            raise UpstreamError("fitment feed answered 500", 500)
        if rng.random() < p.not_found_rate:
            return None
        # The records depend on the SKU only, not on the call: the same product
        # always fits the same vehicles.
        return _vehicle_records(random.Random(f"{self.seed}|vehicles|{sku}"), _record_count(sku))


def _record_count(sku: str) -> int:
    return 1 + zlib.crc32(sku.encode()) % 4


def _resource_id(*parts: object) -> int:
    return 1 + zlib.crc32("|".join(str(p) for p in parts).encode()) % 999_999


class SimulatedBigCommerce(_Seeded):
    """BigCommerce's catalog API: the endpoints the upload agent uses."""

    def __init__(
        self,
        profile: BigCommerceProfile | None = None,
        *,
        seed: int = 0,
        time_scale: float = 1.0,
        sleep: Sleep = time.sleep,
    ) -> None:
        super().__init__(seed, time_scale, sleep)
        self.profile = profile or BigCommerceProfile()

    def request(
        self,
        method: str,
        endpoint: str,
        *,
        path_params: Mapping[str, str | int] | None = None,
        query: Mapping[str, str] | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> ApiResponse:
        p = self.profile
        params = dict(path_params or {})
        body = dict(payload or {})
        subject = body.get("sku") or body.get("name") or body.get("image_url") or body.get("key")
        rng = self._rng(
            "api", method, endpoint, sorted(params.items()), sorted((query or {}).items()), subject
        )
        self._answer_time(rng, p.latency, p.timeout, f"BigCommerce {method} {endpoint}")
        if rng.random() < p.rate_limit_rate:
            delay = rng.uniform(*p.retry_after) * self.time_scale
            return ApiResponse(
                429,
                {
                    "Retry-After": str(max(1, math.ceil(delay))),
                    "X-Rate-Limit-Time-Reset-Ms": str(round(delay * 1000)),
                },
                {"status": 429, "title": "Too many requests"},
            )
        if rng.random() < p.server_error_rate:
            status = rng.choice((500, 503, 503))
            return ApiResponse(status, {}, {"status": status, "title": "Service Unavailable"})
        return self._answer(rng, method.upper(), endpoint, params, query or {}, body)

    def _answer(
        self,
        rng: random.Random,
        method: str,
        endpoint: str,
        params: Mapping[str, str | int],
        query: Mapping[str, str],
        body: Mapping[str, Any],
    ) -> ApiResponse:
        if endpoint == "/v3/catalog/brands" and method == "GET":
            name = query.get("name", "")
            found = rng.random() < self.profile.brand_exists_rate
            data = [{"id": _resource_id("brand", name), "name": name}] if found else []
            return ApiResponse(200, {}, {"data": data})
        if endpoint == "/v3/catalog/brands" and method == "POST":
            return ApiResponse(200, {}, {"data": {"id": _resource_id("brand", body.get("name"))}})
        if endpoint == "/v3/catalog/products" and method == "POST":
            missing = [key for key in ("name", "sku", "type", "weight", "price") if key not in body]
            if missing:
                return ApiResponse(
                    422, {}, {"status": 422, "title": f"missing fields: {', '.join(missing)}"}
                )
            return ApiResponse(200, {}, {"data": {"id": _resource_id("product", body["sku"])}})
        if (
            endpoint
            in (
                "/v3/catalog/products/{product_id}/images",
                "/v3/catalog/products/{product_id}/metafields",
            )
            and method == "POST"
        ):
            if "product_id" not in params:
                return ApiResponse(404, {}, {"status": 404, "title": "product not found"})
            return ApiResponse(200, {}, {"data": {"id": _resource_id(endpoint, params, body)}})
        return ApiResponse(404, {}, {"status": 404, "title": f"no route {method} {endpoint}"})


_UNPARSEABLE = (
    "Universal fit; see the size chart before ordering.",
    "Fits most late-model trucks and SUVs.",
    "OEM replacement part. Check your owner's manual for compatibility.",
    "Direct bolt-on for popular platforms (call us to confirm).",
)
_PARTS = (
    "Cold Air Intake", "Cat-Back Exhaust", "Brake Pad Set", "Coilover Kit", "LED Headlight",
    "Performance Tuner", "Leveling Kit", "Oil Cooler", "Intercooler", "Short Shifter",
)  # fmt: skip
_BRANDS = ("K&N", "Borla", "Brembo", "Bilstein", "Magnaflow", "Mishimoto", "Flowmaster", "AEM")


class SimulatedCatalog:
    """Products for the demo: the same SKU always describes the same product."""

    def __init__(self, profile: CatalogProfile | None = None, *, seed: int = 0) -> None:
        self.profile = profile or CatalogProfile()
        self.seed = seed
        self._draws = random.Random(f"{seed}|catalog-draws")
        self._lock = threading.Lock()

    def product(self, number: int) -> Product:
        """Catalogue entry ``number`` (0 <= number < size)."""
        rng = random.Random(f"{self.seed}|product|{number}")
        part = rng.choice(_PARTS)
        brand = rng.choice(_BRANDS)
        if rng.random() < self.profile.unparseable_rate:
            description = f"{brand} {part}. {rng.choice(_UNPARSEABLE)}"
        else:
            records = _vehicle_records(rng, rng.randint(1, 3))
            fits = "; ".join(
                f"{r.year_start}-{r.year_end} {r.make} {r.model}"
                if r.year_end != r.year_start
                else f"{r.year_start} {r.make} {r.model}"
                for r in records
            )
            description = f"{brand} {part}. Fits {fits}."
        return Product(
            sku=f"DP-{number:05d}",
            name=f"{brand} {part}",
            brand=brand,
            price=round(rng.uniform(19, 1899), 2),
            description=description,
        )

    def draw(self) -> Product:
        """A product drawn at random (seeded), with repeats as a real stream has."""
        with self._lock:
            number = self._draws.randrange(self.profile.size)
        return self.product(number)

    def __iter__(self) -> Iterator[Product]:
        while True:
            yield self.draw()


@dataclass
class Simulation:
    """One profile's simulators, sharing a seed, a time scale and a sleep."""

    profile: SimulationProfile
    images: SimulatedImageSearch
    fitment: SimulatedFitmentSource
    bigcommerce: SimulatedBigCommerce
    catalog: SimulatedCatalog
    time_scale: float

    @classmethod
    def create(
        cls,
        profile: str | SimulationProfile = "healthy",
        *,
        seed: int = 0,
        time_scale: float = 1.0,
        sleep: Sleep = time.sleep,
    ) -> Simulation:
        if isinstance(profile, str):
            try:
                profile = PROFILES[profile]
            except KeyError:
                raise ValueError(
                    f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}"
                ) from None
        return cls(
            profile=profile,
            images=SimulatedImageSearch(
                profile.images, seed=seed, time_scale=time_scale, sleep=sleep
            ),
            fitment=SimulatedFitmentSource(
                profile.fitment, seed=seed, time_scale=time_scale, sleep=sleep
            ),
            bigcommerce=SimulatedBigCommerce(
                profile.bigcommerce, seed=seed, time_scale=time_scale, sleep=sleep
            ),
            catalog=SimulatedCatalog(profile.catalog, seed=seed),
            time_scale=time_scale,
        )
