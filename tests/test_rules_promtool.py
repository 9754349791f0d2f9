"""``promtool test rules`` cases for every alert, built from THRESHOLDS, kept honest.

The cases are generated here and committed as ``deploy/prometheus/tests/alerts.test.yml``
(so ``promtool test rules deploy/prometheus/tests/alerts.test.yml`` runs them without
Python). For every alert: a case that fires, with exact labels and annotations; a case
just on the other side of the threshold that does not; and a low-traffic case. Per-agent
alerts are tested against each agent's own thresholds, all agents in the same case, so a
rule that used another agent's number fails.

Expected values are computed in this module from the thresholds, the contract's numbers
and plain arithmetic (a ratio, a histogram quantile, a Python copy of Go's ``humanize*``
template functions), never read from the rule expressions. ``test_promtool_catches_*``
breaks the generated rules on purpose and checks that these cases then fail.

After changing thresholds or rule settings: ``python tests/test_rules_promtool.py --write``.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from servers import REPO_ROOT, find_binary

from dpagent.telemetry.rules import ALERTING_GROUP, DEFAULT_CONFIG, RECORDING_GROUP, render_rules
from dpagent.telemetry.thresholds import THRESHOLDS, AgentThresholds

RULES_FROM_TEST_FILE = "../../../alerts.rules.yml"

# The contract's numbers (CONTRACT.md), written here on purpose rather than imported.
SLOW_SHARE = 0.05  # DPAgentOperationSlow: more than 5% of operations over max_duration
TARGET_DOWN_FOR_MIN = 2  # DPAgentTargetDown: up == 0 for 2 minutes
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 45, 60, 90, 120, 300, 600)
# The SRE workbook's multi-window tiers: (severity, long, short, factor, for), in minutes.
WORKBOOK_TIERS = (
    ("critical", 60, 5, 14.4, 2),
    ("critical", 360, 30, 6.0, 15),
    ("warning", 1440, 120, 3.0, 60),
    ("warning", 4320, 360, 1.0, 180),
)
MAX_BURN_SHARE = 0.9  # a capped tier fires when 90% of operations fail

# Design settings of RulesConfig (windows, for, guards): the one config object.
C = DEFAULT_CONFIG
MIN_OPS = C.min_operations
RUNBOOK = "docs/runbook.md"

JOB, INSTANCE = "dpagent", "agent-1:8000"


# --- Go template functions, as Prometheus 2.42 implements them (template/template.go) ---


def go_g4(value: float) -> str:
    """Go's ``%.4g`` (same rules as Python's for finite values)."""
    return f"{value:.4g}"


def humanize(value: float) -> str:
    if value == 0 or math.isnan(value) or math.isinf(value):
        return go_g4(value)
    prefix = ""
    if abs(value) >= 1:
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(value) < 1000:
                break
            prefix, value = p, value / 1000
        return f"{go_g4(value)}{prefix}"
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(value) >= 1:
            break
        prefix, value = p, value * 1000
    return f"{go_g4(value)}{prefix}"


def humanize_1024(value: float) -> str:
    if abs(value) <= 1 or math.isnan(value) or math.isinf(value):
        return go_g4(value)
    prefix = ""
    for p in ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"):
        if abs(value) < 1024:
            break
        prefix, value = p, value / 1024
    return f"{go_g4(value)}{prefix}"


def humanize_percentage(value: float) -> str:
    return f"{go_g4(value * 100)}%"


def humanize_duration(value: float) -> str:
    if value == 0:
        return f"{go_g4(value)}s"
    if abs(value) >= 1:
        sign = "-" if value < 0 else ""
        value = abs(value)
        whole = int(value)
        seconds, minutes = whole % 60, (whole // 60) % 60
        hours, days = (whole // 3600) % 24, whole // 86400
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{go_g4(value)}s"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(value) >= 1:
            break
        prefix, value = p, value * 1000
    return f"{go_g4(value)}{prefix}s"


def pct(ratio: float) -> str:
    """A threshold as the rule text states it (70%, 95%)."""
    return f"{round(ratio * 100, 6):g}%"


def dur(minutes: float) -> str:
    """Minutes as a Prometheus duration, in the largest whole unit."""
    seconds = round(minutes * 60)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def minutes(seconds: float) -> float:
    return seconds / 60


# --- input series -----------------------------------------------------------------------


def num(value: float) -> str:
    text = repr(round(float(value), 6))
    return text[:-2] if text.endswith(".0") else text


def counter(*segments: tuple[float, int]) -> str:
    """A counter rising by ``rate`` per step for ``steps`` steps, segment after segment,
    starting at 0 at t=0 (promtool's expanding notation)."""
    parts, value, first = [], 0.0, True
    for rate, steps in segments:
        if first:
            parts.append(f"0+{num(rate)}x{steps}")
            value, first = rate * steps, False
        else:
            value += rate
            parts.append(f"{num(value)}+{num(rate)}x{steps - 1}")
            value += rate * (steps - 1)
    return " ".join(parts)


def gauge(*segments: tuple[float, int]) -> str:
    """A gauge holding ``value`` for ``steps`` steps per segment (first value at t=0)."""
    parts, first = [], True
    for value, steps in segments:
        parts.append(f"{num(value)}x{steps if first else steps - 1}")
        first = False
    return " ".join(parts)


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    body = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{body}}}", "values": values}


def ops(agent: str, outcome: str, values: str, operation: str = "op") -> dict[str, str]:
    return series(
        "dpagent_operations_total",
        values,
        job=JOB,
        instance=INSTANCE,
        agent=agent,
        operation=operation,
        outcome=outcome,
    )


def le_text(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def histogram(
    agent: str, shares: Mapping[float, float], per_step: float, steps: int
) -> list[dict[str, str]]:
    """Bucket and count series for ``per_step`` observations a step, ``shares[b]`` of them
    in the bucket whose upper bound is ``b``."""
    return histogram_segments(agent, [(shares, per_step, steps)])


def histogram_segments(
    agent: str, segments: Sequence[tuple[Mapping[float, float], float, int]]
) -> list[dict[str, str]]:
    out = []
    for bound in (*BUCKETS, math.inf):
        cumulative = [
            (per_step * sum(s for b, s in shares.items() if b <= bound), steps)
            for shares, per_step, steps in segments
        ]
        out.append(
            series(
                "dpagent_operation_duration_seconds_bucket",
                counter(*cumulative),
                job=JOB,
                instance=INSTANCE,
                agent=agent,
                operation="op",
                le=le_text(bound),
            )
        )
    out.append(
        series(
            "dpagent_operation_duration_seconds_count",
            counter(*[(per_step, steps) for _, per_step, steps in segments]),
            job=JOB,
            instance=INSTANCE,
            agent=agent,
            operation="op",
        )
    )
    return out


def histogram_quantile(q: float, shares: Mapping[float, float]) -> float:
    """Prometheus' linear interpolation inside the bucket holding the q-th observation."""
    rank, lower, cumulative = q, 0.0, 0.0
    for bound in BUCKETS:
        share = shares.get(bound, 0.0)
        if cumulative + share >= rank and share > 0:
            return lower + (bound - lower) * (rank - cumulative) / share
        cumulative += share
        lower = bound
    return BUCKETS[-1]


def neighbours(bound: float) -> tuple[float, float]:
    i = BUCKETS.index(bound)
    return BUCKETS[i - 1], BUCKETS[i + 1]


# --- expected alerts --------------------------------------------------------------------


def alert(labels: Mapping[str, str], summary: str, description: str, name: str) -> dict[str, Any]:
    return {
        "exp_labels": dict(labels),
        "exp_annotations": {
            "summary": summary,
            "description": description,
            "runbook_url": f"{RUNBOOK}#{name.lower()}",
        },
    }


def alert_test(name: str, at: float, expected: Iterable[dict[str, Any]]) -> dict[str, Any]:
    return {"eval_time": dur(at), "alertname": name, "exp_alerts": list(expected)}


def group(
    name: str,
    input_series: Sequence[dict[str, str]],
    alert_tests: Sequence[dict[str, Any]] = (),
    expr_tests: Sequence[dict[str, Any]] = (),
    interval: str = "1m",
) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "interval": interval, "input_series": list(input_series)}
    if alert_tests:
        out["alert_rule_test"] = list(alert_tests)
    if expr_tests:
        out["promql_expr_test"] = list(expr_tests)
    return out


# --- DPAgentSuccessRateLow --------------------------------------------------------------

PER_MIN = 1000  # operations a minute in the ordinary cases


def success_rate_cases() -> list[dict[str, Any]]:
    name, w = "DPAgentSuccessRateLow", minutes(C.success_rate_window)
    at = 30

    def expected(agent: str, t: AgentThresholds, ratio: float) -> dict[str, Any]:
        return alert(
            {"severity": "critical", "agent": agent},
            f"{agent} success rate is below its {pct(t.min_success_rate)} objective",
            f"Only {humanize_percentage(ratio)} of {agent} operations succeeded over the "
            f"last {dur(w)} (objective: at least {pct(t.min_success_rate)}).",
            name,
        )

    below: list[dict[str, str]] = []
    above: list[dict[str, str]] = []
    low: list[dict[str, str]] = []
    enough: list[dict[str, str]] = []
    fire: list[dict[str, Any]] = []
    fire_min: list[dict[str, Any]] = []
    for agent, t in THRESHOLDS.items():
        threshold_ops = round(t.min_success_rate * PER_MIN)
        ok = threshold_ops - 1  # one operation a minute short of the objective
        below += [
            ops(agent, "success", counter((ok, 40))),
            ops(agent, "failure", counter((PER_MIN - ok, 40))),
        ]
        fire.append(expected(agent, t, ok / PER_MIN))
        # One operation a minute over the objective, with one operation failing entirely:
        # the ratio is the agent's, summed over its operations.
        ok = threshold_ops + 1
        above += [
            ops(agent, "success", counter((ok, 40))),
            ops(agent, "failure", counter((PER_MIN - ok - 10, 40))),
            ops(agent, "success", counter((0, 40)), operation="broken"),
            ops(agent, "failure", counter((10, 40)), operation="broken"),
        ]
        # Every call fails, but the window holds one call fewer than the guard asks for
        # (or one more).
        for bucket, calls in ((low, MIN_OPS - 1), (enough, MIN_OPS + 1)):
            bucket += [
                ops(agent, "success", counter((0, 40))),
                ops(agent, "failure", counter((calls / w, 40))),
            ]
        fire_min.append(expected(agent, t, 0.0))
    # Each batch run pushes its own process's totals under the same grouping key, replacing
    # the previous run's: 1000 successes, then 1010 successes and 60 failures (94% of the
    # second run succeeded). rate() sees +10 successes and +60 failures: a 14% "success
    # ratio" over 70 operations, from snapshots that are not live traffic at all.
    pushed_at = 20 + minutes(C.success_rate_for) + 1
    pushed = [
        series(
            "dpagent_operations_total", gauge((first, 20), (second, 20)), job="dpagent_batch",
            instance="batch-host", agent=agent, operation="batch", outcome=outcome,
        )
        for agent in THRESHOLDS
        for outcome, first, second in (("success", 1000, 1010), ("failure", 0, 60))
    ]  # fmt: skip
    return [
        group(
            f"{name}: each agent just under its own objective", below, [alert_test(name, at, fire)]
        ),
        group(f"{name}: each agent just over its own objective", above, [alert_test(name, at, [])]),
        group(
            f"{name}: every call fails, {MIN_OPS - 1} calls a window (low traffic)",
            low,
            [alert_test(name, at, [])],
        ),
        group(
            f"{name}: every call fails, {MIN_OPS + 1} calls a window",
            enough,
            [alert_test(name, at, fire_min)],
        ),
        group(
            f"{name}: a batch run pushed again to the Pushgateway",
            pushed,
            [alert_test(name, pushed_at, [])],
        ),
    ]


# --- DPAgentOperationSlow ---------------------------------------------------------------


def slow_cases() -> list[dict[str, Any]]:
    name, w = "DPAgentOperationSlow", minutes(C.slow_window)
    at = 30
    slow_over = SLOW_SHARE + 0.01
    slow_under = SLOW_SHARE - 0.01

    def expected(agent: str, t: AgentThresholds, share: float) -> dict[str, Any]:
        return alert(
            {"severity": "warning", "agent": agent},
            f"{agent} operations are slower than {t.max_duration:g}s",
            f"{humanize_percentage(share)} of {agent} operations took longer than "
            f"{t.max_duration:g}s over the last {dur(w)} (alert above {pct(SLOW_SHARE)}).",
            name,
        )

    def shares(t: AgentThresholds, slow: float) -> dict[float, float]:
        # Half the operations end under the bucket below the threshold, the rest just
        # under the threshold, and `slow` of them in the bucket above it. A rule reading
        # the wrong `le` (or a quantile) sees 50% or 0% slow instead.
        lower, upper = neighbours(t.max_duration)
        return {lower: 0.5, t.max_duration: 0.5 - slow, upper: slow}

    over, under, low, enough, fire, fire_all = [], [], [], [], [], []
    for agent, t in THRESHOLDS.items():
        over += histogram(agent, shares(t, slow_over), PER_MIN, 40)
        fire.append(expected(agent, t, slow_over))
        under += histogram(agent, shares(t, slow_under), PER_MIN, 40)
        upper = neighbours(t.max_duration)[1]
        low += histogram(agent, {upper: 1.0}, (MIN_OPS - 1) / w, 40)
        enough += histogram(agent, {upper: 1.0}, (MIN_OPS + 1) / w, 40)
        # The guard counts operations (outcome series); every one here is slow.
        for bucket, calls in ((low, MIN_OPS - 1), (enough, MIN_OPS + 1)):
            bucket.append(ops(agent, "success", counter((calls / w, 40))))
            bucket.append(ops(agent, "failure", counter((0, 40))))
        fire_all.append(expected(agent, t, 1.0))
    for bucket in (over, under):
        for agent in THRESHOLDS:
            bucket += [
                ops(agent, "success", counter((PER_MIN, 40))),
                ops(agent, "failure", counter((0, 40))),
            ]
    return [
        group(
            f"{name}: {pct(slow_over)} over each agent's max_duration",
            over,
            [alert_test(name, at, fire)],
        ),
        group(
            f"{name}: {pct(slow_under)} over each agent's max_duration",
            under,
            [alert_test(name, at, [])],
        ),
        group(f"{name}: all slow, {MIN_OPS - 1} calls a window", low, [alert_test(name, at, [])]),
        group(
            f"{name}: all slow, {MIN_OPS + 1} calls a window",
            enough,
            [alert_test(name, at, fire_all)],
        ),
    ]


# --- DPAgentErrorSpike ------------------------------------------------------------------


def error_spike_cases() -> list[dict[str, Any]]:
    name = "DPAgentErrorSpike"
    w, base = minutes(C.error_spike_window), minutes(C.error_spike_baseline_window)
    factor, floor = C.error_spike_factor, C.error_spike_min_ratio
    baseline_ratio = 2 * floor  # above the floor, so the baseline itself is what is compared
    spike_at = base + w  # the baseline window ends right where the spike begins
    # The condition holds once the short window is all spike; `for` later the alert fires,
    # while the baseline has only taken in `for` minutes of the spike.
    at = spike_at + w + minutes(C.error_spike_for) + 1
    steps_after = int(at - spike_at + 10)
    threshold = factor * baseline_ratio
    fire_ratio = threshold + 0.01
    quiet_ratio = threshold - 0.01
    assert quiet_ratio > factor * floor  # a rule comparing with the floor alone would fire

    def spike(agent: str, ratio: float) -> list[dict[str, str]]:
        fail_before, fail_after = baseline_ratio * PER_MIN, ratio * PER_MIN
        return [
            ops(
                agent,
                "success",
                counter(
                    (PER_MIN - fail_before, int(spike_at)), (PER_MIN - fail_after, steps_after)
                ),
            ),
            ops(agent, "failure", counter((fail_before, int(spike_at)), (fail_after, steps_after))),
        ]

    def expected(agent: str, ratio: float) -> dict[str, Any]:
        return alert(
            {"severity": "warning", "agent": agent},
            f"{agent} failures jumped above their recent baseline",
            f"{humanize_percentage(ratio)} of {agent} operations failed over the last "
            f"{dur(w)}, more than {factor:g}x the failure ratio of the {dur(base)} before.",
            name,
        )

    fire = [s for agent in THRESHOLDS for s in spike(agent, fire_ratio)]
    quiet = [s for agent in THRESHOLDS for s in spike(agent, quiet_ratio)]
    # Low traffic, no failures before: the floor applies, but a handful of failures
    # (min_failures - 0.5 in the window) cannot fire; min_failures + 0.5 can.
    calls_per_min = 1.5
    few: list[dict[str, str]] = []
    enough: list[dict[str, str]] = []
    fire_few: list[dict[str, Any]] = []
    for agent in THRESHOLDS:
        for bucket, failures in (
            (few, C.error_spike_min_failures - 0.5),
            (enough, C.error_spike_min_failures + 0.5),
        ):
            per_min = failures / w
            bucket += [
                ops(
                    agent,
                    "success",
                    counter((calls_per_min, int(spike_at)), (calls_per_min - per_min, steps_after)),
                ),
                ops(agent, "failure", counter((0, int(spike_at)), (per_min, steps_after))),
            ]
        fire_few.append(expected(agent, (C.error_spike_min_failures + 0.5) / w / calls_per_min))
    # Idle (series at 0) through the baseline window, then busy with failures: the baseline
    # is 0/0 = NaN, which must count as the floor, not as "no baseline, never fire". Checked
    # `for` after the first failing minute, before the baseline window takes in the spike.
    idle_ratio = 0.1
    idle_at = spike_at + 1 + minutes(C.error_spike_for)
    assert idle_at - w < spike_at  # the offset baseline has not reached the spike yet
    idle: list[dict[str, str]] = []
    for agent in THRESHOLDS:
        idle += [
            ops(
                agent,
                "success",
                counter((0, int(spike_at)), (PER_MIN * (1 - idle_ratio), steps_after)),
            ),
            ops(agent, "failure", counter((0, int(spike_at)), (PER_MIN * idle_ratio, steps_after))),
        ]
    return [
        group(
            f"{name}: failure ratio {pct(baseline_ratio)} -> {pct(fire_ratio)}",
            fire,
            [alert_test(name, at, [expected(a, fire_ratio) for a in THRESHOLDS])],
        ),
        group(
            f"{name}: failure ratio {pct(baseline_ratio)} -> {pct(quiet_ratio)}",
            quiet,
            [alert_test(name, at, []), alert_test(name, at + 10, [])],
        ),
        group(
            f"{name}: {C.error_spike_min_failures - 0.5:g} failures in the window (low traffic)",
            few,
            [alert_test(name, at, [])],
        ),
        group(
            f"{name}: {C.error_spike_min_failures + 0.5:g} failures in the window",
            enough,
            [alert_test(name, at, fire_few)],
        ),
        group(
            f"{name}: idle for the baseline window, then {pct(idle_ratio)} failing",
            idle,
            [alert_test(name, idle_at, [expected(a, idle_ratio) for a in THRESHOLDS])],
        ),
    ]


# --- DPAgentErrorBudgetBurn -------------------------------------------------------------


@dataclass(frozen=True)
class Tier:
    severity: str
    long: float  # minutes
    short: float
    factor: float
    for_: float


def expected_tiers(t: AgentThresholds) -> list[Tier]:
    """The workbook tiers, factors capped where the objective cannot reach them, and a
    tier dropped when a faster one already fires at its (capped) factor."""
    ceiling = MAX_BURN_SHARE / t.error_budget
    kept: list[Tier] = []
    for severity, long, short, factor, for_ in WORKBOOK_TIERS:
        capped = round(min(factor, ceiling), 4)
        if any(k.factor <= capped for k in kept):
            continue
        kept.append(Tier(severity, long, short, capped, for_))
    return kept


def burn_cases() -> list[dict[str, Any]]:
    """The threshold of every tier of every agent, each side of it (slow: 3 h and more of
    evaluation, so these run in the 5-minute file)."""
    name = "DPAgentErrorBudgetBurn"
    tiers = {agent: expected_tiers(t) for agent, t in THRESHOLDS.items()}
    # Late enough for the slowest tier's `for` to have elapsed.
    at = max(tier.for_ for agent_tiers in tiers.values() for tier in agent_tiers) + 10
    out = []
    for rank in range(max(len(agent_tiers) for agent_tiers in tiers.values())):
        for side, scale in (("over", 1.02), ("under", 0.98)):
            inputs, firing = [], []
            for agent, t in THRESHOLDS.items():
                if rank >= len(tiers[agent]):
                    continue
                ratio = tiers[agent][rank].factor * t.error_budget * scale
                inputs += _constant_failures(agent, ratio, int(at) + 5)
                firing += [
                    _burn_alert(agent, t, other, ratio)
                    for other in tiers[agent]
                    if ratio > other.factor * t.error_budget
                ]
            out.append(
                group(
                    f"{name}: each agent's tier {rank + 1} ("
                    + ", ".join(
                        f"{a} {tiers[a][rank].factor:g}x {dur(tiers[a][rank].long)}"
                        for a in THRESHOLDS
                        if rank < len(tiers[a])
                    )
                    + f"), failure ratio 2% {side} its threshold",
                    inputs,
                    [alert_test(name, at, firing)],
                )
            )
    return out


def burn_guard_cases() -> list[dict[str, Any]]:
    """The short window and the minimum-traffic guard, on each agent's fastest tier."""
    name = "DPAgentErrorBudgetBurn"
    burst_inputs: list[dict[str, str]] = []
    low_inputs: list[dict[str, str]] = []
    enough_inputs: list[dict[str, str]] = []
    burst_tests: list[dict[str, Any]] = []
    low_tests: list[dict[str, Any]] = []
    enough_tests: list[dict[str, Any]] = []
    for agent, t in THRESHOLDS.items():
        fastest = expected_tiers(t)[0]
        query = (
            f'ALERTS{{alertname="{name}", agent="{agent}", '
            f'long_window="{dur(fastest.long)}", alertstate="firing"}}'
        )
        labels = {"alertname": name, "alertstate": "firing", **_burn_labels(agent, fastest)}
        sample = {
            "labels": "ALERTS{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}",
            "value": 1,
        }
        # Everything fails for a long window, then nothing: the long window still burns,
        # the short one has recovered, and the alert stops.
        burst = int(fastest.long)
        recovered = burst + int(fastest.short) + 1
        burst_inputs += [
            ops(agent, "success", counter((0, burst), (PER_MIN, recovered - burst + 5))),
            ops(agent, "failure", counter((PER_MIN, burst), (0, recovered - burst + 5))),
        ]
        burst_tests += [
            {"expr": query, "eval_time": dur(burst - 1), "exp_samples": [sample]},
            {"expr": query, "eval_time": dur(recovered), "exp_samples": []},
        ]
        # Every call fails, one call fewer (more) than the guard in the long window.
        at = fastest.long + fastest.for_ + 30
        for inputs, tests, calls, samples in (
            (low_inputs, low_tests, MIN_OPS - 1, []),
            (enough_inputs, enough_tests, MIN_OPS + 1, [sample]),
        ):
            inputs += _constant_failures(agent, 1.0, int(at) + 5, per_min=calls / fastest.long)
            tests.append({"expr": query, "eval_time": dur(at), "exp_samples": samples})
    return [
        group(
            f"{name}: the fastest tier stops once its short window recovers",
            burst_inputs,
            expr_tests=burst_tests,
        ),
        group(
            f"{name}: every call fails, {MIN_OPS - 1} calls per long window (low traffic)",
            low_inputs,
            expr_tests=low_tests,
        ),
        group(
            f"{name}: every call fails, {MIN_OPS + 1} calls per long window",
            enough_inputs,
            expr_tests=enough_tests,
        ),
    ]


def _burn_labels(agent: str, tier: Tier) -> dict[str, str]:
    return {
        "severity": tier.severity,
        "agent": agent,
        "long_window": dur(tier.long),
        "short_window": dur(tier.short),
    }


def _burn_alert(agent: str, t: AgentThresholds, tier: Tier, ratio: float) -> dict[str, Any]:
    return alert(
        _burn_labels(agent, tier),
        f"{agent} is burning its {dur(minutes(C.slo_period))} error budget at over "
        f"{tier.factor:g}x the sustainable rate",
        f"{agent} failed {humanize(ratio / t.error_budget)}x the share of operations its "
        f"{pct(t.min_success_rate)} objective allows, over the last {dur(tier.long)} and "
        f"still over the last {dur(tier.short)} (alert threshold {tier.factor:g}x).",
        "DPAgentErrorBudgetBurn",
    )


def _constant_failures(
    agent: str, ratio: float, steps: int, per_min: float = PER_MIN
) -> list[dict[str, str]]:
    return [
        ops(agent, "success", counter((per_min * (1 - ratio), steps))),
        ops(agent, "failure", counter((per_min * ratio, steps))),
    ]


# --- DPAgentTargetDown ------------------------------------------------------------------


def target_down_cases() -> list[dict[str, Any]]:
    name, for_ = "DPAgentTargetDown", TARGET_DOWN_FOR_MIN
    down_at = 10
    agents = list(THRESHOLDS)
    inputs = [
        # a:8000 runs two agents and goes down at 10m.
        series("up", gauge((1, down_at - 1), (0, 30)), job=JOB, instance="a:8000"),
        # b:8000 has never answered: no agent is known for it.
        series("up", gauge((0, 40)), job=JOB, instance="b:8000"),
        # c:8000 stays up.
        series("up", gauge((1, 40)), job=JOB, instance="c:8000"),
        # The Pushgateway goes down too; its pushed series carry the batch job's name.
        series("up", gauge((1, down_at - 1), (0, 30)), job="pushgateway", instance="pg:9091"),
    ]
    for agent in agents[:2]:
        inputs.append(
            series(
                "dpagent_operations_total",
                counter((5, down_at - 1)),
                job=JOB,
                instance="a:8000",
                agent=agent,
                operation="op",
                outcome="success",
            )
        )
    inputs.append(
        series(
            "dpagent_operations_total",
            counter((5, 40)),
            job=JOB,
            instance="c:8000",
            agent=agents[2],
            operation="op",
            outcome="success",
        )
    )
    inputs.append(
        series(
            "dpagent_operations_total",
            gauge((7, 40)),
            job="dpagent_batch",
            agent=agents[2],
            operation="batch",
            outcome="success",
        )
    )

    def expected(job: str, instance: str, agent: str | None) -> dict[str, Any]:
        labels = {"severity": "critical", "job": job, "instance": instance}
        if agent:
            labels["agent"] = agent
        return alert(
            labels,
            f"Scrape target {instance} (job {job}) is down",
            f"Prometheus has failed to scrape {instance} of job {job} (up = 0) for more than "
            f"{dur(for_)}; its agents' metrics are missing.",
            name,
        )

    never = expected(JOB, "b:8000", None)
    pg_for = minutes(C.pushgateway_down_for)
    # The Pushgateway is not an agent: a ticket after a longer wait, not a page.
    pushgateway = alert(
        {"severity": "warning", "job": "pushgateway", "instance": "pg:9091"},
        "Pushgateway pg:9091 (job pushgateway) is down",
        f"Prometheus has failed to scrape the Pushgateway at pg:9091 (up = 0) for more than "
        f"{dur(pg_for)}; batch runs keep working but their pushed metrics are not reaching "
        "Prometheus.",
        name,
    )
    a_down, c_up = inputs[0], inputs[2]
    return [
        group(
            f"{name}: up, or down for less than {dur(for_)}",
            [a_down, c_up, *inputs[4:7]],
            [alert_test(name, down_at + for_ - 1, [])],
        ),
        group(
            f"{name}: down for {dur(for_)} fires, per agent of the target",
            inputs,
            [
                alert_test(name, down_at + for_ - 1, [never]),
                alert_test(
                    name,
                    down_at + for_,
                    [never, *(expected(JOB, "a:8000", agent) for agent in agents[:2])],
                ),
                alert_test(
                    name,
                    down_at + pg_for - 1,
                    [never, *(expected(JOB, "a:8000", agent) for agent in agents[:2])],
                ),
                alert_test(
                    name,
                    down_at + pg_for,
                    [
                        never,
                        *(expected(JOB, "a:8000", agent) for agent in agents[:2]),
                        pushgateway,
                    ],
                ),
            ],
        ),
    ]


# --- resources --------------------------------------------------------------------------


def resource_cases() -> list[dict[str, Any]]:
    name, limit = "DPAgentHighMemory", C.memory_limit_bytes
    for_ = minutes(C.memory_for)
    at = for_ + 5

    def memory(value: float, instance: str, job: str = JOB) -> dict[str, str]:
        return series(
            "process_resident_memory_bytes", gauge((value, 40)), job=job, instance=instance
        )

    over = alert(
        {"severity": "warning", "job": JOB, "instance": "m1:8000"},
        "m1:8000 uses more than 1GiB of memory",
        f"The agent process at m1:8000 has {humanize_1024(limit + 1)}B resident (limit 1GiB) "
        f"for {dur(for_)}.",
        name,
    )
    out = [
        group(
            f"{name}: one byte over the limit for {dur(for_)}",
            [memory(limit + 1, "m1:8000")],
            [alert_test(name, for_ - 1, []), alert_test(name, at, [over])],
        ),
        group(
            f"{name}: at the limit, or not an agent process",
            # The Pushgateway's own memory is not the agents' to page on.
            [memory(limit, "m2:8000"), memory(limit * 4, "pg:9091", job="pushgateway")],
            [alert_test(name, at, [])],
        ),
    ]

    name, cores = "DPAgentHighCPU", C.cpu_limit_cores
    w, for_ = minutes(C.cpu_window), minutes(C.cpu_for)
    busy, calm = cores + 0.05, cores - 0.05
    at = for_ + w + 5

    def cpu(used: float, instance: str) -> dict[str, str]:
        return series(
            "process_cpu_seconds_total",
            counter((used * 60, int(at) + 5)),
            job=JOB,
            instance=instance,
        )

    out += [
        group(
            f"{name}: {busy:g} cores",
            [cpu(busy, "c1:8000")],
            [
                alert_test(
                    name,
                    at,
                    [
                        alert(
                            {"severity": "warning", "job": JOB, "instance": "c1:8000"},
                            f"c1:8000 uses more than {cores:g} CPU cores",
                            f"The agent process at c1:8000 used {busy:.2f} CPU cores (limit "
                            f"{cores:g}) over the last {dur(w)}, for {dur(for_)}.",
                            name,
                        )
                    ],
                )
            ],
        ),
        group(f"{name}: {calm:g} cores", [cpu(calm, "c2:8000")], [alert_test(name, at, [])]),
    ]
    return out


# --- DPAgentStalled ---------------------------------------------------------------------


def stalled_cases() -> list[dict[str, Any]]:
    name = "DPAgentStalled"
    w, for_ = minutes(C.stalled_window), minutes(C.stalled_for)
    stops = 20  # the stuck agent's last completion
    fires = stops + w + for_
    stuck, idle, busy = THRESHOLDS
    n = int(fires) + 10

    def in_progress(
        agent: str, value: float, instance: str = INSTANCE, job: str = JOB
    ) -> dict[str, str]:
        return series(
            "dpagent_operations_in_progress", gauge((value, n)), job=job, instance=instance,
            agent=agent, operation="op",
        )  # fmt: skip

    def ops_at(agent: str, outcome: str, values: str, instance: str) -> dict[str, str]:
        return series(
            "dpagent_operations_total", values, job=JOB, instance=instance, agent=agent,
            operation="op", outcome=outcome,
        )  # fmt: skip

    inputs = [
        in_progress(stuck, 2),
        ops(stuck, "success", counter((5, stops), (0, n - stops))),
        ops(stuck, "failure", counter((1, stops), (0, n - stops))),
        # Idle: nothing in progress, nothing finishing.
        in_progress(idle, 0),
        ops(idle, "success", counter((0, n))),
        # Busy: always something in progress, and operations keep finishing.
        in_progress(busy, 1),
        ops(busy, "success", counter((5, n))),
    ]

    def expected(agent: str, count: int, instance: str = INSTANCE) -> dict[str, Any]:
        return alert(
            {"severity": "critical", "agent": agent, "job": JOB, "instance": instance},
            f"{agent} has operations in progress but none finishing",
            f"{count} {agent} operations are in progress on {instance} and none has finished "
            f"(succeeded or failed) in the last {dur(w)}, for {dur(for_)}.",
            name,
        )

    # Two replicas of one agent: r1 hangs (1 in progress, nothing finishing), r2 keeps
    # working. Summed over the agent, r2's completions would hide r1's stall.
    replicas = [
        in_progress(stuck, 1, instance="r1:8000"),
        ops_at(stuck, "success", counter((5, stops), (0, n - stops)), "r1:8000"),
        in_progress(stuck, 1, instance="r2:8000"),
        ops_at(stuck, "success", counter((5, n)), "r2:8000"),
    ]
    # A batch run pushed mid-operation: its snapshot has 1 in progress and counters that
    # never move again (rate 0). It is not running now, so it cannot be stalled.
    pushed = [
        in_progress(stuck, 1, instance="batch-host", job="dpagent_batch"),
        series(
            "dpagent_operations_total", gauge((40, n)), job="dpagent_batch",
            instance="batch-host", agent=stuck, operation="op", outcome="success",
        ),
    ]  # fmt: skip
    # An agent whose operations legitimately take longer than the window: one finished
    # after more than the window (only the +Inf bucket counts it), another is running now.
    long_le = max(b for b in BUCKETS if b <= C.stalled_window)
    long_running = [
        in_progress(busy, 1),
        ops(busy, "success", counter((1, 5), (0, n - 5))),
        *(
            series(
                "dpagent_operation_duration_seconds_bucket",
                counter((0, n)),
                job=JOB,
                instance=INSTANCE,
                agent=busy,
                operation="op",
                le=le_text(b),
            )
            for b in BUCKETS
            if b <= long_le
        ),
        series(
            "dpagent_operation_duration_seconds_bucket",
            counter((1, 5), (0, n - 5)),
            job=JOB,
            instance=INSTANCE,
            agent=busy,
            operation="op",
            le="+Inf",
        ),
        series(
            "dpagent_operation_duration_seconds_count",
            counter((1, 5), (0, n - 5)),
            job=JOB,
            instance=INSTANCE,
            agent=busy,
            operation="op",
        ),
    ]
    return [
        group(
            f"{name}: nothing finished for {dur(w)} + {dur(for_)}",
            inputs,
            [alert_test(name, fires - 1, []), alert_test(name, fires, [expected(stuck, 2)])],
        ),
        group(
            f"{name}: one replica hangs while another keeps finishing",
            replicas,
            [alert_test(name, fires, [expected(stuck, 1, "r1:8000")])],
        ),
        group(
            f"{name}: a pushed batch snapshot with an operation in progress",
            pushed,
            [alert_test(name, fires, [])],
        ),
        group(
            f"{name}: operations longer than {dur(w)} finished in the last "
            f"{dur(minutes(C.stalled_long_operation_lookback))}",
            long_running,
            [alert_test(name, fires, [])],
        ),
    ]


# --- DPAgentPerformanceDegraded ---------------------------------------------------------


def degraded_cases() -> list[dict[str, Any]]:
    name = "DPAgentPerformanceDegraded"
    w, offset = minutes(C.degraded_window), minutes(C.degraded_offset)
    for_, factor = minutes(C.degraded_for), C.degraded_factor
    step = 5  # minutes between samples: a day of data stays small
    yesterday = {2.5: 1.0}  # all in (1, 2.5]: p95 = 2.425 s
    base_p95 = histogram_quantile(0.95, yesterday)
    # 10% (20%) in (1, 2.5], the rest in (2.5, 5]: p95 just over (under) 2x yesterday's.
    worse = {2.5: 0.1, 5: 0.9}
    slightly = {2.5: 0.2, 5: 0.8}
    assert histogram_quantile(0.95, worse) > factor * base_p95
    assert histogram_quantile(0.95, slightly) < factor * base_p95
    change = int((offset - for_) / step)  # today's distribution starts here
    at = offset + w + 15
    total = int(at / step) + 3
    per_step = 100.0

    def inputs(agent: str, today: Mapping[float, float], per: float = per_step) -> list[Any]:
        buckets = histogram_segments(
            agent, [(yesterday, per_step, change), (today, per, total - change)]
        )
        return [*buckets, ops(agent, "success", counter((per_step, change), (per, total - change)))]

    a, b, c = THRESHOLDS
    worse_p95 = histogram_quantile(0.95, worse)
    fire = group(
        f"{name}: p95 {base_p95:g}s yesterday, {worse_p95:.4g}s now",
        inputs(a, worse) + inputs(b, slightly),
        [
            alert_test(
                name,
                at,
                [
                    alert(
                        {"severity": "warning", "agent": a},
                        f"{a} p95 duration is far above the same time {dur(offset)} earlier",
                        f"The 95th percentile duration of {a} operations over the last "
                        f"{dur(w)} is {humanize_duration(worse_p95)}, more than {factor:g}x the "
                        f"same window {dur(offset)} earlier.",
                        name,
                    )
                ],
            )
        ],
        interval=f"{step}m",
    )
    # Low traffic now (one call fewer than the guard in the window), or fast operations
    # that got slower but stay under the minimum p95: neither fires.
    low_per_step = (MIN_OPS - 1) / (w / step)
    quick_before = {0.1: 1.0}
    quick_now = {0.5: 1.0}
    assert histogram_quantile(0.95, quick_now) > factor * histogram_quantile(0.95, quick_before)
    assert histogram_quantile(0.95, quick_now) < C.degraded_min_p95_seconds
    quiet_inputs = inputs(a, worse, low_per_step) + histogram_segments(
        c, [(quick_before, per_step, change), (quick_now, per_step, total - change)]
    )
    quiet_inputs.append(ops(c, "success", counter((per_step, total))))
    quiet = group(
        f"{name}: low traffic, or slower but under {C.degraded_min_p95_seconds:g}s",
        quiet_inputs,
        [alert_test(name, at, [])],
        interval=f"{step}m",
    )
    return [fire, quiet]


# --- DPAgentRateLimited -----------------------------------------------------------------


def rate_limited_cases() -> list[dict[str, Any]]:
    name = "DPAgentRateLimited"
    w, for_ = minutes(C.rate_limited_window), minutes(C.rate_limited_for)
    limit = C.rate_limited_per_minute
    agent = "bigcommerce_upload"
    hot, cool = limit * 1.2, limit * 0.8
    at = for_ + w + 5
    products, brands = "/v3/catalog/products", "/v3/catalog/brands"

    def limited(endpoint: str, per_min: float) -> dict[str, str]:
        return series(
            "dpagent_bigcommerce_rate_limited_total",
            counter((per_min, int(at) + 5)),
            job=JOB,
            instance=INSTANCE,
            agent=agent,
            endpoint=endpoint,
        )

    expected = alert(
        {"severity": "warning", "agent": agent, "endpoint": products},
        f"{agent} is being rate limited by {products}",
        f"{products} answered {agent} with {humanize(hot)} rate-limit (HTTP 429) responses per "
        f"minute over the last {dur(w)} (alert above {limit:g}/min), for {dur(for_)}.",
        name,
    )
    return [
        group(
            f"{name}: {hot:g}/min on one endpoint, {cool:g}/min on another",
            [limited(products, hot), limited(brands, cool)],
            [alert_test(name, at, [expected])],
        ),
        group(f"{name}: {cool:g}/min", [limited(brands, cool)], [alert_test(name, at, [])]),
    ]


# --- the file ---------------------------------------------------------------------------

# Cases evaluated every minute, and the long ones (3 h to 26 h of data) every 5 minutes.
FILES: dict[str, tuple[str, tuple[Callable[[], list[dict[str, Any]]], ...]]] = {
    "alerts.test.yml": (
        "1m",
        (
            success_rate_cases,
            burn_guard_cases,
            slow_cases,
            error_spike_cases,
            target_down_cases,
            resource_cases,
            stalled_cases,
            rate_limited_cases,
        ),
    ),
    "alerts-long.test.yml": ("5m", (burn_cases, degraded_cases)),
}
TEST_DIR = REPO_ROOT / "deploy" / "prometheus" / "tests"

HEADER = """\
# GENERATED by tests/test_rules_promtool.py from dpagent/telemetry/thresholds.py - do not
# edit by hand. Regenerate: python tests/test_rules_promtool.py --write
# Run: promtool test rules deploy/prometheus/tests/*.test.yml
"""


def build_test_file(filename: str, only: str = "") -> dict[str, Any]:
    """One promtool test file; ``only`` keeps the groups whose name starts with it."""
    interval, makers = FILES[filename]
    cases = [case for make in makers for case in make() if case["name"].startswith(only)]
    return {
        "rule_files": [RULES_FROM_TEST_FILE],
        "evaluation_interval": interval,
        # Without an order promtool evaluates the groups in random order, and an alert can
        # read a recorded ratio one evaluation old (as Prometheus itself may).
        "group_eval_order": [RECORDING_GROUP, ALERTING_GROUP],
        "tests": cases,
    }


def render_test_file(filename: str, only: str = "") -> str:
    return HEADER + yaml.safe_dump(build_test_file(filename, only), sort_keys=False, width=1000)


def run_promtool(test_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [find_binary("promtool"), "test", "rules", str(test_file)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


# --- tests ------------------------------------------------------------------------------


@pytest.mark.parametrize("filename", sorted(FILES))
def test_committed_promtool_cases_match_the_generator(filename: str) -> None:
    path = TEST_DIR / filename
    assert path.exists() and path.read_text() == render_test_file(filename), (
        f"{path.relative_to(REPO_ROOT)} is stale: python tests/test_rules_promtool.py --write"
    )


def test_every_alert_has_firing_and_quiet_cases() -> None:
    from dpagent.telemetry.rules import ALERT_NAMES

    tested: dict[str, set[str]] = {}
    for filename in FILES:
        for case in build_test_file(filename)["tests"]:
            for t in case.get("alert_rule_test", []):
                kind = "fires" if t["exp_alerts"] else "quiet"
                tested.setdefault(t["alertname"], set()).add(kind)
            for t in case.get("promql_expr_test", []):
                alertname = t["expr"].split('alertname="')[1].split('"')[0]
                tested.setdefault(alertname, set()).add("fires" if t["exp_samples"] else "quiet")
    assert set(tested) == set(ALERT_NAMES)
    assert all(kinds == {"fires", "quiet"} for kinds in tested.values()), tested


@pytest.mark.parametrize("filename", sorted(FILES))
def test_the_rules_pass_their_promtool_cases(filename: str) -> None:
    result = run_promtool(TEST_DIR / filename)
    assert result.returncode == 0, result.stdout + result.stderr


# Each mutation is a plausible bug in the rules; the cases of the alert it touches must
# catch it. (name: (alert whose cases run, text in the generated rules, replacement))
MUTATIONS: dict[str, tuple[str, str, str]] = {
    "another agent's objective": (
        "DPAgentSuccessRateLow",
        '{agent="vehicle_applications"} < 0.8',
        '{agent="vehicle_applications"} < 0.7',
    ),
    "objective off by 0.2 points": (
        "DPAgentSuccessRateLow",
        '{agent="bigcommerce_upload"} < 0.95',
        '{agent="bigcommerce_upload"} < 0.952',
    ),
    "no minimum-traffic guard": (
        "DPAgentSuccessRateLow",
        "agent:dpagent_operations:rate10m * 600 >= 20",
        "agent:dpagent_operations:rate10m * 600 >= 0",
    ),
    "the bucket below the threshold": ("DPAgentOperationSlow", 'le="30.0"', 'le="15.0"'),
    "slow share 7%": (
        "DPAgentOperationSlow",
        'slow_ratio_rate10m{agent="image_sourcing"} > 0.05',
        'slow_ratio_rate10m{agent="image_sourcing"} > 0.07',
    ),
    "error spike against the floor only": (
        "DPAgentErrorSpike",
        "3 * (\n",
        "1 * (\n",
    ),
    "error spike without its failure count": (
        "DPAgentErrorSpike",
        "rate5m * 300 >= 5",
        "rate5m * 300 >= 0",
    ),
    "burn without the short window": (
        "DPAgentErrorBudgetBurn",
        'error_ratio_rate5m{agent="bigcommerce_upload"} / 0.05 > 14.4',
        'error_ratio_rate1h{agent="bigcommerce_upload"} / 0.05 > 14.4',
    ),
    "burn without the traffic guard": (
        "DPAgentErrorBudgetBurn",
        "agent:dpagent_operations:rate1h * 3600 >= 20",
        "agent:dpagent_operations:rate1h * 3600 >= 0",
    ),
    "burn factor uncapped": (
        "DPAgentErrorBudgetBurn",
        '{agent="image_sourcing"} / 0.3 > 3\n',
        '{agent="image_sourcing"} / 0.3 > 3.1\n',
    ),
    "target down after 1m": (
        "DPAgentTargetDown",
        "for: 2m\n    labels:\n      severity: critical\n    annotations:\n      summary: Scrape",
        "for: 1m\n    labels:\n      severity: critical\n    annotations:\n      summary: Scrape",
    ),
    "target down without its agents": ("DPAgentTargetDown", "[6h]", "[1m]"),
    "memory limit >=": ("DPAgentHighMemory", "> 1073741824", ">= 1073741824"),
    "cpu in percent": ("DPAgentHighCPU", "[5m]) > 0.9", "[5m]) > 90"),
    "stalled ignores in-progress": (
        "DPAgentStalled",
        '(dpagent_operations_in_progress{job="dpagent"}) > 0',
        '(dpagent_operations_in_progress{job="dpagent"}) >= 0',
    ),
    "degraded without the minimum p95": (
        "DPAgentPerformanceDegraded",
        "p95_rate1h >= 1\n",
        "p95_rate1h >= 0\n",
    ),
    "degraded against the p50": (
        "DPAgentPerformanceDegraded",
        "2 * histogram_quantile(0.95,",
        "2 * histogram_quantile(0.5,",
    ),
    "rate limit per second": ("DPAgentRateLimited", "[5m])) * 60", "[5m])) * 1"),
    "description without the humanised value": (
        "DPAgentSuccessRateLow",
        "Only {{ $value | humanizePercentage }}",
        "Only {{ $value }}",
    ),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_promtool_catches_broken_rules(mutation: str, tmp_path: Path) -> None:
    alertname, before, after = MUTATIONS[mutation]
    rules = render_rules()
    assert rules.count(before) >= 1, f"mutation {mutation!r} no longer applies: {before!r}"
    (tmp_path / "alerts.rules.yml").write_text(rules.replace(before, after))
    test_dir = tmp_path / "deploy" / "prometheus" / "tests"
    test_dir.mkdir(parents=True)
    ran = []
    for filename in FILES:
        text = render_test_file(filename, only=alertname)
        if build_test_file(filename, only=alertname)["tests"]:
            (test_dir / filename).write_text(text)
            ran.append(run_promtool(test_dir / filename))
    assert ran, f"no cases for {alertname}"
    assert any(r.returncode != 0 for r in ran), (
        f"promtool passed rules with {mutation!r}:\n" + "\n".join(r.stdout for r in ran)
    )


def test_burn_rate_tiers_for_the_current_objectives() -> None:
    # Written out by hand for today's thresholds: a second, independent statement of the
    # capping policy (70% objective: at most 1/0.3 = 3.3x; 80%: 5x; 95%: 20x).
    by_agent = {agent: expected_tiers(t) for agent, t in THRESHOLDS.items()}
    factors = {agent: [(x.long, x.factor) for x in tiers] for agent, tiers in by_agent.items()}
    assert factors == {
        "image_sourcing": [(60, 3.0), (4320, 1.0)],
        "vehicle_applications": [(60, 4.5), (1440, 3.0), (4320, 1.0)],
        "bigcommerce_upload": [(60, 14.4), (360, 6.0), (1440, 3.0), (4320, 1.0)],
    }
    for agent, tiers in by_agent.items():
        budget = THRESHOLDS[agent].error_budget
        assert all(tier.factor * budget < 1 for tier in tiers), f"{agent}: unreachable tier"


def test_humanize_copies_match_go() -> None:
    # Expected strings from Prometheus' own template tests (template/template_test.go).
    assert humanize(0.0) == "0"
    assert humanize(1234567.0) == "1.235M"
    assert humanize(0.012345) == "12.35m"
    assert humanize_1024(1048576.0) == "1Mi"
    assert humanize_1024(1.0) == "1"
    assert humanize_percentage(0.1234567) == "12.35%"
    assert humanize_duration(0) == "0s"
    assert humanize_duration(1) == "1s"
    assert humanize_duration(60) == "1m 0s"
    assert humanize_duration(3600) == "1h 0m 0s"
    assert humanize_duration(86400) == "1d 0h 0m 0s"
    assert humanize_duration(0.1) == "100ms"
    assert humanize_duration(1.5) == "1.5s"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the promtool rule tests.")
    parser.add_argument("--write", action="store_true", help=f"write them into {TEST_DIR}")
    args = parser.parse_args(argv)
    for filename in FILES:
        if args.write:
            TEST_DIR.mkdir(parents=True, exist_ok=True)
            (TEST_DIR / filename).write_text(render_test_file(filename))
            print(f"wrote {TEST_DIR / filename}", file=sys.stderr)
        else:
            sys.stdout.write(render_test_file(filename))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
