"""What one JSON log line costs through dpagent, against raw python-json-logger.

    python bench/bench_logging.py [--lines 2000] [--repeats 9] [--max-bytes 10485760]

Both write one JSON line per call into a rotating file in the same run:

* raw:     ``logging.Logger`` -> stdlib ``RotatingFileHandler`` -> python-json-logger
           ``JsonFormatter`` (timestamp, level, logger, message and the extra fields);
* dpagent: ``get_main_logger()`` -> the ``main_structured.jsonl`` handler exactly as
           ``configure_logging`` installs it (context stamping, redaction, RFC 3339
           timestamps, the same keys plus trace ids when a span is current).

Variants are interleaved, repeat by repeat, and the median microseconds per line are
compared: the goal is dpagent / raw <= 1.2. Also printed, for information: every
file output ``configure()`` opens for one INFO record, a line inside a LogContext
and a sampled span, and a successful operation whose completion record is disabled.
Absolute numbers depend on the machine; the ratio is the result.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

from opentelemetry.sdk.trace import TracerProvider
from pythonjsonlogger.json import JsonFormatter

from dpagent.telemetry import LogContext, get_main_logger, logs
from dpagent.telemetry.config import resolve
from dpagent.telemetry.log_handlers import RotatingFile

GOAL = 1.2
MESSAGE = "uploaded %s in %d ms"
ARGS = ("ABC-1", 42)
EXTRA = {"sku": "ABC-1", "batch": 7}


def raw_logger(path: str, max_bytes: int) -> logging.Logger:
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=max_bytes, backupCount=5, encoding="utf-8"
    )
    handler.setFormatter(
        JsonFormatter(
            ["levelname", "name", "message"],
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp=True,
        )
    )
    logger = logging.getLogger("bench.raw")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return logger


def configure_dpagent(log_dir: str, max_bytes: int) -> dict[str, logging.Handler]:
    logs.configure_logging(
        resolve({"log_dir": log_dir, "log_max_bytes": max_bytes, "log_backups": 5}, environ={})
    )
    root = logging.getLogger()
    outputs: dict[str, logging.Handler] = {}
    for handler in list(root.handlers):
        if isinstance(handler, RotatingFile):
            outputs[os.path.basename(handler.baseFilename)] = handler
        else:
            outputs[type(handler).__name__] = handler
    return outputs


def only(handlers: list[logging.Handler]) -> None:
    root = logging.getLogger()
    root.handlers = list(handlers)


def time_lines(log: Callable[[], None], lines: int) -> float:
    """Microseconds per call."""
    start = time.perf_counter()
    for _ in range(lines):
        log()
    return (time.perf_counter() - start) / lines * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=2000, help="lines per repeat and variant")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--max-bytes", type=int, default=10 * 1024 * 1024)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="dpagent-bench-") as tmp:
        raw = raw_logger(os.path.join(tmp, "raw.jsonl"), args.max_bytes)
        outputs = configure_dpagent(os.path.join(tmp, "logs"), args.max_bytes)
        json_only = [outputs["main_structured.jsonl"]]
        all_files = [h for name, h in outputs.items() if name != "StreamHandler"]  # no console
        log = get_main_logger()
        provider = TracerProvider()  # sampled spans, nothing exported
        tracer = provider.get_tracer("bench")

        def raw_line() -> None:
            raw.info(MESSAGE, *ARGS, extra=EXTRA)

        def dpagent_line() -> None:
            log.info(MESSAGE, *ARGS, extra=EXTRA)

        def dpagent_in_context() -> None:
            with tracer.start_as_current_span("op"), LogContext(log, agent="bench", run=1):
                log.info(MESSAGE, *ARGS, extra=EXTRA)

        def span_and_context_only() -> None:
            with tracer.start_as_current_span("op"), LogContext(log, agent="bench", run=1):
                pass

        def disabled_completion() -> None:
            logs.operation_finished("bench", "op", "success", 0.001, None, None, None)

        variants: list[tuple[str, list[logging.Handler], Callable[[], None]]] = [
            ("raw python-json-logger", [], raw_line),
            ("dpagent JSON line", json_only, dpagent_line),
            ("dpagent, every file output", all_files, dpagent_line),
            ("span + LogContext, no log", json_only, span_and_context_only),
            ("dpagent JSON line in span + LogContext", json_only, dpagent_in_context),
            ("completion record disabled", json_only, disabled_completion),
        ]
        results: dict[str, list[float]] = {name: [] for name, _, _ in variants}
        for _ in range(args.repeats):
            for name, handlers, call in variants:
                only(handlers)
                results[name].append(time_lines(call, args.lines))
        logs.shutdown_logging()
        provider.shutdown()

    medians = {name: statistics.median(values) for name, values in results.items()}
    width = max(len(name) for name in medians)
    print(f"python {sys.version.split()[0]}, {args.lines} lines x {args.repeats} repeats")
    print(f"{'variant':<{width}}  median µs/line")
    for name, value in medians.items():
        print(f"{name:<{width}}  {value:10.2f}")
    ratio = medians["dpagent JSON line"] / medians["raw python-json-logger"]
    in_span = (
        medians["dpagent JSON line in span + LogContext"] - medians["span + LogContext, no log"]
    ) / medians["raw python-json-logger"]
    verdict = "met" if ratio <= GOAL else "MISSED"
    print(f"ratio dpagent / raw: {ratio:.2f}x (goal <= {GOAL}x: {verdict})")
    print(f"ratio in a span + LogContext (their own cost taken out): {in_span:.2f}x")
    return 0 if ratio <= GOAL else 1


if __name__ == "__main__":
    raise SystemExit(main())
