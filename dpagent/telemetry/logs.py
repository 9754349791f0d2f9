"""JSON logging with trace correlation, rotation and redaction: the public side.

* :func:`get_main_logger`, :func:`get_agent_logger` and
  :class:`~dpagent.telemetry.log_context.LogContext`; loggers have ``.success()``
  (level :data:`SUCCESS`, 25, between INFO and WARNING).
* :func:`configure_logging` (called once by ``configure()``) installs the outputs
  on the root logger, so the application's own loggers are written too: a
  console (coloured on a TTY unless ``NO_COLOR``) or JSON lines on stdout, and
  under ``log_dir`` ``main.log``, ``main_structured.jsonl``, ``main_errors.log``
  and one file per agent, each rotated at ``log_max_bytes`` keeping
  ``log_backups``. An unwritable directory is one ERROR line, then the console.
* :func:`operation_finished` is called by the instrumentation for every
  finished operation while its span is current: failures at ERROR with the
  exception, completions at a configurable level (DEBUG by default, so the
  success path costs one ``isEnabledFor`` check).
* Worker processes send their records to the parent's writer
  (:mod:`dpagent.telemetry.log_handlers`): automatically for forked workers,
  with :func:`configure_worker_logging` as the pool initializer for spawned ones.

Formats and redaction: :mod:`dpagent.telemetry.log_format`; context fields:
:mod:`dpagent.telemetry.log_context`. The reference is ``docs/logging.md``.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import sys
import threading
from collections.abc import Mapping
from typing import Any, cast

from .log_context import LogContext, StampFilter, current_fields, field_name, stamp
from .log_format import ConsoleFormatter, JsonLineFormatter, TextFormatter
from .log_handlers import (
    AgentFileRouter,
    LogListener,
    LogQueue,
    RotatingFile,
    ToParentHandler,
    new_queue,
)

__all__ = [
    "AGENT_LOG_FILES",
    "OPERATIONS_LOGGER",
    "SUCCESS",
    "DPAgentLogger",
    "LogContext",
    "LogQueue",
    "agent_label",
    "completions_logged",
    "configure_logging",
    "configure_worker_logging",
    "current_fields",
    "get_agent_logger",
    "get_main_logger",
    "log_files",
    "log_queue",
    "operation_finished",
    "set_completion_level",
    "shutdown_logging",
]

SUCCESS = 25
logging.addLevelName(SUCCESS, "SUCCESS")

MAIN_LOGGER = "dpagent.main"
OPERATIONS_LOGGER = "dpagent.operations"
AGENT_LOGGER_PREFIX = "dpagent.agent."

MAIN_LOG = "main.log"
STRUCTURED_LOG = "main_structured.jsonl"
ERRORS_LOG = "main_errors.log"

# The pipeline's agents: contract label -> the seed's file name. Other agents
# get "<label>_agent.log".
AGENT_LOG_FILES: Mapping[str, str] = {
    "image_sourcing": "image_agent.log",
    "vehicle_applications": "vehicle_agent.log",
    "bigcommerce_upload": "bigcommerce_agent.log",
}
# The seed named agents by their file: "image" and "image_agent" mean image_sourcing.
_ALIASES: Mapping[str, str] = {
    alias: label
    for label, file in AGENT_LOG_FILES.items()
    for alias in (file.removesuffix(".log"), file.removesuffix("_agent.log"))
}
_AGENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


class DPAgentLogger(logging.Logger):
    """A :class:`logging.Logger` with ``.success()``, whose records carry the
    agent of an agent logger and never fail on a clashing ``extra=`` key."""

    dpagent_agent: str | None = None

    def success(self, msg: object, *args: object, **kwargs: Any) -> None:
        """Log at SUCCESS (25): an operation completed as intended."""
        if self.isEnabledFor(SUCCESS):
            kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 1
            self._log(SUCCESS, msg, args, **kwargs)

    def makeRecord(
        self,
        name: str,
        level: int,
        fn: str,
        lno: int,
        msg: object,
        args: Any,
        exc_info: Any,
        func: str | None = None,
        extra: Mapping[str, object] | None = None,
        sinfo: str | None = None,
    ) -> logging.LogRecord:
        if extra:
            # stdlib raises KeyError for extra={"name": ...}; keep it as field_name.
            extra = {field_name(key): value for key, value in extra.items()}
        record = super().makeRecord(name, level, fn, lno, msg, args, exc_info, func, extra, sinfo)
        if self.dpagent_agent is not None and "agent" not in record.__dict__:
            record.__dict__["agent"] = self.dpagent_agent
        stamp(record)
        return record


_with_success: dict[type[logging.Logger], type[DPAgentLogger]] = {}


def _dpagent_logger(name: str) -> DPAgentLogger:
    logger = logging.getLogger(name)
    if not isinstance(logger, DPAgentLogger):
        # Our subclass for our names only: setLoggerClass() would change the
        # class of every logger the process creates afterwards. The subclass
        # adds methods, no state, so the instance can simply be re-classed; an
        # application's own logger class (setLoggerClass) is kept as a base.
        base = type(logger)
        cls = _with_success.get(base)
        if cls is None:
            cls = DPAgentLogger
            if base is not logging.Logger:
                cls = type(f"DPAgent{base.__name__}", (DPAgentLogger, base), {})
            _with_success[base] = cls
        logger.__class__ = cls
    return cast(DPAgentLogger, logger)


def get_main_logger() -> DPAgentLogger:
    """The application's logger (``dpagent.main``): written to the main files."""
    return _dpagent_logger(MAIN_LOGGER)


def agent_label(name: str) -> str:
    """The contract's agent label for a label or the seed's short name
    (``image`` and ``image_agent`` -> ``image_sourcing``)."""
    if not isinstance(name, str) or not _AGENT_NAME.fullmatch(name):
        raise ValueError(
            f"dpagent: an agent name is 1-100 letters, digits, '_', '.' or '-', got {name!r}"
        )
    return _ALIASES.get(name, name)


def agent_log_file(label: str) -> str:
    return AGENT_LOG_FILES.get(label) or f"{label}_agent.log"


def get_agent_logger(name: str) -> DPAgentLogger:
    """The logger of one agent: its records carry ``agent=<label>`` and are also
    written to the agent's own file (``image_agent.log`` for ``image_sourcing``).

    ``name`` is the agent label (``image_sourcing``) or the seed's short name
    (``image``); both return the same logger, ``dpagent.agent.<label>``.
    """
    label = agent_label(name)
    logger = _dpagent_logger(AGENT_LOGGER_PREFIX + label)
    logger.dpagent_agent = label
    router = _state.router
    if router is not None:
        router.add(label)
    return logger


# ---------------------------------------------------------------------------
# Operation records (called by instrument.py)

_log = _dpagent_logger(OPERATIONS_LOGGER)
_completion_level = logging.DEBUG
# A library adds no output of its own: records go nowhere until the application
# configures logging (configure() does), instead of Python's last-resort stderr.
_log.addHandler(logging.NullHandler())


def set_completion_level(level: int) -> None:
    """Level of the record written for each successful operation."""
    global _completion_level
    _completion_level = level


def completions_logged() -> bool:
    """Would a successful operation's record be written? (One cached check.)"""
    return _log.isEnabledFor(_completion_level)


def operation_finished(
    agent: str,
    operation: str,
    outcome: str,
    duration: float,
    error_type: str | None,
    error_message: str | None,
    exc: BaseException | None,
) -> None:
    """One record for a finished operation; called while its span is current."""
    if outcome == "failure":
        detail = f"{error_type}: {error_message}" if error_message else str(error_type)
        _log.error(
            "%s.%s failed after %.3fs: %s",
            agent, operation, duration, detail,
            exc_info=exc if isinstance(exc, BaseException) else None,
            extra={
                "agent": agent, "operation": operation, "outcome": outcome,
                "duration_seconds": round(duration, 6), "error_type": error_type,
            },
        )  # fmt: skip
    elif _log.isEnabledFor(_completion_level):
        _log.log(
            _completion_level,
            "%s.%s succeeded in %.3fs",
            agent, operation, duration,
            extra={
                "agent": agent, "operation": operation, "outcome": outcome,
                "duration_seconds": round(duration, 6),
            },
        )  # fmt: skip


# ---------------------------------------------------------------------------
# Outputs


class _State:
    def __init__(self) -> None:
        self.handlers: list[logging.Handler] = []
        self.router: AgentFileRouter | None = None
        self.root_level: int | None = None  # the root level before we set it
        self.queue: LogQueue | None = None  # this process's writer queue
        self.listener: LogListener | None = None
        self.worker_queue: LogQueue | None = None  # set in a worker process


_state = _State()
_lock = threading.RLock()
_internal = logging.getLogger("dpagent.telemetry")
_stamp_filter = StampFilter()


def _level(value: int | str) -> int:
    if isinstance(value, int):
        return value
    level = logging.getLevelName(value.strip().upper())
    if not isinstance(level, int):
        raise ValueError(f"dpagent: unknown log level {value!r}")
    return level


def _colour_wanted(stream: Any) -> bool:
    if os.environ.get("NO_COLOR"):  # https://no-color.org: set and not empty
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except Exception:
        return False


def _console_handler(json_stdout: bool) -> logging.Handler:
    handler: logging.Handler
    if json_stdout:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonLineFormatter())
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(ConsoleFormatter(colour=_colour_wanted(sys.stderr)))
    return handler


def _file_handlers(log_dir: str, max_bytes: int, backups: int) -> list[logging.Handler]:
    """Open the main files (raising OSError if the directory is unusable)."""
    os.makedirs(log_dir, exist_ok=True)
    text = TextFormatter()
    opened: list[logging.Handler] = []
    try:
        for name, formatter, level in (
            (MAIN_LOG, text, logging.NOTSET),
            (STRUCTURED_LOG, JsonLineFormatter(), logging.NOTSET),
            (ERRORS_LOG, text, logging.ERROR),
        ):
            path = os.path.join(log_dir, name)
            opened.append(RotatingFile(path, max_bytes, backups, formatter, level=level))
    except BaseException:
        for handler in opened:
            handler.close()
        raise
    router = AgentFileRouter(log_dir, max_bytes, backups, text, agent_log_file, AGENT_LOGGER_PREFIX)
    for label in {*AGENT_LOG_FILES, *_registered_agents()}:
        router.add(label)
    opened.append(router)
    return opened


def _registered_agents() -> list[str]:
    manager = logging.Logger.manager
    return [
        name.removeprefix(AGENT_LOGGER_PREFIX)
        for name, logger in list(manager.loggerDict.items())
        if name.startswith(AGENT_LOGGER_PREFIX) and isinstance(logger, DPAgentLogger)
    ]


def _install(handlers: list[logging.Handler]) -> None:
    root = logging.getLogger()
    for handler in handlers:
        if _stamp_filter not in handler.filters:
            handler.filters.insert(0, _stamp_filter)
        root.addHandler(handler)
        _state.handlers.append(handler)
        if isinstance(handler, AgentFileRouter):
            _state.router = handler


def _uninstall() -> None:
    root = logging.getLogger()
    for handler in _state.handlers:
        root.removeHandler(handler)
        handler.close()
    _state.handlers = []
    _state.router = None


def configure_logging(settings: Mapping[str, Any]) -> None:
    """Install the outputs ``settings`` ask for (see ``config.SETTINGS``, ``log_*``).

    Safe to call again: the previous dpagent handlers are replaced, never
    duplicated. In a worker process (see :func:`configure_worker_logging`)
    records keep going to the parent, and only the levels are applied.
    """
    level = _level(settings["log_level"])
    with _lock:
        set_completion_level(_level(settings["log_operations_level"]))
        root = logging.getLogger()
        if _state.worker_queue is not None:
            root.setLevel(level)
            return
        _uninstall()
        if _state.root_level is None:
            _state.root_level = root.level
        root.setLevel(level)
        _install([_console_handler(bool(settings["log_json_stdout"]))])
        if not settings["log_files"]:
            return
        log_dir = os.path.abspath(str(settings["log_dir"]))
        try:
            files = _file_handlers(log_dir, settings["log_max_bytes"], settings["log_backups"])
        except OSError as exc:
            # One clear line, and the application goes on: telemetry must not
            # be the reason it cannot start.
            _internal.error(
                "dpagent: cannot write log files in %s (%s: %s); logging to the console only",
                log_dir,
                type(exc).__name__,
                exc.strerror or exc,
            )
            return
        _install(files)


def log_files() -> dict[str, str]:
    """The files being written: ``main``, ``structured``, ``errors`` and each
    routed agent label, to their paths (empty when files are off)."""
    with _lock:
        paths: dict[str, str] = {}
        for handler in _state.handlers:
            if isinstance(handler, RotatingFile):
                name = os.path.basename(handler.baseFilename)
                key = {MAIN_LOG: "main", STRUCTURED_LOG: "structured", ERRORS_LOG: "errors"}
                paths[key.get(name, name)] = handler.baseFilename
        if _state.router is not None:
            paths.update(_state.router.files())
        return paths


def log_queue() -> LogQueue:
    """The queue worker processes log through; starts the parent's writer thread.

    For spawned workers (``spawn``/``forkserver``), pass it at start-up::

        pool = ProcessPoolExecutor(initializer=configure_worker_logging,
                                   initargs=(log_queue(),))

    Forked workers need nothing: dpagent switches them to the queue at fork.
    Call it after ``configure()``; in a worker it returns that worker's queue.
    """
    with _lock:
        if _state.worker_queue is not None:
            return _state.worker_queue
        if _state.queue is None:
            queue = new_queue()
            listener = LogListener(queue, lambda: list(_state.handlers))
            listener.start()
            _state.listener = listener
            _state.queue = LogQueue(
                queue, logging.getLogger().getEffectiveLevel(), _completion_level
            )
        return _state.queue


def configure_worker_logging(queue: LogQueue) -> None:
    """In a worker process: send every record to the parent's writer.

    Use it as a process pool's ``initializer`` with ``initargs=(log_queue(),)``.
    dpagent handlers inherited from the parent are removed (their files belong
    to the parent); a later ``configure()`` in the worker keeps the queue.
    """
    with _lock:
        _uninstall()
        # Only the parent reads. Without our copy of the read end, a worker that
        # outlives the parent gets an error per record instead of blocking for
        # ever on a full pipe.
        reader = getattr(queue.queue, "_reader", None)
        with contextlib.suppress(Exception):
            if reader is not None:
                reader.close()
        root = logging.getLogger()
        _install([ToParentHandler(queue)])
        root.setLevel(queue.level)
        set_completion_level(queue.completion_level)
        _state.worker_queue = queue
        _state.queue = None
        _state.listener = None  # the parent's, if inherited: never ours to stop


def shutdown_logging() -> None:
    """Write what workers queued, close dpagent's handlers, restore the root level."""
    with _lock:
        listener, _state.listener = _state.listener, None
        if listener is not None:
            listener.stop()
        _state.queue = None
        _uninstall()
        _state.worker_queue = None
        if _state.root_level is not None:
            logging.getLogger().setLevel(_state.root_level)
            _state.root_level = None
        set_completion_level(logging.DEBUG)


def _stop_listener() -> None:
    listener = _state.listener
    if listener is not None:
        listener.stop()


def _our_handlers() -> list[logging.Handler]:
    handlers = list(_state.handlers)
    if _state.router is not None:
        handlers.extend(_state.router.file_handlers())
    return handlers


_held_at_fork: list[logging.Handler] = []


def _before_fork() -> None:
    # A forked child must not write the parent's files (two writers corrupt
    # rotation), so make sure a queue to the parent's writer exists first.
    if _state.handlers and _state.worker_queue is None and _state.queue is None:
        try:
            log_queue()
        except Exception:
            _internal.warning("dpagent: cannot start the log writer for workers", exc_info=True)
    # Hold every handler's lock across the fork, so no thread is half-way
    # through a write: the child inherits each file's buffer, and its lock,
    # in a clean state (logging gives the child fresh handler locks).
    for handler in _our_handlers():
        handler.acquire()
        _held_at_fork.append(handler)


def _after_fork_in_parent() -> None:
    while _held_at_fork:
        _held_at_fork.pop().release()


def _after_fork_in_child() -> None:
    global _lock
    _held_at_fork.clear()  # logging re-created these locks in the child
    _lock = threading.RLock()  # another thread may have held it at fork time
    queue = _state.worker_queue or _state.queue
    _state.listener = None
    _state.queue = None
    if _state.handlers and queue is not None:
        configure_worker_logging(queue)


# Registered at import: stopping the writer drains the queue, and atexit runs
# this before logging's own shutdown (registered earlier) closes the files.
atexit.register(_stop_listener)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
