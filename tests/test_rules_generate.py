"""The rule generator: one source, no drift, a fast variant that only differs in time.

promtool's behavioural cases live in test_rules_promtool.py; these check the generator and
the committed file as artefacts.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from servers import ALERT_RULES, REPO_ROOT, find_binary

from dpagent.telemetry import rules
from dpagent.telemetry.rules import (
    ALERT_NAMES,
    DEFAULT_CONFIG,
    RulesConfig,
    build_rules,
    fast_config,
    format_duration,
    le_label,
    render_rules,
)
from dpagent.telemetry.thresholds import THRESHOLDS, AgentThresholds

RUNBOOK = REPO_ROOT / "docs" / "runbook.md"
PER_AGENT_ALERTS = ("DPAgentSuccessRateLow", "DPAgentOperationSlow", "DPAgentErrorBudgetBurn")


def _alerts(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def _records(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for g in doc["groups"] for r in g["rules"] if "record" in r]


def _run_cli(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dpagent.telemetry.rules", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_committed_rules_are_the_generators_output() -> None:
    assert ALERT_RULES.read_text() == render_rules(), (
        "alerts.rules.yml has drifted from dpagent/telemetry/thresholds.py / rules.py: "
        "run `python -m dpagent.telemetry.rules --write`"
    )


def test_check_command_passes_on_the_committed_file_and_fails_on_drift(tmp_path: Path) -> None:
    assert _run_cli("--check").returncode == 0
    drifted = tmp_path / "alerts.rules.yml"
    drifted.write_text(ALERT_RULES.read_text().replace("< 0.95", "< 0.9"))
    result = _run_cli("--check", "--output", str(drifted))
    assert result.returncode == 1
    assert (
        "-" + 'agent:dpagent_operations:success_ratio_rate10m{agent="bigcommerce_upload"} < 0.9'
        in (result.stdout.replace("\n-      ", "\n-"))
    ), result.stdout
    assert "--write" in result.stderr
    missing = _run_cli("--check", "--output", str(tmp_path / "absent.yml"))
    assert missing.returncode == 1


def test_write_command_writes_what_render_returns(tmp_path: Path) -> None:
    out = tmp_path / "nested" / "fast.rules.yml"
    result = _run_cli("--write", "--fast", "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_text() == render_rules(fast_config())
    printed = _run_cli("--memory-limit-bytes", "2147483648", "--runbook-base-url", "https://x/rb")
    assert 'process_resident_memory_bytes{job="dpagent"} > 2147483648' in printed.stdout
    assert "runbook_url: https://x/rb#dpagenthighmemory" in printed.stdout


def test_every_contract_alert_is_generated_with_labels_and_annotations() -> None:
    doc = yaml.safe_load(ALERT_RULES.read_text())
    alerts = _alerts(doc)
    assert {a["alert"] for a in alerts} == set(ALERT_NAMES)
    for a in alerts:
        name = a["alert"]
        assert a["labels"]["severity"] in {"critical", "warning"}, name
        assert set(a["annotations"]) == {"summary", "description", "runbook_url"}, name
        assert "{{ $value" in a["annotations"]["description"], f"{name}: no measured value"
        assert a["annotations"]["runbook_url"] == f"docs/runbook.md#{name.lower()}"
        # about one agent: the label is static or comes from `by (agent)` in the expression
        if name in PER_AGENT_ALERTS:
            assert a["labels"]["agent"] in THRESHOLDS, name


def test_each_agent_gets_its_own_thresholds() -> None:
    doc = build_rules()
    alerts = _alerts(doc)
    for agent, t in THRESHOLDS.items():
        [success] = [
            a
            for a in alerts
            if a["alert"] == "DPAgentSuccessRateLow" and a["labels"]["agent"] == agent
        ]
        assert f'{{agent="{agent}"}} < {t.min_success_rate:g}\n' in success["expr"]
        assert f"{t.min_success_rate * 100:g}%" in success["annotations"]["summary"]
        [slow_record] = [
            r
            for r in _records(doc)
            if r["record"].startswith("agent:dpagent_operations:slow_ratio")
            and r.get("labels", {}).get("agent") == agent
        ]
        assert f'agent="{agent}", le="{float(t.max_duration)!r}"' in slow_record["expr"]
        burns = [
            a
            for a in alerts
            if a["alert"] == "DPAgentErrorBudgetBurn" and a["labels"]["agent"] == agent
        ]
        assert burns, agent
        for burn in burns:
            factor = float(re.findall(r"> ([0-9.]+)\n", burn["expr"])[0])
            budget = float(re.findall(r"/ ([0-9.]+) >", burn["expr"])[0])
            assert budget == pytest.approx(1 - t.min_success_rate)
            # a 100% failure ratio must be able to cross the factor: 70% objective -> <= 3.33x
            assert factor * budget < 1, f"{agent}: {factor}x can never fire"


def test_new_thresholds_flow_into_the_rules() -> None:
    config = RulesConfig(thresholds={"price_sync": AgentThresholds(15, 0.99)})
    text = render_rules(config)
    assert '{agent="price_sync"} < 0.99' in text
    assert 'le="15.0"' in text
    assert "image_sourcing" not in text
    # 99%: every workbook factor is reachable (1/0.01 = 100x), all four tiers are kept.
    assert text.count("alert: DPAgentErrorBudgetBurn") == 4


def test_every_recorded_series_an_alert_uses_is_recorded() -> None:
    doc = build_rules()
    recorded = {r["record"] for r in _records(doc)}
    for a in _alerts(doc):
        for used in re.findall(r"\bagent:[a-z0-9_]+:[a-z0-9_]+\b", a["expr"]):
            assert used in recorded, f"{a['alert']} reads {used}, which nothing records"


def _scale_durations(text: str, scale: int) -> str:
    """Every duration literal in rule text divided by ``scale``, by an independent parser."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}

    def fmt(seconds: float) -> str:
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
            if seconds % size == 0:
                return f"{int(seconds // size)}{unit}"
        raise AssertionError(seconds)

    def repl(m: re.Match[str]) -> str:
        return m.group(1) + fmt(float(m.group(2)) * units[m.group(3)] / scale)

    # [5m], offset 1d, rate10m / error_ratio_rate1h (recorded names), "for: 5m", window labels
    pattern = r"(\[|offset |_rate|:rate|for: |_window: )(\d+)(ms|s|m|h|d)\b"
    return re.sub(pattern, repl, text)


def test_fast_variant_differs_only_in_windows_and_for() -> None:
    scale = 60
    fast = render_rules(fast_config(scale))
    assert fast != render_rules()
    # Durations also appear in expressions as seconds (`rate10m * 600`) and in prose;
    # compare structure with those numbers scaled too.
    expected = _scale_durations(render_rules(), scale)
    for w in (600, 3600, 21600, 86400, 259200, 300):
        expected = expected.replace(f" * {w} >=", f" * {w // scale} >=")
    # DPAgentStalled reads the largest duration bucket within its window: 10m -> 10s.
    expected = expected.replace('le="600.0"}[24m]', 'le="10.0"}[24m]')
    fast_doc, expected_doc = yaml.safe_load(fast), yaml.safe_load(expected)
    for fast_rule, expected_rule in zip(
        [r for g in fast_doc["groups"] for r in g["rules"]],
        [r for g in expected_doc["groups"] for r in g["rules"]],
        strict=True,
    ):
        assert fast_rule["expr"] == expected_rule["expr"]
        assert fast_rule.get("for") == expected_rule.get("for")
        assert fast_rule.get("labels") == expected_rule.get("labels")
    # thresholds and the traffic guard are the production ones
    assert "< 0.8\n" in fast and ">= 20" in fast


def test_fast_config_scales_every_duration_and_nothing_else() -> None:
    fast = fast_config(60)
    for field in DEFAULT_CONFIG.__dataclass_fields__.values():
        before, after = getattr(DEFAULT_CONFIG, field.name), getattr(fast, field.name)
        if field.metadata.get("duration"):
            assert after == before / 60, field.name
        elif field.name != "burn_rate_windows":
            assert after == before, field.name
    for a, b in zip(DEFAULT_CONFIG.burn_rate_windows, fast.burn_rate_windows, strict=True):
        assert (b.long_window, b.short_window, b.for_) == (
            a.long_window / 60,
            a.short_window / 60,
            a.for_ / 60,
        )
        assert (b.factor, b.severity) == (a.factor, a.severity)


@pytest.mark.parametrize("variant", ["default", "fast"])
def test_promtool_checks_both_variants(variant: str, tmp_path: Path) -> None:
    config = DEFAULT_CONFIG if variant == "default" else fast_config()
    path = rules.write_rules(tmp_path / "rules.yml", config)
    result = subprocess.run(
        [find_binary("promtool"), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    count = len([r for g in build_rules(config)["groups"] for r in g["rules"]])
    assert f"SUCCESS: {count} rules found" in result.stdout


def test_le_uses_the_float_form_prometheus_3_normalises_to() -> None:
    assert le_label(60) == "60.0"
    assert le_label(0.025) == "0.025"
    assert le_label(2.5) == "2.5"
    for t in THRESHOLDS.values():
        assert f'le="{le_label(t.max_duration)}"' in ALERT_RULES.read_text()


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0.5, 5, 90, 600, 3600, 5400, 86400, 4320)] == [
        "500ms",
        "5s",
        "90s",
        "10m",
        "1h",
        "90m",
        "1d",
        "72m",
    ]
    with pytest.raises(ValueError):
        format_duration(0)
    with pytest.raises(ValueError):
        format_duration(0.0001)


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RulesConfig(thresholds={})
    with pytest.raises(ValueError):
        RulesConfig(success_rate_window=0)
    with pytest.raises(ValueError):
        RulesConfig(max_burn_share=1.5)
    with pytest.raises(ValueError):
        DEFAULT_CONFIG.scaled(0)


def test_rules_module_depends_on_nothing_else_in_dpagent() -> None:
    tree = ast.parse(Path(rules.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 or node.module in {"thresholds"}, ast.dump(node)
            imported.add(node.module or "")
    dpagent = {m for m in imported if m.split(".")[0] == "dpagent"}
    assert all(m.startswith("dpagent.telemetry") for m in dpagent), dpagent


def test_runbook_has_a_section_per_alert_and_the_reachability_note() -> None:
    text = RUNBOOK.read_text()
    headings = {
        re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", text, flags=re.M)
    }
    for name in ALERT_NAMES:
        assert name.lower() in headings, f"docs/runbook.md has no section {name}"
    for uid in ("dpagent-overview", "dpagent-agents", "dpagent-failures", "dpagent-system"):
        assert uid in text
    assert "3.3" in text and "1/0.3" in text.replace(" ", "")


def test_runbook_burn_rate_table_matches_the_generator() -> None:
    rows = [line for line in RUNBOOK.read_text().splitlines() if line.startswith("| `")]
    expected = []
    for agent, t in THRESHOLDS.items():
        for tier in rules.burn_rate_windows(t):
            long_w, short_w = format_duration(tier.long_window), format_duration(tier.short_window)
            expected.append(
                (
                    f"| `{agent}` | {t.min_success_rate * 100:g}% | {t.error_budget * 100:g}% "
                    f"| {long_w}/{short_w}, {format_duration(tier.for_)} | {tier.factor:g}x",
                    f"| {round(tier.factor * t.error_budget * 100, 4):g}% | {tier.severity} |",
                )
            )
    assert len(rows) == len(expected), rows
    for row, (start, end) in zip(rows, expected, strict=True):
        assert row.startswith(start) and row.endswith(end), (row, start, end)
