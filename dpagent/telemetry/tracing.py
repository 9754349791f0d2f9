"""Spans through the OpenTelemetry API only; the SDK is the application's choice.

:func:`get_tracer` returns a tracer from the given provider or the global one.
Even the API's no-op tracer costs several microseconds per span, so
:func:`tracing_enabled` lets the hot path skip span work entirely until an SDK
provider is installed (by :func:`dpagent.telemetry.configure` or by the
application itself).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import ProxyTracerProvider, Tracer, TracerProvider
from opentelemetry.util.types import AttributeValue

from .. import __version__
from .redaction import REDACTED, is_secret_key

__all__ = [
    "GLOBAL_TRACING",
    "INSTRUMENTATION_NAME",
    "attribute_value",
    "get_tracer",
    "global_tracing_enabled",
    "metadata_attributes",
    "refresh",
    "tracing_enabled",
]

INSTRUMENTATION_NAME = "dpagent.telemetry"
MAX_ATTRIBUTE_LENGTH = 1024

_NOOP_PROVIDERS: tuple[type, ...] = (ProxyTracerProvider, trace.NoOpTracerProvider)


def tracing_enabled(provider: TracerProvider | None = None) -> bool:
    """True when spans would be recorded somewhere (a non-no-op provider)."""
    if provider is None:
        return global_tracing_enabled()
    return not isinstance(provider, _NOOP_PROVIDERS)


# trace.get_tracer_provider() reads os.environ on every call until a provider is
# set (~1 us, more than a counter increment), so the answer is cached: once a
# real provider is installed it stays (OTel allows setting it only once), and
# until then it is looked up again at most once a second. configure() refreshes
# it at once; an application installing its own provider sees spans start
# within that second.
_RECHECK_SECONDS = 1.0


class _GlobalTracing:
    __slots__ = ("enabled", "next_check")

    def __init__(self) -> None:
        self.enabled = False
        self.next_check = 0.0

    def check(self, now: float) -> bool:
        """Look again (``now`` from time.perf_counter); called while not enabled."""
        self.next_check = now + _RECHECK_SECONDS
        self.enabled = not isinstance(trace.get_tracer_provider(), _NOOP_PROVIDERS)
        return self.enabled


GLOBAL_TRACING = _GlobalTracing()


def global_tracing_enabled() -> bool:
    tracing = GLOBAL_TRACING
    if tracing.enabled:
        return True
    now = time.perf_counter()
    return now >= tracing.next_check and tracing.check(now)


def refresh() -> None:
    """Look at the global tracer provider again on the next call."""
    GLOBAL_TRACING.next_check = 0.0


def get_tracer(provider: TracerProvider | None = None) -> Tracer:
    if provider is None:
        return trace.get_tracer(INSTRUMENTATION_NAME, __version__)
    return provider.get_tracer(INSTRUMENTATION_NAME, __version__)


def attribute_value(value: object) -> AttributeValue:
    """Coerce any value into something a span attribute accepts.

    Metadata comes from user data; a dict or an object would otherwise be
    dropped by the SDK with a warning on every call.
    """
    if isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value[:MAX_ATTRIBUTE_LENGTH]
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        items = list(value)
        for kind in (bool, int, float, str):
            if all(type(item) is kind for item in items):
                return [
                    item[:MAX_ATTRIBUTE_LENGTH] if isinstance(item, str) else item for item in items
                ]
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not break the caller
        text = f"<unrepresentable {type(value).__name__}>"
    return text[:MAX_ATTRIBUTE_LENGTH]


def metadata_attributes(metadata: Mapping[str, Any] | None) -> dict[str, AttributeValue]:
    """``metadata`` as span attributes, keys as given and secrets redacted."""
    if not metadata:
        return {}
    attributes: dict[str, AttributeValue] = {}
    for key, value in metadata.items():
        name = str(key)[:MAX_ATTRIBUTE_LENGTH]
        attributes[name] = REDACTED if is_secret_key(name) else attribute_value(value)
    return attributes
