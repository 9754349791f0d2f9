"""deploy/prometheus/prometheus.yml: valid for promtool, loaded by the real Prometheus, and
shaped as the contract says (file-SD `dpagent` job, `pushgateway` with honor_labels, the
generated rules, Alertmanager discovered the same way)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from servers import ALERT_RULES, PROMETHEUS_CONFIG, PrometheusServer, find_binary

from dpagent.telemetry.rules import ALERTING_GROUP, RECORDING_GROUP, build_rules

CONFIG_DIR = PROMETHEUS_CONFIG.parent


def _config() -> dict[str, Any]:
    return dict(yaml.safe_load(PROMETHEUS_CONFIG.read_text()))


def _job(name: str) -> dict[str, Any]:
    [job] = [j for j in _config()["scrape_configs"] if j["job_name"] == name]
    return dict(job)


def test_promtool_check_config_including_the_rules() -> None:
    result = subprocess.run(
        [find_binary("promtool"), "check", "config", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "SUCCESS: 1 rule files found" in output
    assert "WARNING" not in output  # e.g. a file_sd file that does not exist


def test_rule_files_are_the_generated_rules() -> None:
    resolved = [(CONFIG_DIR / p).resolve() for p in _config()["rule_files"]]
    assert resolved == [ALERT_RULES.resolve()]


def test_agents_are_discovered_from_files_and_the_pushgateway_keeps_pushed_labels() -> None:
    for name in ("dpagent", "pushgateway", "alertmanager", "prometheus"):
        job = _job(name)
        assert "static_configs" not in job, f"{name}: targets belong in targets/{name}.json"
        [sd] = job["file_sd_configs"]
        assert sd["files"] == [f"targets/{name}.json"]
        groups = json.loads((CONFIG_DIR / "targets" / f"{name}.json").read_text())
        assert groups and all(re.fullmatch(r"[\w.-]+:\d+", t) for g in groups for t in g["targets"])
        assert all("agent" not in g.get("labels", {}) for g in groups)
    assert _job("pushgateway")["honor_labels"] is True
    assert not _job("dpagent").get("honor_labels", False)


def test_alertmanager_is_discovered_the_same_way() -> None:
    [am] = _config()["alerting"]["alertmanagers"]
    assert am["api_version"] == "v2"  # v1 is gone in Prometheus 3
    assert am["file_sd_configs"] == [{"files": ["targets/alertmanager.json"]}]


def test_stays_valid_for_prometheus_3() -> None:
    config = _config()
    # An explicit timeout above a test's 1 s interval would be invalid; the default is capped.
    assert "scrape_timeout" not in config["global"]
    text = PROMETHEUS_CONFIG.read_text() + ALERT_RULES.read_text()
    for gone in ("holt_winters", "api_version: v1", "scrape_classic_histograms"):
        assert gone not in text
    # `le` in the float form Prometheus 3 normalises every bucket boundary to.
    assert all("." in le or le == "+Inf" for le in re.findall(r'le="([^"]+)"', text))


@pytest.mark.servers
def test_real_prometheus_loads_the_config_and_every_rule(
    prometheus_factory: Callable[..., PrometheusServer],
) -> None:
    # The repo's file as it is: its own intervals, its own rule file.
    prom = prometheus_factory(scrape_interval=None, evaluation_interval=None)
    groups = {g["name"]: g for g in prom.rule_groups()}
    expected = {g["name"]: g for g in build_rules()["groups"]}
    assert set(groups) == {RECORDING_GROUP, ALERTING_GROUP}
    for name, group in expected.items():
        assert len(groups[name]["rules"]) == len(group["rules"]), name
        assert all(r["health"] != "err" for r in groups[name]["rules"]), groups[name]
        assert groups[name]["interval"] == 15
    loaded = yaml.safe_load(prom.api("status/config")["yaml"])
    assert {j["job_name"] for j in loaded["scrape_configs"]} == {
        "dpagent",
        "pushgateway",
        "prometheus",
        "alertmanager",
    }


@pytest.mark.servers
def test_file_sd_targets_are_picked_up_when_the_files_change(
    prometheus_factory: Callable[..., PrometheusServer],
) -> None:
    prom = prometheus_factory()
    # Nothing listens on these ports: discovery is what is tested, not scraping.
    prom.set_targets("dpagent", ["127.0.0.1:9", "127.0.0.1:10"])
    prom.set_targets("pushgateway", ["127.0.0.1:11"])

    def discovered(p: PrometheusServer) -> dict[str, set[str]] | None:
        found = {
            job: {t["labels"]["instance"] for t in p.targets(job)}
            for job in ("dpagent", "pushgateway")
        }
        return found if all(found.values()) and len(found["dpagent"]) == 2 else None

    found = prom.wait_for(discovered, timeout=30, message="targets from targets/*.json")
    assert found == {"dpagent": {"127.0.0.1:9", "127.0.0.1:10"}, "pushgateway": {"127.0.0.1:11"}}
