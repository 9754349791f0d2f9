"""The ``dpagent`` command: ``run``, ``demo``, ``stats`` and ``export``.

Exit codes (also in ``docs/agents.md``):

====  ==================================================================
0     success (``run``: every product went through all three agents)
1     ``run``: finished, but some products failed or rows were skipped;
      ``export``: the output file could not be written
2     usage or input error: bad option, missing/empty/unusable CSV, no
      valid row, a port already in use
3     Prometheus unreachable or it rejected a query (``stats``, ``export``)
130   ``run`` interrupted (Ctrl-C / SIGTERM): products in flight finished,
      metrics pushed, summary printed
====  ==================================================================

Human output: tables on stdout, progress and notes on stderr. ``demo`` prints
nothing on stdout, so its JSON logs (``DPAGENT_LOG_JSON_STDOUT``) stay clean.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import __version__

if TYPE_CHECKING:  # the commands import their modules lazily: --help stays fast
    from collections.abc import Mapping

    from .pipeline import BatchSummary
    from .telemetry import AgentThresholds

__all__ = [
    "EXIT_FAILURES",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "build_parser",
    "main",
]

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130

DEFAULT_DEMO_PORT = 8000
DEFAULT_PUSH_JOB = "dpagent_batch"
PROFILES = ("healthy", "degraded", "outage", "throttled")


class CliError(Exception):
    """One line for stderr, and the exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def _note(text: str) -> None:
    """One line on stderr, never wrapped (rich would wrap at the console width)."""
    print(text, file=sys.stderr, flush=True)


def _stdout() -> Console:
    # Not a terminal (a pipe, a CI log): a fixed width instead of rich's 80, so
    # tables are not wrapped into unreadable columns.
    return Console(width=None if sys.stdout.isatty() else 120, highlight=False)


def _stderr() -> Console:
    return Console(stderr=True, width=None if sys.stderr.isatty() else 120, highlight=False)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535 (0: any free port), got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dpagent",
        description="The DPerformance agent pipeline, instrumented with dpagent.telemetry.",
        epilog="Exit codes: 0 ok, 1 finished with failures, 2 usage or input error, "
        "3 Prometheus unreachable, 130 interrupted. See docs/agents.md.",
    )
    parser.add_argument("--version", action="version", version=f"dpagent {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def metrics_options(sub: argparse.ArgumentParser, default_port: str) -> None:
        sub.add_argument(
            "--metrics-port", type=_port, default=None, metavar="PORT",
            help=f"serve /metrics on PORT (0: any free port); default: "
            f"$DPAGENT_METRICS_PORT, else {default_port}",
        )  # fmt: skip
        sub.add_argument(
            "--metrics-addr", default=None, metavar="ADDR",
            help="address to bind /metrics; default: $DPAGENT_METRICS_ADDR, else 127.0.0.1 "
            "(use 0.0.0.0 in a container)",
        )  # fmt: skip

    def simulation_options(sub: argparse.ArgumentParser, default_profile: str) -> None:
        sub.add_argument(
            "--profile", choices=PROFILES, default=default_profile,
            help=f"how the simulated upstreams behave (default: {default_profile})",
        )  # fmt: skip
        sub.add_argument("--seed", type=int, default=0, help="simulation seed (default: 0)")
        sub.add_argument(
            "--time-scale", type=_non_negative_float, default=1.0, metavar="FACTOR",
            help="multiply every simulated wait by FACTOR (0.01: a hundred times faster; "
            "default: 1, real time)",
        )  # fmt: skip

    run = commands.add_parser(
        "run",
        help="process the products of a CSV file through the three agents",
        description="Read products from a CSV file (columns: sku,name[,brand,price,description])"
        " and run image sourcing, vehicle applications and BigCommerce upload for each, on a"
        " thread pool, against the simulated backends. Serves /metrics while it runs and"
        " pushes the final metrics to the Pushgateway when one is configured. Malformed rows"
        " are reported and skipped. Ctrl-C stops cleanly: products in flight finish their"
        " current stage, metrics are pushed, the summary is printed (exit 130).",
    )
    run.add_argument("--input", "-i", required=True, metavar="CSV", help="the products file")
    run.add_argument(
        "--workers", "-w", type=_positive_int, default=4,
        help="products processed at the same time (default: 4)",
    )  # fmt: skip
    metrics_options(run, "0 (a free port, printed)")
    run.add_argument(
        "--pushgateway", default=None, metavar="URL",
        help="push the final metrics here, e.g. http://127.0.0.1:9091; "
        "default: $DPAGENT_PUSHGATEWAY_URL, else no push",
    )  # fmt: skip
    run.add_argument(
        "--push-job", default=DEFAULT_PUSH_JOB, metavar="NAME",
        help=f"the Pushgateway job name (default: {DEFAULT_PUSH_JOB}); "
        "the grouping key is instance=<host name>",
    )  # fmt: skip
    simulation_options(run, "healthy")
    run.add_argument(
        "--summary-json", default=None, metavar="FILE",
        help="also write the summary as JSON to FILE (for scripts)",
    )  # fmt: skip
    run.add_argument(
        "--no-progress", action="store_true", help="no progress bar even on a terminal"
    )
    run.add_argument(
        "--verbose", "-v", action="store_true",
        help="show every failed operation on the console (they are always in the log files)",
    )  # fmt: skip
    run.set_defaults(handler=_cmd_run)

    demo = commands.add_parser(
        "demo",
        help="run the simulated workload, serving /metrics",
        description="A continuous simulated workload for dashboards and alerts: products arrive"
        " in batches at --rate per second and run concurrently through the three agents."
        " Profiles: healthy; degraded (vehicle_applications breaches its success-rate and"
        " duration thresholds; keep --time-scale 1 for the slow alert); outage (BigCommerce"
        " answers 503); throttled (BigCommerce answers 429 to 25%% of requests)."
        " Runs until --duration or Ctrl-C / SIGTERM (exit 0).",
    )
    simulation_options(demo, "healthy")
    demo.add_argument(
        "--rate", type=_positive_float, default=2.0, metavar="PER_SECOND",
        help="products per second, on average (default: 2)",
    )  # fmt: skip
    demo.add_argument(
        "--duration", type=_positive_float, default=None, metavar="SECONDS",
        help="stop after SECONDS (default: run until interrupted)",
    )  # fmt: skip
    demo.add_argument(
        "--batch-size", type=_positive_int, default=10,
        help="typical products per batch (default: 10)",
    )  # fmt: skip
    demo.add_argument(
        "--concurrency", type=_positive_int, default=64,
        help="products in flight at most (default: 64)",
    )  # fmt: skip
    metrics_options(demo, str(DEFAULT_DEMO_PORT))
    demo.add_argument(
        "--verbose", "-v", action="store_true",
        help="show every failed operation on the console (always in the log files, and on "
        "stdout with DPAGENT_LOG_JSON_STDOUT)",
    )  # fmt: skip
    demo.set_defaults(handler=_cmd_demo)

    def prometheus_options(sub: argparse.ArgumentParser, hours: float) -> None:
        sub.add_argument(
            "--hours", type=_positive_float, default=hours,
            help=f"the window: the last HOURS hours (default: {hours:g})",
        )  # fmt: skip
        sub.add_argument(
            "--prometheus-url", default=None, metavar="URL",
            help="default: $DPAGENT_PROMETHEUS_URL, else http://127.0.0.1:9090",
        )  # fmt: skip
        sub.add_argument(
            "--selector", default="", metavar="MATCHERS",
            help='label matchers added to every query, e.g. \'job="dpagent"\'',
        )  # fmt: skip

    stats = commands.add_parser(
        "stats",
        help="per-agent and per-operation statistics from Prometheus",
        description="Totals, successes, success rate, average and p95 duration per agent and"
        " operation over the last --hours, from Prometheus' HTTP API (exact counts).",
    )
    prometheus_options(stats, 24)
    stats.add_argument("--json", action="store_true", help="print the stats as JSON")
    stats.set_defaults(handler=_cmd_stats)

    export = commands.add_parser(
        "export",
        help="write stats and time series from Prometheus to a JSON file",
        description="Write the stats of the last --hours and range series (operations, success"
        " ratio, p95 and average duration, in progress) to a JSON file; format in"
        " docs/agents.md.",
    )
    prometheus_options(export, 168)
    export.add_argument(
        "--output", "-o", default="exports/metrics.json", metavar="FILE",
        help="where to write (default: exports/metrics.json)",
    )  # fmt: skip
    export.add_argument(
        "--step", type=_positive_int, default=None, metavar="SECONDS",
        help="resolution of the series (default: the window / 720, at least 15 s)",
    )  # fmt: skip
    export.set_defaults(handler=_cmd_export)
    # Listed here for `dpagent --help`; main() hands its arguments to dpagent.stack,
    # which has its own parser (and --help).
    commands.add_parser(
        "stack",
        help="run Prometheus, Alertmanager, the Pushgateway and the demo from local "
        "binaries (no Docker); see `dpagent stack --help`",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] == ["stack"]:
        from . import stack

        return stack.main(arguments[1:])
    parser = build_parser()
    args = parser.parse_args(arguments)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except CliError as exc:
        _note(f"dpagent {args.command}: error: {exc}")
        return exc.code
    except KeyboardInterrupt:
        # Only reachable outside the handled windows (e.g. during start-up).
        _note(f"dpagent {args.command}: interrupted")
        return EXIT_INTERRUPTED


# --- shared ---------------------------------------------------------------------------


def _setup_telemetry(args: argparse.Namespace, default_port: int, **extra: Any) -> str:
    """``configure()`` with the command's metrics server; returns its URL."""
    from .telemetry import configure
    from .telemetry.config import resolve
    from .telemetry.sdk import metrics_server

    try:
        resolved = resolve({"metrics_port": args.metrics_port, "metrics_addr": args.metrics_addr})
        port = resolved["metrics_port"]
        configure(
            metrics_port=default_port if port is None else port,
            metrics_addr=resolved["metrics_addr"],
            **extra,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(str(exc.strerror or exc)) from None
    server = metrics_server()
    return server.url if server is not None else "(not serving)"


@contextmanager
def _on_stop_signals(
    first: Callable[[], None], second: Callable[[], None] | None
) -> Iterator[None]:
    """SIGINT/SIGTERM call ``first`` once, then ``second`` (default handling if None)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    received = 0

    def handle(signum: int, frame: FrameType | None) -> None:
        nonlocal received
        received += 1
        if received == 1:
            first()
        elif second is not None:
            second()
        else:
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class _QuietOperations(logging.Filter):
    """Keeps per-operation records off the console during ``run`` (the files keep them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        return not (name == "dpagent.operations" or name.startswith("dpagent.agent."))


def _quiet_console() -> None:
    from .telemetry.sdk import configured_settings

    settings = configured_settings()
    if settings is not None and settings.log_json_stdout:
        return  # JSON lines on stdout are for a log shipper: keep every record
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler and getattr(handler, "stream", None) in (
            sys.stderr,
            sys.stdout,
        ):
            handler.addFilter(_QuietOperations())


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


# --- run ------------------------------------------------------------------------------


def _cmd_run(args: argparse.Namespace) -> int:
    from .agents import AGENTS
    from .backends import Simulation
    from .pipeline import (
        InputError,
        Pipeline,
        ProductResult,
        read_products,
        run_batch,
    )
    from .telemetry import THRESHOLDS, push_to_gateway
    from .telemetry.config import resolve

    err = _stderr()
    try:
        loaded = read_products(args.input)
    except InputError as exc:
        raise CliError(str(exc)) from None
    for row_error in loaded.errors:
        _note(f"dpagent run: {args.input} {row_error}: skipped")
    if not loaded.products:
        raise CliError(f"{args.input}: no valid product rows ({len(loaded.errors)} skipped)")

    pushgateway = args.pushgateway or resolve({})["pushgateway_url"]
    metrics_url = _setup_telemetry(args, 0)
    if not args.verbose:
        _quiet_console()
    _note(
        f"dpagent run: {len(loaded.products)} products from {args.input}, {args.workers} "
        f"workers, profile {args.profile}; metrics at {metrics_url}"
    )
    simulation = Simulation.create(args.profile, seed=args.seed, time_scale=args.time_scale)
    pipeline = Pipeline.simulated(simulation)
    stop = threading.Event()

    def graceful() -> None:
        stop.set()
        _note(
            "dpagent run: stopping: products in flight finish their current stage "
            "(Ctrl-C again to quit at once)"
        )

    def immediate() -> None:
        _note("dpagent run: quitting at once; no push, no summary")
        os._exit(EXIT_INTERRUPTED)  # worker threads cannot be interrupted otherwise

    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=args.no_progress or not err.is_terminal,
    )
    with _on_stop_signals(graceful, immediate), progress:
        task = progress.add_task("products", total=len(loaded.products))

        def advance(result: ProductResult) -> None:
            progress.advance(task)

        summary = run_batch(
            pipeline, loaded.products, workers=args.workers, stop=stop, on_result=advance
        )
        summary.skipped_rows = list(loaded.errors)
        if pushgateway:
            summary.pushed = push_to_gateway(
                pushgateway, args.push_job, grouping_key={"instance": socket.gethostname()}
            )

    _print_batch_summary(summary, args, pushgateway, AGENTS, THRESHOLDS)
    if args.summary_json:
        _write_summary_json(Path(args.summary_json), summary, pushgateway)
    if summary.interrupted:
        return EXIT_INTERRUPTED
    if summary.failed or summary.skipped_rows:
        return EXIT_FAILURES
    return EXIT_OK


def _print_batch_summary(
    summary: BatchSummary,
    args: argparse.Namespace,
    pushgateway: str | None,
    agents: Sequence[str],
    thresholds: Mapping[str, AgentThresholds],
) -> None:
    out = _stdout()
    title = f"Batch summary: {summary.planned} products, {summary.elapsed:.1f}s"
    if summary.interrupted:
        title += " (interrupted)"
    table = Table(title=title, title_justify="left")
    table.add_column("agent")
    for name in ("items", "succeeded", "failed", "success rate", "objective", "avg s"):
        table.add_column(name, justify="right")
    counts = summary.agent_counts()
    for agent in agents:
        entry = counts.get(agent, {"succeeded": 0, "failed": 0, "seconds": 0.0})
        items = int(entry["succeeded"] + entry["failed"])
        rate = entry["succeeded"] / items if items else None
        limits = thresholds.get(agent)
        objective = f">= {limits.min_success_rate:.0%}" if limits else "-"
        style = "red" if rate is not None and limits and rate < limits.min_success_rate else ""
        table.add_row(
            agent, str(items), str(int(entry["succeeded"])), str(int(entry["failed"])),
            _rate(rate), objective, _seconds(entry["seconds"] / items if items else None),
            style=style,
        )  # fmt: skip
    out.print(table)
    lines = [
        f"products: {summary.succeeded} succeeded, {summary.failed} failed, "
        f"{summary.not_finished} not processed",
    ]
    if summary.skipped_rows:
        lines.append(f"rows skipped (malformed): {len(summary.skipped_rows)}")
    if pushgateway is None:
        lines.append("metrics push: no Pushgateway configured")
    elif summary.pushed:
        lines.append(f"metrics push: pushed to {pushgateway} (job {args.push_job})")
    else:
        lines.append(f"metrics push: FAILED to push to {pushgateway} (see the log)")
    for line in lines:
        out.print(line, markup=False)


def _write_summary_json(path: Path, summary: BatchSummary, pushgateway: str | None) -> None:
    document = {
        "planned": summary.planned,
        "succeeded": summary.succeeded,
        "failed": summary.failed,
        "not_processed": summary.not_finished,
        "interrupted": summary.interrupted,
        "elapsed_seconds": round(summary.elapsed, 3),
        "skipped_rows": [{"line": e.line, "message": e.message} for e in summary.skipped_rows],
        "agents": {
            agent: {"succeeded": int(c["succeeded"]), "failed": int(c["failed"])}
            for agent, c in summary.agent_counts().items()
        },
        "pushgateway": pushgateway,
        "pushed": summary.pushed,
        "failures": [
            {"sku": r.product.sku, "errors": r.errors} for r in summary.results if r.errors
        ],
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        _note(f"dpagent run: cannot write {path}: {exc.strerror or exc}")


# --- demo -----------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace) -> int:
    from .agents import AGENTS
    from .demo import DemoWorkload

    try:
        workload = DemoWorkload(
            args.profile,
            rate=args.rate,
            batch_size=args.batch_size,
            concurrency=args.concurrency,
            seed=args.seed,
            time_scale=args.time_scale,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    metrics_url = _setup_telemetry(args, DEFAULT_DEMO_PORT)
    if not args.verbose:
        _quiet_console()
    err = _stderr()
    until = f"for {args.duration:g}s" if args.duration else "until Ctrl-C"
    _note(
        f"dpagent demo: profile {args.profile} ({workload.simulation.profile.description}); "
        f"~{args.rate:g} products/s {until}; metrics at {metrics_url}"
    )

    def stop() -> None:
        _note("dpagent demo: stopping")
        workload.stop()

    with _on_stop_signals(stop, None):
        summary = workload.run(args.duration)
    table = Table(
        title=f"Demo ({summary.profile}): {summary.products} products in {summary.batches} "
        f"batches, {summary.elapsed:.1f}s",
        title_justify="left",
    )
    table.add_column("agent")
    for name in ("items", "succeeded", "failed", "success rate"):
        table.add_column(name, justify="right")
    for agent in AGENTS:
        entry = summary.agents[agent]
        items = int(entry["succeeded"] + entry["failed"])
        table.add_row(
            agent, str(items), str(int(entry["succeeded"])), str(int(entry["failed"])),
            _rate(entry["succeeded"] / items if items else None),
        )  # fmt: skip
    err.print(table)
    if summary.shed:
        _note(f"shed (backlog full): {summary.shed} products")
    return EXIT_OK


# --- stats and export -----------------------------------------------------------------


def _cmd_stats(args: argparse.Namespace) -> int:
    from .telemetry.monitor import PrometheusError, performance_monitor

    try:
        stats = performance_monitor.get_performance_stats(
            args.hours, prometheus_url=args.prometheus_url, selector=args.selector
        )
    except PrometheusError as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None
    except ValueError as exc:
        raise CliError(str(exc)) from None
    out = _stdout()
    if args.json:
        out.print_json(json.dumps(stats))
        return EXIT_OK
    if not stats["agents"]:
        print(
            f"No dpagent operations in Prometheus at {stats['prometheus_url']} "
            f"in the last {args.hours:g} h."
        )
        return EXIT_OK
    table = Table(
        title=f"dpagent operations, last {args.hours:g} h ({stats['start']} .. {stats['end']})",
        title_justify="left",
    )
    table.add_column("agent / operation")
    for name in ("total", "successes", "success rate", "objective", "avg s", "p95 s", "slow"):
        table.add_column(name, justify="right")
    for agent, entry in stats["agents"].items():
        limits = entry["thresholds"]
        healthy = entry["healthy"]
        style = "bold red" if healthy is False else "bold"
        objective = (
            f">= {limits['min_success_rate']:.0%}, <= {limits['max_duration']:g}s"
            if limits
            else "-"
        )
        table.add_row(
            agent, str(entry["total"]), str(entry["successes"]), _rate(entry["success_rate"]),
            objective, _seconds(entry["avg_duration"]), _seconds(entry["p95_duration"]),
            _rate(entry["slow_ratio"]), style=style,
        )  # fmt: skip
        for operation, op in entry["operations"].items():
            table.add_row(
                f"  {operation}", str(op["total"]), str(op["successes"]),
                _rate(op["success_rate"]), "", _seconds(op["avg_duration"]),
                _seconds(op["p95_duration"]), "",
            )  # fmt: skip
    out.print(table)
    out.print(
        "slow: share of operations longer than the agent's max_duration "
        "(what DPAgentOperationSlow reads)",
        markup=False,
    )
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    from .telemetry.monitor import PrometheusError, performance_monitor

    try:
        document = performance_monitor.export_metrics(
            args.output,
            args.hours,
            prometheus_url=args.prometheus_url,
            selector=args.selector,
            step=args.step,
        )
    except PrometheusError as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None
    except ValueError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(
            f"cannot write {args.output}: {exc.strerror or exc}", EXIT_FAILURES
        ) from None
    series = sum(len(s["series"]) for s in document["series"].values())
    _note(
        f"dpagent export: wrote {args.output} ({len(document['summary']['agents'])} agents, "
        f"{series} series, last {args.hours:g} h)"
    )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
