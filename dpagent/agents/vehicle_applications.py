"""Vehicle applications (fitment): official data first, the description as fallback.

Operations (agent ``vehicle_applications``):

- ``lookup_official_fitment``: one call to the fitment feed (skipped on a cache
  hit); "no data for this SKU" is a successful lookup with no records;
- ``parse_description``: the fallback, parsing ``YEAR[-YEAR] MAKE MODEL``
  entries out of the product description; fails with ``FitmentParseError``;
- ``process_fitment``: the whole stage; fails with ``NoFitmentData`` when
  neither source produced a record.

``dpagent_fitment_records_total{source="official"|"fallback"}`` counts the
records each path produced.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from ..backends.interfaces import BackendError, FitmentRecord, FitmentSource, Product
from ..telemetry import OperationTimer, get_agent_logger, get_metrics
from .cache import LookupCache
from .metrics import FITMENT_AGENT, get_agent_metrics

__all__ = [
    "KNOWN_MAKES",
    "FitmentParseError",
    "FitmentResult",
    "VehicleApplicationsAgent",
    "parse_fitment_text",
]

_log = get_agent_logger(FITMENT_AGENT)

# The makes the fallback parser recognises (canonical spelling). A real
# deployment would load the VCdb list; without a known make, "2000 watts"
# would parse as a vehicle.
KNOWN_MAKES = (
    "Acura", "Audi", "BMW", "Buick", "Cadillac", "Chevrolet", "Chrysler", "Dodge", "Ford",
    "GMC", "Honda", "Hyundai", "Infiniti", "Jeep", "Kia", "Lexus", "Lincoln", "Mazda",
    "Mercedes-Benz", "Mini", "Mitsubishi", "Nissan", "Porsche", "Ram", "Subaru", "Tesla",
    "Toyota", "Volkswagen", "Volvo",
)  # fmt: skip
_MAKES = {make.lower(): make for make in KNOWN_MAKES}
_TOKEN = r"[A-Za-z0-9][A-Za-z0-9-]*"
# A model is up to four tokens, stopping before a conjunction or the next year.
_STOP = r"(?:and|or|with|for|fits)\b|(?:19|20)\d{2}\b"
_ENTRY = re.compile(
    r"(?<![\d-])(?P<start>(?:19|20)\d{2})(?:\s*[-\u2013/]\s*(?P<end>(?:19|20)?\d{2}))?\s+"
    r"(?P<make>" + "|".join(re.escape(m) for m in sorted(KNOWN_MAKES, key=len, reverse=True)) + r")"
    r"\s+(?P<model>" + _TOKEN + r"(?:[ ](?!" + _STOP + r")" + _TOKEN + r"){0,3})",
    re.IGNORECASE,
)
_FIRST_YEAR = 1900


class FitmentParseError(ValueError):
    """The description holds no vehicle application the parser can read."""


def parse_fitment_text(text: str) -> list[FitmentRecord]:
    """Every ``YEAR[-YEAR] MAKE MODEL`` entry in ``text``, in order, deduplicated.

    ``2015-2020 Ford F-150``, ``2016-19 Chevrolet Silverado 1500`` and
    ``2018 Jeep Wrangler`` parse; a year range ending before it starts, or a year
    outside 1900..next year + 1, is rejected. Raises :class:`FitmentParseError`
    when nothing parses.
    """
    if not text or not text.strip():
        raise FitmentParseError("the product has no description to parse")
    last_year = datetime.date.today().year + 2
    records: list[FitmentRecord] = []
    rejected: list[str] = []
    for match in _ENTRY.finditer(text):
        start = int(match["start"])
        end_text = match["end"]
        if end_text is None:
            end = start
        elif len(end_text) == 2:
            end = start // 100 * 100 + int(end_text)
        else:
            end = int(end_text)
        if not _FIRST_YEAR <= start <= end <= last_year:
            rejected.append(match.group(0))
            continue
        record = FitmentRecord(start, end, _MAKES[match["make"].lower()], match["model"])
        if record not in records:
            records.append(record)
    if not records:
        detail = f" (invalid years in: {'; '.join(rejected)})" if rejected else ""
        raise FitmentParseError(
            f"no vehicle application (YEAR[-YEAR] MAKE MODEL) found in the description{detail}"
        )
    return records


@dataclass(frozen=True)
class FitmentResult:
    records: list[FitmentRecord] = field(default_factory=list)
    source: str | None = None  # "official" or "fallback"
    error: str | None = None

    @property
    def ok(self) -> bool:
        return bool(self.records)


class VehicleApplicationsAgent:
    """Finds the vehicles a product fits."""

    operations = ("process_fitment", "lookup_official_fitment", "parse_description")
    name = FITMENT_AGENT

    def __init__(
        self,
        source: FitmentSource,
        *,
        registry: CollectorRegistry | None = None,
        cache_size: int = 4096,
        cache_ttl: float | None = 3600.0,
    ) -> None:
        self.source = source
        self.registry = registry
        self.metrics = get_agent_metrics(registry)
        # Declared now, so their success and failure series exist at 0 before the first call.
        core = get_metrics(registry)
        for operation in self.operations:
            core.bind(self.name, operation)
        # Official answers only (records or "none"): failures are retried next time.
        self.cache: LookupCache[list[FitmentRecord] | None] = LookupCache(
            self.name, "official_fitment", self.metrics, max_entries=cache_size, ttl=cache_ttl
        )

    def process(self, product: Product) -> FitmentResult:
        with OperationTimer(
            self.name, "process_fitment", {"sku": product.sku}, registry=self.registry
        ) as op:
            official, why_not = self._official(product.sku)
            if official:
                self.metrics.fitment_found(self.name, "official", len(official))
                return FitmentResult(official, "official")
            try:
                with OperationTimer(
                    self.name, "parse_description", {"sku": product.sku}, registry=self.registry
                ):
                    parsed = parse_fitment_text(product.description)
            except FitmentParseError as exc:
                message = f"{why_not}, and {exc}"
                op.mark_failure("NoFitmentData", message)
                _log.debug("no fitment for %s: %s", product.sku, message)
                return FitmentResult([], None, f"NoFitmentData: {message}")
            self.metrics.fitment_found(self.name, "fallback", len(parsed))
            return FitmentResult(parsed, "fallback")

    def _official(self, sku: str) -> tuple[list[FitmentRecord] | None, str]:
        """The official records (or None) and, when None, why."""
        hit, cached = self.cache.get(sku)
        if hit:
            return cached, "no official fitment data"
        try:
            with OperationTimer(
                self.name, "lookup_official_fitment", {"sku": sku}, registry=self.registry
            ):
                records = self.source.official_fitment(sku)
        except BackendError as exc:
            _log.debug("official fitment lookup failed for %s: %s", sku, exc)
            return None, f"the official lookup failed ({type(exc).__name__}: {exc})"
        self.cache.put(sku, records)
        return records, "no official fitment data"
