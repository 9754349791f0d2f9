"""Prometheus alerting and recording rules, generated from the thresholds' one source.

Every number in ``alerts.rules.yml`` comes from :data:`~dpagent.telemetry.thresholds.THRESHOLDS`
(per-agent ``max_duration`` and ``min_success_rate``) or from one :class:`RulesConfig`
(windows, ``for`` durations, burn-rate factors, resource limits, the minimum-traffic guard).
The committed file is this module's output, and a test fails when the two differ::

    python -m dpagent.telemetry.rules --write            # regenerate alerts.rules.yml
    python -m dpagent.telemetry.rules --check            # exit 1 (and a diff) on drift
    python -m dpagent.telemetry.rules --fast --output /tmp/fast.rules.yml

The fast variant (:func:`fast_config`) is the same rules with every window, offset and ``for``
divided by a scale factor (60 by default: a minute becomes a second), so end-to-end tests
with 1 s scrape and evaluation intervals see alerts fire within seconds. Nothing else
changes: thresholds, factors and the minimum-traffic guard are the production values.

This module imports nothing from the rest of :mod:`dpagent`; it is part of the library.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final

import yaml

from dpagent.telemetry.metrics import DURATION_BUCKETS
from dpagent.telemetry.thresholds import THRESHOLDS, AgentThresholds

__all__ = [
    "ALERTING_GROUP",
    "ALERT_NAMES",
    "DEFAULT_CONFIG",
    "RECORDING_GROUP",
    "BurnRateWindow",
    "RulesConfig",
    "build_rules",
    "burn_rate_windows",
    "check_rules_file",
    "fast_config",
    "format_duration",
    "le_label",
    "main",
    "render_rules",
    "write_rules",
]

RECORDING_GROUP: Final = "dpagent.recording"
ALERTING_GROUP: Final = "dpagent.alerts"

# The contract's alert names, in the order they appear in the file and the runbook.
ALERT_NAMES: Final[tuple[str, ...]] = (
    "DPAgentSuccessRateLow",
    "DPAgentErrorBudgetBurn",
    "DPAgentOperationSlow",
    "DPAgentErrorSpike",
    "DPAgentTargetDown",
    "DPAgentHighMemory",
    "DPAgentHighCPU",
    "DPAgentStalled",
    "DPAgentPerformanceDegraded",
    "DPAgentRateLimited",
)

_OPS: Final = "dpagent_operations_total"
_DURATION: Final = "dpagent_operation_duration_seconds"
_IN_PROGRESS: Final = "dpagent_operations_in_progress"

_HEADER: Final = """\
# GENERATED FILE - do not edit by hand.
# Source: dpagent/telemetry/thresholds.py (per-agent thresholds) and
#         dpagent/telemetry/rules.py (RulesConfig: windows, for, burn rates, limits).
# Regenerate: python -m dpagent.telemetry.rules --write
# Runbook:    docs/runbook.md (one section per alert)
"""


@dataclass(frozen=True)
class BurnRateWindow:
    """One tier of the multi-window, multi-burn-rate SLO alert (Google SRE workbook, ch. 5).

    The tier fires when the error ratio over both ``long_window`` and ``short_window`` is
    above ``factor`` times the error budget. The short window makes the alert stop soon
    after the failures stop; ``factor`` is the workbook's (14.4 = 2% of a 30-day budget in
    one hour), capped per agent by :attr:`RulesConfig.max_burn_share` where the objective
    makes it unreachable.
    """

    severity: str
    long_window: float
    short_window: float
    factor: float
    for_: float


def _duration(seconds: float) -> Any:
    """A dataclass field holding a window, offset or ``for`` (seconds), scaled by the fast
    variant."""
    return field(default=seconds, metadata={"duration": True})


@dataclass(frozen=True)
class RulesConfig:
    """Every setting of the generated rules, in one place. Durations are in seconds.

    Change a value here (or pass a modified copy to :func:`render_rules`) and regenerate;
    the per-agent thresholds themselves live in :mod:`dpagent.telemetry.thresholds`.
    """

    thresholds: Mapping[str, AgentThresholds] = field(default_factory=lambda: THRESHOLDS)
    # Scrape job of the agents' /metrics endpoints. Every rate, ratio, quantile and in-progress
    # reading is restricted to it: a batch run's pushed series (job `dpagent_batch` through the
    # Pushgateway) are a snapshot of one process, replaced wholesale by the next run's, so their
    # rate is 0 between pushes and a meaningless jump (or fake counter reset) at each push.
    agent_job: str = "dpagent"
    # Scrape job of the Pushgateway: its being down loses batch metrics, it pages nobody.
    pushgateway_job: str = "pushgateway"
    # Base of every runbook_url; an anchor per alert (the alert name, lower-cased) is appended.
    runbook_base_url: str = "docs/runbook.md"
    # Fewest operations in a window for any ratio alert to fire: a handful of calls cannot page.
    min_operations: int = 20

    success_rate_window: float = _duration(600)
    success_rate_for: float = _duration(300)

    # DPAgentOperationSlow: share of operations above the agent's max_duration bucket.
    slow_share: float = 0.05
    slow_window: float = _duration(600)
    slow_for: float = _duration(600)

    # DPAgentErrorSpike: error ratio over `window` > factor x the ratio of the preceding
    # `baseline_window` (itself floored at `min_ratio`), with at least `min_failures` failures.
    error_spike_factor: float = 3.0
    error_spike_min_ratio: float = 0.01
    error_spike_min_failures: int = 5
    error_spike_window: float = _duration(300)
    error_spike_baseline_window: float = _duration(3600)
    error_spike_for: float = _duration(120)

    target_down_for: float = _duration(120)
    pushgateway_down_for: float = _duration(600)
    # How far back a down target's agents are looked up, to give its alert the `agent` label.
    target_down_agent_lookback: float = _duration(6 * 3600)

    memory_limit_bytes: int = 1024**3
    memory_for: float = _duration(900)
    cpu_limit_cores: float = 0.9
    cpu_window: float = _duration(300)
    cpu_for: float = _duration(900)

    # DPAgentStalled: operations in progress, none finished over `window`, for `for_`.
    stalled_window: float = _duration(600)
    stalled_for: float = _duration(600)
    # An agent that finished an operation longer than the stall window (the largest duration
    # bucket within it) in this lookback has operations that legitimately outlast the window:
    # nothing finishing for a while is normal for it, not a stall.
    stalled_long_operation_lookback: float = _duration(86400)

    # DPAgentPerformanceDegraded: p95 over `window` > factor x the same window `offset` ago.
    degraded_factor: float = 2.0
    degraded_min_p95_seconds: float = 1.0
    degraded_window: float = _duration(3600)
    degraded_offset: float = _duration(86400)
    degraded_for: float = _duration(1800)
    # Also recorded for dashboards: p95 over this short window.
    p95_window: float = _duration(300)

    # DPAgentRateLimited: sustained HTTP 429 responses from an upstream API.
    rate_limited_metric: str = "dpagent_bigcommerce_rate_limited_total"
    rate_limited_per_minute: float = 1.0
    rate_limited_window: float = _duration(300)
    rate_limited_for: float = _duration(600)

    # SLO: the objective is each agent's min_success_rate over `slo_period`.
    slo_period: float = _duration(30 * 86400)
    burn_rate_windows: tuple[BurnRateWindow, ...] = (
        BurnRateWindow("critical", 3600, 300, 14.4, 120),
        BurnRateWindow("critical", 6 * 3600, 1800, 6.0, 900),
        BurnRateWindow("warning", 86400, 7200, 3.0, 3600),
        BurnRateWindow("warning", 3 * 86400, 6 * 3600, 1.0, 3 * 3600),
    )
    # An error ratio cannot exceed 1, so the highest reachable burn rate is 1/error_budget
    # (3.33x for a 70% objective). Factors are capped at this share of it, so a capped tier
    # fires once `max_burn_share` (90%) of operations fail.
    max_burn_share: float = 0.9

    def __post_init__(self) -> None:
        if not self.thresholds:
            raise ValueError("RulesConfig needs at least one agent threshold")
        if not 0 < self.max_burn_share <= 1:
            raise ValueError(f"max_burn_share must be in (0, 1], got {self.max_burn_share!r}")
        for f in fields(self):
            if f.metadata.get("duration") and not getattr(self, f.name) > 0:
                raise ValueError(f"{f.name} must be > 0 seconds")

    def scaled(self, scale: float) -> RulesConfig:
        """The same rules with every window, offset and ``for`` divided by ``scale``."""
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")
        changes: dict[str, Any] = {
            f.name: getattr(self, f.name) / scale
            for f in fields(self)
            if f.metadata.get("duration")
        }
        changes["burn_rate_windows"] = tuple(
            replace(
                w,
                long_window=w.long_window / scale,
                short_window=w.short_window / scale,
                for_=w.for_ / scale,
            )
            for w in self.burn_rate_windows
        )
        return replace(self, **changes)

    def runbook_url(self, alertname: str) -> str:
        return f"{self.runbook_base_url}#{alertname.lower()}"


DEFAULT_CONFIG: Final = RulesConfig()


def fast_config(scale: float = 60, base: RulesConfig = DEFAULT_CONFIG) -> RulesConfig:
    """The end-to-end test variant: ``base`` with windows and ``for`` divided by ``scale``.

    With the default 60, a 5-minute window becomes 5 s: use 1 s scrape and evaluation
    intervals so every rate window still holds several samples.
    """
    return base.scaled(scale)


# --- formatting -------------------------------------------------------------------------


def format_duration(seconds: float) -> str:
    """A Prometheus duration literal in the largest unit that divides ``seconds`` exactly."""
    millis = round(seconds * 1000)
    if millis <= 0 or abs(millis - seconds * 1000) > 1e-6:
        raise ValueError(f"{seconds!r} s is not a positive whole number of milliseconds")
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if millis % size == 0:
            return f"{millis // size}{unit}"
    return f"{millis}ms"


def le_label(seconds: float) -> str:
    """The ``le`` label value of a bucket boundary, in the float form Prometheus 3 normalises
    to and prometheus_client exposes (``60`` -> ``"60.0"``)."""
    return repr(float(seconds))


def _num(value: float) -> str:
    """A threshold as PromQL reads it: shortest form, float noise rounded away."""
    text = repr(round(float(value), 10))
    return text[:-2] if text.endswith(".0") else text


def _pct(ratio: float) -> str:
    return f"{round(ratio * 100, 6):g}%"


def _bytes(n: float) -> str:
    for unit, size in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{round(n / size, 2):g}{unit}"
    return f"{n:g}B"


def _sel(**labels: str) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _live(config: RulesConfig, metric: str, **labels: str) -> str:
    """``metric`` as scraped from the agents themselves (job ``agent_job``), never the
    Pushgateway's frozen snapshots of batch runs."""
    return metric + _sel(job=config.agent_job, **labels)


# --- the rules --------------------------------------------------------------------------


def burn_rate_windows(
    thresholds: AgentThresholds, config: RulesConfig = DEFAULT_CONFIG
) -> list[BurnRateWindow]:
    """The burn-rate tiers used for one agent, factors capped to what its objective allows.

    A tier is dropped when an earlier (faster) tier already fires at the same or a lower
    factor: after capping, it could only repeat that tier's alert later.
    """
    ceiling = round(config.max_burn_share / thresholds.error_budget, 4)
    kept: list[BurnRateWindow] = []
    for tier in config.burn_rate_windows:
        factor = min(tier.factor, ceiling)
        if any(k.factor <= factor for k in kept):
            continue
        kept.append(replace(tier, factor=factor))
    return kept


class _Literal(str):
    """A string YAML writes as a ``|`` block (multi-line PromQL stays readable)."""


class _Dumper(yaml.SafeDumper):
    pass


def _represent_literal(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", str(data), style=style)


_Dumper.add_representer(_Literal, _represent_literal)


def _expr(text: str) -> _Literal:
    lines = textwrap.dedent(text).strip().splitlines()
    return _Literal("\n".join(line.rstrip() for line in lines))


def _record(name: str, expr: str, **labels: str) -> dict[str, Any]:
    rule: dict[str, Any] = {"record": name, "expr": _expr(expr)}
    if labels:
        rule["labels"] = labels
    return rule


def _alert(
    config: RulesConfig,
    name: str,
    expr: str,
    for_: float,
    severity: str,
    summary: str,
    description: str,
    **labels: str,
) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": _expr(expr),
        "for": format_duration(for_),
        "labels": {"severity": severity, **labels},
        "annotations": {
            "summary": summary,
            "description": description,
            "runbook_url": config.runbook_url(name),
        },
    }


def _ratio_windows(config: RulesConfig) -> list[float]:
    windows = {config.success_rate_window, config.error_spike_window, config.degraded_window}
    for tier in config.burn_rate_windows:
        windows.update((tier.long_window, tier.short_window))
    return sorted(windows)


def _ops_rate(w: float) -> str:
    return f"agent:dpagent_operations:rate{format_duration(w)}"


def _error_ratio(w: float) -> str:
    return f"agent:dpagent_operations:error_ratio_rate{format_duration(w)}"


def _success_ratio(w: float) -> str:
    return f"agent:dpagent_operations:success_ratio_rate{format_duration(w)}"


def _slow_ratio(w: float) -> str:
    return f"agent:dpagent_operations:slow_ratio_rate{format_duration(w)}"


def _p95(w: float) -> str:
    return f"agent:dpagent_operation_duration_seconds:p95_rate{format_duration(w)}"


def _recording_rules(config: RulesConfig) -> Iterator[dict[str, Any]]:
    ops, failures = _live(config, _OPS), _live(config, _OPS, outcome="failure")
    for w in _ratio_windows(config):
        d = format_duration(w)
        yield _record(_ops_rate(w), f"sum by (agent) (rate({ops}[{d}]))")
        yield _record(
            f"agent:dpagent_operation_failures:rate{d}",
            f"sum by (agent) (rate({failures}[{d}]))",
        )
        # Division by a zero rate gives NaN, which never satisfies a comparison: an idle
        # agent neither fires nor resolves a ratio alert.
        yield _record(
            _error_ratio(w), f"agent:dpagent_operation_failures:rate{d}\n/\n{_ops_rate(w)}"
        )
    d = format_duration(config.success_rate_window)
    yield _record(
        _success_ratio(config.success_rate_window),
        f"""
        sum by (agent) (rate({_live(config, _OPS, outcome="success")}[{d}]))
        /
        {_ops_rate(config.success_rate_window)}
        """,
    )
    # Read the bucket at each agent's own max_duration boundary: an exact count of the
    # operations at or under the threshold, where a quantile would be an interpolation.
    d = format_duration(config.slow_window)
    for agent, t in config.thresholds.items():
        le = le_label(t.max_duration)
        yield _record(
            _slow_ratio(config.slow_window),
            f"""
            1 - (
              sum by (agent) (rate({_live(config, _DURATION + "_bucket", agent=agent, le=le)}[{d}]))
              /
              sum by (agent) (rate({_live(config, _DURATION + "_count", agent=agent)}[{d}]))
            )
            """,
            agent=agent,
        )
    for w in sorted({config.p95_window, config.degraded_window}):
        d = format_duration(w)
        yield _record(
            _p95(w),
            "histogram_quantile(0.95, sum by (agent, le) "
            f"(rate({_live(config, _DURATION + '_bucket')}[{d}])))",
        )


def _stall_bucket(config: RulesConfig) -> float:
    """The largest duration bucket boundary within the stall window."""
    within = [b for b in DURATION_BUCKETS if b <= config.stalled_window]
    if not within:
        raise ValueError(f"stalled_window {config.stalled_window!r} s is below every bucket")
    return within[-1]


def _guard(config: RulesConfig, w: float) -> str:
    """The minimum-traffic guard: at least ``min_operations`` operations in window ``w``."""
    return f"{_ops_rate(w)} * {_num(w)} >= {config.min_operations}"


def _success_rate_alerts(config: RulesConfig) -> Iterator[dict[str, Any]]:
    w = config.success_rate_window
    for agent, t in config.thresholds.items():
        yield _alert(
            config,
            "DPAgentSuccessRateLow",
            f"""
            {_success_ratio(w)}{_sel(agent=agent)} < {_num(t.min_success_rate)}
            and on (agent)
            {_guard(config, w)}
            """,
            config.success_rate_for,
            "critical",
            f"{{{{ $labels.agent }}}} success rate is below its {_pct(t.min_success_rate)} "
            "objective",
            f"Only {{{{ $value | humanizePercentage }}}} of {{{{ $labels.agent }}}} operations "
            f"succeeded over the last {format_duration(w)} (objective: at least "
            f"{_pct(t.min_success_rate)}).",
            agent=agent,
        )


def _burn_rate_alerts(config: RulesConfig) -> Iterator[dict[str, Any]]:
    period = format_duration(config.slo_period)
    for agent, t in config.thresholds.items():
        budget = _num(t.error_budget)
        for tier in burn_rate_windows(t, config):
            long_w, short_w = format_duration(tier.long_window), format_duration(tier.short_window)
            factor = _num(tier.factor)
            yield _alert(
                config,
                "DPAgentErrorBudgetBurn",
                f"""
                {_error_ratio(tier.long_window)}{_sel(agent=agent)} / {budget} > {factor}
                and on (agent)
                {_error_ratio(tier.short_window)}{_sel(agent=agent)} / {budget} > {factor}
                and on (agent)
                {_guard(config, tier.long_window)}
                """,
                tier.for_,
                tier.severity,
                f"{{{{ $labels.agent }}}} is burning its {period} error budget at over {factor}x "
                "the sustainable rate",
                f"{{{{ $labels.agent }}}} failed {{{{ $value | humanize }}}}x the share of "
                f"operations its {_pct(t.min_success_rate)} objective allows, over the last "
                f"{long_w} and still over the last {short_w} (alert threshold {factor}x).",
                agent=agent,
                long_window=long_w,
                short_window=short_w,
            )


def _slow_alerts(config: RulesConfig) -> Iterator[dict[str, Any]]:
    w = config.slow_window
    for agent, t in config.thresholds.items():
        yield _alert(
            config,
            "DPAgentOperationSlow",
            f"""
            {_slow_ratio(w)}{_sel(agent=agent)} > {_num(config.slow_share)}
            and on (agent)
            {_guard(config, w)}
            """,
            config.slow_for,
            "warning",
            f"{{{{ $labels.agent }}}} operations are slower than {t.max_duration:g}s",
            f"{{{{ $value | humanizePercentage }}}} of {{{{ $labels.agent }}}} operations took "
            f"longer than {t.max_duration:g}s over the last {format_duration(w)} "
            f"(alert above {_pct(config.slow_share)}).",
            agent=agent,
        )


def _generic_alerts(config: RulesConfig) -> Iterator[dict[str, Any]]:
    c = config
    w, base = c.error_spike_window, c.error_spike_baseline_window
    d, bd = format_duration(w), format_duration(base)
    # The baseline is NaN (0/0) when the agent was idle in the baseline window and absent
    # when it did not exist yet; both fall back to the floor (`>= 0` drops the NaN), or an
    # agent that starts failing after a quiet hour could never spike.
    yield _alert(
        c,
        "DPAgentErrorSpike",
        f"""
        {_error_ratio(w)}
        > on (agent)
        {_num(c.error_spike_factor)} * (
            clamp_min(
                (
                    sum by (agent) (rate({_live(c, _OPS, outcome="failure")}[{bd}] offset {d}))
                    /
                    sum by (agent) (rate({_live(c, _OPS)}[{bd}] offset {d}))
                ) >= 0,
                {_num(c.error_spike_min_ratio)}
            )
            or on (agent)
            agent:dpagent_operation_failures:rate{d} * 0 + {_num(c.error_spike_min_ratio)}
        )
        and on (agent)
        agent:dpagent_operation_failures:rate{d} * {_num(w)} >= {c.error_spike_min_failures}
        """,
        c.error_spike_for,
        "warning",
        "{{ $labels.agent }} failures jumped above their recent baseline",
        f"{{{{ $value | humanizePercentage }}}} of {{{{ $labels.agent }}}} operations failed "
        f"over the last {d}, more than {_num(c.error_spike_factor)}x the failure ratio of the "
        f"{bd} before.",
    )

    job = c.agent_job
    lookback = format_duration(c.target_down_agent_lookback)
    # A down target exposes nothing, so its agents are read from its last samples; a target
    # never seen reporting an agent still alerts, without the `agent` label.
    yield _alert(
        c,
        "DPAgentTargetDown",
        f"""
        (
          (up{{job="{job}"}} == 0)
          * on (job, instance) group_right ()
          group by (job, instance, agent) (last_over_time({_live(c, _OPS)}[{lookback}]))
        )
        or on (job, instance)
        (up{{job="{job}"}} == 0)
        """,
        c.target_down_for,
        "critical",
        "Scrape target {{ $labels.instance }} (job {{ $labels.job }}) is down",
        f"Prometheus has failed to scrape {{{{ $labels.instance }}}} of job "
        f"{{{{ $labels.job }}}} (up = {{{{ $value }}}}) for more than "
        f"{format_duration(c.target_down_for)}; its agents' metrics are missing.",
    )
    # The Pushgateway: while it is down batch runs still work, but their pushes fail and
    # their metrics are missing. That is a ticket, not a page; and its pushed series carry
    # the batch's own job label, so no agent can be named.
    yield _alert(
        c,
        "DPAgentTargetDown",
        f'up{{job="{c.pushgateway_job}"}} == 0',
        c.pushgateway_down_for,
        "warning",
        "Pushgateway {{ $labels.instance }} (job {{ $labels.job }}) is down",
        f"Prometheus has failed to scrape the Pushgateway at {{{{ $labels.instance }}}} "
        f"(up = {{{{ $value }}}}) for more than {format_duration(c.pushgateway_down_for)}; "
        "batch runs keep working but their pushed metrics are not reaching Prometheus.",
    )

    yield _alert(
        c,
        "DPAgentHighMemory",
        f'process_resident_memory_bytes{{job="{c.agent_job}"}} > {c.memory_limit_bytes}',
        c.memory_for,
        "warning",
        "{{ $labels.instance }} uses more than " + _bytes(c.memory_limit_bytes) + " of memory",
        "The agent process at {{ $labels.instance }} has {{ $value | humanize1024 }}B "
        f"resident (limit {_bytes(c.memory_limit_bytes)}) for "
        f"{format_duration(c.memory_for)}.",
    )

    yield _alert(
        c,
        "DPAgentHighCPU",
        f'rate(process_cpu_seconds_total{{job="{c.agent_job}"}}[{format_duration(c.cpu_window)}])'
        f" > {_num(c.cpu_limit_cores)}",
        c.cpu_for,
        "warning",
        "{{ $labels.instance }} uses more than " + _num(c.cpu_limit_cores) + " CPU cores",
        'The agent process at {{ $labels.instance }} used {{ $value | printf "%.2f" }} CPU '
        "cores "
        f"(limit {_num(c.cpu_limit_cores)}) over the last {format_duration(c.cpu_window)}, "
        f"for {format_duration(c.cpu_for)}.",
    )

    sw = format_duration(c.stalled_window)
    long_le = le_label(_stall_bucket(c))
    slw = format_duration(c.stalled_long_operation_lookback)
    by = "job, instance, agent"
    # Per process (one stuck replica is a stall even while others finish work), live targets
    # only (a pushed batch snapshot keeps its in-progress gauge and counters frozen forever),
    # and not for agents whose operations have recently taken longer than the window.
    yield _alert(
        c,
        "DPAgentStalled",
        f"""
        sum by ({by}) ({_live(c, _IN_PROGRESS)}) > 0
        and on ({by})
        sum by ({by}) (increase({_live(c, _OPS)}[{sw}])) == 0
        unless on (agent)
        (
          sum by (agent) (increase({_live(c, _DURATION + "_count")}[{slw}]))
          - on (agent)
          sum by (agent) (increase({_live(c, _DURATION + "_bucket", le=long_le)}[{slw}]))
          > 0
        )
        """,
        c.stalled_for,
        "critical",
        "{{ $labels.agent }} has operations in progress but none finishing",
        f"{{{{ $value }}}} {{{{ $labels.agent }}}} operations are in progress on "
        f"{{{{ $labels.instance }}}} and none has "
        f"finished (succeeded or failed) in the last {sw}, for "
        f"{format_duration(c.stalled_for)}.",
    )

    dw, off = format_duration(c.degraded_window), format_duration(c.degraded_offset)
    yield _alert(
        c,
        "DPAgentPerformanceDegraded",
        f"""
        {_p95(c.degraded_window)}
        > on (agent)
        {_num(c.degraded_factor)} * histogram_quantile(0.95,
            sum by (agent, le) (rate({_live(c, _DURATION + "_bucket")}[{dw}] offset {off}))
        )
        and on (agent)
        {_p95(c.degraded_window)} >= {_num(c.degraded_min_p95_seconds)}
        and on (agent)
        {_guard(c, c.degraded_window)}
        and on (agent)
        sum by (agent) (increase({_live(c, _DURATION + "_count")}[{dw}] offset {off}))
        >= {c.min_operations}
        """,
        c.degraded_for,
        "warning",
        "{{ $labels.agent }} p95 duration is far above the same time " + off + " earlier",
        f"The 95th percentile duration of {{{{ $labels.agent }}}} operations over the last "
        f"{dw} is {{{{ $value | humanizeDuration }}}}, more than "
        f"{_num(c.degraded_factor)}x the same window {off} earlier.",
    )

    rw = format_duration(c.rate_limited_window)
    yield _alert(
        c,
        "DPAgentRateLimited",
        f"""
        sum by (agent, endpoint) (rate({_live(c, c.rate_limited_metric)}[{rw}])) * 60
        > {_num(c.rate_limited_per_minute)}
        """,
        c.rate_limited_for,
        "warning",
        "{{ $labels.agent }} is being rate limited by {{ $labels.endpoint }}",
        f"{{{{ $labels.endpoint }}}} answered {{{{ $labels.agent }}}} with "
        f"{{{{ $value | humanize }}}} rate-limit (HTTP 429) responses per minute over the "
        f"last {rw} (alert above {_num(c.rate_limited_per_minute)}/min), for "
        f"{format_duration(c.rate_limited_for)}.",
    )


def build_rules(config: RulesConfig = DEFAULT_CONFIG) -> dict[str, Any]:
    """The rule file as a dict (the shape Prometheus loads: ``{"groups": [...]}``)."""
    alerts = [
        *_success_rate_alerts(config),
        *_burn_rate_alerts(config),
        *_slow_alerts(config),
        *_generic_alerts(config),
    ]
    order = {name: i for i, name in enumerate(ALERT_NAMES)}
    alerts.sort(key=lambda rule: order[rule["alert"]])  # stable: per-agent order is kept
    return {
        "groups": [
            {"name": RECORDING_GROUP, "rules": list(_recording_rules(config))},
            {"name": ALERTING_GROUP, "rules": alerts},
        ]
    }


def render_rules(config: RulesConfig = DEFAULT_CONFIG) -> str:
    """The rule file's text, byte for byte what ``--write`` commits."""
    body = yaml.dump(
        build_rules(config), Dumper=_Dumper, sort_keys=False, width=1000, allow_unicode=True
    )
    return _HEADER + body


def write_rules(path: str | Path, config: RulesConfig = DEFAULT_CONFIG) -> Path:
    """Write :func:`render_rules` to ``path`` (parents created); return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_rules(config), encoding="utf-8")
    return out


def check_rules_file(path: str | Path, config: RulesConfig = DEFAULT_CONFIG) -> list[str]:
    """A unified diff from the file at ``path`` to the generator's output; empty when equal."""
    p = Path(path)
    current = p.read_text(encoding="utf-8") if p.exists() else ""
    expected = render_rules(config)
    return list(
        difflib.unified_diff(
            current.splitlines(keepends=True),
            expected.splitlines(keepends=True),
            fromfile=f"{p} (committed)",
            tofile=f"{p} (generated)",
        )
    )


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m dpagent.telemetry.rules",
        description="Generate the Prometheus alerting and recording rules from THRESHOLDS.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write the rules to --output")
    mode.add_argument(
        "--check", action="store_true", help="exit 1 and print a diff when --output has drifted"
    )
    parser.add_argument(
        "--output",
        "-o",
        default="alerts.rules.yml",
        help="rule file path (default: ./alerts.rules.yml, run from the repository root)",
    )
    parser.add_argument(
        "--fast",
        action="store_true",
        help="the end-to-end test variant: windows and `for` divided by --scale",
    )
    parser.add_argument("--scale", type=float, default=60, help="divisor for --fast (default 60)")
    parser.add_argument("--runbook-base-url", help="base URL of docs/runbook.md in alert links")
    parser.add_argument("--memory-limit-bytes", type=int, help="DPAgentHighMemory limit")
    parser.add_argument("--cpu-limit-cores", type=float, help="DPAgentHighCPU limit")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    overrides: dict[str, Any] = {}
    if args.runbook_base_url is not None:
        overrides["runbook_base_url"] = args.runbook_base_url
    if args.memory_limit_bytes is not None:
        overrides["memory_limit_bytes"] = args.memory_limit_bytes
    if args.cpu_limit_cores is not None:
        overrides["cpu_limit_cores"] = args.cpu_limit_cores
    config = replace(DEFAULT_CONFIG, **overrides)
    if args.fast:
        config = fast_config(args.scale, config)

    if args.check:
        diff = check_rules_file(args.output, config)
        if diff:
            sys.stdout.writelines(diff)
            print(
                f"\n{args.output} differs from the generator: run "
                "`python -m dpagent.telemetry.rules --write`",
                file=sys.stderr,
            )
            return 1
        return 0
    if args.write:
        print(f"wrote {write_rules(args.output, config)}", file=sys.stderr)
        return 0
    sys.stdout.write(render_rules(config))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
