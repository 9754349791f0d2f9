"""Image sourcing: search every source, download the best candidates, score them.

Operations (agent ``image_sourcing``):

- ``search_images``: one search in one source (cached per SKU and source);
- ``download_image``: one candidate downloaded;
- ``source_images``: the whole stage for one product; it fails with
  ``NoImageFound`` when no image reaches ``min_quality``.

A failed search or download is recorded as its own failed operation and the
stage goes on with the other sources: one flaky source must not cost the
product its images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from ..backends.interfaces import (
    BackendError,
    DownloadedImage,
    ImageCandidate,
    ImageSearch,
    Product,
)
from ..telemetry import OperationTimer, get_agent_logger, get_metrics
from .cache import LookupCache
from .metrics import IMAGE_AGENT, IMAGE_SOURCES, get_agent_metrics

__all__ = ["ImageResult", "ImageSourcingAgent", "ScoredImage", "score_image"]

_log = get_agent_logger(IMAGE_AGENT)


@dataclass(frozen=True)
class ScoredImage:
    image: DownloadedImage
    score: float

    @property
    def source(self) -> str:
        return self.image.candidate.source

    @property
    def url(self) -> str:
        return self.image.candidate.url


@dataclass(frozen=True)
class ImageResult:
    images: list[ScoredImage] = field(default_factory=list)
    candidates_found: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return bool(self.images)

    @property
    def sources(self) -> set[str]:
        return {image.source for image in self.images}


def score_image(image: DownloadedImage) -> float:
    """Quality in [0, 1]: resolution first, then shape, background and watermark.

    A product photo should be large (1500 px on the short side scores full
    marks, 300 px none), close to square, on a white background, and clean.
    """
    short_side = min(image.width, image.height)
    long_side = max(image.width, image.height, 1)
    resolution = min(max((short_side - 300) / 1200, 0.0), 1.0)
    squareness = short_side / long_side
    background = 1.0 if image.white_background else 0.4
    score = 0.55 * resolution + 0.25 * squareness + 0.2 * background
    if image.has_watermark:
        score -= 0.3
    return round(min(max(score, 0.0), 1.0), 4)


class ImageSourcingAgent:
    """Finds, downloads and scores product images."""

    operations = ("source_images", "search_images", "download_image")
    name = IMAGE_AGENT

    def __init__(
        self,
        search: ImageSearch,
        *,
        sources: Sequence[str] = IMAGE_SOURCES,
        registry: CollectorRegistry | None = None,
        min_quality: float = 0.5,
        max_images: int = 5,
        downloads_per_source: int = 2,
        cache_size: int = 2048,
        cache_ttl: float | None = 3600.0,
    ) -> None:
        self.search = search
        self.sources = tuple(sources)
        self.registry = registry
        self.min_quality = min_quality
        self.max_images = max_images
        self.downloads_per_source = downloads_per_source
        self.metrics = get_agent_metrics(registry)
        # Declared now, so their success and failure series exist at 0 before the first call.
        core = get_metrics(registry)
        for operation in self.operations:
            core.bind(self.name, operation)
        self.cache: LookupCache[list[ImageCandidate]] = LookupCache(
            self.name, "image_search", self.metrics, max_entries=cache_size, ttl=cache_ttl
        )

    def process(self, product: Product) -> ImageResult:
        with OperationTimer(
            self.name, "source_images", {"sku": product.sku}, registry=self.registry
        ) as op:
            found: list[ImageCandidate] = []
            to_download: list[ImageCandidate] = []
            for source in self.sources:
                candidates = self._search(product, source)
                found.extend(candidates)
                to_download.extend(candidates[: self.downloads_per_source])
            scored: list[ScoredImage] = []
            for candidate in to_download:
                image = self._download(product, candidate)
                if image is None:
                    continue
                score = score_image(image)
                self.metrics.image_scored(self.name, candidate.source, score)
                if score >= self.min_quality:
                    scored.append(ScoredImage(image, score))
            scored.sort(key=lambda s: s.score, reverse=True)
            kept = scored[: self.max_images]
            result = ImageResult(kept, len(found))
            self.metrics.source_diversity_observed(self.name, len(result.sources))
            if not kept:
                message = (
                    f"no image of quality >= {self.min_quality} for {product.sku} "
                    f"({len(found)} candidates)"
                )
                op.mark_failure("NoImageFound", message)
                result = ImageResult([], len(found), f"NoImageFound: {message}")
        return result

    def _search(self, product: Product, source: str) -> list[ImageCandidate]:
        hit, cached = self.cache.get((source, product.sku))
        if hit and cached is not None:
            return cached
        try:
            with OperationTimer(
                self.name, "search_images", {"sku": product.sku, "source": source},
                registry=self.registry,
            ):  # fmt: skip
                candidates = list(self.search.search(product, source))
        except BackendError as exc:
            _log.debug("image search in %s failed for %s: %s", source, product.sku, exc)
            return []
        self.metrics.image_found(self.name, source, len(candidates))
        self.cache.put((source, product.sku), candidates)
        return candidates

    def _download(self, product: Product, candidate: ImageCandidate) -> DownloadedImage | None:
        try:
            with OperationTimer(
                self.name, "download_image", {"sku": product.sku, "source": candidate.source},
                registry=self.registry,
            ):  # fmt: skip
                return self.search.download(candidate)
        except BackendError as exc:
            _log.debug("download of %s failed: %s", candidate.url, exc)
            return None
