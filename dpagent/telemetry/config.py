"""Every setting once: its argument name, environment variable, default and meaning.

Resolution order is always argument > environment > default. The README's
configuration table is generated from :data:`SETTINGS`
(``python -m dpagent.telemetry.config``) and a test fails when they differ.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["SETTINGS", "Setting", "Settings", "markdown_table", "resolve"]


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true/false, got {text!r}")


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise ValueError(f"a TCP port is 0..65535, got {port}")
    return port


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"expected an integer >= 1, got {value}")
    return value


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {text!r}")
        return value

    return parse


def _level(text: str) -> str:
    value = text.strip().upper()
    if value not in ("DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError(f"expected a log level name (DEBUG, INFO, SUCCESS, ...), got {text!r}")
    return value


@dataclass(frozen=True)
class Setting:
    name: str  # the configure() argument
    env: str
    default: Any
    parse: Callable[[str], Any]
    doc: str


SETTINGS: tuple[Setting, ...] = (
    Setting("service_name", "OTEL_SERVICE_NAME", "dpagent", str,
            "`service.name` of spans and `target_info`."),
    Setting("traces_exporter", "OTEL_TRACES_EXPORTER", None, _choice("otlp", "console", "none"),
            "`otlp`, `console` or `none`. Unset: `otlp` when an OTLP endpoint is set, "
            "otherwise no tracing SDK is installed (spans are skipped at no cost)."),
    Setting("otlp_endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT", None, str,
            "OTLP/HTTP base URL, e.g. `http://tempo:4318`; `/v1/traces` is appended. "
            "`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (full URL) is honoured too."),
    Setting("otlp_timeout", "OTEL_EXPORTER_OTLP_TIMEOUT", 10.0, float,
            "Seconds one OTLP export may take, retries included; bounds shutdown too."),
    Setting("sampler", "OTEL_TRACES_SAMPLER", "parentbased_always_on",
            _choice("always_on", "always_off", "traceidratio", "parentbased_always_on",
                    "parentbased_always_off", "parentbased_traceidratio"),
            "Trace sampler."),
    Setting("sampler_arg", "OTEL_TRACES_SAMPLER_ARG", 1.0, float,
            "Ratio for the `traceidratio` samplers."),
    Setting("metrics_port", "DPAGENT_METRICS_PORT", None, _port,
            "Serve /metrics on this port from `configure()`; unset: no server."),
    Setting("metrics_addr", "DPAGENT_METRICS_ADDR", "127.0.0.1", str,
            "Address the /metrics server binds; loopback unless you say otherwise."),
    Setting("metrics_certfile", "DPAGENT_METRICS_CERTFILE", None, str,
            "PEM certificate: serve /metrics over HTTPS."),
    Setting("metrics_keyfile", "DPAGENT_METRICS_KEYFILE", None, str,
            "PEM private key for `metrics_certfile`."),
    Setting("otel_metrics", "DPAGENT_OTEL_METRICS", True, _bool,
            "Install an OTel MeterProvider whose PrometheusMetricReader shares the registry, "
            "so OTel instrumentations' metrics appear on the same /metrics "
            "(not in multiprocess mode)."),
    Setting("max_error_types", "DPAGENT_MAX_ERROR_TYPES", 50, _positive_int,
            "Distinct `error_type` values per (agent, operation) before folding into `other`."),
    Setting("pushgateway_url", "DPAGENT_PUSHGATEWAY_URL", None, str,
            "Pushgateway for batch runs, e.g. `http://127.0.0.1:9091`."),
    Setting("prometheus_url", "DPAGENT_PROMETHEUS_URL", "http://127.0.0.1:9090", str,
            "Prometheus that `performance_monitor`, `dpagent stats` and `dpagent export` query."),
    Setting("multiproc_dir", "PROMETHEUS_MULTIPROC_DIR", None, str,
            "Multiprocess mode: every worker writes here and one scrape sums them. "
            "Must be set before the process imports prometheus_client."),
    Setting("log_dir", "DPAGENT_LOG_DIR", "logs", str,
            "Directory of the log files."),
    Setting("log_level", "DPAGENT_LOG_LEVEL", "INFO", _level,
            "Lowest level written."),
    Setting("log_files", "DPAGENT_LOG_FILES", True, _bool,
            "Write the log files (`main.log`, `main_structured.jsonl`, ...)."),
    Setting("log_json_stdout", "DPAGENT_LOG_JSON_STDOUT", False, _bool,
            "JSON lines on stdout instead of the coloured console, for log shippers."),
    Setting("log_max_bytes", "DPAGENT_LOG_MAX_BYTES", 10 * 1024 * 1024, _positive_int,
            "Rotate a log file at this size."),
    Setting("log_backups", "DPAGENT_LOG_BACKUPS", 5, _positive_int,
            "Rotated files kept per log."),
    Setting("log_operations_level", "DPAGENT_LOG_OPERATIONS_LEVEL", "DEBUG", _level,
            "Level of the record written for each successful operation "
            "(failures are always ERROR)."),
)  # fmt: skip

_BY_NAME: Mapping[str, Setting] = {s.name: s for s in SETTINGS}


class Settings(dict[str, Any]):
    """Resolved settings; attribute access for readability (``settings.log_dir``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def resolve(
    arguments: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Argument > environment > default, with one clear error for a bad value."""
    arguments = arguments or {}
    environ = os.environ if environ is None else environ
    unknown = set(arguments) - set(_BY_NAME)
    if unknown:
        raise TypeError(f"dpagent: unknown setting(s): {', '.join(sorted(unknown))}")
    settings = Settings()
    for setting in SETTINGS:
        if arguments.get(setting.name) is not None:
            settings[setting.name] = arguments[setting.name]
            continue
        raw = environ.get(setting.env)
        if raw is None or raw == "":
            settings[setting.name] = setting.default
            continue
        try:
            settings[setting.name] = setting.parse(raw)
        except ValueError as exc:
            raise ValueError(f"dpagent: {setting.env}={raw!r} is invalid: {exc}") from None
    return settings


def markdown_table() -> str:
    lines = [
        "| `configure()` argument | environment variable | default | meaning |",
        "|---|---|---|---|",
    ]
    for s in SETTINGS:
        default = "unset" if s.default is None else f"`{s.default}`"
        lines.append(f"| `{s.name}` | `{s.env}` | {default} | {s.doc} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
