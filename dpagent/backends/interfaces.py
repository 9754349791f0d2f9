"""What the agents need from the outside world, as small ``typing.Protocol`` s.

The agents never import a concrete backend: the batch runner and the demo hand
them objects that satisfy these protocols. The shipped implementations are the
seeded simulators in :mod:`dpagent.backends.simulators`; a real backend (an image
search API, a fitment database, BigCommerce's REST API) plugs in by implementing
the same methods and raising the same exceptions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = [
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
    "UpstreamError",
]


@dataclass(frozen=True)
class Product:
    """One row of the catalogue (see ``docs/agents.md`` for the CSV columns)."""

    sku: str
    name: str
    brand: str = ""
    price: float | None = None
    description: str = ""


@dataclass(frozen=True)
class ImageCandidate:
    """An image a search returned, before it is downloaded and scored."""

    url: str
    source: str


@dataclass(frozen=True)
class DownloadedImage:
    """What the agent learns from the image itself once downloaded."""

    candidate: ImageCandidate
    width: int
    height: int
    size_bytes: int
    has_watermark: bool = False
    white_background: bool = False


@dataclass(frozen=True)
class FitmentRecord:
    """One vehicle application: the years, make and model a part fits."""

    year_start: int
    year_end: int
    make: str
    model: str


@dataclass(frozen=True)
class ApiResponse:
    """An HTTP response reduced to what the upload agent reads."""

    status_code: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Mapping[str, Any] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        """Case-insensitive header lookup (HTTP header names are)."""
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return None


class BackendError(Exception):
    """A backend failed; the agents count it under the subclass name."""


class BackendTimeout(BackendError):
    """The backend did not answer within its timeout."""


class UpstreamError(BackendError):
    """The backend answered with an error (an HTTP 5xx for HTTP backends)."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


@runtime_checkable
class ImageSearch(Protocol):
    """Finds product images in one named source and downloads them."""

    def search(self, product: Product, source: str) -> list[ImageCandidate]:
        """Candidates for ``product`` from ``source``; may raise BackendError."""
        ...

    def download(self, candidate: ImageCandidate) -> DownloadedImage:
        """Fetch one candidate; may raise BackendError."""
        ...


@runtime_checkable
class FitmentSource(Protocol):
    """Official vehicle-application data (a manufacturer or ACES feed)."""

    def official_fitment(self, sku: str) -> list[FitmentRecord] | None:
        """The official records, or None when the source has none for ``sku``."""
        ...


@runtime_checkable
class BigCommerceAPI(Protocol):
    """BigCommerce's REST API, one request at a time.

    ``endpoint`` is a path template from the upload agent's fixed set (for
    example ``/v3/catalog/products/{product_id}/images``); the implementation
    fills it from ``path_params``. Every HTTP answer, errors and 429s included,
    comes back as an :class:`ApiResponse`; only a timeout or a broken connection
    raises (:class:`BackendTimeout`, :class:`BackendError`).
    """

    def request(
        self,
        method: str,
        endpoint: str,
        *,
        path_params: Mapping[str, str | int] | None = None,
        query: Mapping[str, str] | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> ApiResponse: ...
