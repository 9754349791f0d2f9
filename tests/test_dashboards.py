"""The Grafana dashboards: generated, provisioned consistently, schema-valid, and every
Prometheus query of every panel answering with data from a real Prometheus.

Static tests read ``deploy/grafana``; the query tests (marked ``servers``) run the demo
workload, a real Prometheus scraping it every second (with the repository's
``prometheus.yml`` and alert rules), an Alertmanager and a Pushgateway, then run each panel's
query with Grafana's variables substituted. The Trends and Overview panels compare with one
day and one week earlier, so the Prometheus starts on a TSDB backfilled (``promtool tsdb
create-blocks-from openmetrics``) with samples of the same demo series at those times.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families
from servers import (
    REPO_ROOT,
    AlertmanagerServer,
    ManagedProcess,
    PrometheusServer,
    PushgatewayServer,
    find_binary,
    free_port,
    wait_until,
)

from dpagent.telemetry.exposition import push_to_gateway
from dpagent.telemetry.rules import fast_config, render_rules
from dpagent.telemetry.thresholds import THRESHOLDS

# dpagent.dashboards.FAILURE_ONLY_NOTE, written here so the query tests need no generator.
FAILURE_ONLY_NOTE = "Empty while nothing fails."
GRAFANA = REPO_ROOT / "deploy" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "datasources.yaml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "dashboards.yaml"
ALLOY = REPO_ROOT / "deploy" / "alloy" / "config.alloy"

EXPECTED_UIDS = {
    "dpagent-overview",
    "dpagent-agents",
    "dpagent-failures",
    "dpagent-trends",
    "dpagent-logs",
    "dpagent-system",
}
# Panel types Grafana 11.6 ships (the dashboards use no plugin).
CORE_PANEL_TYPES = {"row", "timeseries", "stat", "table", "logs", "bargauge", "piechart"}

# What the query tests substitute for Grafana's variables. $__rate_interval is what Grafana
# computes with the provisioned timeInterval (15s): four scrape intervals.
RANGE_SECONDS = 300
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "30s",
    "$__range": f"{RANGE_SECONDS}s",
}


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(DASHBOARDS.glob("*.json"))
    }


def iter_targets(dashboard: Mapping[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in dashboard.get("panels") or []:
        for inner in [panel, *(panel.get("panels") or [])]:
            for target in inner.get("targets") or []:
                yield inner, target


def target_datasource(panel: Mapping[str, Any], target: Mapping[str, Any]) -> str:
    ds = target.get("datasource") or panel.get("datasource") or {}
    return str(ds.get("uid", ""))


def provisioned_datasources() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load(DATASOURCES.read_text())
    return {ds["uid"]: ds for ds in config["datasources"]}


# --- generated, consistent, schema-valid ------------------------------------------------


def _needs_sdk() -> None:
    """The generator needs grafana-foundation-sdk, which needs Python >= 3.11; on 3.11+ a
    missing SDK fails the test (the test extras install it)."""
    if sys.version_info < (3, 11):
        pytest.skip("grafana-foundation-sdk (the dashboard generator) needs Python >= 3.11")


def test_committed_json_is_the_generators_output() -> None:
    _needs_sdk()
    from dpagent.dashboards import check_dashboards

    diff = check_dashboards(DASHBOARDS)
    assert not diff, (
        "deploy/grafana/dashboards differs from dpagent/dashboards.py; run "
        "`python -m dpagent.dashboards --write`:\n" + "".join(diff[:80])
    )


def test_check_reports_drift(tmp_path: Path) -> None:
    _needs_sdk()
    from dpagent.dashboards import check_dashboards, main, write_dashboards

    write_dashboards(tmp_path)
    assert check_dashboards(tmp_path) == []
    assert main(["--check", "--dir", str(tmp_path)]) == 0
    first = sorted(tmp_path.glob("*.json"))[0]
    first.write_text(first.read_text().replace("dpagent", "dpagnet", 1))
    (tmp_path / "stray.json").write_text("{}")
    diff = "".join(check_dashboards(tmp_path))
    assert "dpagnet" in diff and "stray.json" in diff
    assert main(["--check", "--dir", str(tmp_path)]) == 1


def test_dashboard_uids_are_the_stable_unique_ones() -> None:
    dashboards = load_dashboards()
    uids = [d["uid"] for d in dashboards.values()]
    assert len(uids) == len(set(uids)), uids
    assert set(uids) == EXPECTED_UIDS
    for name, dashboard in dashboards.items():
        assert name == f"{dashboard['uid']}.json"
        assert dashboard["title"].startswith("dpagent / ")
        assert "dpagent" in dashboard["tags"]
        assert "id" not in dashboard  # Grafana assigns ids; a fixed one collides on import


def test_every_referenced_datasource_is_provisioned() -> None:
    provisioned = provisioned_datasources()
    referenced: set[str] = set()
    for name, dashboard in load_dashboards().items():
        for panel in dashboard["panels"]:
            if "datasource" in panel:
                referenced.add(panel["datasource"]["uid"])
        for panel, target in iter_targets(dashboard):
            uid = target_datasource(panel, target)
            assert uid, f"{name}: panel {panel['title']!r} has a query without datasource"
            referenced.add(uid)
        for variable in dashboard["templating"].get("list", []):
            if "datasource" in variable:
                referenced.add(variable["datasource"]["uid"])
    assert referenced, "no datasource referenced at all"
    missing = referenced - set(provisioned)
    assert not missing, f"panels reference datasource uids nobody provisions: {missing}"
    for uid in referenced:
        panel_type = {
            "dpagent-prometheus": "prometheus",
            "dpagent-loki": "loki",
        }.get(uid)
        if panel_type:
            assert provisioned[uid]["type"] == panel_type


def test_datasource_provisioning_links_resolve() -> None:
    config = yaml.safe_load(DATASOURCES.read_text())
    uids = [ds["uid"] for ds in config["datasources"]]
    assert len(uids) == len(set(uids))
    by_uid = {ds["uid"]: ds for ds in config["datasources"]}
    assert {ds["type"] for ds in by_uid.values()} == {"prometheus", "alertmanager", "loki", "tempo"}
    prom = by_uid["dpagent-prometheus"]["jsonData"]
    # prometheus_client puts the trace id in an exemplar label named trace_id.
    assert prom["exemplarTraceIdDestinations"] == [
        {
            "name": "trace_id",
            "datasourceUid": "dpagent-tempo",
            "urlDisplayLabel": "View trace in Tempo",
        }
    ]
    (derived,) = by_uid["dpagent-loki"]["jsonData"]["derivedFields"]
    assert derived["datasourceUid"] == "dpagent-tempo"
    assert derived["url"] == "$${__value.raw}"
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    line = json.dumps({"message": "x", "trace_id": trace_id, "span_id": "b7ad6b7169203331"})
    match = re.search(derived["matcherRegex"], line)
    assert match and match.group(1) == trace_id
    tempo = by_uid["dpagent-tempo"]["jsonData"]
    assert tempo["tracesToLogsV2"]["datasourceUid"] == "dpagent-loki"
    assert tempo["tracesToMetrics"]["datasourceUid"] == "dpagent-prometheus"
    # Grafana expands $VAR / ${VAR} in provisioning values: its own ${__...} must be escaped.
    text = "\n".join(
        line for line in DATASOURCES.read_text().splitlines() if not line.lstrip().startswith("#")
    )
    assert not re.search(r"(?<!\$)\$\{__", text), "unescaped ${__...} in datasources.yaml"
    assert not re.search(r"(?<!\$)\$__", text), "unescaped $__... in datasources.yaml"
    for ds in config["datasources"]:
        assert urllib.parse.urlparse(ds["url"]).hostname in {
            "prometheus",
            "alertmanager",
            "loki",
            "tempo",
        }


def test_dashboard_provider_points_at_the_mounted_directory() -> None:
    (provider,) = yaml.safe_load(PROVIDERS.read_text())["providers"]
    assert provider["type"] == "file"
    assert provider["allowUiUpdates"] is False
    # docker-compose.yml mounts deploy/grafana/dashboards at this path.
    assert provider["options"]["path"] == "/etc/grafana/dashboards/dpagent"


def _assert_survives(original: Any, roundtrip: Any, where: str) -> None:
    """Every key and value of ``original`` is in ``roundtrip`` (the SDK may add defaults)."""
    if isinstance(original, dict):
        assert isinstance(roundtrip, dict), f"{where}: became {type(roundtrip).__name__}"
        for key, value in original.items():
            assert key in roundtrip, f"{where}.{key}: not part of the Grafana 11.6 schema"
            _assert_survives(value, roundtrip[key], f"{where}.{key}")
    elif isinstance(original, list):
        assert isinstance(roundtrip, list) and len(roundtrip) == len(original), where
        for i, (a, b) in enumerate(zip(original, roundtrip, strict=True)):
            _assert_survives(a, b, f"{where}[{i}]")
    else:
        assert original == roundtrip, f"{where}: {original!r} became {roundtrip!r}"


def test_json_loads_into_the_foundation_sdk_models() -> None:
    _needs_sdk()
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    for name, dashboard in load_dashboards().items():
        model = Dashboard.from_json(dashboard)
        roundtrip = json.loads(JSONEncoder().encode(model))
        _assert_survives(dashboard, roundtrip, name)
        assert roundtrip["schemaVersion"] == 41


def test_panels_are_well_formed() -> None:
    for name, dashboard in load_dashboards().items():
        ids: set[int] = set()
        cells: set[tuple[int, int]] = set()
        titles: set[str] = set()
        for panel in dashboard["panels"]:
            where = f"{name}: {panel.get('title')!r}"
            assert panel["type"] in CORE_PANEL_TYPES, where
            assert isinstance(panel["id"], int) and panel["id"] not in ids, where
            ids.add(panel["id"])
            pos = panel["gridPos"]
            assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24 and pos["h"] > 0, where
            for x in range(pos["x"], pos["x"] + pos["w"]):
                for y in range(pos["y"], pos["y"] + pos["h"]):
                    assert (x, y) not in cells, f"{where} overlaps another panel"
                    cells.add((x, y))
            if panel["type"] == "row":
                assert not panel.get("collapsed"), where
                continue
            assert panel["title"] not in titles, f"{where}: duplicate title"
            titles.add(panel["title"])
            assert panel.get("description"), f"{where} has no description"
            ref_ids = [t["refId"] for t in panel["targets"]]
            assert ref_ids and all(ref_ids) and len(set(ref_ids)) == len(ref_ids), where
            for target in panel["targets"]:
                assert target["expr"].strip(), where
            for override in panel.get("fieldConfig", {}).get("overrides", []):
                if override["matcher"]["id"] == "byFrameRefID":
                    assert override["matcher"]["options"] in ref_ids, where


_CONSTANT = re.compile(r'label_replace\(vector\(([0-9.e+-]+)\), "agent", "([^"]+)", "", ""\)')


def test_threshold_lines_come_from_thresholds() -> None:
    kinds = {
        "min_success_rate": {a: t.min_success_rate for a, t in THRESHOLDS.items()},
        "max_duration": {a: float(t.max_duration) for a, t in THRESHOLDS.items()},
        "error_budget": {a: t.error_budget for a, t in THRESHOLDS.items()},
    }
    seen: set[str] = set()
    for name, dashboard in load_dashboards().items():
        for panel, target in iter_targets(dashboard):
            found = {agent: float(v) for v, agent in _CONSTANT.findall(target["expr"])}
            if not found:
                continue
            matching = [kind for kind, values in kinds.items() if values == found]
            assert matching, (
                f"{name}: {panel['title']!r} draws thresholds {found} that are none of "
                f"THRESHOLDS' {kinds}"
            )
            seen.update(matching)
    assert seen == set(kinds), f"threshold lines drawn: {seen}"


def test_agent_dashboard_draws_each_agents_own_lines() -> None:
    agents = load_dashboards()["dpagent-agents.json"]
    panels = {p["title"]: p for p in agents["panels"]}
    objective = panels["Success rate vs objective"]["targets"][1]["expr"]
    duration = panels["Duration p50 / p95 / p99 vs max duration"]["targets"][3]["expr"]
    for agent, t in THRESHOLDS.items():
        assert f'vector({t.min_success_rate:g}), "agent", "{agent}"' in objective
        assert f'vector({float(t.max_duration):g}), "agent", "{agent}"' in duration


def _loki_selectors(expr: str) -> list[dict[str, str]]:
    return [
        dict(re.findall(r'(\w+)\s*=~?\s*"([^"]*)"', body))
        for body in re.findall(r"\{([^{}]*)\}", expr)
    ]


def test_loki_queries_use_the_labels_alloy_sets() -> None:
    alloy = ALLOY.read_text()
    # Stream labels: the static ones on the file target and those stage.labels promotes.
    static = set(re.findall(r"(\w+)\s*=\s*\"[^\"]+\"", _block(alloy, "path_targets")))
    promoted = set(re.findall(r"(\w+)\s*=", _block(_block(alloy, "stage.labels"), "values")))
    labels = (static | promoted) - {"__path__"}
    assert {"job", "agent", "level"} <= labels, labels
    queries = 0
    for name, dashboard in load_dashboards().items():
        for panel, target in iter_targets(dashboard):
            if target_datasource(panel, target) != "dpagent-loki":
                continue
            queries += 1
            expr = target["expr"]
            assert expr.count("{") == expr.count("}") and expr.count("(") == expr.count(")")
            selectors = _loki_selectors(expr)
            assert selectors, f"{name}: {expr}"
            for selector in selectors:
                assert set(selector) <= labels, f"{name}: {expr} uses labels Alloy never sets"
                assert selector.get("job") == "dpagent", expr
        for variable in dashboard["templating"].get("list", []):
            if variable.get("datasource", {}).get("uid") == "dpagent-loki":
                assert 'job="dpagent"' in variable["query"]
    assert queries >= 3


def _block(text: str, name: str) -> str:
    """The bracketed body that follows ``name`` in an Alloy file (``{...}`` or ``[...]``)."""
    start = text.index(name) + len(name)
    open_at = min(i for i in (text.find("{", start), text.find("[", start)) if i >= 0)
    depth = 0
    for i in range(open_at, len(text)):
        depth += text[i] in "{["
        depth -= text[i] in "}]"
        if depth == 0:
            return text[open_at : i + 1]
    raise AssertionError(f"unbalanced block after {name!r}")


def test_failure_only_panels_say_so() -> None:
    marked = {
        (d["uid"], p["title"])
        for d in load_dashboards().values()
        for p in d["panels"]
        if _panel_kind(p) == "failure"
    }
    assert ("dpagent-overview", "Firing alerts") in marked
    assert ("dpagent-failures", "Failures by error type") in marked
    # Only failure panels: every other panel must show data on a healthy pipeline.
    assert len(marked) == 4, marked
    _needs_sdk()
    from dpagent import dashboards

    assert dashboards.FAILURE_ONLY_NOTE == FAILURE_ONLY_NOTE
    assert {(b.uid, t) for b in dashboards.build_dashboards() for t in b.failure_only} == marked


# --- every query against a real Prometheus ----------------------------------------------


@dataclass
class DemoRun:
    """A demo workload scraped by a real Prometheus (plus Alertmanager and Pushgateway)."""

    profile: str
    prometheus: PrometheusServer
    demo_address: str


def _start_demo(workdir: Path, profile: str) -> tuple[ManagedProcess, str]:
    """``dpagent demo`` on a free port, 100x faster than real time, with tracing on (spans
    to the console exporter, discarded) so duration samples carry trace_id exemplars."""
    last = ""
    for attempt in range(3):
        port = free_port()
        env = {
            "DPAGENT_LOG_DIR": str(workdir / "logs"),
            "OTEL_TRACES_EXPORTER": "console",
            "OTEL_SERVICE_NAME": "dpagent-demo-test",
            "PYTHONUNBUFFERED": "1",
        }
        # Console spans are noise; the demo's own messages go to its log file.
        args = [
            sys.executable,
            "-c",
            "import os, sys; sys.stdout = open(os.devnull, 'w'); "
            "from dpagent.cli import main; raise SystemExit(main(sys.argv[1:]))",
            "demo",
            "--profile",
            profile,
            "--time-scale",
            "0.01",
            "--rate",
            "20",
            "--metrics-port",
            str(port),
            "--duration",
            "600",
        ]
        proc = ManagedProcess(f"demo-{profile}-{attempt}", args, workdir / "demo.log", env)
        proc.start()
        url = f"http://127.0.0.1:{port}/metrics"

        def serving(url: str = url) -> bool:
            with urllib.request.urlopen(url, timeout=2) as response:
                return b'outcome="success"' in response.read()

        try:
            wait_until(serving, 20, message=f"demo /metrics at {url}")
            return proc, f"127.0.0.1:{port}"
        except AssertionError:
            last = proc.log_tail()
            proc.stop()
    raise AssertionError(f"the demo did not start:\n{last}")


def _backfill(workdir: Path, metrics_text: str, instance: str, now: float) -> Path:
    """A TSDB holding the demo's series, ramped like counters, around one day and one week
    before ``now``: what the ``offset 1d`` / ``offset 1w`` / previous-24h queries read."""
    families = text_string_to_metric_families(metrics_text)
    series: list[tuple[str, dict[str, str], float, bool]] = []
    for family in families:
        for sample in family.samples:
            if sample.name.endswith("_created") or sample.name == "python_info":
                continue
            monotonic = family.type in {"counter", "histogram", "summary"} and not (
                sample.name.endswith("_gsum") or sample.name.endswith("_gcount")
            )
            series.append((sample.name, dict(sample.labels), float(sample.value), monotonic))
    step = 15
    windows = [(now - d - 900, now - d + 300) for d in (86400, 7 * 86400)]
    lines: list[str] = []
    by_name: dict[str, list[tuple[dict[str, str], float, bool]]] = {}
    for name, labels, value, monotonic in series:
        by_name.setdefault(name, []).append((labels, value, monotonic))
    for name, members in by_name.items():
        lines.append(f"# TYPE {name} unknown")
        for labels, value, monotonic in members:
            full = {**labels, "job": "dpagent", "instance": instance}
            rendered = ",".join(f'{k}="{json.dumps(v)[1:-1]}"' for k, v in sorted(full.items()))
            for start, end in windows:
                for i, t in enumerate(range(int(start), int(end), step)):
                    v = value * (1 + i / 10) if monotonic else value
                    lines.append(f"{name}{{{rendered}}} {v!r} {t}")
    lines.append("# EOF")
    source = workdir / "backfill.om"
    source.write_text("\n".join(lines) + "\n")
    out = workdir / "tsdb"
    result = subprocess.run(
        [
            find_binary("promtool"),
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            str(source),
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    source.unlink()
    return out


def _push_batch_run(pushgateway: PushgatewayServer) -> None:
    registry = CollectorRegistry()
    Counter("dpagent_batch_runs", "Batch runs.", registry=registry).inc()
    assert push_to_gateway(pushgateway.url, job="dpagent_batch", registry=registry)


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, DemoRun]]:
    """A healthy and a degraded demo, each scraped by its own Prometheus (1 s intervals,
    exemplar storage on, the repo's rules plus, for the degraded run, the fast variant so an
    alert fires within seconds), sharing one Alertmanager and one Pushgateway."""
    from servers import start_alertmanager, start_prometheus, start_pushgateway

    base = tmp_path_factory.mktemp("dashboards")
    started: list[Any] = []
    try:
        alertmanager: AlertmanagerServer = start_alertmanager(base / "alertmanager")
        started.append(alertmanager)
        pushgateway = start_pushgateway(base / "pushgateway")
        started.append(pushgateway)
        _push_batch_run(pushgateway)
        fast_rules = base / "fast.rules.yml"
        fast_rules.write_text(render_rules(fast_config()))
        runs: dict[str, DemoRun] = {}
        demos = {}
        for profile in ("healthy", "degraded"):
            demo, address = _start_demo(base / profile, profile)
            started.append(demo)
            demos[profile] = (demo, address)
        for profile, (_, address) in demos.items():
            with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
                text = response.read().decode()
            tsdb = _backfill(base / profile, text, address, time.time())
            rule_files = [REPO_ROOT / "alerts.rules.yml"]
            if profile == "degraded":
                rule_files.append(fast_rules)
            prometheus = start_prometheus(
                base / profile / "prometheus",
                rule_files=rule_files,
                targets={
                    "dpagent": [address],
                    "pushgateway": [pushgateway.address],
                    "alertmanager": [alertmanager.address],
                },
                storage_dir=tsdb,
                extra_args=["--enable-feature=exemplar-storage"],
            )
            started.append(prometheus)
            runs[profile] = DemoRun(profile, prometheus, address)
        for run in runs.values():
            run.prometheus.wait_for(
                lambda p: (
                    all(
                        t["health"] == "up"
                        for t in p.targets()
                        if t["labels"]["job"] != "prometheus"
                    )
                    and len(p.targets()) == 4
                ),
                timeout=30,
                message="every target up",
            )
        # rate() over 1m needs two samples, and the degraded run's fast alert needs its
        # 10s window and 5s `for`.
        runs["degraded"].prometheus.wait_for(
            lambda p: p.alerts(state="firing"), timeout=60, message="a firing alert"
        )
        for run in runs.values():
            run.prometheus.wait_for(
                lambda p: p.query("agent:dpagent_operations:slow_ratio_rate10m"),
                timeout=30,
                message="recording rules evaluated",
            )
        yield runs
    finally:
        for server in reversed(started):
            server.stop()


def _substitute(expr: str, variables: Mapping[str, str]) -> str:
    # Longest names first: $__range must not eat the start of $__range_s.
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace(name, variables[name])
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


def _dashboard_variables(dashboard: Mapping[str, Any]) -> list[dict[str, str]]:
    """The variable assignments to test a dashboard with: every agent for a single-select
    agent variable, "All" (the regex .*) for multi-select ones."""
    base = dict(GRAFANA_VARIABLES)
    agent_single = False
    for variable in dashboard["templating"].get("list", []):
        if variable["type"] == "query" and variable["datasource"]["uid"] != "dpagent-prometheus":
            continue
        if variable["name"] == "agent" and not variable.get("multi"):
            agent_single = True
        elif variable.get("includeAll"):
            base[f"${variable['name']}"] = variable.get("allValue") or ".*"
    if agent_single:
        return [{**base, "$agent": agent} for agent in THRESHOLDS]
    return [base]


def _finite(result: list[dict[str, Any]], *, instant: bool) -> bool:
    for series in result:
        points = [series["value"]] if instant else series["values"]
        if any(math.isfinite(float(v)) for _, v in points):
            return True
    return False


def _run(prometheus: PrometheusServer, expr: str, *, instant: bool, at: float) -> Any:
    if instant:
        return prometheus.api("query", query=expr, time=repr(at))
    return prometheus.api(
        "query_range",
        query=expr,
        start=repr(at - RANGE_SECONDS),
        end=repr(at),
        step="15",
    )


def _panel_kind(panel: Mapping[str, Any]) -> str:
    """ "failure" for panels that stay empty while nothing fails (the generator says so in
    their description), else "any"."""
    return "failure" if FAILURE_ONLY_NOTE in panel.get("description", "") else "any"


def _check_dashboard_queries(run: DemoRun, *, include: Callable[[str, str], bool]) -> int:
    at = time.time()
    checked = 0
    problems: list[str] = []
    for name, dashboard in load_dashboards().items():
        for variables in _dashboard_variables(dashboard):
            for panel, target in iter_targets(dashboard):
                if target_datasource(panel, target) != "dpagent-prometheus":
                    continue
                if not include(panel["title"], _panel_kind(panel)):
                    continue
                expr = _substitute(target["expr"], variables)
                instant = bool(target.get("instant"))
                where = (
                    f"{name} / {panel['title']!r} / {target['refId']} "
                    f"({variables.get('$agent', 'all agents')}, {run.profile})"
                )
                try:
                    data = _run(run.prometheus, expr, instant=instant, at=at)
                except AssertionError as exc:
                    problems.append(f"{where}: error {exc}\n    {expr}")
                    continue
                result = data["result"]
                if data["resultType"] == "scalar":
                    result = [{"value": result}]
                if not _finite(result, instant=instant):
                    problems.append(f"{where}: no data\n    {expr}")
                checked += 1
    assert not problems, "\n".join(problems)
    return checked


def _variable_queries(dashboard: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    for variable in dashboard["templating"].get("list", []):
        if variable["type"] == "query" and variable["datasource"]["uid"] == "dpagent-prometheus":
            match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"])
            assert match, variable["query"]
            yield variable["name"], match.group(1), match.group(2)


@pytest.mark.servers
@pytest.mark.slow
def test_every_panel_query_has_data_healthy(demo_runs: dict[str, DemoRun]) -> None:
    run = demo_runs["healthy"]
    checked = _check_dashboard_queries(run, include=lambda _title, kind: kind == "any")
    assert checked >= 80


@pytest.mark.servers
@pytest.mark.slow
def test_failure_panels_have_data_degraded(demo_runs: dict[str, DemoRun]) -> None:
    run = demo_runs["degraded"]
    checked = _check_dashboard_queries(run, include=lambda _title, _kind: True)
    assert checked >= 85


@pytest.mark.servers
@pytest.mark.slow
def test_variable_queries_list_values(demo_runs: dict[str, DemoRun]) -> None:
    prometheus = demo_runs["healthy"].prometheus
    seen = 0
    for dashboard in load_dashboards().values():
        for name, selector, label in _variable_queries(dashboard):
            selector = selector.replace("$agent", next(iter(THRESHOLDS)))
            values = prometheus.api(f"label/{label}/values", **{"match[]": selector})
            assert values, f"variable {name}: {selector} has no {label} values"
            if name == "agent":
                assert set(THRESHOLDS) <= set(values)
            seen += 1
    assert seen >= 4


@pytest.mark.servers
@pytest.mark.slow
def test_duration_exemplars_carry_trace_ids(demo_runs: dict[str, DemoRun]) -> None:
    prometheus = demo_runs["healthy"].prometheus
    agents = load_dashboards()["dpagent-agents.json"]
    targets = [t for _, t in iter_targets(agents) if t.get("exemplar")]
    assert targets
    now = time.time()
    for target in targets:
        expr = _substitute(
            target["expr"], {**GRAFANA_VARIABLES, "$agent": "image_sourcing", "$operation": ".*"}
        )

        def exemplars(expr: str = expr) -> list[dict[str, Any]]:
            data = prometheus.api(
                "query_exemplars", query=expr, start=repr(now - 120), end=repr(time.time())
            )
            return [e for s in data for e in s["exemplars"]]

        found = prometheus.wait_for(lambda _p: exemplars(), timeout=20, message="exemplars")
        assert all(re.fullmatch(r"[0-9a-f]{32}", e["labels"]["trace_id"]) for e in found)


@pytest.mark.servers
def test_firing_alerts_panel_shows_the_alert(demo_runs: dict[str, DemoRun]) -> None:
    overview = load_dashboards()["dpagent-overview.json"]
    (panel,) = [p for p in overview["panels"] if p["title"] == "Firing alerts"]
    prometheus = demo_runs["degraded"].prometheus
    rows = prometheus.query(panel["targets"][0]["expr"])
    assert any(r["metric"].get("agent") == "vehicle_applications" for r in rows), rows
    # The healthy run fires nothing, so the panel is empty there: it is failure-only.
    healthy = demo_runs["healthy"].prometheus
    assert not healthy.query(panel["targets"][0]["expr"])
