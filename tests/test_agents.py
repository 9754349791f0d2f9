"""The agents and their metrics: contract names, bounded labels, retries, parsing."""

from __future__ import annotations

import contextlib
import email.utils
import time
from collections.abc import Mapping
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from dpagent.agents import (
    IMAGE_SOURCES,
    BigCommerceUploadAgent,
    FitmentParseError,
    ImageSourcingAgent,
    RetryPolicy,
    VehicleApplicationsAgent,
    get_agent_metrics,
    parse_fitment_text,
    score_image,
)
from dpagent.agents.bigcommerce_upload import PRODUCTS, retry_delay
from dpagent.agents.metrics import ENDPOINTS, MAX_SOURCES, MAX_STATUS_CODES
from dpagent.backends import (
    ApiResponse,
    BackendTimeout,
    DownloadedImage,
    FitmentRecord,
    ImageCandidate,
    Product,
    Simulation,
    UpstreamError,
)

PRODUCT = Product("ABC-1", "Cold Air Intake", "K&N", 10.0, "Fits 2015-2020 Ford F-150")

AGENT_FAMILIES = {
    # name as scraped (counters with _total): (type, labels)
    "dpagent_image_quality_score": ("histogram", {"agent", "source"}),
    "dpagent_images_found_total": ("counter", {"agent", "source"}),
    "dpagent_image_source_diversity": ("histogram", {"agent"}),
    "dpagent_fitment_records_total": ("counter", {"agent", "source"}),
    "dpagent_bigcommerce_api_request_duration_seconds": (
        "histogram",
        {"agent", "endpoint", "method"},
    ),
    "dpagent_bigcommerce_api_requests_total": (
        "counter",
        {"agent", "endpoint", "method", "status_code"},
    ),
    "dpagent_bigcommerce_rate_limited_total": ("counter", {"agent", "endpoint"}),
    "dpagent_cache_requests_total": ("counter", {"agent", "cache", "result"}),
    "dpagent_batch_items_processed_total": ("counter", {"agent", "outcome"}),
    "dpagent_batch_size_items": ("histogram", {"agent"}),
}


def samples(registry: CollectorRegistry, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (dict(s.labels), s.value)
        for family in registry.collect()
        for s in family.samples
        if s.name == name
    ]


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


class ScriptedAPI:
    """A BigCommerce stand-in answering from a script, recording each request."""

    def __init__(self, *answers: ApiResponse | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[str, str]] = []

    def request(
        self,
        method: str,
        endpoint: str,
        *,
        path_params: Mapping[str, str | int] | None = None,
        query: Mapping[str, str] | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> ApiResponse:
        self.requests.append((method, endpoint))
        answer = self.answers.pop(0) if self.answers else ApiResponse(200, {}, {"data": {"id": 7}})
        if isinstance(answer, Exception):
            raise answer
        return answer


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


# --- metric families ------------------------------------------------------------------


def test_agent_families_have_the_contract_names_types_and_labels(
    registry: CollectorRegistry,
) -> None:
    get_agent_metrics(registry)
    families = {f.name: f for f in registry.collect()}
    for name, (kind, labels) in AGENT_FAMILIES.items():
        family_name = name.removesuffix("_total") if kind == "counter" else name
        family = families.get(family_name)
        assert family is not None, f"{name} is not registered"
        assert family.type == kind
        series = [s for s in family.samples if s.name in (name, f"{name}_count")]
        assert series, f"{name} has no pre-initialised series"
        for sample in series:
            assert set(sample.labels) == labels, (name, sample.labels)


def test_known_label_combinations_exist_at_zero_from_the_start(
    registry: CollectorRegistry,
) -> None:
    get_agent_metrics(registry)
    for source in IMAGE_SOURCES:
        assert (
            registry.get_sample_value(
                "dpagent_images_found_total", {"agent": "image_sourcing", "source": source}
            )
            == 0
        )
    for source in ("official", "fallback"):
        assert (
            registry.get_sample_value(
                "dpagent_fitment_records_total", {"agent": "vehicle_applications", "source": source}
            )
            == 0
        )
    for endpoint, methods in ENDPOINTS.items():
        assert (
            registry.get_sample_value(
                "dpagent_bigcommerce_rate_limited_total",
                {"agent": "bigcommerce_upload", "endpoint": endpoint},
            )
            == 0
        )
        for method in methods:
            for code in ("200", "429", "500", "503"):
                assert registry.get_sample_value(
                    "dpagent_bigcommerce_api_requests_total",
                    {"agent": "bigcommerce_upload", "endpoint": endpoint, "method": method,
                     "status_code": code},
                ) == 0  # fmt: skip
    for agent in ("image_sourcing", "vehicle_applications", "bigcommerce_upload"):
        for outcome in ("success", "failure"):
            assert value(registry, "dpagent_batch_items_processed_total", agent=agent,
                         outcome=outcome) == 0  # fmt: skip


def test_families_are_built_per_registry_not_at_import() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    assert get_agent_metrics(first) is get_agent_metrics(first)
    assert get_agent_metrics(first) is not get_agent_metrics(second)
    get_agent_metrics(first).image_found("image_sourcing", "google", 3)
    assert value(second, "dpagent_images_found_total", agent="image_sourcing", source="google") == 0


def test_runtime_label_values_are_capped_and_folded(registry: CollectorRegistry) -> None:
    metrics = get_agent_metrics(registry)
    for i in range(MAX_SOURCES * 3):
        metrics.image_found("image_sourcing", f"source-{i}", 1)
    for code in range(100, 100 + MAX_STATUS_CODES * 3):
        metrics.api_request("bigcommerce_upload", PRODUCTS, "POST", code, 0.1)
    metrics.api_request("bigcommerce_upload", PRODUCTS, "BREW", 200, 0.1)
    sources = {labels["source"] for labels, _ in samples(registry, "dpagent_images_found_total")}
    codes = {
        labels["status_code"]
        for labels, _ in samples(registry, "dpagent_bigcommerce_api_requests_total")
    }
    methods = {
        labels["method"]
        for labels, _ in samples(registry, "dpagent_bigcommerce_api_requests_total")
    }
    assert len(sources) <= MAX_SOURCES + 1 and "other" in sources
    assert len(codes) <= MAX_STATUS_CODES + 1 and "other" in codes
    assert methods <= {"GET", "POST", "other"}
    assert value(registry, "dpagent_label_values_folded_total", label="source") > 0
    assert value(registry, "dpagent_label_values_folded_total", label="status_code") > 0


# --- image sourcing -------------------------------------------------------------------


def image(width: int, height: int, **kwargs: Any) -> DownloadedImage:
    return DownloadedImage(ImageCandidate("u", "google"), width, height, width * height, **kwargs)


def test_image_score_prefers_large_square_clean_white_images() -> None:
    best = score_image(image(2000, 2000, white_background=True))
    assert best == 1.0
    assert score_image(image(200, 200)) < 0.5
    assert score_image(image(2000, 2000, white_background=True, has_watermark=True)) < best
    assert score_image(image(2000, 1000, white_background=True)) < best
    assert 0.0 <= score_image(image(1, 5000, has_watermark=True)) <= 1.0


class FixedImages:
    def __init__(self, per_source: Mapping[str, int], fail: set[str] = frozenset()) -> None:
        self.per_source = per_source
        self.fail = fail
        self.searches = 0

    def search(self, product: Product, source: str) -> list[ImageCandidate]:
        self.searches += 1
        if source in self.fail:
            raise UpstreamError(f"{source} down", 503)
        return [
            ImageCandidate(f"{source}/{i}", source) for i in range(self.per_source.get(source, 0))
        ]

    def download(self, candidate: ImageCandidate) -> DownloadedImage:
        return DownloadedImage(candidate, 1600, 1600, 1000, white_background=True)


def test_image_agent_records_found_scores_diversity_and_cache(registry: CollectorRegistry) -> None:
    backend = FixedImages({"manufacturer": 3, "google": 1}, fail={"bing"})
    agent = ImageSourcingAgent(backend, registry=registry, downloads_per_source=2)
    result = agent.process(PRODUCT)
    assert result.ok and result.sources == {"manufacturer", "google"}
    assert len(result.images) == 3  # 2 from manufacturer, 1 from google
    found = "dpagent_images_found_total"
    assert value(registry, found, agent="image_sourcing", source="manufacturer") == 3
    assert value(registry, found, agent="image_sourcing", source="google") == 1
    assert value(registry, "dpagent_image_quality_score_count", agent="image_sourcing",
                 source="manufacturer") == 2  # fmt: skip
    assert value(registry, "dpagent_image_source_diversity_bucket", agent="image_sourcing",
                 le="1.0") == 0  # fmt: skip
    assert value(registry, "dpagent_image_source_diversity_bucket", agent="image_sourcing",
                 le="2.0") == 1  # fmt: skip
    ops = "dpagent_operations_total"
    assert value(registry, ops, agent="image_sourcing", operation="search_images",
                 outcome="failure") == 1  # bing  # fmt: skip
    assert value(registry, ops, agent="image_sourcing", operation="source_images",
                 outcome="success") == 1  # fmt: skip
    searches = backend.searches
    agent.process(PRODUCT)
    assert backend.searches == searches + 1  # only the failed source is asked again
    cache = "dpagent_cache_requests_total"
    assert value(registry, cache, agent="image_sourcing", cache="image_search", result="hit") == 4


def test_no_usable_image_fails_the_stage_without_raising(registry: CollectorRegistry) -> None:
    agent = ImageSourcingAgent(FixedImages({}), registry=registry)
    result = agent.process(PRODUCT)
    assert not result.ok and result.error and "NoImageFound" in result.error
    assert value(registry, "dpagent_operation_errors_total", agent="image_sourcing",
                 operation="source_images", error_type="NoImageFound") == 1  # fmt: skip
    assert value(registry, "dpagent_image_source_diversity_bucket", agent="image_sourcing",
                 le="0.0") == 1  # fmt: skip


# --- vehicle applications -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Fits 2015-2020 Ford F-150", [(2015, 2020, "Ford", "F-150")]),
        ("2016-19 chevrolet Silverado 1500 and 2018 Jeep Wrangler.",
         [(2016, 2019, "Chevrolet", "Silverado 1500"), (2018, 2018, "Jeep", "Wrangler")]),
        ("Intake. Fits 2011-2014 Dodge Challenger R/T; 2011\u20132014 Dodge Charger",
         [(2011, 2014, "Dodge", "Challenger R"), (2011, 2014, "Dodge", "Charger")]),
        ("2012 Mercedes-Benz C300, 2012 Mercedes-Benz C300",
         [(2012, 2012, "Mercedes-Benz", "C300")]),
    ],
)  # fmt: skip
def test_fitment_parser_reads_year_make_model(
    text: str, expected: list[tuple[int, int, str, str]]
) -> None:
    assert parse_fitment_text(text) == [FitmentRecord(*e) for e in expected]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Universal fit; see the size chart.",
        "Fits most late-model trucks",
        "2000 watts of power",  # a year-like number without a known make
        "Fits 2020-2015 Ford F-150",  # range backwards
        "Fits 1850 Ford Model",  # before cars
    ],
)
def test_fitment_parser_rejects_unparseable_text(text: str) -> None:
    with pytest.raises(FitmentParseError):
        parse_fitment_text(text)


class FixedFitment:
    def __init__(self, answer: list[FitmentRecord] | Exception | None) -> None:
        self.answer = answer
        self.calls = 0

    def official_fitment(self, sku: str) -> list[FitmentRecord] | None:
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_official_fitment_is_used_and_cached(registry: CollectorRegistry) -> None:
    source = FixedFitment([FitmentRecord(2015, 2020, "Ford", "F-150")] * 2)
    agent = VehicleApplicationsAgent(source, registry=registry)
    assert agent.process(PRODUCT).source == "official"
    assert agent.process(PRODUCT).source == "official"
    assert source.calls == 1
    records = "dpagent_fitment_records_total"
    assert value(registry, records, agent="vehicle_applications", source="official") == 4
    assert value(registry, records, agent="vehicle_applications", source="fallback") == 0
    cache = "dpagent_cache_requests_total"
    assert value(registry, cache, agent="vehicle_applications", cache="official_fitment",
                 result="hit") == 1  # fmt: skip


def test_fallback_parses_the_description_when_the_feed_fails(registry: CollectorRegistry) -> None:
    agent = VehicleApplicationsAgent(FixedFitment(BackendTimeout("slow")), registry=registry)
    result = agent.process(PRODUCT)
    assert result.source == "fallback" and result.records[0].model == "F-150"
    ops = "dpagent_operations_total"
    assert value(registry, ops, agent="vehicle_applications",
                 operation="lookup_official_fitment", outcome="failure") == 1  # fmt: skip
    assert value(registry, ops, agent="vehicle_applications", operation="process_fitment",
                 outcome="success") == 1  # fmt: skip
    assert value(registry, "dpagent_fitment_records_total", agent="vehicle_applications",
                 source="fallback") == 1  # fmt: skip


def test_no_fitment_anywhere_fails_the_stage(registry: CollectorRegistry) -> None:
    agent = VehicleApplicationsAgent(FixedFitment(None), registry=registry)
    result = agent.process(Product("X-1", "Filter", description="Universal fit"))
    assert not result.ok and result.error and result.error.startswith("NoFitmentData")
    errors = "dpagent_operation_errors_total"
    assert value(registry, errors, agent="vehicle_applications", operation="parse_description",
                 error_type="FitmentParseError") == 1  # fmt: skip
    assert value(registry, errors, agent="vehicle_applications", operation="process_fitment",
                 error_type="NoFitmentData") == 1  # fmt: skip


# --- BigCommerce upload ---------------------------------------------------------------


def rate_limited(**headers: str) -> ApiResponse:
    return ApiResponse(429, headers, {"title": "Too many requests"})


def upload_agent(
    registry: CollectorRegistry, api: ScriptedAPI, sleeps: Sleeps, **retry: Any
) -> BigCommerceUploadAgent:
    return BigCommerceUploadAgent(api, registry=registry, retry=RetryPolicy(**retry), sleep=sleeps)


def test_429_waits_as_told_then_retries_and_is_counted(registry: CollectorRegistry) -> None:
    api = ScriptedAPI(
        rate_limited(**{"Retry-After": "3"}), rate_limited(**{"X-Rate-Limit-Time-Reset-Ms": "1500"})
    )
    sleeps = Sleeps()
    result = upload_agent(registry, api, sleeps).process(Product("S-1", "Part"))
    assert result.ok and result.product_id == 7
    assert sleeps == [3.0, 1.5]
    assert api.requests == [("POST", PRODUCTS)] * 3
    assert value(registry, "dpagent_bigcommerce_rate_limited_total", agent="bigcommerce_upload",
                 endpoint=PRODUCTS) == 2  # fmt: skip
    requests = "dpagent_bigcommerce_api_requests_total"
    common = {"agent": "bigcommerce_upload", "endpoint": PRODUCTS, "method": "POST"}
    assert value(registry, requests, **common, status_code="429") == 2
    assert value(registry, requests, **common, status_code="200") == 1
    assert value(registry, "dpagent_bigcommerce_api_request_duration_seconds_count", **common) == 3


def test_429_until_the_last_attempt_fails_with_rate_limited(registry: CollectorRegistry) -> None:
    api = ScriptedAPI(*[rate_limited(**{"Retry-After": "1"})] * 3)
    sleeps = Sleeps()
    result = upload_agent(registry, api, sleeps, max_attempts=3).process(Product("S-1", "Part"))
    assert not result.ok and result.error and result.error.startswith("RateLimited")
    assert sleeps == [1.0, 1.0]  # no pointless wait after the last attempt
    assert value(registry, "dpagent_operation_errors_total", agent="bigcommerce_upload",
                 operation="upload_product", error_type="RateLimited") == 1  # fmt: skip


def test_an_unreasonable_retry_after_is_not_waited_for(registry: CollectorRegistry) -> None:
    sleeps = Sleeps()
    agent = upload_agent(registry, ScriptedAPI(rate_limited(**{"Retry-After": "3600"})), sleeps)
    assert not agent.process(Product("S-1", "Part")).ok
    assert sleeps == []


def test_retry_delay_reads_every_header_form() -> None:
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert retry_delay(rate_limited(**{"retry-after": "7"}), 1.0) == 7.0
    assert 28 <= retry_delay(rate_limited(**{"Retry-After": date}), 1.0, now=lambda: now) <= 30
    assert retry_delay(rate_limited(**{"X-Rate-Limit-Time-Reset-Ms": "250"}), 1.0) == 0.25
    assert retry_delay(rate_limited(**{"Retry-After": "soon"}), 1.0) == 1.0
    assert retry_delay(rate_limited(), 2.0) == 2.0


def test_5xx_and_timeouts_back_off_exponentially(registry: CollectorRegistry) -> None:
    api = ScriptedAPI(ApiResponse(503), BackendTimeout("slow"), ApiResponse(500))
    sleeps = Sleeps()
    agent = upload_agent(registry, api, sleeps, backoff=0.5)
    assert agent.process(Product("S-1", "Part")).ok
    assert sleeps == [0.5, 1.0, 2.0]
    requests = "dpagent_bigcommerce_api_requests_total"
    common = {"agent": "bigcommerce_upload", "endpoint": PRODUCTS, "method": "POST"}
    assert value(registry, requests, **common, status_code="timeout") == 1
    assert value(registry, requests, **common, status_code="503") == 1


def test_other_4xx_are_not_retried(registry: CollectorRegistry) -> None:
    sleeps = Sleeps()
    api = ScriptedAPI(ApiResponse(422, {}, {"title": "bad"}))
    result = upload_agent(registry, api, sleeps).process(Product("S-1", "Part"))
    assert not result.ok and result.error and "BigCommerceRequestError" in result.error
    assert len(api.requests) == 1 and sleeps == []


def test_upload_uses_endpoint_templates_and_caches_brands(registry: CollectorRegistry) -> None:
    sim = Simulation.create("healthy", seed=1, time_scale=0)
    agent = BigCommerceUploadAgent(sim.bigcommerce, registry=registry, sleep=Sleeps())
    for sku in ("A-1", "A-2", "A-3"):
        agent.process(
            Product(sku, "Part", "Borla"), fitment=[FitmentRecord(2015, 2016, "Ford", "GT")]
        )
    endpoints = {
        labels["endpoint"]
        for labels, v in samples(registry, "dpagent_bigcommerce_api_requests_total")
        if v
    }
    assert endpoints <= set(ENDPOINTS)
    assert "/v3/catalog/products/{product_id}/metafields" in endpoints
    assert value(registry, "dpagent_cache_requests_total", agent="bigcommerce_upload",
                 cache="brand_id", result="hit") == 2  # fmt: skip


# --- simulators -----------------------------------------------------------------------


def outcomes(seed: int, profile: str = "healthy") -> list[tuple[str, Any]]:
    sim = Simulation.create(profile, seed=seed, time_scale=0)
    seen: list[tuple[str, Any]] = []
    for _ in range(40):
        product = sim.catalog.draw()
        for source in IMAGE_SOURCES:
            try:
                seen.append(("search", sim.images.search(product, source)))
            except UpstreamError as exc:
                seen.append(("search", str(exc)))
        try:
            seen.append(("fitment", sim.fitment.official_fitment(product.sku)))
        except (UpstreamError, BackendTimeout) as exc:
            seen.append(("fitment", str(exc)))
        seen.append(("api", sim.bigcommerce.request("POST", PRODUCTS, payload={
            "sku": product.sku, "name": product.name, "type": "physical", "weight": 0,
            "price": 1})))  # fmt: skip
    return seen


def test_simulators_are_deterministic_under_a_seed() -> None:
    assert outcomes(5) == outcomes(5)
    assert outcomes(5) != outcomes(6)


def test_simulated_latency_is_lognormal_and_scaled() -> None:
    sleeps = Sleeps()
    sim = Simulation.create("healthy", seed=3, time_scale=0.5, sleep=sleeps)
    for i in range(400):
        with contextlib.suppress(UpstreamError):  # the 2% 500s took their time too
            sim.fitment.official_fitment(f"S-{i}")
    median = sorted(sleeps)[len(sleeps) // 2]
    expected = sim.profile.fitment.latency.median * 0.5
    assert 0.8 * expected < median < 1.25 * expected
    assert max(sleeps) > 2 * median  # a right tail, not a constant


def test_simulated_429_announces_a_scaled_delay() -> None:
    from dpagent.backends.simulators import BigCommerceProfile, SimulatedBigCommerce

    api = SimulatedBigCommerce(BigCommerceProfile(rate_limit_rate=1.0, retry_after=(2.0, 2.0)),
                               time_scale=0.01, sleep=Sleeps())  # fmt: skip
    response = api.request("GET", "/v3/catalog/brands", query={"name": "x"})
    assert response.status_code == 429
    assert retry_delay(response, 99.0) == pytest.approx(0.02)


def test_agent_operations_exist_at_zero_once_the_agent_is_built(
    registry: CollectorRegistry,
) -> None:
    simulation = Simulation.create("healthy", time_scale=0)
    agents = [
        ImageSourcingAgent(simulation.images, registry=registry),
        VehicleApplicationsAgent(simulation.fitment, registry=registry),
        BigCommerceUploadAgent(simulation.bigcommerce, registry=registry),
    ]
    for agent in agents:
        assert len(agent.operations) == 3
        for operation in agent.operations:
            for outcome in ("success", "failure"):
                assert (
                    registry.get_sample_value(
                        "dpagent_operations_total",
                        {"agent": agent.name, "operation": operation, "outcome": outcome},
                    )
                    == 0
                )
