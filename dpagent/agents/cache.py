"""A small thread-safe LRU cache that counts its hits and misses."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from .metrics import AgentMetrics

__all__ = ["LookupCache"]

V = TypeVar("V")


class LookupCache(Generic[V]):
    """LRU with an optional time-to-live; each ``get`` counts a hit or a miss.

    Results in ``dpagent_cache_requests_total{agent, cache, result}``.
    """

    def __init__(
        self,
        agent: str,
        name: str,
        metrics: AgentMetrics,
        *,
        max_entries: int = 1024,
        ttl: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.agent = agent
        self.name = name
        self._metrics = metrics
        self._max = max_entries
        self._ttl = ttl
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> tuple[bool, V | None]:
        """``(True, value)`` on a hit, ``(False, None)`` on a miss."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and self._ttl is not None and self._clock() - entry[0] > self._ttl:
                del self._entries[key]
                entry = None
            if entry is not None:
                self._entries.move_to_end(key)
        self._metrics.cache_lookup(self.agent, self.name, entry is not None)
        return (True, entry[1]) if entry is not None else (False, None)

    def put(self, key: Hashable, value: V) -> None:
        with self._lock:
            self._entries[key] = (self._clock(), value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
