"""Per-agent performance thresholds: the one place these numbers are written.

``PERFORMANCE_THRESHOLDS`` (the seed's dict shape), the alert rules in
``alerts.rules.yml`` and the dashboards' threshold lines are all generated from
:data:`THRESHOLDS`; tests fail when any of them drifts from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "PERFORMANCE_THRESHOLDS",
    "THRESHOLDS",
    "AgentThresholds",
]


@dataclass(frozen=True)
class AgentThresholds:
    """What "healthy" means for one agent.

    ``max_duration`` is in seconds and must be one of the duration histogram's
    bucket boundaries, so alerts can read the share of slow operations straight
    from the ``le`` bucket instead of interpolating a quantile.
    """

    max_duration: float
    min_success_rate: float

    def __post_init__(self) -> None:
        if not self.max_duration > 0:
            raise ValueError(f"max_duration must be > 0 seconds, got {self.max_duration!r}")
        if not 0 < self.min_success_rate < 1:
            raise ValueError(
                f"min_success_rate must be a ratio in (0, 1), got {self.min_success_rate!r}"
            )

    @property
    def error_budget(self) -> float:
        """The failure ratio the objective allows (1 - min_success_rate)."""
        return round(1 - self.min_success_rate, 10)

    def as_dict(self) -> dict[str, float]:
        return {"max_duration": self.max_duration, "min_success_rate": self.min_success_rate}


# From the original monitoring guide. Change a number here and regenerate:
# `python -m dpagent.telemetry.rules --write` (alerts) and the dashboards.
THRESHOLDS: Mapping[str, AgentThresholds] = MappingProxyType(
    {
        "image_sourcing": AgentThresholds(max_duration=60, min_success_rate=0.70),
        "vehicle_applications": AgentThresholds(max_duration=30, min_success_rate=0.80),
        "bigcommerce_upload": AgentThresholds(max_duration=45, min_success_rate=0.95),
    }
)

# The seed monitor's shape, kept so code written against it keeps working:
# PERFORMANCE_THRESHOLDS["image_sourcing"]["max_duration"] -> 60
PERFORMANCE_THRESHOLDS: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {agent: MappingProxyType(t.as_dict()) for agent, t in THRESHOLDS.items()}
)
