"""The agents' upstreams: interfaces (``typing.Protocol``) and seeded simulators."""

from .interfaces import (
    ApiResponse,
    BackendError,
    BackendTimeout,
    BigCommerceAPI,
    DownloadedImage,
    FitmentRecord,
    FitmentSource,
    ImageCandidate,
    ImageSearch,
    Product,
    UpstreamError,
)
from .simulators import PROFILES, Simulation, SimulationProfile

__all__ = [
    "PROFILES",
    "ApiResponse",
    "BackendError",
    "BackendTimeout",
    "BigCommerceAPI",
    "DownloadedImage",
    "FitmentRecord",
    "FitmentSource",
    "ImageCandidate",
    "ImageSearch",
    "Product",
    "Simulation",
    "SimulationProfile",
    "UpstreamError",
]
