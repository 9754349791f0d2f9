"""configure(): argument > env > default, idempotent, and never blocking the app.

configure() installs process-global providers, so each scenario runs in a fresh
interpreter.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dpagent.telemetry.config import SETTINGS, markdown_table, resolve

ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str, env: dict[str, str] | None = None, timeout: float = 60):  # type: ignore[no-untyped-def]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DPAGENT_"))}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**clean, **(env or {})}, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_argument_beats_environment_beats_default() -> None:
    env = {"OTEL_SERVICE_NAME": "from-env", "DPAGENT_MAX_ERROR_TYPES": "7"}
    assert resolve({"service_name": "from-arg"}, env).service_name == "from-arg"
    assert resolve({}, env).service_name == "from-env"
    assert resolve({}, {}).service_name == "dpagent"
    assert resolve({}, env).max_error_types == 7
    assert resolve({}, {}).metrics_addr == "127.0.0.1"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DPAGENT_METRICS_PORT": "70000"}, "DPAGENT_METRICS_PORT='70000' is invalid"),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER='zipkin' is invalid"),
        ({"DPAGENT_OTEL_METRICS": "maybe"}, "expected true/false"),
    ],
)
def test_a_bad_environment_value_is_one_clear_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve({}, env)


def test_unknown_argument_is_rejected() -> None:
    with pytest.raises(TypeError, match="unknown setting"):
        resolve({"servce_name": "typo"}, {})


def test_readme_configuration_table_is_generated_from_settings() -> None:
    readme = (ROOT / "README.md").read_text()
    assert markdown_table() in readme, "run: python -m dpagent.telemetry.config"
    assert len({s.env for s in SETTINGS}) == len(SETTINGS)


def test_unreachable_otlp_endpoint_never_blocks_calls_or_exit() -> None:
    port = closed_port()
    result = run_python(
        f"""
        import json, time
        from dpagent.telemetry import configure, instrument
        configure(otlp_endpoint="http://127.0.0.1:{port}", otlp_timeout=2, otel_metrics=False,
                  log_files=False)

        @instrument("bigcommerce_upload", "create_product")
        def create():
            return 1

        start = time.perf_counter()
        total = sum(create() for _ in range(2000))
        print(json.dumps({{"total": total, "calls_s": time.perf_counter() - start}}))
        """,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["total"] == 2000
    # Export happens on the batch processor's thread: 2000 calls cost
    # milliseconds even though every export attempt is refused.
    assert report["calls_s"] < 5


def test_interpreter_exit_is_bounded_by_the_otlp_timeout() -> None:
    port = closed_port()
    start = time.monotonic()
    result = run_python(
        f"""
        from dpagent.telemetry import configure, instrument
        configure(otlp_endpoint="http://127.0.0.1:{port}", otlp_timeout=2, otel_metrics=False,
                  log_files=False)
        instrument("a", "b")(lambda: None)()
        """,
        timeout=60,
    )
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stderr
    # Shutdown flushes once more; with a 2 s export timeout the process must be
    # gone well before the default 10 s + retries.
    assert elapsed < 15, f"exit took {elapsed:.1f}s"


def test_second_configure_with_other_settings_warns_and_keeps_the_first() -> None:
    result = run_python(
        """
        import warnings
        from dpagent.telemetry import configure
        first = configure(service_name="one", otel_metrics=False, log_files=False)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            same = configure(service_name="one", otel_metrics=False, log_files=False)
            assert not caught, caught
            other = configure(service_name="two", otel_metrics=False, log_files=False)
        assert same is first and other is first
        (warning,) = caught
        print(warning.category.__name__, "|", warning.message)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("RuntimeWarning | dpagent.configure() was already called")
    assert "service_name" in result.stdout


def test_environment_configures_tracing_metrics_server_and_otel_metrics() -> None:
    port = closed_port()
    result = run_python(
        """
        import urllib.request
        from opentelemetry import metrics
        from dpagent.telemetry import configure, instrument
        from dpagent.telemetry.sdk import metrics_server
        settings = configure(log_files=False)

        @instrument("image_sourcing", "search")
        def search():
            return 1

        search()
        metrics.get_meter("demo").create_counter("demo.requests").add(3)
        request = urllib.request.Request(
            metrics_server().url,
            headers={"Accept": "application/openmetrics-text; version=1.0.0"},
        )
        print(urllib.request.urlopen(request, timeout=5).read().decode())
        """,
        env={
            "OTEL_TRACES_EXPORTER": "console",
            "OTEL_SERVICE_NAME": "svc-from-env",
            "DPAGENT_METRICS_PORT": str(port),
        },
    )
    assert result.returncode == 0, result.stderr
    body = result.stdout
    # The span went to the console exporter with the service name from the env...
    assert '"service.name": "svc-from-env"' in body
    # ...its trace id is the exemplar on the duration histogram...
    assert '# {span_id="' in body and 'trace_id="' in body
    # ...and an OTel instrument's counter appears on the same /metrics.
    assert "demo_requests_total" in body
