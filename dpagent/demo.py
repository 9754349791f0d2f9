"""The demo workload: simulated products flowing through the agents, forever.

``dpagent demo`` runs this behind a /metrics endpoint so a Prometheus (the
docker compose stack, or the tests' real one) has something to scrape. Products
arrive in batches (sizes spread around ``batch_size``) at ``rate`` products per
second on average and run concurrently, up to ``concurrency`` at a time, like a
busy pipeline. Products repeat (the catalogue is finite), so caches get hits.

The profile decides how the simulated upstreams behave (see
:data:`dpagent.backends.simulators.PROFILES`): ``healthy``; ``degraded`` (only
vehicle_applications crosses its thresholds: its success ratio drops near 0.6
and ~13% of its lookups last longer than its max_duration, in real time, so
both of its alerts fire while the other agents stay quiet); ``outage``
(BigCommerce answers 503 to everything); ``throttled`` (BigCommerce answers 429
to 25% of requests).

``time_scale`` shrinks every simulated wait: 0.01 runs a hundred times faster,
for tests. The slow-operation alert needs real durations above max_duration, so
keep 1.0 when you want to see it fire.
"""

from __future__ import annotations

import math
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from .agents import AGENTS
from .backends import Simulation
from .pipeline import Pipeline, ProductResult
from .telemetry import get_main_logger

__all__ = ["DemoSummary", "DemoWorkload"]

_log = get_main_logger()


@dataclass
class DemoSummary:
    profile: str
    batches: int = 0
    products: int = 0  # started
    succeeded: int = 0
    failed: int = 0
    interrupted: int = 0
    shed: int = 0  # not started: the backlog was full
    elapsed: float = 0.0
    agents: dict[str, dict[str, float]] = field(
        default_factory=lambda: {a: {"succeeded": 0, "failed": 0, "seconds": 0.0} for a in AGENTS}
    )

    def add(self, result: ProductResult) -> None:
        if result.interrupted:
            self.interrupted += 1
        elif result.ok:
            self.succeeded += 1
        else:
            self.failed += 1
        for agent, stage in result.stages.items():
            entry = self.agents.setdefault(agent, {"succeeded": 0, "failed": 0, "seconds": 0.0})
            entry["succeeded" if stage.ok else "failed"] += 1
            entry["seconds"] += stage.duration


class DemoWorkload:
    """A continuous, seeded workload on the simulated backends."""

    def __init__(
        self,
        profile: str = "healthy",
        *,
        rate: float = 2.0,
        batch_size: int = 10,
        concurrency: int = 64,
        seed: int = 0,
        time_scale: float = 1.0,
        drain_timeout: float = 10.0,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be a positive number of products per second, got {rate}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.rate = rate
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.drain_timeout = drain_timeout
        self.seed = seed
        # Set by stop(): ends the run at once. Every simulated wait and retry
        # backoff waits on it, so operations in flight end early instead of
        # holding the process for up to a simulated timeout.
        self._halt = threading.Event()
        self._finish = threading.Event()  # stop starting batches, let the rest finish
        self.simulation = Simulation.create(
            profile, seed=seed, time_scale=time_scale, sleep=self._halt.wait
        )
        self.pipeline = Pipeline.simulated(
            self.simulation, registry=registry, sleep=self._halt.wait
        )
        self.summary = DemoSummary(self.simulation.profile.name)
        self._lock = threading.Lock()
        self._in_flight = 0

    def stop(self, *, drain: bool = False) -> None:
        """End the run; with ``drain``, let the products in flight finish first."""
        self._finish.set()
        if not drain:
            self._halt.set()

    def run(self, duration: float | None = None) -> DemoSummary:
        """Run for ``duration`` seconds (None: until :meth:`stop`)."""
        rng = random.Random(f"{self.seed}|demo-batches")
        started = time.monotonic()
        deadline = None if duration is None else started + duration
        # More queued work than this is shed: a workload that outruns its
        # workers should show saturation, not grow memory without bound.
        max_backlog = self.concurrency * 4
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="dpagent-demo")
        try:
            next_batch = started
            while not self._finish.is_set():
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                if now >= next_batch:
                    size = self._batch_size(rng)
                    self._start_batch(pool, size, max_backlog)
                    next_batch += size / self.rate
                wake = next_batch if deadline is None else min(next_batch, deadline)
                self._finish.wait(max(wake - time.monotonic(), 0.0))
            self._drain()
        finally:
            self._halt.set()
            pool.shutdown(wait=True, cancel_futures=True)
            self.summary.elapsed = time.monotonic() - started
        return self.summary

    def _batch_size(self, rng: random.Random) -> int:
        drawn = rng.lognormvariate(math.log(self.batch_size), 0.6)
        return max(1, min(round(drawn), self.batch_size * 5))

    def _start_batch(self, pool: ThreadPoolExecutor, size: int, max_backlog: int) -> None:
        with self._lock:
            if self._in_flight + size > max_backlog:
                self.summary.shed += size
                _log.warning(
                    "demo: %d products in flight, shedding a batch of %d (raise --concurrency "
                    "or lower --rate)", self._in_flight, size,
                )  # fmt: skip
                return
            self._in_flight += size
            self.summary.batches += 1
            self.summary.products += size
        for agent in AGENTS:
            self.pipeline.metrics.batch_started(agent, size)
        for _ in range(size):
            future = pool.submit(self.pipeline.process, self.simulation.catalog.draw(), self._halt)
            future.add_done_callback(self._done)

    def _done(self, future: Future[ProductResult]) -> None:
        with self._lock:
            self._in_flight -= 1
            if not future.cancelled() and future.exception() is None:
                self.summary.add(future.result())

    def _drain(self) -> None:
        if self._halt.is_set():
            return
        deadline = time.monotonic() + self.drain_timeout
        while time.monotonic() < deadline and not self._halt.is_set():
            with self._lock:
                if self._in_flight == 0:
                    return
            self._halt.wait(0.05)
