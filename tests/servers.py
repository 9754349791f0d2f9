"""Real Prometheus, Alertmanager and Pushgateway for tests, and a webhook receiver.

Every server runs the Debian binary on a free 127.0.0.1 port with its storage in the
test's ``tmp_path``; it is stopped by PID when the test ends (SIGTERM, then SIGKILL after
a bound), and its log is kept in ``<workdir>/<name>.log`` and quoted in failure messages.
Nothing here uses a fixed port or a shared directory, so tests can run side by side.

The fixtures (imported into ``tests/conftest.py``) are factories, so a test starts exactly
what it needs, configured as it needs::

    def test_something(prometheus_factory, alertmanager_factory, webhook_receiver):
        am = alertmanager_factory(webhook_url=webhook_receiver.url)
        prom = prometheus_factory(
            rule_files=[rules_path],                  # default: the config's own
            targets={"dpagent": ["127.0.0.1:8000"],   # file_sd: targets/<name>.json
                     "alertmanager": [am.address]},
        )
        prom.wait_for(lambda p: p.query('up{job="dpagent"} == 1'), timeout=20)
        firing = prom.wait_for(lambda p: p.alerts(state="firing"), timeout=30)
        note = webhook_receiver.wait_for(lambda n: n.status == "firing", timeout=30)

A missing binary fails the test (never skips it) with the install command; the README's
test command installs the packages.
"""

from __future__ import annotations

import atexit
import copy
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

__all__ = [
    "ALERTMANAGER_CONFIG",
    "ALERT_RULES",
    "FAST_ROUTE_TIMING",
    "INSTALL_HINT",
    "PROMETHEUS_CONFIG",
    "REPO_ROOT",
    "WEBHOOK_PLACEHOLDER",
    "AlertmanagerServer",
    "ManagedProcess",
    "MissingBinaryError",
    "Notification",
    "PrometheusServer",
    "PushgatewayServer",
    "WebhookReceiver",
    "alertmanager_factory",
    "find_binary",
    "free_port",
    "http_json",
    "prometheus_factory",
    "pushgateway",
    "pushgateway_factory",
    "render_alertmanager_config",
    "start_alertmanager",
    "start_on_free_port",
    "start_prometheus",
    "start_pushgateway",
    "wait_until",
    "webhook_receiver",
]

T = TypeVar("T")
_S = TypeVar("_S")

REPO_ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS_CONFIG = REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = REPO_ROOT / "deploy" / "prometheus" / "alertmanager.yml"
ALERT_RULES = REPO_ROOT / "alerts.rules.yml"
# The URL in alertmanager.yml that deploy/prometheus/alertmanager-entrypoint.sh replaces.
WEBHOOK_PLACEHOLDER = "http://dpagent-alert-webhook.invalid/alerts"
# Route timing for end-to-end tests: the production 30 s group_wait and 5 m group_interval
# would make every test wait minutes for a notification or its resolution.
FAST_ROUTE_TIMING: Mapping[str, str] = {
    "group_wait": "1s",
    "group_interval": "1s",
    "repeat_interval": "1h",
}

INSTALL_HINT = (
    "The Prometheus test servers come from Debian packages; the README's test command "
    "installs them where missing, or run: apt-get update && apt-get install -y "
    "--no-install-recommends prometheus prometheus-alertmanager prometheus-pushgateway"
)

STOP_TIMEOUT = 10.0
READY_TIMEOUT = 30.0

# urllib would honour http_proxy for 127.0.0.1 too; these servers are always local.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class MissingBinaryError(RuntimeError):
    """A server binary is not installed."""


def find_binary(name: str) -> str:
    """The path of ``name`` (on PATH or in /usr/bin), or :class:`MissingBinaryError`."""
    found = shutil.which(name) or (
        f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None
    )
    if found is None:
        raise MissingBinaryError(f"`{name}` is not installed. {INSTALL_HINT}")
    return found


def _require(name: str) -> str:
    """:func:`find_binary` for fixtures: a missing binary fails the test, it never skips."""
    try:
        return find_binary(name)
    except MissingBinaryError as exc:
        pytest.fail(str(exc), pytrace=False)


def free_port() -> int:
    """A port the kernel just reported free on 127.0.0.1 (servers retry if it is taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_json(url: str, *, method: str = "GET", body: Any = None, timeout: float = 5.0) -> Any:
    """GET (or ``method``) ``url`` and decode the JSON answer; HTTP errors raise with the body."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:2000]
        raise AssertionError(f"{method} {url} -> HTTP {exc.code}: {detail}") from exc
    return json.loads(raw) if raw else None


def _http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            return bool(200 <= response.status < 300)
    except (OSError, urllib.error.URLError):
        return False


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    *,
    interval: float = 0.2,
    message: str = "condition",
    diagnostics: Callable[[], str] | None = None,
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that.

    Connection errors count as "not yet". On timeout an AssertionError names ``message``,
    the last value or error, and whatever ``diagnostics()`` adds (e.g. a server's log).
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last = value
        except (OSError, urllib.error.URLError, ConnectionError) as exc:
            last = exc
        if time.monotonic() >= deadline:
            extra = f"\n{diagnostics()}" if diagnostics else ""
            raise AssertionError(
                f"timed out after {timeout:.1f}s waiting for {message}; last: {last!r}{extra}"
            )
        time.sleep(interval)


# --- processes ------------------------------------------------------------------------

_LIVE: set[ManagedProcess] = set()
_LIVE_LOCK = threading.Lock()


@dataclass(eq=False)
class ManagedProcess:
    """A server process with its output in ``log_path``; :meth:`stop` ends it by PID."""

    name: str
    args: list[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Same process group as pytest: whatever stops the test run stops these too.
                env=None if self.env is None else {**os.environ, **self.env},
            )
        with _LIVE_LOCK:
            _LIVE.add(self)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was never started"
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL. Returns the exit code."""
        process = self.process
        if process is None:
            return None
        try:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=timeout)
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(self)
        return process.returncode

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        tail = "\n".join(self.log().splitlines()[-lines:])
        process = self.process
        state = "running" if self.alive else f"exited with {process and process.returncode}"
        pid = process and process.pid
        return f"--- {self.name} (pid {pid}, {state}) {self.log_path} ---\n{tail}"


@atexit.register
def _stop_leftovers() -> None:
    # Fixtures stop their servers; this only catches an interpreter that exits mid-test.
    with _LIVE_LOCK:
        leftovers = list(_LIVE)
    for proc in leftovers:
        proc.stop(timeout=3)


def start_on_free_port(
    name: str,
    workdir: Path,
    make_args: Callable[[int], list[str]],
    ready_path: str = "/-/ready",
    env: Mapping[str, str] | None = None,
    attempts: int = 3,
) -> tuple[ManagedProcess, int]:
    """Start ``make_args(port)`` on a free port and wait for ``ready_path`` to answer 2xx;
    retry with another port if it was taken between choosing and binding it."""
    last_error = ""
    for attempt in range(attempts):
        port = free_port()
        proc = ManagedProcess(name, make_args(port), workdir / f"{name}.log", env).start()
        url = f"http://127.0.0.1:{port}{ready_path}"
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline and proc.alive:
            if _http_ok(url):
                return proc, port
            time.sleep(0.1)
        proc.stop()
        last_error = proc.log_tail()
        if "address already in use" not in proc.log():
            break
        if attempt + 1 < attempts:
            proc.log_path.rename(proc.log_path.with_suffix(f".attempt{attempt}.log"))
    raise AssertionError(f"{name} did not become ready on {ready_path}.\n{last_error}")


# --- Prometheus -----------------------------------------------------------------------

TargetSpec = Sequence[str] | Sequence[Mapping[str, Any]]


def _target_groups(spec: TargetSpec) -> list[dict[str, Any]]:
    """``["h:p", ...]`` -> one group without labels; a list of groups is kept as is."""
    items: list[Any] = list(spec)
    if all(isinstance(item, str) for item in items):
        return [{"targets": items, "labels": {}}]
    return [dict(item) for item in items]


@dataclass(eq=False)
class PrometheusServer:
    """A running Prometheus. ``url`` is its base URL (``http://127.0.0.1:PORT``)."""

    url: str
    process: ManagedProcess
    config_path: Path
    targets_dir: Path

    @property
    def address(self) -> str:
        return self.url.removeprefix("http://")

    def api(self, path: str, **params: str) -> Any:
        """``GET /api/v1/<path>``; returns ``data`` (raises on a non-success status)."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        answer = http_json(f"{self.url}/api/v1/{path}{query}")
        if answer.get("status") != "success":
            raise AssertionError(f"Prometheus API {path} {params}: {answer}")
        return answer["data"]

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query; the result vector (``[{"metric": {...}, "value": [t, "v"]}]``)."""
        params = {"query": promql}
        if at is not None:
            params["time"] = repr(at)
        data = self.api("query", **params)
        result = data["result"]
        if data["resultType"] != "vector":
            return [{"metric": {}, "value": result}] if result else []
        return list(result)

    def query_values(self, promql: str) -> dict[frozenset[tuple[str, str]], float]:
        """Instant query as ``{frozenset(labels.items()): value}``."""
        return {frozenset(s["metric"].items()): float(s["value"][1]) for s in self.query(promql)}

    def alerts(self, state: str | None = None, **labels: str) -> list[dict[str, Any]]:
        """``/api/v1/alerts``, optionally only ``state`` (pending/firing) and label matches."""
        return [
            a
            for a in self.api("alerts")["alerts"]
            if (state is None or a["state"] == state)
            and all(a["labels"].get(k) == v for k, v in labels.items())
        ]

    def targets(self, job: str | None = None) -> list[dict[str, Any]]:
        """Active targets (``/api/v1/targets``), optionally of one job."""
        active = self.api("targets", state="active")["activeTargets"]
        return [t for t in active if job is None or t["labels"].get("job") == job]

    def rule_groups(self) -> list[dict[str, Any]]:
        return list(self.api("rules")["groups"])

    def set_targets(self, name: str, spec: TargetSpec) -> Path:
        """(Re)write ``targets/<name>.json``; file_sd picks the change up within seconds."""
        path = self.targets_dir / f"{name}.json"
        _write_json_atomically(path, _target_groups(spec))
        return path

    def wait_for(
        self,
        predicate: Callable[[PrometheusServer], T],
        timeout: float = 30.0,
        interval: float = 0.25,
        message: str = "a Prometheus condition",
    ) -> T:
        """Poll ``predicate(self)`` until truthy and return its value; on timeout fail with
        the last value and Prometheus' log."""
        return wait_until(
            lambda: predicate(self),
            timeout,
            interval=interval,
            message=message,
            diagnostics=self.process.log_tail,
        )

    def stop(self) -> None:
        self.process.stop()


def _write_json_atomically(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def _load_config(
    config: Path | str | Mapping[str, Any] | None, default: Path
) -> tuple[dict[str, Any], Path | None]:
    if config is None:
        config = default
    if isinstance(config, Mapping):
        return copy.deepcopy(dict(config)), None
    path = Path(config)
    return yaml.safe_load(path.read_text()) or {}, path.parent


def start_prometheus(
    workdir: Path,
    config: Path | str | Mapping[str, Any] | None = None,
    *,
    rule_files: Sequence[Path | str] | None = None,
    targets: Mapping[str, TargetSpec] | None = None,
    scrape_interval: str | None = "1s",
    evaluation_interval: str | None = "1s",
    storage_dir: Path | None = None,
    extra_args: Sequence[str] = (),
) -> PrometheusServer:
    """Start Prometheus in ``workdir``; see :func:`prometheus_factory` for the arguments."""
    binary = find_binary("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    cfg, base = _load_config(config, PROMETHEUS_CONFIG)
    glob = cfg.setdefault("global", {})
    if scrape_interval is not None:
        glob["scrape_interval"] = scrape_interval
        glob.pop("scrape_timeout", None)  # defaults to min(10s, interval)
    if evaluation_interval is not None:
        glob["evaluation_interval"] = evaluation_interval
    if rule_files is not None:
        cfg["rule_files"] = [str(Path(p).resolve()) for p in rule_files]
    elif base is not None:
        cfg["rule_files"] = [str((base / p).resolve()) for p in cfg.get("rule_files") or []]

    targets_dir = workdir / "targets"
    targets_dir.mkdir(exist_ok=True)
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    for name, spec in (targets or {}).items():
        _write_json_atomically(targets_dir / f"{name}.json", _target_groups(spec))
    data = storage_dir if storage_dir is not None else workdir / "data"

    def args(port: int) -> list[str]:
        self_target = targets_dir / "prometheus.json"
        if not targets or "prometheus" not in targets:
            _write_json_atomically(self_target, _target_groups([f"127.0.0.1:{port}"]))
        return [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            *extra_args,
        ]

    proc, port = start_on_free_port("prometheus", workdir, args)
    return PrometheusServer(f"http://127.0.0.1:{port}", proc, config_path, targets_dir)


# --- Alertmanager ---------------------------------------------------------------------


@dataclass(eq=False)
class AlertmanagerServer:
    """A running Alertmanager. ``address`` (``127.0.0.1:PORT``) is what Prometheus targets."""

    url: str
    process: ManagedProcess
    config_path: Path

    @property
    def address(self) -> str:
        return self.url.removeprefix("http://")

    def alerts(self, **labels: str) -> list[dict[str, Any]]:
        """``/api/v2/alerts`` (with ``status.state`` and ``status.inhibitedBy``), filtered."""
        return [
            a
            for a in http_json(f"{self.url}/api/v2/alerts")
            if all(a["labels"].get(k) == v for k, v in labels.items())
        ]

    def status(self) -> dict[str, Any]:
        """``/api/v2/status``: ``config.original`` is the loaded configuration."""
        return dict(http_json(f"{self.url}/api/v2/status"))

    def wait_for(
        self,
        predicate: Callable[[AlertmanagerServer], T],
        timeout: float = 30.0,
        interval: float = 0.25,
        message: str = "an Alertmanager condition",
    ) -> T:
        return wait_until(
            lambda: predicate(self),
            timeout,
            interval=interval,
            message=message,
            diagnostics=self.process.log_tail,
        )

    def stop(self) -> None:
        self.process.stop()


def render_alertmanager_config(
    config: Path | str | Mapping[str, Any] | None = None,
    *,
    webhook_url: str | None = None,
    route_timing: Mapping[str, str] | None = FAST_ROUTE_TIMING,
) -> dict[str, Any]:
    """An Alertmanager config as a dict, ready for a test.

    ``webhook_url`` replaces the placeholder URL (what alertmanager-entrypoint.sh does in
    production). ``route_timing`` overrides group_wait/group_interval/repeat_interval on
    the root route and on every child route that sets them (``None``: keep them).
    """
    cfg, _ = _load_config(config, ALERTMANAGER_CONFIG)
    if webhook_url is not None:
        for receiver in cfg.get("receivers") or []:
            for hook in receiver.get("webhook_configs") or []:
                if hook.get("url") == WEBHOOK_PLACEHOLDER:
                    hook["url"] = webhook_url
    if route_timing:

        def retime(route: dict[str, Any], root: bool) -> None:
            for key, value in route_timing.items():
                if root or key in route:
                    route[key] = value
            for child in route.get("routes") or []:
                retime(child, False)

        retime(cfg["route"], True)
    return cfg


def start_alertmanager(
    workdir: Path,
    config: Path | str | Mapping[str, Any] | None = None,
    *,
    webhook_url: str | None = None,
    route_timing: Mapping[str, str] | None = FAST_ROUTE_TIMING,
    extra_args: Sequence[str] = (),
) -> AlertmanagerServer:
    """Start Alertmanager in ``workdir``; see :func:`alertmanager_factory`."""
    binary = find_binary("prometheus-alertmanager")
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = render_alertmanager_config(config, webhook_url=webhook_url, route_timing=route_timing)
    config_path = workdir / "alertmanager.yml"
    config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))

    def args(port: int) -> list[str]:
        return [
            binary,
            f"--config.file={config_path}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no gossip port, no settle wait
            *extra_args,
        ]

    proc, port = start_on_free_port("alertmanager", workdir, args)
    return AlertmanagerServer(f"http://127.0.0.1:{port}", proc, config_path)


# --- Pushgateway ----------------------------------------------------------------------


@dataclass(eq=False)
class PushgatewayServer:
    """A running Pushgateway; pass ``url`` to ``push_to_gateway`` and ``address`` to
    Prometheus' ``pushgateway`` targets."""

    url: str
    process: ManagedProcess

    @property
    def address(self) -> str:
        return self.url.removeprefix("http://")

    def metrics_text(self) -> str:
        with _OPENER.open(f"{self.url}/metrics", timeout=5) as response:
            return str(response.read().decode())

    def stop(self) -> None:
        self.process.stop()


def start_pushgateway(workdir: Path, extra_args: Sequence[str] = ()) -> PushgatewayServer:
    binary = find_binary("prometheus-pushgateway")
    workdir.mkdir(parents=True, exist_ok=True)

    def args(port: int) -> list[str]:
        return [
            binary,
            f"--web.listen-address=127.0.0.1:{port}",
            f"--persistence.file={workdir / 'pushgateway.data'}",
            *extra_args,
        ]

    proc, port = start_on_free_port("pushgateway", workdir, args)
    return PushgatewayServer(f"http://127.0.0.1:{port}", proc)


# --- webhook receiver -----------------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    """One POST Alertmanager made to the receiver (its body is the webhook payload)."""

    received_at: float  # time.monotonic()
    path: str
    body: dict[str, Any]

    @property
    def status(self) -> str:
        return str(self.body.get("status"))

    @property
    def alerts(self) -> list[dict[str, Any]]:
        return list(self.body.get("alerts") or [])

    @property
    def group_labels(self) -> dict[str, str]:
        return dict(self.body.get("groupLabels") or {})

    @property
    def common_labels(self) -> dict[str, str]:
        return dict(self.body.get("commonLabels") or {})


class WebhookReceiver:
    """An HTTP server on a free loopback port that records every JSON body POSTed to it.

    ``url`` is the address to configure as a webhook; :attr:`notifications` lists what
    arrived, in order; :meth:`wait_for` waits for the first one matching a predicate.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._notifications: list[Notification] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"_unparsed": raw.decode(errors="replace")}
                receiver._record(Notification(time.monotonic(), self.path, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="webhook-receiver", daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_port}/alerts"

    def _record(self, notification: Notification) -> None:
        with self._arrived:
            self._notifications.append(notification)
            self._arrived.notify_all()

    @property
    def notifications(self) -> list[Notification]:
        with self._lock:
            return list(self._notifications)

    def wait_for(
        self, predicate: Callable[[Notification], bool], timeout: float = 30.0
    ) -> Notification:
        """The first notification (already arrived or arriving) for which ``predicate`` holds."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                for notification in self._notifications:
                    if predicate(notification):
                        return notification
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [(n.status, n.group_labels) for n in self._notifications]
                    raise AssertionError(
                        f"no matching webhook notification within {timeout:.1f}s; got {seen}"
                    )
                self._arrived.wait(remaining)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


# --- fixtures -------------------------------------------------------------------------


class _Started(list[Any]):
    def stop_all(self) -> None:
        errors = []
        for server in reversed(self):
            try:
                server.stop()
            except Exception as exc:  # stop every server even if one fails
                errors.append(exc)
        if errors:
            raise errors[0]


def _factory(
    tmp_path: Path, name: str, start: Callable[..., _S]
) -> tuple[Callable[..., _S], _Started]:
    """``make(*args, **kwargs)`` starting ``start`` in a fresh ``<name>-N`` work dir."""
    started = _Started()
    counter = iter(range(1_000_000))

    def make(*args: Any, **kwargs: Any) -> _S:
        server = start(tmp_path / f"{name}-{next(counter)}", *args, **kwargs)
        started.append(server)
        return server

    return make, started


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[Callable[..., PrometheusServer]]:
    """Start real Prometheus servers; all are stopped when the test ends.

    ``prometheus_factory(config=None, *, rule_files=None, targets=None,
    scrape_interval="1s", evaluation_interval="1s", storage_dir=None, extra_args=())``

    - ``config``: a path or dict; default ``deploy/prometheus/prometheus.yml``. Its
      ``rule_files`` are resolved against the original file, so the copy in the temp dir
      still finds them, unless ``rule_files`` (paths) replaces them.
    - ``targets``: ``{name: ["host:port", ...]}`` (or file_sd target groups), written to
      ``targets/<name>.json`` next to the copied config, which is where the repo config's
      file_sd looks: ``dpagent``, ``pushgateway``, ``alertmanager`` (also the alerting
      target). ``prometheus`` (self-scrape) is filled in automatically.
    - ``scrape_interval`` / ``evaluation_interval``: the global intervals (``None`` keeps
      the config's 15 s). With 1 s the first scrape lands ~5 s after start.
    - ``storage_dir``: an existing TSDB directory (e.g. from ``promtool tsdb
      create-blocks-from openmetrics``) instead of a fresh one in the temp dir.

    Returns a :class:`PrometheusServer`: ``.url``, ``.query(promql)``,
    ``.query_values(promql)``, ``.alerts(state=..., **labels)``, ``.targets(job)``,
    ``.set_targets(name, [...])``, ``.wait_for(predicate, timeout)``, ``.process.log()``.
    """
    _require("prometheus")
    make, started = _factory(tmp_path, "prometheus", start_prometheus)
    yield make
    started.stop_all()


@pytest.fixture
def alertmanager_factory(tmp_path: Path) -> Iterator[Callable[..., AlertmanagerServer]]:
    """Start real Alertmanagers (``--cluster.listen-address=``); stopped at test end.

    ``alertmanager_factory(config=None, *, webhook_url=None,
    route_timing=FAST_ROUTE_TIMING, extra_args=())``

    - ``config``: a path or dict; default ``deploy/prometheus/alertmanager.yml``.
    - ``webhook_url``: replaces the placeholder webhook URL (e.g. ``webhook_receiver.url``).
    - ``route_timing``: group_wait/group_interval/repeat_interval for every route that sets
      them (default 1 s/1 s/1 h so notifications and resolutions arrive in seconds);
      ``None`` keeps the config's.

    Returns an :class:`AlertmanagerServer`: ``.url``, ``.address`` (give it to Prometheus as
    ``targets={"alertmanager": [am.address]}``), ``.alerts(**labels)``, ``.status()``,
    ``.wait_for(predicate, timeout)``.
    """
    _require("prometheus-alertmanager")
    make, started = _factory(tmp_path, "alertmanager", start_alertmanager)
    yield make
    started.stop_all()


@pytest.fixture
def pushgateway_factory(tmp_path: Path) -> Iterator[Callable[..., PushgatewayServer]]:
    """Start real Pushgateways (``pushgateway_factory(extra_args=())``); stopped at test end."""
    _require("prometheus-pushgateway")
    make, started = _factory(tmp_path, "pushgateway", start_pushgateway)
    yield make
    started.stop_all()


@pytest.fixture
def pushgateway(
    pushgateway_factory: Callable[..., PushgatewayServer],
) -> PushgatewayServer:
    """One running Pushgateway: ``.url`` for ``push_to_gateway``, ``.address`` for targets."""
    return pushgateway_factory()


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A loopback HTTP server recording Alertmanager's webhook POSTs.

    ``.url`` to configure; ``.notifications`` (each ``.status``, ``.alerts``,
    ``.group_labels``, ``.common_labels``, ``.received_at`` monotonic, ``.body``);
    ``.wait_for(predicate, timeout)`` returns the first matching notification.
    """
    receiver = WebhookReceiver()
    yield receiver
    receiver.stop()
