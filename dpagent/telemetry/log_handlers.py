"""Where lines go: rotating files, per-agent files, and the worker-to-parent queue.

Multiprocess design: one writer. Only the process that called ``configure()``
opens log files. A worker process (forked automatically, or any process given
a :class:`LogQueue` through :func:`dpagent.telemetry.logs.configure_worker_logging`)
stamps each record with its context and trace ids, flattens it to plain data and
sends it through a pipe; a thread in the parent (:class:`LogListener`) hands it
to the parent's dpagent handlers, so it is written, rotated and shipped exactly
like the parent's own records. Two processes never rotate the same file.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import logging.handlers
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Sequence
from multiprocessing.queues import SimpleQueue
from typing import Any

from .log_context import RECORD_ATTRS, STAMPED, StampFilter, stamp
from .log_format import TextFormatter, jsonable, safe_message, safe_str

__all__ = [
    "AgentFileRouter",
    "LogListener",
    "LogQueue",
    "RotatingFile",
    "ToParentHandler",
]


class RotatingFile(logging.handlers.RotatingFileHandler):
    """``RotatingFileHandler`` that formats each record once and tracks the size.

    The stdlib handler formats every record twice (once to decide on rollover)
    and seeks and stats the file on every line; this one keeps the file size in
    memory, which is exact because it is the file's only writer (see the module
    doc). A file is rotated before a line would take it past ``max_bytes``.
    """

    def __init__(
        self,
        filename: str,
        max_bytes: int,
        backups: int,
        formatter: logging.Formatter,
        *,
        level: int = logging.NOTSET,
        delay: bool = False,
    ) -> None:
        self._size = 0
        super().__init__(
            filename,
            maxBytes=max_bytes,
            backupCount=backups,
            encoding="utf-8",
            # A lone surrogate in a message must not cost the line.
            errors="backslashreplace",
            delay=delay,
        )
        self.setFormatter(formatter)
        self.setLevel(level)

    def _open(self) -> Any:
        stream = super()._open()
        self._size = os.fstat(stream.fileno()).st_size
        return stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
            size = len(line) if line.isascii() else len(line.encode("utf-8", "backslashreplace"))
            if self.stream is None:  # delay=True, or closed after a failed rollover
                self.stream = self._open()
            if 0 < self.maxBytes < self._size + size and self._size > 0:
                self.doRollover()
                if self.stream is None:
                    self.stream = self._open()
            self.stream.write(line)
            self.stream.flush()
            self._size += size
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


class AgentFileRouter(logging.Handler):
    """One rotating file per agent, chosen by the record's ``agent`` field.

    Files are opened on their first line. An agent is routed when it was
    registered (the pipeline's three are, at configure time) or when the record
    comes from its agent logger, whose name is code-declared and so bounded;
    an ``agent`` value that arrives with data never creates a file.
    """

    def __init__(
        self,
        directory: str,
        max_bytes: int,
        backups: int,
        formatter: logging.Formatter,
        filename_for: Callable[[str], str],
        agent_logger_prefix: str,
    ) -> None:
        super().__init__()
        self.directory = directory
        self.max_bytes = max_bytes
        self.backups = backups
        self.setFormatter(formatter)
        self._filename_for = filename_for
        self._prefix = agent_logger_prefix
        self._files: dict[str, RotatingFile] = {}

    def add(self, agent: str) -> RotatingFile:
        with self.lock:  # type: ignore[union-attr]
            handler = self._files.get(agent)
            if handler is None:
                path = os.path.join(self.directory, self._filename_for(agent))
                assert self.formatter is not None
                handler = RotatingFile(
                    path, self.max_bytes, self.backups, self.formatter, delay=True
                )
                self._files[agent] = handler
            return handler

    def handle(self, record: logging.LogRecord) -> bool:
        # No router-wide lock: each file handler takes its own, so agents do not
        # wait for each other.
        if not self.filter(record):
            return False
        agent = record.__dict__.get("agent")
        if not isinstance(agent, str):
            return False
        handler = self._files.get(agent)
        if handler is None:
            if record.name != self._prefix + agent:
                return False
            handler = self.add(agent)
        handler.handle(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self.handle(record)

    def file_handlers(self) -> list[RotatingFile]:
        return list(self._files.values())

    def files(self) -> dict[str, str]:
        """Agent label → file path, for the agents routed so far."""
        return {agent: h.baseFilename for agent, h in self._files.items()}

    def close(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            for handler in self._files.values():
                handler.close()
            self._files.clear()
        super().close()


class LogQueue:
    """The pipe from worker processes to the parent's writer, and the levels to
    apply in the worker (records below them are never sent).

    Pass it to a worker at start-up (``initargs``); like any multiprocessing
    queue it cannot be sent to an already running process.
    """

    def __init__(self, queue: SimpleQueue[Any], level: int, completion_level: int) -> None:
        self.queue = queue
        self.level = level
        self.completion_level = completion_level


def new_queue() -> SimpleQueue[Any]:
    # A spawn-context queue works with every start method (a fork-context one
    # cannot be sent to a spawned worker). SimpleQueue writes synchronously, so a
    # worker that exits with os._exit() right after logging loses nothing, and a
    # slow writer slows the workers instead of filling their memory.
    return multiprocessing.get_context("spawn").SimpleQueue()


class ToParentHandler(logging.handlers.QueueHandler):
    """The one handler of a worker process: sends records to the parent."""

    def __init__(self, log_queue: LogQueue) -> None:
        super().__init__(log_queue.queue)  # type: ignore[arg-type]
        self.addFilter(StampFilter())
        self._fallback: logging.Handler | None = None

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # Everything is resolved here, in the worker: the message, the
        # traceback text, the context; values become plain data so pickling
        # cannot fail later.
        stamp(record)
        out = copy.copy(record)
        if isinstance(record.msg, dict):
            out.msg = jsonable(record.msg)
        else:
            out.msg = safe_message(record)
        out.message = out.msg if isinstance(out.msg, str) else ""
        out.args = None
        if record.exc_info:
            exc_type, exc, _ = record.exc_info
            out.exc_text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            if exc_type is not None:
                out.__dict__["exception_type"] = exc_type.__name__
                out.__dict__["exception_message"] = safe_str(exc)
        out.exc_info = None
        attrs = out.__dict__
        for key in list(attrs):
            if key in RECORD_ATTRS:
                continue
            if key.startswith("_"):
                if key != STAMPED:
                    del attrs[key]  # private state of some library, maybe unpicklable
                continue
            attrs[key] = jsonable(attrs[key])
        return out

    def enqueue(self, record: logging.LogRecord) -> None:
        if self._fallback is None:
            try:
                self.queue.put(record)  # type: ignore[attr-defined]
                return
            except (OSError, EOFError, ValueError) as exc:  # the parent is gone
                self._fallback = logging.StreamHandler(sys.stderr)
                self._fallback.setFormatter(TextFormatter())
                sys.stderr.write(
                    f"dpagent: the parent's log writer is gone ({type(exc).__name__}); "
                    f"process {os.getpid()} logs to stderr from now on\n"
                )
        self._fallback.handle(record)


class LogListener:
    """The parent's writer thread: hands each worker record to dpagent's handlers.

    Only dpagent's own outputs, the ones a worker replaced with the queue: the
    application's other handlers stay in the worker (a forked worker inherits
    them) and would otherwise see each record twice. It also keeps this thread
    out of handlers whose locks dpagent does not hold across a fork.
    """

    def __init__(
        self, queue: SimpleQueue[Any], handlers: Callable[[], Sequence[logging.Handler]]
    ) -> None:
        self.queue = queue
        self._handlers = handlers
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="dpagent-log-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                record = self.queue.get()
            except (EOFError, OSError):
                return
            except Exception:  # a record that cannot be unpickled: skip it
                continue
            if record is None:
                return
            for handler in self._handlers():
                if record.levelno >= handler.level:
                    with contextlib.suppress(Exception):  # handlers report their own errors
                        handler.handle(record)

    def stop(self, timeout: float = 30.0) -> None:
        """Write what is queued, then end the thread. Only in the process that
        started it: a forked child must never stop its parent's writer."""
        if os.getpid() != self._pid or not self._thread.is_alive():
            return
        self.queue.put(None)
        self._thread.join(timeout)
