"""The DPerformance agents: the first users of :mod:`dpagent.telemetry`.

Each agent is a class built on an upstream interface from
:mod:`dpagent.backends`; its public ``process`` method runs one product through
the agent's instrumented operations and returns a result (it does not raise
for upstream failures: those are recorded as failed operations).
"""

from .bigcommerce_upload import BigCommerceUploadAgent, RetryPolicy, UploadResult
from .image_sourcing import ImageResult, ImageSourcingAgent, ScoredImage, score_image
from .metrics import (
    AGENTS,
    FITMENT_AGENT,
    IMAGE_AGENT,
    IMAGE_SOURCES,
    UPLOAD_AGENT,
    AgentMetrics,
    get_agent_metrics,
)
from .vehicle_applications import (
    FitmentParseError,
    FitmentResult,
    VehicleApplicationsAgent,
    parse_fitment_text,
)

__all__ = [
    "AGENTS",
    "FITMENT_AGENT",
    "IMAGE_AGENT",
    "IMAGE_SOURCES",
    "UPLOAD_AGENT",
    "AgentMetrics",
    "BigCommerceUploadAgent",
    "FitmentParseError",
    "FitmentResult",
    "ImageResult",
    "ImageSourcingAgent",
    "RetryPolicy",
    "ScoredImage",
    "UploadResult",
    "VehicleApplicationsAgent",
    "get_agent_metrics",
    "parse_fitment_text",
    "score_image",
]
