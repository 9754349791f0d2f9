"""The monitoring stack without Docker: Prometheus, Alertmanager, the Pushgateway and the demo.

``python -m dpagent.stack`` (``dpagent stack``) runs the locally installed binaries (Debian's
``prometheus``, ``prometheus-alertmanager``, ``prometheus-pushgateway``, or the upstream
``alertmanager`` / ``pushgateway``) with the same configuration files as ``docker compose
up``, plus the demo workload, all on 127.0.0.1. It prints the URLs, and stops everything on
Ctrl-C or SIGTERM (exit 0); if one of them dies, it stops the others and exits 1.

Same files: ``deploy/prometheus/prometheus.yml`` and ``alerts.rules.yml`` are copied byte for
byte into the state directory, in the repository's layout, so the config's relative
``rule_files`` and ``file_sd`` paths resolve there; only the ``targets/*.json`` files differ
(loopback addresses instead of compose service names). Alertmanager starts through
``deploy/prometheus/alertmanager-entrypoint.sh`` on ``deploy/prometheus/alertmanager.yml``,
as in compose. Grafana, Loki and Tempo are not part of it: use ``docker compose up`` for
those, or point your own Grafana at the Prometheus URL printed.

State (TSDB, Alertmanager silences, pushed metrics, logs) lives in ``.stack/`` under the
current directory unless ``--state-dir`` or ``--temp`` says otherwise; keeping it lets the
Trends dashboard compare with earlier runs.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

__all__ = [
    "DEFAULT_PORTS",
    "StackError",
    "StackPaths",
    "find_repo_files",
    "main",
]

DEFAULT_PORTS: Final[Mapping[str, int]] = {
    "prometheus": 9090,
    "alertmanager": 9093,
    "pushgateway": 9091,
    "demo": 8000,
}
BINARIES: Final[Mapping[str, tuple[str, ...]]] = {
    "prometheus": ("prometheus",),
    "alertmanager": ("prometheus-alertmanager", "alertmanager"),
    "pushgateway": ("prometheus-pushgateway", "pushgateway"),
}
INSTALL_HINT: Final = (
    "install them (Debian/Ubuntu: apt-get install --no-install-recommends prometheus "
    "prometheus-alertmanager prometheus-pushgateway), or use `docker compose up`"
)
READY_TIMEOUT: Final = 60.0
STOP_TIMEOUT: Final = 10.0

# urllib would send loopback requests through http_proxy when one is set.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class StackError(RuntimeError):
    """The stack cannot start (missing binary or file, port taken, a process died)."""


@dataclass(frozen=True)
class StackPaths:
    """The repository files the stack runs on."""

    root: Path
    prometheus_config: Path
    alert_rules: Path
    alertmanager_config: Path
    alertmanager_entrypoint: Path


def find_repo_files(start: Path | None = None) -> StackPaths:
    """The configuration files of the dpagent checkout containing ``start`` (default: the
    current directory, then this package's parent)."""
    candidates = [start] if start is not None else [Path.cwd(), Path(__file__).resolve().parents[1]]
    for base in candidates:
        for root in [base, *base.parents]:
            config = root / "deploy" / "prometheus" / "prometheus.yml"
            if config.is_file() and (root / "alerts.rules.yml").is_file():
                return StackPaths(
                    root=root,
                    prometheus_config=config,
                    alert_rules=root / "alerts.rules.yml",
                    alertmanager_config=root / "deploy" / "prometheus" / "alertmanager.yml",
                    alertmanager_entrypoint=root
                    / "deploy"
                    / "prometheus"
                    / "alertmanager-entrypoint.sh",
                )
    raise StackError(
        "deploy/prometheus/prometheus.yml not found: run this from a dpagent checkout "
        "(or pass --repo)"
    )


def find_binary(service: str) -> str:
    for name in BINARIES[service]:
        found = shutil.which(name) or (
            f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None
        )
        if found:
            return found
    raise StackError(f"{' or '.join(BINARIES[service])} is not installed: {INSTALL_HINT}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _check_port_free(service: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise StackError(
                f"port {port} for {service} is in use ({exc.strerror}); choose another with "
                f"--{service}-port, or 0 for any free port"
            ) from None


def _http_ok(url: str) -> bool:
    try:
        with _OPENER.open(url, timeout=2) as response:
            return bool(200 <= response.status < 300)
    except (OSError, urllib.error.URLError):
        return False


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the stack process dies (Linux), so a killed
    stack leaves no servers behind."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass(eq=False)
class _Service:
    name: str
    args: list[str]
    url: str
    ready_url: str
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                # Its own session: a Ctrl-C in the terminal reaches only the stack, which then
                # stops the services in order.
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )

    @property
    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def wait_ready(self, timeout: float, stopping: threading.Event) -> None:
        deadline = time.monotonic() + timeout
        while not stopping.is_set():
            if self.exited is not None:
                raise StackError(f"{self.name} exited with {self.exited}:\n{self.log_tail()}")
            if _http_ok(self.ready_url):
                return
            if time.monotonic() > deadline:
                raise StackError(
                    f"{self.name} was not ready at {self.ready_url} after {timeout:.0f}s:\n"
                    f"{self.log_tail()}"
                )
            stopping.wait(0.2)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout)
        return process.returncode

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return f"(no log at {self.log_path})"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last lines of {self.log_path} ---\n{tail}"


def _write_targets(targets_dir: Path, targets: Mapping[str, Sequence[str]]) -> None:
    import json

    targets_dir.mkdir(parents=True, exist_ok=True)
    for name, addresses in targets.items():
        path = targets_dir / f"{name}.json"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps([{"targets": list(addresses), "labels": {}}], indent=2) + "\n")
        tmp.replace(path)


@dataclass
class _Plan:
    paths: StackPaths
    state: Path
    ports: dict[str, int]
    profile: str
    rate: float
    time_scale: float
    demo: bool
    extra_targets: list[str]
    webhook_url: str | None
    retention: str

    def services(self) -> list[_Service]:
        """In start order: the demo's and the Pushgateway's targets must answer, and
        Alertmanager must be there, by the time Prometheus starts."""
        state, ports = self.state, self.ports
        url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        services = [
            _Service(
                "pushgateway",
                [
                    find_binary("pushgateway"),
                    f"--web.listen-address=127.0.0.1:{ports['pushgateway']}",
                    f"--persistence.file={state / 'pushgateway.data'}",
                ],
                url["pushgateway"],
                f"{url['pushgateway']}/-/ready",
                state / "pushgateway.log",
            ),
            _Service(
                "alertmanager",
                [
                    "/bin/sh",
                    str(self.paths.alertmanager_entrypoint),
                    f"--storage.path={state / 'alertmanager-data'}",
                    f"--web.listen-address=127.0.0.1:{ports['alertmanager']}",
                    f"--web.external-url={url['alertmanager']}/",
                    "--cluster.listen-address=",
                ],
                url["alertmanager"],
                f"{url['alertmanager']}/-/ready",
                state / "alertmanager.log",
                env={
                    "ALERTMANAGER_BIN": find_binary("alertmanager"),
                    "DPAGENT_ALERTMANAGER_TEMPLATE": str(self.paths.alertmanager_config),
                    "DPAGENT_ALERTMANAGER_CONFIG": str(state / "alertmanager.yml"),
                    "DPAGENT_ALERT_WEBHOOK_URL": self.webhook_url or "",
                },
            ),
        ]
        if self.demo:
            services.append(
                _Service(
                    "demo",
                    [
                        sys.executable,
                        "-m",
                        "dpagent.cli",
                        "demo",
                        "--profile",
                        self.profile,
                        "--rate",
                        repr(self.rate),
                        "--time-scale",
                        repr(self.time_scale),
                        "--metrics-addr",
                        "127.0.0.1",
                        "--metrics-port",
                        str(ports["demo"]),
                    ],
                    f"{url['demo']}/metrics",
                    f"{url['demo']}/metrics",
                    state / "demo.log",
                    env={"DPAGENT_LOG_DIR": str(state / "logs"), "NO_COLOR": "1"},
                )
            )
        config = state / "deploy" / "prometheus" / "prometheus.yml"
        services.append(
            _Service(
                "prometheus",
                [
                    find_binary("prometheus"),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={state / 'prometheus-data'}",
                    f"--storage.tsdb.retention.time={self.retention}",
                    f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
                    f"--web.external-url={url['prometheus']}/",
                    "--web.enable-lifecycle",
                    "--enable-feature=exemplar-storage",
                ],
                url["prometheus"],
                f"{url['prometheus']}/-/ready",
                state / "prometheus.log",
            )
        )
        return services

    def prepare(self) -> None:
        """The state directory in the repository's layout, with the same config files."""
        prom_dir = self.state / "deploy" / "prometheus"
        prom_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.paths.prometheus_config, prom_dir / "prometheus.yml")
        shutil.copyfile(self.paths.alert_rules, self.state / "alerts.rules.yml")
        dpagent = [f"127.0.0.1:{self.ports['demo']}"] if self.demo else []
        _write_targets(
            prom_dir / "targets",
            {
                "dpagent": dpagent + self.extra_targets,
                "pushgateway": [f"127.0.0.1:{self.ports['pushgateway']}"],
                "alertmanager": [f"127.0.0.1:{self.ports['alertmanager']}"],
                "prometheus": [f"127.0.0.1:{self.ports['prometheus']}"],
            },
        )


class _Stop:
    """SIGINT/SIGTERM set ``event`` (a second one is handled by the default handler)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal: int | None = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, _frame: object) -> None:
            self.signal = signum
            self.event.set()
            signal.signal(signum, signal.SIG_DFL)  # a second Ctrl-C is not swallowed

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for signum, old in previous.items():
                signal.signal(signum, old)


def _print_urls(plan: _Plan, out: IO[str]) -> None:
    p = plan.ports
    lines = [
        f"dpagent stack is up (state in {plan.state}):",
        f"  Prometheus    http://127.0.0.1:{p['prometheus']}   alerts: /alerts, targets: /targets",
        f"  Alertmanager  http://127.0.0.1:{p['alertmanager']}",
        f"  Pushgateway   http://127.0.0.1:{p['pushgateway']}",
    ]
    if plan.demo:
        lines.append(
            f"  demo /metrics http://127.0.0.1:{p['demo']}/metrics   profile {plan.profile}"
        )
    for target in plan.extra_targets:
        lines.append(f"  your target   http://{target}/metrics   (job dpagent)")
    lines.append(
        "Grafana, Loki and Tempo are not part of this stack: `docker compose up` runs them, "
        "or add the Prometheus URL as a datasource of your Grafana."
    )
    lines.append("Press Ctrl-C to stop.")
    print("\n".join(lines), file=out, flush=True)


def run(plan: _Plan, out: IO[str] = sys.stdout, duration: float | None = None) -> int:
    """Start the stack, wait for Ctrl-C / SIGTERM / ``duration`` / a dead service, stop it."""
    services = plan.services()  # resolves binaries first: nothing starts if one is missing
    for name, port in plan.ports.items():
        if name != "demo" or plan.demo:
            _check_port_free(name, port)
    plan.prepare()
    stop = _Stop()
    started: list[_Service] = []
    status = 0
    with stop.installed():
        try:
            for service in services:
                service.start()
                started.append(service)
                service.wait_ready(READY_TIMEOUT, stop.event)
            if not stop.event.is_set():
                _print_urls(plan, out)
            deadline = None if duration is None else time.monotonic() + duration
            while not stop.event.is_set():
                dead = [s for s in started if s.exited is not None]
                if dead:
                    raise StackError(
                        f"{dead[0].name} exited with {dead[0].exited}:\n{dead[0].log_tail()}"
                    )
                if deadline is not None and time.monotonic() >= deadline:
                    break
                stop.event.wait(0.5)
        except StackError as exc:
            print(f"dpagent stack: {exc}", file=sys.stderr, flush=True)
            status = 1
        finally:
            if started:
                print("dpagent stack: stopping", file=out, flush=True)
            # The demo first (no new samples), then Prometheus (no new alerts), then the rest.
            for service in sorted(started, key=lambda s: s.name not in {"demo", "prometheus"}):
                code = service.stop()
                if code not in (0, None, -signal.SIGTERM) and status == 0 and not stop.signal:
                    print(f"dpagent stack: {service.name} exited with {code}", file=sys.stderr)
            if started:
                print("dpagent stack: stopped", file=out, flush=True)
    return status


def _port(value: str) -> int:
    port = int(value)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number")
    return port


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="dpagent stack",
        description=(
            "Run Prometheus, Alertmanager and the Pushgateway from the locally installed "
            "binaries with the repository's config files, plus the demo workload, on "
            "127.0.0.1. Prints the URLs; Ctrl-C or SIGTERM stops everything (exit 0)."
        ),
    )
    parser.add_argument(
        "--profile",
        default="healthy",
        choices=("healthy", "degraded", "outage", "throttled"),
        help="demo profile (default: healthy; degraded makes two alerts fire)",
    )
    parser.add_argument("--rate", type=float, default=2.0, help="demo products per second")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="demo simulated-wait factor (default 1: real time, needed for the slow alert)",
    )
    parser.add_argument("--no-demo", action="store_true", help="do not run the demo workload")
    parser.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="also scrape this /metrics endpoint in job dpagent (your instrumented service); "
        "repeatable",
    )
    for name, port in DEFAULT_PORTS.items():
        parser.add_argument(
            f"--{name}-port",
            type=_port,
            default=port,
            metavar="PORT",
            help=f"{name} port on 127.0.0.1 (default {port}; 0: any free port)",
        )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".stack"),
        help="where data, copied configs and logs live (default: ./.stack)",
    )
    where.add_argument(
        "--temp", action="store_true", help="keep state in a temporary directory, removed at exit"
    )
    parser.add_argument(
        "--webhook-url",
        default=os.environ.get("DPAGENT_ALERT_WEBHOOK_URL"),
        help="Alertmanager webhook (default: $DPAGENT_ALERT_WEBHOOK_URL; unset: none)",
    )
    parser.add_argument(
        "--retention", default="15d", help="Prometheus retention time (default 15d)"
    )
    parser.add_argument(
        "--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)"
    )
    parser.add_argument("--repo", type=Path, help="the dpagent checkout (default: found)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        paths = find_repo_files(args.repo)
    except StackError as exc:
        print(f"dpagent stack: {exc}", file=sys.stderr)
        return 2
    ports = {}
    for name in DEFAULT_PORTS:
        port = getattr(args, f"{name}_port")
        ports[name] = _free_port() if port == 0 else port
    with contextlib.ExitStack() as cleanup:
        if args.temp:
            state = Path(
                cleanup.enter_context(tempfile.TemporaryDirectory(prefix="dpagent-stack-"))
            )
        else:
            state = args.state_dir.resolve()
            state.mkdir(parents=True, exist_ok=True)
        plan = _Plan(
            paths=paths,
            state=state,
            ports=ports,
            profile=args.profile,
            rate=args.rate,
            time_scale=args.time_scale,
            demo=not args.no_demo,
            extra_targets=list(args.target),
            webhook_url=args.webhook_url,
            retention=args.retention,
        )
        try:
            return run(plan, duration=args.duration)
        except StackError as exc:
            print(f"dpagent stack: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
