"""JSON logging with trace correlation (minimal core; the full system is issue 3).

``operation_finished`` is called by the instrumentation for every finished
operation while its span is still current: failures at ERROR, completions at a
configurable level (DEBUG by default, so the success path stays cheap).
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = [
    "OPERATIONS_LOGGER",
    "configure_logging",
    "operation_finished",
    "set_completion_level",
]

OPERATIONS_LOGGER = "dpagent.operations"
_log = logging.getLogger(OPERATIONS_LOGGER)
_completion_level = logging.DEBUG
# A library adds no output of its own: records go nowhere until the application
# configures logging (configure() does), instead of Python's last-resort stderr.
_log.addHandler(logging.NullHandler())


def configure_logging(settings: Any) -> None:
    """Install the outputs the settings ask for (the full system comes with issue 3)."""
    set_completion_level(logging.getLevelName(settings.log_operations_level))


def set_completion_level(level: int) -> None:
    global _completion_level
    _completion_level = level


def operation_finished(
    agent: str,
    operation: str,
    outcome: str,
    duration: float,
    error_type: str | None,
    error_message: str | None,
    exc: BaseException | None,
) -> None:
    if outcome == "failure":
        _log.error(
            "%s.%s failed after %.3fs: %s: %s",
            agent, operation, duration, error_type, error_message or "",
            exc_info=exc if isinstance(exc, BaseException) else None,
            extra={
                "agent": agent, "operation": operation, "outcome": outcome,
                "duration_seconds": duration, "error_type": error_type,
            },
        )  # fmt: skip
    elif _log.isEnabledFor(_completion_level):
        _log.log(
            _completion_level,
            "%s.%s succeeded in %.3fs",
            agent, operation, duration,
            extra={
                "agent": agent, "operation": operation, "outcome": outcome,
                "duration_seconds": duration,
            },
        )  # fmt: skip
