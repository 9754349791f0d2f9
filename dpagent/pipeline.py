"""The batch runner: products from a CSV file through the three agents.

Each product goes through image sourcing, vehicle applications and BigCommerce
upload, in that order, on a thread pool. A stage that fails does not stop the
product: the upload goes ahead with what the earlier stages found (no images,
no fitment), which is what the old ``main.py`` did.

The CSV format (documented in ``docs/agents.md``): a header row naming the
columns, ``sku`` and ``name`` required, ``brand``, ``price`` and ``description``
optional, other columns ignored. A row that breaks a rule is reported with its
line number and skipped; the rest is processed.

Stopping: :func:`run_batch` takes a ``threading.Event``. Once it is set no new
product starts, and the products in flight finish the stage they are in and
skip the rest, so every recorded operation is a real one.
"""

from __future__ import annotations

import csv
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from .agents import (
    AGENTS,
    FITMENT_AGENT,
    IMAGE_AGENT,
    UPLOAD_AGENT,
    BigCommerceUploadAgent,
    ImageSourcingAgent,
    RetryPolicy,
    VehicleApplicationsAgent,
    get_agent_metrics,
)
from .backends import Product, Simulation
from .telemetry import LogContext, get_main_logger

__all__ = [
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "BatchSummary",
    "CsvProducts",
    "InputError",
    "Pipeline",
    "ProductResult",
    "RowError",
    "StageOutcome",
    "read_products",
    "run_batch",
]

_log = get_main_logger()

REQUIRED_COLUMNS = ("sku", "name")
OPTIONAL_COLUMNS = ("brand", "price", "description")
_SKU = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,63}")
MAX_NAME_LENGTH = 250  # BigCommerce's limit for a product name


class InputError(Exception):
    """The input cannot be used at all: missing, unreadable, empty, bad header."""


@dataclass(frozen=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True)
class CsvProducts:
    products: list[Product]
    errors: list[RowError]


def read_products(path: str | Path) -> CsvProducts:
    """The valid products of a CSV file, and one :class:`RowError` per bad row.

    Raises :class:`InputError` when there is nothing to work with: no such
    file, not readable, not UTF-8, no header, a required column missing, or no
    data row at all. Blank lines are ignored.
    """
    path = Path(path)
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a CSV file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot open: {exc.strerror or exc}") from None
    products: list[Product] = []
    errors: list[RowError] = []
    first_line_of: dict[str, int] = {}
    data_rows = 0
    with handle:
        reader = csv.reader(handle)
        line = 1
        try:
            header = next(reader, None)
            while header is not None and not any(cell.strip() for cell in header):
                header = next(reader, None)  # leading blank lines
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: not UTF-8 text: {exc.reason}") from None
        except csv.Error as exc:
            raise InputError(f"{path}: unreadable header: {exc}") from None
        if header is None:
            raise InputError(
                f"{path}: the file is empty; expected a header row such as "
                f"{','.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)}"
            )
        columns = [cell.strip().lower() for cell in header]
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise InputError(
                f"{path}: the header lacks the required column(s) {', '.join(missing)} "
                f"(found: {', '.join(repr(c) for c in columns)})"
            )
        repeated = sorted({c for c in columns if c and columns.count(c) > 1})
        if repeated:
            raise InputError(f"{path}: column(s) named twice in the header: {', '.join(repeated)}")
        line = reader.line_num
        while True:
            start = line + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"{path}: not UTF-8 text after line {line}: {exc.reason}"
                ) from None
            except csv.Error as exc:
                line = reader.line_num
                data_rows += 1
                errors.append(RowError(start, f"not valid CSV: {exc}"))
                continue
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            data_rows += 1
            product_or_error = _product(row, columns, first_line_of, start)
            if isinstance(product_or_error, str):
                errors.append(RowError(start, product_or_error))
            else:
                first_line_of[product_or_error.sku] = start
                products.append(product_or_error)
    if data_rows == 0:
        raise InputError(f"{path}: no product rows after the header")
    return CsvProducts(products, errors)


def _product(
    row: Sequence[str], columns: Sequence[str], seen: Mapping[str, int], line: int
) -> Product | str:
    """A product, or the reason the row is not one."""
    if len(row) != len(columns):
        return f"expected {len(columns)} fields (as in the header), found {len(row)}"
    cells = {column: value.strip() for column, value in zip(columns, row, strict=True)}
    sku = cells["sku"]
    if not sku:
        return "sku is empty"
    if not _SKU.fullmatch(sku):
        return (
            f"sku {sku[:80]!r} is not 1-64 letters, digits, '.', '_', '-' or '/' "
            "starting with a letter or digit"
        )
    if sku in seen:
        return f"duplicate sku {sku} (first on line {seen[sku]})"
    name = cells["name"]
    if not name:
        return "name is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"name is {len(name)} characters long, the limit is {MAX_NAME_LENGTH}"
    price: float | None = None
    if cells.get("price"):
        try:
            price = float(cells["price"])
        except ValueError:
            return f"price {cells['price'][:40]!r} is not a number"
        if not math.isfinite(price) or price < 0:
            return f"price must be a finite number >= 0, got {cells['price'][:40]}"
    return Product(
        sku=sku,
        name=name,
        brand=cells.get("brand", ""),
        price=price,
        description=cells.get("description", ""),
    )


@dataclass(frozen=True)
class StageOutcome:
    ok: bool
    duration: float
    error: str | None = None


@dataclass(frozen=True)
class ProductResult:
    product: Product
    stages: Mapping[str, StageOutcome]
    interrupted: bool = False  # stopped before its last stage

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(s.ok for s in self.stages.values())

    @property
    def errors(self) -> list[str]:
        return [f"{agent}: {s.error}" for agent, s in self.stages.items() if s.error]


class _Result(Protocol):
    @property
    def ok(self) -> bool: ...

    @property
    def error(self) -> str | None: ...


class Pipeline:
    """The three agents, run in order for one product."""

    def __init__(
        self,
        images: ImageSourcingAgent,
        fitment: VehicleApplicationsAgent,
        upload: BigCommerceUploadAgent,
        *,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.images = images
        self.fitment = fitment
        self.upload = upload
        self.registry = registry
        self.metrics = get_agent_metrics(registry)

    @classmethod
    def simulated(
        cls,
        simulation: Simulation,
        *,
        registry: CollectorRegistry | None = None,
        sleep: Callable[[float], Any] = time.sleep,
        clock: Callable[[], float] = time.perf_counter,
    ) -> Pipeline:
        """The agents wired to ``simulation``'s backends.

        The upload agent's own waits (retry backoff) shrink with the
        simulation's ``time_scale`` like the simulated latencies do; the delay a
        429 announces is already scaled by the simulator.
        """
        scale = simulation.time_scale
        return cls(
            ImageSourcingAgent(simulation.images, registry=registry),
            VehicleApplicationsAgent(simulation.fitment, registry=registry),
            BigCommerceUploadAgent(
                simulation.bigcommerce,
                registry=registry,
                retry=RetryPolicy().scaled(scale),
                sleep=sleep,
                clock=clock,
            ),
            registry=registry,
        )

    def process(self, product: Product, stop: threading.Event | None = None) -> ProductResult:
        """Run the stages for one product; between stages, honour ``stop``."""
        stages: dict[str, StageOutcome] = {}
        if stop is not None and stop.is_set():  # queued before the stop, never started
            return ProductResult(product, stages, interrupted=True)
        with LogContext(_log, sku=product.sku):
            images = self._stage(stages, IMAGE_AGENT, lambda: self.images.process(product))
            if stop is not None and stop.is_set():
                return ProductResult(product, stages, interrupted=True)
            fitment = self._stage(stages, FITMENT_AGENT, lambda: self.fitment.process(product))
            if stop is not None and stop.is_set():
                return ProductResult(product, stages, interrupted=True)
            self._stage(
                stages,
                UPLOAD_AGENT,
                lambda: self.upload.process(
                    product,
                    images.images if images is not None else (),
                    fitment.records if fitment is not None else (),
                ),
            )
        return ProductResult(product, stages)

    def _stage(self, stages: dict[str, StageOutcome], agent: str, run: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            result: _Result | None = run()
            ok, error = (True, None) if result is None else (bool(result.ok), result.error)
        except Exception as exc:  # a bug in a stage must not take the batch down
            _log.exception("%s failed unexpectedly", agent, extra={"agent": agent})
            result, ok, error = None, False, f"{type(exc).__name__}: {exc}"
        stages[agent] = StageOutcome(ok, max(time.perf_counter() - start, 0.0), error)
        self.metrics.batch_item(agent, ok)
        return result


@dataclass
class BatchSummary:
    """What a batch did; ``planned`` products, ``results`` for those that started."""

    planned: int
    results: list[ProductResult] = field(default_factory=list)
    skipped_rows: list[RowError] = field(default_factory=list)
    interrupted: bool = False
    elapsed: float = 0.0
    pushed: bool | None = None  # None: no Pushgateway configured

    @property
    def succeeded(self) -> int:
        return sum(1 for r in self.results if r.ok)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.results if not r.ok and not r.interrupted)

    @property
    def not_finished(self) -> int:
        """Products never started, or stopped between stages."""
        return self.planned - self.succeeded - self.failed

    def agent_counts(self) -> dict[str, dict[str, float]]:
        """Per agent: items succeeded and failed, and their total duration."""
        counts: dict[str, dict[str, float]] = {
            agent: {"succeeded": 0, "failed": 0, "seconds": 0.0} for agent in AGENTS
        }
        for result in self.results:
            for agent, stage in result.stages.items():
                entry = counts.setdefault(agent, {"succeeded": 0, "failed": 0, "seconds": 0.0})
                entry["succeeded" if stage.ok else "failed"] += 1
                entry["seconds"] += stage.duration
        return counts


def run_batch(
    pipeline: Pipeline,
    products: Iterable[Product] | Sequence[Product],
    *,
    workers: int = 4,
    stop: threading.Event | None = None,
    on_result: Callable[[ProductResult], Any] | None = None,
    poll_interval: float = 0.2,
) -> BatchSummary:
    """Process ``products`` on ``workers`` threads until done or ``stop`` is set.

    At most ``2 * workers`` products are queued at a time, so a stop takes
    effect quickly and a huge input is never all in flight. Each agent's
    ``dpagent_batch_size_items`` observes the batch size at the start.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    items = list(products)
    stop = stop if stop is not None else threading.Event()
    summary = BatchSummary(planned=len(items))
    for agent in AGENTS:
        pipeline.metrics.batch_started(agent, len(items))
    started = time.perf_counter()
    queue = iter(items)
    pending: set[Future[ProductResult]] = set()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dpagent-batch") as pool:
        exhausted = False
        while True:
            while not exhausted and not stop.is_set() and len(pending) < 2 * workers:
                product = next(queue, None)
                if product is None:
                    exhausted = True
                    break
                pending.add(pool.submit(pipeline.process, product, stop))
            if not pending:
                break
            done, pending = wait(pending, timeout=poll_interval, return_when=FIRST_COMPLETED)
            for future in done:
                result = future.result()
                summary.results.append(result)
                if on_result is not None:
                    on_result(result)
    summary.elapsed = time.perf_counter() - started
    summary.interrupted = stop.is_set() and summary.not_finished > 0
    return summary
