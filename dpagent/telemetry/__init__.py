"""dpagent.telemetry: one decorator, three signals that agree.

``instrument`` / ``OperationTimer`` emit an OpenTelemetry span, Prometheus
metrics (``dpagent_*``) and JSON log records carrying the same trace id.
``configure()`` is the application's one set-up call.
"""

from .config import SETTINGS
from .exposition import (
    MetricsServer,
    mark_process_dead,
    push_to_gateway,
    render,
    start_metrics_server,
)
from .instrument import OperationTimer, current_operation, instrument, record_failure
from .metrics import DURATION_BUCKETS, OperationMetrics, get_metrics
from .sdk import configure
from .thresholds import PERFORMANCE_THRESHOLDS, THRESHOLDS, AgentThresholds

__all__ = [
    "DURATION_BUCKETS",
    "PERFORMANCE_THRESHOLDS",
    "SETTINGS",
    "THRESHOLDS",
    "AgentThresholds",
    "MetricsServer",
    "OperationMetrics",
    "OperationTimer",
    "configure",
    "current_operation",
    "get_metrics",
    "instrument",
    "mark_process_dead",
    "push_to_gateway",
    "record_failure",
    "render",
    "start_metrics_server",
]
