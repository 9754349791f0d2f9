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
from .logs import (
    SUCCESS,
    DPAgentLogger,
    LogContext,
    LogQueue,
    configure_worker_logging,
    get_agent_logger,
    get_main_logger,
    log_queue,
)
from .metrics import DURATION_BUCKETS, OperationMetrics, get_metrics
from .monitor import performance_monitor
from .sdk import configure
from .thresholds import PERFORMANCE_THRESHOLDS, THRESHOLDS, AgentThresholds

__all__ = [
    "DURATION_BUCKETS",
    "PERFORMANCE_THRESHOLDS",
    "SETTINGS",
    "SUCCESS",
    "THRESHOLDS",
    "AgentThresholds",
    "DPAgentLogger",
    "LogContext",
    "LogQueue",
    "MetricsServer",
    "OperationMetrics",
    "OperationTimer",
    "configure",
    "configure_worker_logging",
    "current_operation",
    "get_agent_logger",
    "get_main_logger",
    "get_metrics",
    "instrument",
    "log_queue",
    "mark_process_dead",
    "performance_monitor",
    "push_to_gateway",
    "record_failure",
    "render",
    "start_metrics_server",
]
