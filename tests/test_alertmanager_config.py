"""deploy/prometheus/alertmanager.yml and its entrypoint: amtool's checks, the routing of every
generated alert, inhibition on a real Alertmanager, and the webhook URL from the environment."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from servers import (
    ALERTMANAGER_CONFIG,
    WEBHOOK_PLACEHOLDER,
    AlertmanagerServer,
    ManagedProcess,
    find_binary,
    http_json,
    start_on_free_port,
)

from dpagent.telemetry.rules import build_rules

ENTRYPOINT = ALERTMANAGER_CONFIG.parent / "alertmanager-entrypoint.sh"


def _amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [find_binary("amtool"), *args], capture_output=True, text=True, check=False, timeout=30
    )


def _config() -> dict[str, Any]:
    return dict(yaml.safe_load(ALERTMANAGER_CONFIG.read_text()))


def test_amtool_check_config() -> None:
    result = _amtool("check-config", str(ALERTMANAGER_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


ROUTES = [
    (
        {"severity": "critical", "alertname": "DPAgentSuccessRateLow", "agent": "x"},
        "dpagent-critical",
    ),
    ({"severity": "warning", "alertname": "DPAgentOperationSlow", "agent": "x"}, "dpagent-warning"),
    (
        {"severity": "critical", "alertname": "DPAgentTargetDown", "instance": "a:1"},
        "dpagent-critical",
    ),
    # Anything unlabelled still reaches someone.
    ({"alertname": "Unexpected"}, "dpagent-warning"),
]


@pytest.mark.parametrize(("labels", "receiver"), ROUTES)
def test_amtool_routes(labels: dict[str, str], receiver: str) -> None:
    result = _amtool(
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_CONFIG}",
        f"--verify.receivers={receiver}",
        *(f"{k}={v}" for k, v in labels.items()),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_amtool_routes_a_wrong_expectation_fails() -> None:
    # The check above can fail: a warning does not page.
    result = _amtool(
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_CONFIG}",
        "--verify.receivers=dpagent-critical",
        "severity=warning",
    )
    assert result.returncode != 0


def test_every_generated_alert_routes_by_its_severity() -> None:
    alerts = [r for g in build_rules()["groups"] for r in g["rules"] if "alert" in r]
    for rule in alerts:
        labels = {"alertname": rule["alert"], **rule["labels"]}
        result = _amtool(
            "config",
            "routes",
            "test",
            f"--config.file={ALERTMANAGER_CONFIG}",
            *(f"{k}={v}" for k, v in labels.items()),
        )
        assert result.stdout.strip() == f"dpagent-{rule['labels']['severity']}", labels


def test_grouping_webhooks_and_commented_examples() -> None:
    config = _config()
    assert config["route"]["group_by"] == ["alertname", "agent"]
    hooks = [h for r in config["receivers"] for h in r.get("webhook_configs", [])]
    assert len(hooks) == len(config["receivers"]) == 2
    assert all(h["url"] == WEBHOOK_PLACEHOLDER and h["send_resolved"] for h in hooks)
    text = ALERTMANAGER_CONFIG.read_text()
    assert "# email_configs:" in text and "# slack_configs:" in text
    # The entrypoint replaces exactly this placeholder (its regex escapes the dot).
    assert WEBHOOK_PLACEHOLDER.replace(".invalid", "\\.invalid") in ENTRYPOINT.read_text()


def _post_alerts(am: AlertmanagerServer, alerts: list[dict[str, str]]) -> None:
    now = datetime.now(timezone.utc)
    body = [
        {
            "labels": labels,
            "annotations": {"summary": "test"},
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(minutes=10)).isoformat(),
        }
        for labels in alerts
    ]
    http_json(f"{am.url}/api/v2/alerts", method="POST", body=body)


@pytest.mark.servers
def test_inhibition_on_a_real_alertmanager(
    alertmanager_factory: Callable[..., AlertmanagerServer],
) -> None:
    am = alertmanager_factory(webhook_url="http://127.0.0.1:9/unused")
    down = {"severity": "critical", "job": "dpagent", "instance": "a:8000"}
    _post_alerts(
        am,
        [
            {"alertname": "DPAgentTargetDown", "agent": "image_sourcing", **down},
            # a down agent target that never reported an agent label
            {
                "alertname": "DPAgentTargetDown",
                "job": "dpagent",
                "instance": "c:8000",
                "severity": "critical",
            },
            {
                "alertname": "DPAgentTargetDown",
                "job": "pushgateway",
                "instance": "pg:9091",
                "severity": "warning",
            },
            {
                "alertname": "DPAgentSuccessRateLow",
                "agent": "image_sourcing",
                "severity": "critical",
            },
            {
                "alertname": "DPAgentSuccessRateLow",
                "agent": "bigcommerce_upload",
                "severity": "critical",
            },
            {
                "alertname": "DPAgentHighMemory",
                "job": "dpagent",
                "instance": "a:8000",
                "severity": "warning",
            },
            {
                "alertname": "DPAgentHighMemory",
                "job": "dpagent",
                "instance": "b:8000",
                "severity": "warning",
            },
            {
                "alertname": "DPAgentErrorBudgetBurn",
                "agent": "bigcommerce_upload",
                "severity": "critical",
                "long_window": "1h",
                "short_window": "5m",
            },
            {
                "alertname": "DPAgentErrorBudgetBurn",
                "agent": "bigcommerce_upload",
                "severity": "warning",
                "long_window": "1d",
                "short_window": "2h",
            },
            {
                "alertname": "DPAgentErrorSpike",
                "agent": "bigcommerce_upload",
                "severity": "warning",
            },
        ],
    )

    def states(a: AlertmanagerServer) -> dict[tuple[str, ...], str] | None:
        alerts = a.alerts()
        if len(alerts) < 10:
            return None
        return {
            (
                x["labels"]["alertname"],
                x["labels"].get("agent", ""),
                x["labels"].get("instance", ""),
                x["labels"].get("severity", ""),
            ): x["status"]["state"]
            for x in alerts
        }

    got = am.wait_for(states, timeout=10, message="ten alerts in Alertmanager")
    assert got == {
        ("DPAgentTargetDown", "image_sourcing", "a:8000", "critical"): "active",
        ("DPAgentTargetDown", "", "c:8000", "critical"): "active",
        # neither has an agent: the critical one must not count as the same alert
        ("DPAgentTargetDown", "", "pg:9091", "warning"): "active",
        # the down target's agent is held back; another agent is not
        ("DPAgentSuccessRateLow", "image_sourcing", "", "critical"): "suppressed",
        ("DPAgentSuccessRateLow", "bigcommerce_upload", "", "critical"): "active",
        # process alerts: the down instance's only; a target without agent inhibits no agent
        ("DPAgentHighMemory", "", "a:8000", "warning"): "suppressed",
        ("DPAgentHighMemory", "", "b:8000", "warning"): "active",
        # the critical burn tier holds back the warning tier of the same agent
        ("DPAgentErrorBudgetBurn", "bigcommerce_upload", "", "critical"): "active",
        ("DPAgentErrorBudgetBurn", "bigcommerce_upload", "", "warning"): "suppressed",
        ("DPAgentErrorSpike", "bigcommerce_upload", "", "warning"): "active",
    }


def _run_entrypoint(tmp_path: Path, url: str) -> tuple[ManagedProcess, str]:
    """Start Alertmanager through the entrypoint script; return it and its loaded config."""
    env = {
        "ALERTMANAGER_BIN": find_binary("prometheus-alertmanager"),
        "DPAGENT_ALERTMANAGER_TEMPLATE": str(ALERTMANAGER_CONFIG),
        "DPAGENT_ALERTMANAGER_CONFIG": str(tmp_path / "rendered.yml"),
        "DPAGENT_ALERT_WEBHOOK_URL": url,
    }

    def args(port: int) -> list[str]:
        return [
            "sh",
            str(ENTRYPOINT),
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ]

    proc, port = start_on_free_port("alertmanager-entrypoint", tmp_path, args, env=env)
    try:
        status = http_json(f"http://127.0.0.1:{port}/api/v2/status")
    except Exception:
        proc.stop()
        raise
    return proc, str(status["config"]["original"])


@pytest.mark.servers
def test_entrypoint_puts_the_webhook_url_from_the_environment(tmp_path: Path) -> None:
    # `|` is sed's delimiter in the script and `&` its "whole match": both must survive.
    url = "http://127.0.0.1:5001/hooks/dpagent?token=a&b=c|d"
    proc, original = _run_entrypoint(tmp_path, url)
    try:
        loaded = yaml.safe_load(original)
        urls = [h["url"] for r in loaded["receivers"] for h in r.get("webhook_configs", [])]
        assert urls == [url, url]
        assert WEBHOOK_PLACEHOLDER not in original
    finally:
        proc.stop()


@pytest.mark.servers
def test_entrypoint_without_a_url_keeps_the_placeholder_and_says_so(tmp_path: Path) -> None:
    proc, original = _run_entrypoint(tmp_path, "")
    try:
        assert WEBHOOK_PLACEHOLDER in original
        assert "DPAGENT_ALERT_WEBHOOK_URL is not set" in proc.log()
    finally:
        proc.stop()


def test_entrypoint_rejects_a_url_that_is_not_http(tmp_path: Path) -> None:
    result = subprocess.run(
        ["sh", str(ENTRYPOINT)],
        env={
            **os.environ,
            "DPAGENT_ALERT_WEBHOOK_URL": "ftp://example.com/x",
            "ALERTMANAGER_BIN": "/bin/false",
            "DPAGENT_ALERTMANAGER_TEMPLATE": str(ALERTMANAGER_CONFIG),
            "DPAGENT_ALERTMANAGER_CONFIG": str(tmp_path / "rendered.yml"),
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    assert result.returncode == 2
    assert "must be an http(s) URL" in result.stderr
    assert not (tmp_path / "rendered.yml").exists()
