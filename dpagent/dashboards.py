"""The Grafana dashboards, generated as code from the thresholds' one source.

Six dashboards replace the old Streamlit UI; their JSON in ``deploy/grafana/dashboards/`` is
this module's output, and a test fails when the two differ::

    python -m dpagent.dashboards --write      # regenerate deploy/grafana/dashboards/*.json
    python -m dpagent.dashboards --check      # exit 1 (and a diff) on drift

- ``dpagent-overview``: the last 24h (success rate, mean duration, activity, throughput)
  against the 24h before; success by agent; firing alerts.
- ``dpagent-agents``: one agent (``$agent``, ``$operation``): success rate and p50/p95/p99
  against its thresholds, throughput, a per-operation table, the agent-specific metrics.
- ``dpagent-failures``: failures by agent, operation and error type; a timeline; error-budget
  burn; error logs from Loki with links to their traces.
- ``dpagent-trends``: success rate and volume over days; p95 now against one day and one
  week earlier.
- ``dpagent-logs``: the JSON logs in Loki, filtered by agent, level and free text.
- ``dpagent-system``: memory, CPU, operations in progress, scrape health, the last
  Pushgateway push, the monitoring stack itself.

Threshold lines are PromQL constants built from
:data:`~dpagent.telemetry.thresholds.THRESHOLDS` (and the alert settings from
:data:`~dpagent.telemetry.rules.DEFAULT_CONFIG`), one series per agent, so a panel showing
several agents draws each agent's own line. Panels reference the datasources by the fixed uids
that ``deploy/grafana/provisioning/datasources/datasources.yaml`` provisions.

The models come from ``grafana-foundation-sdk`` pinned to the Grafana 11.6 schema
(schemaVersion 41): install it with the project's dev/test extras.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeAlias

from grafana_foundation_sdk.builders import (
    bargauge,
    common,
    logs,
    loki,
    piechart,
    prometheus,
    stat,
    table,
    timeseries,
)
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.piechart import PieChartType
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from dpagent.telemetry.rules import DEFAULT_CONFIG, RulesConfig
from dpagent.telemetry.thresholds import THRESHOLDS, AgentThresholds

__all__ = [
    "ALERTMANAGER",
    "DASHBOARDS_DIR",
    "DASHBOARD_UIDS",
    "FAILURE_ONLY_NOTE",
    "LOKI",
    "PROMETHEUS",
    "TEMPO",
    "BuiltDashboard",
    "Datasource",
    "build_dashboards",
    "check_dashboards",
    "main",
    "render_dashboard",
    "write_dashboards",
]

DASHBOARDS_DIR: Final = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "dashboards"
SCHEMA_VERSION: Final = 41  # Grafana 11.6, the schema grafana-foundation-sdk is pinned to
TAG: Final = "dpagent"


@dataclass(frozen=True)
class Datasource:
    """A provisioned datasource: panels reference it by ``uid``."""

    uid: str
    type: str

    def ref(self) -> dm.DataSourceRef:
        return dm.DataSourceRef(type_val=self.type, uid=self.uid)


# The uids provisioned in deploy/grafana/provisioning/datasources/datasources.yaml.
PROMETHEUS: Final = Datasource("dpagent-prometheus", "prometheus")
LOKI: Final = Datasource("dpagent-loki", "loki")
TEMPO: Final = Datasource("dpagent-tempo", "tempo")
ALERTMANAGER: Final = Datasource("dpagent-alertmanager", "alertmanager")

DASHBOARD_UIDS: Final[Mapping[str, str]] = {
    "overview": "dpagent-overview",
    "agents": "dpagent-agents",
    "failures": "dpagent-failures",
    "trends": "dpagent-trends",
    "logs": "dpagent-logs",
    "system": "dpagent-system",
}

# Metric names (CONTRACT.md and docs/agents.md).
OPS: Final = "dpagent_operations_total"
DURATION: Final = "dpagent_operation_duration_seconds"
ERRORS: Final = "dpagent_operation_errors_total"
IN_PROGRESS: Final = "dpagent_operations_in_progress"
LAST_SUCCESS: Final = "dpagent_last_success_timestamp_seconds"
# The Loki stream of the agents' JSON logs, as deploy/alloy/config.alloy labels it.
LOG_STREAM: Final = 'job="dpagent"'

# Appended to the description of panels that stay empty while nothing fails (the tests check
# those under the degraded demo profile).
FAILURE_ONLY_NOTE: Final = "Empty while nothing fails."

# Variable "All" values are regexes, so a selector reads `agent=~"$agent"`.
ALL: Final = ".*"

# A builder of grafana-foundation-sdk. The SDK is written for Python 3.11 (typing.Self,
# enum.StrEnum) while mypy checks this project as Python 3.10, where its fluent methods
# return Any and its enum members look like plain str: builders are typed as Builder and
# enum members pass through _enum.
Builder: TypeAlias = Any


def _enum(member: object) -> Any:
    return member


# --- PromQL helpers ---------------------------------------------------------------------


def _num(value: float) -> str:
    return f"{value:g}"


def per_agent_constant(values: Mapping[str, float], agent_selector: str) -> str:
    """One constant series per agent (``{agent="..."} value``) for the agents selected by
    ``agent_selector`` (e.g. ``agent="$agent"``): a threshold line that follows the
    agent variable, each agent at its own value."""
    constants = " or ".join(
        f'label_replace(vector({_num(v)}), "agent", "{agent}", "", "")'
        for agent, v in values.items()
    )
    return f"({constants})\nand on (agent)\ngroup by (agent) ({OPS}{{{agent_selector}}})"


def min_success_rates(thresholds: Mapping[str, AgentThresholds]) -> dict[str, float]:
    return {agent: t.min_success_rate for agent, t in thresholds.items()}


def max_durations(thresholds: Mapping[str, AgentThresholds]) -> dict[str, float]:
    return {agent: float(t.max_duration) for agent, t in thresholds.items()}


def error_budgets(thresholds: Mapping[str, AgentThresholds]) -> dict[str, float]:
    return {agent: t.error_budget for agent, t in thresholds.items()}


def _ratio(numerator: str, denominator: str) -> str:
    return f"{numerator}\n/\n{denominator}"


# --- panel helpers ----------------------------------------------------------------------


def prom(
    expr: str,
    legend: str = "",
    *,
    instant: bool = False,
    table_format: bool = False,
    exemplar: bool = False,
) -> Builder:
    """A Prometheus target; ``refId`` is set when the panel is added (the SDK leaves it
    empty)."""
    query = prometheus.Dataquery().expr(expr).datasource(PROMETHEUS.ref())
    if legend:
        query = query.legend_format(legend)
    query = query.instant() if instant else query.range()
    if table_format:
        query = query.format(PromQueryFormat.TABLE)
    if exemplar:
        query = query.exemplar(True)
    return query


def logql(expr: str, legend: str = "", *, max_lines: int | None = None) -> Builder:
    query = loki.Dataquery().expr(expr).datasource(LOKI.ref())
    if legend:
        query = query.legend_format(legend)
    if max_lines is not None:
        query = query.max_lines(max_lines)
    return query


def _dashed_red() -> list[dm.DynamicConfigValue]:
    """Override properties that draw a series as a dashed red threshold line."""
    return [
        dm.DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}),
        dm.DynamicConfigValue(id_val="custom.lineWidth", value=2),
        dm.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
        dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "red"}),
    ]


def _legend_table() -> Builder:
    return (
        common.VizLegendOptions()
        .display_mode(_enum(cm.LegendDisplayMode.TABLE))
        .placement(_enum(cm.LegendPlacement.BOTTOM))
        .show_legend(True)
        .calcs(["mean", "lastNotNull", "max"])
    )


def _legend_list() -> Builder:
    return (
        common.VizLegendOptions()
        .display_mode(_enum(cm.LegendDisplayMode.LIST))
        .placement(_enum(cm.LegendPlacement.BOTTOM))
        .show_legend(True)
    )


def _tooltip() -> Builder:
    return (
        common.VizTooltipOptions()
        .mode(_enum(cm.TooltipDisplayMode.MULTI))
        .sort(_enum(cm.SortOrder.DESCENDING))
    )


def ts(
    title: str,
    description: str,
    unit: str,
    *,
    stacked: bool = False,
    bars: bool = False,
    min_val: float | None = None,
    max_val: float | None = None,
    table_legend: bool = True,
) -> Builder:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS.ref())
        .unit(unit)
        .line_width(1)
        .fill_opacity(10)
        .show_points(_enum(cm.VisibilityMode.NEVER))
        .legend(_legend_table() if table_legend else _legend_list())
        .tooltip(_tooltip())
    )
    if stacked:
        panel = panel.stacking(
            common.StackingConfig().mode(_enum(cm.StackingMode.NORMAL))
        ).fill_opacity(40)
    if bars:
        panel = panel.draw_style(_enum(cm.GraphDrawStyle.BARS)).fill_opacity(70)
    if min_val is not None:
        panel = panel.min(min_val)
    if max_val is not None:
        panel = panel.max(max_val)
    return panel


def stat_panel(title: str, description: str, unit: str) -> Builder:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS.ref())
        .unit(unit)
        .graph_mode(_enum(cm.BigValueGraphMode.NONE))
        .color_mode(_enum(cm.BigValueColorMode.VALUE))
        .text_mode(_enum(cm.BigValueTextMode.VALUE_AND_NAME))
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def table_panel(title: str, description: str) -> Builder:
    return table.Panel().title(title).description(description).datasource(PROMETHEUS.ref())


def _organize(
    exclude: Sequence[str] = ("Time",), rename: Mapping[str, str] | None = None
) -> dm.DataTransformerConfig:
    return dm.DataTransformerConfig(
        id_val="organize",
        options={
            "excludeByName": dict.fromkeys(exclude, True),
            "renameByName": dict(rename or {}),
        },
    )


def _merge() -> dm.DataTransformerConfig:
    return dm.DataTransformerConfig(id_val="merge", options={})


def _percent_steps(objective: float | None = None) -> Builder:
    steps = [dm.Threshold(value=None, color="red")]
    if objective is not None:
        steps.append(dm.Threshold(value=objective, color="green"))
    return db.ThresholdsConfig().mode(_enum(dm.ThresholdsMode.ABSOLUTE)).steps(steps)


# --- dashboards -------------------------------------------------------------------------


@dataclass
class BuiltDashboard:
    """A generated dashboard: its model, and which panels only show data when something fails
    (the query test checks those under the degraded demo profile)."""

    key: str
    uid: str
    title: str
    model: dm.Dashboard
    failure_only: frozenset[str] = frozenset()

    @property
    def filename(self) -> str:
        return f"{self.uid}.json"

    def to_json(self) -> dict[str, Any]:
        return dict(json.loads(render_dashboard(self)))


@dataclass
class _Board:
    """Collects a dashboard's panels, numbering panel ids and query refIds in order."""

    key: str
    title: str
    description: str
    time_from: str = "now-24h"
    refresh: str = "30s"
    _builder: db.Dashboard | None = None
    _next_id: int = 1
    _failure_only: set[str] = field(default_factory=set)
    _titles: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        uid = DASHBOARD_UIDS[self.key]
        self._builder = (
            db.Dashboard(self.title)
            .uid(uid)
            .description(self.description)
            .tags([TAG])
            .time(self.time_from, "now")
            .refresh(self.refresh)
            .timezone("browser")
            .editable()
            .tooltip(_enum(dm.DashboardCursorSync.CROSSHAIR))
            .link(
                db.DashboardLink("dpagent dashboards")
                .type(_enum(dm.DashboardLinkType.DASHBOARDS))
                .tags([TAG])
                .as_dropdown(True)
                .include_vars(False)
                .keep_time(True)
            )
        )

    @property
    def builder(self) -> db.Dashboard:
        assert self._builder is not None
        return self._builder

    def variable(self, variable: Builder) -> None:
        self.builder.with_variable(variable)

    def row(self, title: str) -> None:
        self.builder.with_row(db.Row(title).id(self._take_id()))

    def add(
        self,
        panel: Builder,
        targets: Sequence[Builder],
        *,
        w: int,
        h: int,
        failure_only: bool = False,
    ) -> None:
        built = panel.build()
        if built.title in self._titles:
            raise ValueError(f"{self.title}: two panels are titled {built.title!r}")
        self._titles.add(built.title)
        if failure_only:
            self._failure_only.add(built.title)
            panel = panel.description(f"{built.description} {FAILURE_ONLY_NOTE}")
        for i, target in enumerate(targets):
            panel = panel.with_target(target.ref_id(chr(ord("A") + i)))
        self.builder.with_panel(panel.id(self._take_id()).span(w).height(h))

    def _take_id(self) -> int:
        taken = self._next_id
        self._next_id += 1
        return taken

    def build(self) -> BuiltDashboard:
        model = self.builder.build()
        return BuiltDashboard(
            key=self.key,
            uid=DASHBOARD_UIDS[self.key],
            title=self.title,
            model=model,
            failure_only=frozenset(self._failure_only),
        )


def _agent_variable(
    *, multi: bool, source: str = OPS, label: str = "Agent", loki_stream: bool = False
) -> Builder:
    variable = (
        db.QueryVariable("agent")
        .label(label)
        .refresh(_enum(dm.VariableRefresh.ON_TIME_RANGE_CHANGED))
    )
    if loki_stream:
        variable = variable.datasource(LOKI.ref()).query(f"label_values({{{LOG_STREAM}}}, agent)")
    else:
        variable = variable.datasource(PROMETHEUS.ref()).query(f"label_values({source}, agent)")
    variable = variable.sort(_enum(dm.VariableSort.ALPHABETICAL_ASC))
    if multi:
        variable = (
            variable.multi(True)
            .include_all(True)
            .all_value(ALL)
            .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"]))
        )
    else:
        first = next(iter(THRESHOLDS))
        variable = variable.current(dm.VariableOption(selected=True, text=first, value=first))
    return variable


def _overview(config: RulesConfig) -> BuiltDashboard:
    board = _Board(
        "overview",
        "dpagent / Overview",
        "The pipeline at a glance: the last 24 hours against the 24 hours before, success "
        "by agent against its objective, throughput and the alerts firing now.",
    )
    ops, day = OPS, "24h"

    def window(expr: str, offset: str = "") -> str:
        return expr.replace("[24h]", f"[24h] offset {offset}") if offset else expr

    success_24h = _ratio(
        f'sum(increase({ops}{{outcome="success"}}[{day}]))', f"sum(increase({ops}[{day}]))"
    )
    avg_24h = _ratio(
        f"sum(increase({DURATION}_sum[{day}]))", f"sum(increase({DURATION}_count[{day}]))"
    )
    volume_24h = f"sum(increase({ops}[{day}]))"

    board.row("Last 24 hours, against the 24 hours before")
    board.add(
        stat_panel(
            "Success rate (24h)",
            "Share of operations that succeeded over the last 24 hours, and the change in "
            "percentage points against the 24 hours before.",
            "percentunit",
        )
        .decimals(1)
        .thresholds(_percent_steps(min(min_success_rates(config.thresholds).values())))
        .override_by_query(
            "B",
            [dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "text"})],
        ),
        [
            prom(success_24h, "last 24h", instant=True),
            prom(
                f"({success_24h})\n-\n({window(success_24h, day)})",
                "change vs previous 24h",
                instant=True,
            ),
        ],
        w=6,
        h=5,
    )
    board.add(
        stat_panel(
            "Average duration (24h)",
            "Mean duration of an operation over the last 24 hours, and its relative change "
            "against the 24 hours before.",
            "s",
        )
        .decimals(2)
        .color_mode(_enum(cm.BigValueColorMode.NONE))
        .override_by_query("B", [dm.DynamicConfigValue(id_val="unit", value="percentunit")]),
        [
            prom(avg_24h, "last 24h", instant=True),
            prom(
                f"({avg_24h})\n/\n({window(avg_24h, day)})\n- 1",
                "change vs previous 24h",
                instant=True,
            ),
        ],
        w=6,
        h=5,
    )
    board.add(
        stat_panel(
            "Active operations",
            "Operations running now (every agent and process), and the change against the "
            "same moment 24 hours earlier.",
            "short",
        ).color_mode(_enum(cm.BigValueColorMode.NONE)),
        [
            prom(f"sum({IN_PROGRESS})", "now", instant=True),
            prom(
                f"sum({IN_PROGRESS})\n-\nsum({IN_PROGRESS} offset {day})",
                "change vs 24h ago",
                instant=True,
            ),
        ],
        w=6,
        h=5,
    )
    board.add(
        stat_panel(
            "Throughput (24h)",
            "Operations finished (succeeded or failed) over the last 24 hours, and the "
            "relative change against the 24 hours before.",
            "short",
        )
        .color_mode(_enum(cm.BigValueColorMode.NONE))
        .override_by_query("B", [dm.DynamicConfigValue(id_val="unit", value="percentunit")]),
        [
            prom(volume_24h, "operations, last 24h", instant=True),
            prom(
                f"({volume_24h})\n/\n({window(volume_24h, day)})\n- 1",
                "change vs previous 24h",
                instant=True,
            ),
        ],
        w=6,
        h=5,
    )

    board.row("Agents")
    success_by_agent = _ratio(
        f'sum by (agent) (rate({ops}{{outcome="success"}}[$__rate_interval]))',
        f"sum by (agent) (rate({ops}[$__rate_interval]))",
    )
    board.add(
        ts(
            "Success rate by agent",
            "Share of each agent's operations that succeeded; the dashed lines are each "
            "agent's objective (min_success_rate).",
            "percentunit",
            max_val=1,
        ).override_by_query("B", _dashed_red()),
        [
            prom(success_by_agent, "{{agent}}"),
            prom(
                per_agent_constant(min_success_rates(config.thresholds), 'agent=~".+"'),
                "objective {{agent}}",
            ),
        ],
        w=12,
        h=9,
    )
    board.add(
        bargauge.Panel()
        .title("Success rate by agent (24h)")
        .description("Each agent's success rate over the last 24 hours.")
        .datasource(PROMETHEUS.ref())
        .unit("percentunit")
        .min(0)
        .max(1)
        .decimals(1)
        .orientation(_enum(cm.VizOrientation.HORIZONTAL))
        .display_mode(_enum(cm.BarGaugeDisplayMode.BASIC))
        .thresholds(_percent_steps(min(min_success_rates(config.thresholds).values())))
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False)),
        [
            prom(
                _ratio(
                    f'sum by (agent) (increase({ops}{{outcome="success"}}[{day}]))',
                    f"sum by (agent) (increase({ops}[{day}]))",
                ),
                "{{agent}}",
                instant=True,
            )
        ],
        w=12,
        h=9,
    )
    board.add(
        ts(
            "Throughput by agent",
            "Operations finished per second, by agent and outcome.",
            "ops",
            stacked=True,
        ),
        [prom(f"sum by (agent, outcome) (rate({ops}[$__rate_interval]))", "{{agent}} {{outcome}}")],
        w=12,
        h=9,
    )
    board.add(
        table_panel(
            "Firing alerts",
            "Alerts Prometheus is firing now (from alerts.rules.yml); Alertmanager routes "
            "and silences them. Each has a runbook_url.",
        ).with_transformation(
            _organize(
                exclude=("Time", "Value", "__name__", "alertstate"),
                rename={"alertname": "alert"},
            )
        ),
        [prom('ALERTS{alertstate="firing"}', instant=True, table_format=True)],
        w=12,
        h=9,
        failure_only=True,
    )
    return board.build()


def _agents(config: RulesConfig) -> BuiltDashboard:
    board = _Board(
        "agents",
        "dpagent / Agents",
        "One agent in detail: success rate and duration percentiles against its thresholds, "
        "throughput, each operation, and the agent-specific metrics.",
        time_from="now-6h",
    )
    board.variable(_agent_variable(multi=False))
    board.variable(
        db.QueryVariable("operation")
        .label("Operation")
        .datasource(PROMETHEUS.ref())
        .query(f'label_values({OPS}{{agent="$agent"}}, operation)')
        .refresh(_enum(dm.VariableRefresh.ON_TIME_RANGE_CHANGED))
        .sort(_enum(dm.VariableSort.ALPHABETICAL_ASC))
        .multi(True)
        .include_all(True)
        .all_value(ALL)
        .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )
    sel = 'agent="$agent", operation=~"$operation"'
    board.row("$agent")
    board.add(
        ts(
            "Success rate vs objective",
            "Share of the selected operations that succeeded; the dashed line is the "
            "agent's min_success_rate (DPAgentSuccessRateLow fires below it).",
            "percentunit",
            max_val=1,
        ).override_by_query("B", _dashed_red()),
        [
            prom(
                _ratio(
                    f'sum(rate({OPS}{{{sel}, outcome="success"}}[$__rate_interval]))',
                    f"sum(rate({OPS}{{{sel}}}[$__rate_interval]))",
                ),
                "success rate",
            ),
            prom(
                per_agent_constant(min_success_rates(config.thresholds), 'agent="$agent"'),
                "objective (min_success_rate)",
            ),
        ],
        w=12,
        h=9,
    )
    board.add(
        ts(
            "Duration p50 / p95 / p99 vs max duration",
            "Duration percentiles of the selected operations (from the histogram); the "
            "dashed line is the agent's max_duration. Exemplars link to the trace in Tempo.",
            "s",
        ).override_by_query("D", _dashed_red()),
        [
            prom(
                f"histogram_quantile({q}, sum by (le) "
                f"(rate({DURATION}_bucket{{{sel}}}[$__rate_interval])))",
                f"p{round(q * 100)}",
                exemplar=(q == 0.99),
            )
            for q in (0.5, 0.95, 0.99)
        ]
        + [
            prom(
                per_agent_constant(max_durations(config.thresholds), 'agent="$agent"'),
                "max_duration",
            )
        ],
        w=12,
        h=9,
    )
    board.add(
        ts("Throughput", "Operations finished per second, by outcome.", "ops", stacked=True),
        [prom(f"sum by (outcome) (rate({OPS}{{{sel}}}[$__rate_interval]))", "{{outcome}}")],
        w=8,
        h=8,
    )
    board.add(
        ts(
            "Operations slower than max duration",
            "Share of the agent's operations over the last 10 minutes that took longer than "
            "its max_duration, read from the histogram bucket at that boundary (recording "
            "rule); DPAgentOperationSlow fires above the dashed line.",
            "percentunit",
            min_val=0,
        ).override_by_query("B", _dashed_red()),
        [
            prom('agent:dpagent_operations:slow_ratio_rate10m{agent="$agent"}', "slower share"),
            prom(f"vector({_num(config.slow_share)})", "alert threshold"),
        ],
        w=8,
        h=8,
    )
    board.add(
        ts(
            "Operations in progress",
            "Operations of the agent running now, by operation.",
            "short",
            table_legend=False,
        ),
        [prom(f"sum by (operation) ({IN_PROGRESS}{{{sel}}})", "{{operation}}")],
        w=8,
        h=8,
    )
    board.add(
        table_panel(
            "Operations",
            "Each operation over the selected time range: volume, success rate, mean and "
            "p95 duration, and how long ago it last succeeded.",
        )
        .with_transformation(_merge())
        .with_transformation(
            _organize(
                rename={
                    "Value #A": "operations",
                    "Value #B": "success rate",
                    "Value #C": "mean duration",
                    "Value #D": "p95 duration",
                    "Value #E": "last success (ago)",
                }
            )
        )
        .override_by_name(
            "success rate", [dm.DynamicConfigValue(id_val="unit", value="percentunit")]
        )
        .override_by_name("mean duration", [dm.DynamicConfigValue(id_val="unit", value="s")])
        .override_by_name("p95 duration", [dm.DynamicConfigValue(id_val="unit", value="s")])
        .override_by_name("last success (ago)", [dm.DynamicConfigValue(id_val="unit", value="s")]),
        [
            prom(
                f"sum by (operation) (increase({OPS}{{{sel}}}[$__range]))",
                instant=True,
                table_format=True,
            ),
            prom(
                _ratio(
                    f'sum by (operation) (increase({OPS}{{{sel}, outcome="success"}}[$__range]))',
                    f"sum by (operation) (increase({OPS}{{{sel}}}[$__range]))",
                ),
                instant=True,
                table_format=True,
            ),
            prom(
                _ratio(
                    f"sum by (operation) (increase({DURATION}_sum{{{sel}}}[$__range]))",
                    f"sum by (operation) (increase({DURATION}_count{{{sel}}}[$__range]))",
                ),
                instant=True,
                table_format=True,
            ),
            prom(
                f"histogram_quantile(0.95, sum by (operation, le) "
                f"(rate({DURATION}_bucket{{{sel}}}[$__range])))",
                instant=True,
                table_format=True,
            ),
            prom(
                f"time() - max by (operation) ({LAST_SUCCESS}{{{sel}}} > 0)",
                instant=True,
                table_format=True,
            ),
        ],
        w=24,
        h=8,
    )

    board.row("Image sourcing")
    board.add(
        ts(
            "Image quality score by source",
            "Mean quality score (0..1) of the downloaded images, by source.",
            "percentunit",
            min_val=0,
            max_val=1,
        ),
        [
            prom(
                _ratio(
                    "sum by (source) (rate(dpagent_image_quality_score_sum[$__rate_interval]))",
                    "sum by (source) (rate(dpagent_image_quality_score_count[$__rate_interval]))",
                ),
                "{{source}}",
            )
        ],
        w=8,
        h=8,
    )
    board.add(
        ts(
            "Images found by source",
            "Image candidates found per second, by source.",
            "short",
            stacked=True,
        ),
        [
            prom(
                "sum by (source) (rate(dpagent_images_found_total[$__rate_interval]))",
                "{{source}}",
            )
        ],
        w=8,
        h=8,
    )
    board.add(
        ts(
            "Image source diversity",
            "Distinct sources among the images kept for one product: mean and median.",
            "short",
            min_val=0,
        ),
        [
            prom(
                _ratio(
                    "sum(rate(dpagent_image_source_diversity_sum[$__rate_interval]))",
                    "sum(rate(dpagent_image_source_diversity_count[$__rate_interval]))",
                ),
                "mean",
            ),
            prom(
                "histogram_quantile(0.5, sum by (le) "
                "(rate(dpagent_image_source_diversity_bucket[$__rate_interval])))",
                "median",
            ),
        ],
        w=8,
        h=8,
    )

    board.row("Vehicle applications")
    board.add(
        ts(
            "Fitment records: official vs fallback",
            "Vehicle-application records per second, from official data or the parsed fallback.",
            "short",
            stacked=True,
        ),
        [
            prom(
                "sum by (source) (rate(dpagent_fitment_records_total[$__rate_interval]))",
                "{{source}}",
            )
        ],
        w=16,
        h=8,
    )
    board.add(
        piechart.Panel()
        .title("Official vs fallback share")
        .description("Share of fitment records from official data over the time range.")
        .datasource(PROMETHEUS.ref())
        .unit("short")
        .pie_type(_enum(PieChartType.DONUT))
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False)),
        [
            prom(
                "sum by (source) (increase(dpagent_fitment_records_total[$__range]))",
                "{{source}}",
                instant=True,
            )
        ],
        w=8,
        h=8,
    )

    board.row("BigCommerce upload")
    board.add(
        ts(
            "BigCommerce API latency (p95) by endpoint",
            "95th percentile of each BigCommerce API request (one attempt), by endpoint.",
            "s",
        ),
        [
            prom(
                "histogram_quantile(0.95, sum by (endpoint, le) (rate("
                "dpagent_bigcommerce_api_request_duration_seconds_bucket[$__rate_interval])))",
                "{{endpoint}}",
            )
        ],
        w=8,
        h=8,
    )
    board.add(
        ts(
            "BigCommerce responses by status code",
            "API requests per second by HTTP status code ('timeout': no answer).",
            "reqps",
            stacked=True,
        ),
        [
            prom(
                "sum by (status_code) "
                "(rate(dpagent_bigcommerce_api_requests_total[$__rate_interval]))",
                "{{status_code}}",
            )
        ],
        w=8,
        h=8,
    )
    board.add(
        ts(
            "Rate-limited responses (429 per minute)",
            "HTTP 429 answers per minute by endpoint; DPAgentRateLimited fires when this "
            "stays above the dashed line.",
            "short",
            min_val=0,
        ).override_by_query("B", _dashed_red()),
        [
            prom(
                "sum by (endpoint) "
                "(rate(dpagent_bigcommerce_rate_limited_total[$__rate_interval])) * 60",
                "{{endpoint}}",
            ),
            prom(f"vector({_num(config.rate_limited_per_minute)})", "alert threshold"),
        ],
        w=8,
        h=8,
    )

    board.row("Caches and batches ($agent)")
    board.add(
        ts(
            "Cache hit ratio",
            "Share of the agent's cache lookups that hit, by cache.",
            "percentunit",
            min_val=0,
            max_val=1,
        ),
        [
            prom(
                _ratio(
                    'sum by (cache) (rate(dpagent_cache_requests_total{agent="$agent", '
                    'result="hit"}[$__rate_interval]))',
                    'sum by (cache) (rate(dpagent_cache_requests_total{agent="$agent"}'
                    "[$__rate_interval]))",
                ),
                "{{cache}}",
            )
        ],
        w=8,
        h=8,
    )
    board.add(
        ts(
            "Items processed",
            "Items (products) the agent finished per second, by outcome.",
            "short",
            stacked=True,
        ),
        [
            prom(
                'sum by (outcome) (rate(dpagent_batch_items_processed_total{agent="$agent"}'
                "[$__rate_interval]))",
                "{{outcome}}",
            )
        ],
        w=8,
        h=8,
    )
    board.add(
        ts("Batch size", "Mean number of items per batch the agent started.", "short"),
        [
            prom(
                _ratio(
                    'sum(rate(dpagent_batch_size_items_sum{agent="$agent"}[$__rate_interval]))',
                    'sum(rate(dpagent_batch_size_items_count{agent="$agent"}[$__rate_interval]))',
                ),
                "items per batch",
            )
        ],
        w=8,
        h=8,
    )
    return board.build()


def _failures(config: RulesConfig) -> BuiltDashboard:
    board = _Board(
        "failures",
        "dpagent / Failures",
        "What fails, where and why: failures by agent, operation and error type, the "
        "timeline, error-budget burn, and the error logs with links to their traces.",
        time_from="now-6h",
    )
    board.variable(_agent_variable(multi=True))
    sel = 'agent=~"$agent"'
    board.row("Failures")
    board.add(
        ts(
            "Failures by agent",
            "Failed operations per second, by agent.",
            "ops",
            stacked=True,
        ),
        [
            prom(
                f'sum by (agent) (rate({OPS}{{{sel}, outcome="failure"}}[$__rate_interval]))',
                "{{agent}}",
            )
        ],
        w=12,
        h=8,
    )
    board.add(
        ts(
            "Failure ratio vs error budget",
            "Share of operations that failed, by agent; the dashed lines are each agent's "
            "error budget (1 - min_success_rate).",
            "percentunit",
            min_val=0,
        ).override_by_query("B", _dashed_red()),
        [
            prom(
                _ratio(
                    f'sum by (agent) (rate({OPS}{{{sel}, outcome="failure"}}[$__rate_interval]))',
                    f"sum by (agent) (rate({OPS}{{{sel}}}[$__rate_interval]))",
                ),
                "{{agent}}",
            ),
            prom(per_agent_constant(error_budgets(config.thresholds), sel), "budget {{agent}}"),
        ],
        w=12,
        h=8,
    )
    board.add(
        bargauge.Panel()
        .title("Failures by operation")
        .description("Failed operations over the time range, by agent and operation.")
        .datasource(PROMETHEUS.ref())
        .unit("short")
        .orientation(_enum(cm.VizOrientation.HORIZONTAL))
        .display_mode(_enum(cm.BarGaugeDisplayMode.GRADIENT))
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False)),
        [
            prom(
                f"sort_desc(sum by (agent, operation) "
                f'(increase({OPS}{{{sel}, outcome="failure"}}[$__range])) > 0)',
                "{{agent}} / {{operation}}",
                instant=True,
            )
        ],
        w=12,
        h=9,
        failure_only=True,
    )
    board.add(
        table_panel(
            "Failures by error type",
            "Failed operations over the time range by agent, operation and error type "
            "(the exception class, or the type given to record_failure).",
        ).with_transformation(_organize(rename={"Value": "failures"})),
        [
            prom(
                f"sort_desc(sum by (agent, operation, error_type) "
                f"(increase({ERRORS}{{{sel}}}[$__range])) > 0)",
                instant=True,
                table_format=True,
            )
        ],
        w=12,
        h=9,
        failure_only=True,
    )
    board.add(
        ts(
            "Failure timeline by error type",
            "Failures per interval, by agent and error type.",
            "short",
            bars=True,
            stacked=True,
        ),
        [
            prom(
                f"sum by (agent, error_type) (increase({ERRORS}{{{sel}}}[$__interval])) > 0",
                "{{agent}} {{error_type}}",
            )
        ],
        w=12,
        h=8,
        failure_only=True,
    )
    burn = " or ".join(
        f'agent:dpagent_operations:error_ratio_rate1h{{agent="{agent}"}} / {_num(t.error_budget)}'
        for agent, t in config.thresholds.items()
    )
    board.add(
        ts(
            "Error budget burn rate (1h)",
            "Failure ratio over the last hour divided by the error budget (recording rule): "
            "1 spends the budget exactly over the SLO period; the fastest "
            "DPAgentErrorBudgetBurn tier pages at 14.4 (or what the objective allows).",
            "short",
            min_val=0,
        ),
        [prom(f"({burn})\nand on (agent)\ngroup by (agent) ({OPS}{{{sel}}})", "{{agent}}")],
        w=12,
        h=8,
    )
    board.row("Error logs")
    board.add(
        logs.Panel()
        .title("Recent error logs")
        .description(
            "ERROR and CRITICAL records from Loki; expand one and follow its trace_id link "
            "to the trace in Tempo."
        )
        .datasource(LOKI.ref())
        .show_time(True)
        .wrap_log_message(True)
        .prettify_log_message(False)
        .enable_log_details(True)
        .sort_order(_enum(cm.LogsSortOrder.DESCENDING)),
        [logql(f'{{{LOG_STREAM}, agent=~"$agent", level=~"error|critical"}}', max_lines=200)],
        w=24,
        h=12,
    )
    return board.build()


def _trends(config: RulesConfig) -> BuiltDashboard:
    board = _Board(
        "trends",
        "dpagent / Trends",
        "How the pipeline changes over days: success rate and volume, and the p95 duration "
        "now against the same time one day and one week earlier.",
        time_from="now-7d",
        refresh="5m",
    )
    board.variable(_agent_variable(multi=True))
    sel = 'agent=~"$agent"'
    p95 = (
        "histogram_quantile(0.95, sum by (le) "
        f"(rate({DURATION}_bucket{{{sel}}}[$__rate_interval]{{offset}})))"
    )
    success = _ratio(
        f'sum(rate({OPS}{{{sel}, outcome="success"}}[$__rate_interval]{{offset}}))',
        f"sum(rate({OPS}{{{sel}}}[$__rate_interval]{{offset}}))",
    )
    board.row("Over time")
    board.add(
        ts(
            "Success rate over time",
            "Each agent's success rate; the dashed lines are the objectives.",
            "percentunit",
            max_val=1,
        ).override_by_query("B", _dashed_red()),
        [
            prom(
                _ratio(
                    f'sum by (agent) (rate({OPS}{{{sel}, outcome="success"}}[$__rate_interval]))',
                    f"sum by (agent) (rate({OPS}{{{sel}}}[$__rate_interval]))",
                ),
                "{{agent}}",
            ),
            prom(
                per_agent_constant(min_success_rates(config.thresholds), sel),
                "objective {{agent}}",
            ),
        ],
        w=12,
        h=9,
    )
    board.add(
        ts(
            "Volume over time",
            "Operations finished per interval, by agent.",
            "short",
            bars=True,
            stacked=True,
        ),
        [prom(f"sum by (agent) (increase({OPS}{{{sel}}}[$__interval]))", "{{agent}}")],
        w=12,
        h=9,
    )
    board.row("Against earlier")
    board.add(
        ts(
            "p95 duration: now vs 1 day and 1 week earlier",
            "95th percentile duration of the selected agents, and the same curve shifted "
            "from one day and one week earlier (DPAgentPerformanceDegraded compares with "
            "one day earlier).",
            "s",
        ),
        [
            prom(p95.replace("{offset}", ""), "now"),
            prom(p95.replace("{offset}", " offset 1d"), "1 day earlier"),
            prom(p95.replace("{offset}", " offset 1w"), "1 week earlier"),
        ],
        w=12,
        h=9,
    )
    board.add(
        ts(
            "Success rate: now vs 1 day and 1 week earlier",
            "Success rate of the selected agents, and the same curve from one day and one "
            "week earlier.",
            "percentunit",
            max_val=1,
        ),
        [
            prom(success.replace("{offset}", ""), "now"),
            prom(success.replace("{offset}", " offset 1d"), "1 day earlier"),
            prom(success.replace("{offset}", " offset 1w"), "1 week earlier"),
        ],
        w=12,
        h=9,
    )
    return board.build()


def _logs() -> BuiltDashboard:
    board = _Board(
        "logs",
        "dpagent / Logs",
        "The agents' JSON logs in Loki, filtered by agent, level and free text; a record's "
        "trace_id links to its trace in Tempo.",
        time_from="now-1h",
    )
    board.variable(_agent_variable(multi=True, loki_stream=True))
    board.variable(
        db.CustomVariable("level")
        .label("Level")
        .values("critical,error,warning,success,info,debug")
        .multi(True)
        .include_all(True)
        .all_value(ALL)
        .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )
    board.variable(
        db.TextBoxVariable("search")
        .label("Search (regex, case-insensitive)")
        .default_value("")
        .current(dm.VariableOption(selected=True, text="", value=""))
    )
    stream = f'{{{LOG_STREAM}, agent=~"$agent", level=~"$level"}} |~ "(?i)$search"'
    board.row("Logs")
    board.add(
        ts(
            "Log volume by level",
            "Log records per interval, by level.",
            "short",
            bars=True,
            stacked=True,
        ).datasource(LOKI.ref()),
        [logql(f"sum by (level) (count_over_time({stream} [$__interval]))", "{{level}}")],
        w=24,
        h=6,
    )
    board.add(
        logs.Panel()
        .title("Logs")
        .description("Matching records, newest first.")
        .datasource(LOKI.ref())
        .show_time(True)
        .wrap_log_message(True)
        .enable_log_details(True)
        .sort_order(_enum(cm.LogsSortOrder.DESCENDING)),
        [logql(stream, max_lines=1000)],
        w=24,
        h=18,
    )
    return board.build()


def _system(config: RulesConfig) -> BuiltDashboard:
    board = _Board(
        "system",
        "dpagent / System health",
        "The processes behind the pipeline: memory, CPU, operations in progress, scrape "
        "health, the Pushgateway's last pushes, and the monitoring stack itself.",
        time_from="now-6h",
    )
    job = f'job="{config.agent_job}"'
    board.row("Agent processes")
    board.add(
        ts(
            "Resident memory",
            "Resident memory of each agent process; DPAgentHighMemory fires above the dashed line.",
            "bytes",
            min_val=0,
        ).override_by_query("B", _dashed_red()),
        [
            prom(f"process_resident_memory_bytes{{{job}}}", "{{instance}}"),
            prom(f"vector({config.memory_limit_bytes})", "limit"),
        ],
        w=8,
        h=8,
    )
    board.add(
        ts(
            "CPU",
            "CPU cores used by each agent process; DPAgentHighCPU fires above the dashed line.",
            "short",
            min_val=0,
        ).override_by_query("B", _dashed_red()),
        [
            prom(f"rate(process_cpu_seconds_total{{{job}}}[$__rate_interval])", "{{instance}}"),
            prom(f"vector({_num(config.cpu_limit_cores)})", "limit"),
        ],
        w=8,
        h=8,
    )
    board.add(
        ts(
            "Operations in progress",
            "Operations running now, by agent; DPAgentStalled fires when some run but none "
            "finishes.",
            "short",
            min_val=0,
        ),
        [prom(f"sum by (agent) ({IN_PROGRESS})", "{{agent}}")],
        w=8,
        h=8,
    )
    board.row("Scraping and pushing")
    board.add(
        table_panel(
            "Scrape targets",
            "Every target Prometheus scrapes and whether the last scrape worked (up); "
            "DPAgentTargetDown fires after two minutes down.",
        )
        .with_transformation(_organize(exclude=("Time", "__name__"), rename={"Value": "up"}))
        .mappings(
            [
                dm.ValueMap(
                    options={
                        "0": dm.ValueMappingResult(text="DOWN", color="red", index=0),
                        "1": dm.ValueMappingResult(text="UP", color="green", index=1),
                    }
                )
            ]
        ),
        [prom("up", instant=True, table_format=True)],
        w=12,
        h=8,
    )
    board.add(
        ts("Scrape duration", "How long each scrape takes, by target.", "s", min_val=0),
        [prom("scrape_duration_seconds", "{{job}} {{instance}}")],
        w=12,
        h=8,
    )
    board.add(
        stat_panel(
            "Last Pushgateway push",
            "How long ago each batch job last pushed its metrics to the Pushgateway.",
            "s",
        ).color_mode(_enum(cm.BigValueColorMode.NONE)),
        [prom("time() - max by (job) (push_time_seconds)", "{{job}}", instant=True)],
        w=8,
        h=6,
    )
    board.add(
        table_panel(
            "Versions", "dpagent version reported by each process (dpagent_build_info)."
        ).with_transformation(_organize(exclude=("Time", "Value", "__name__"))),
        [prom("dpagent_build_info", instant=True, table_format=True)],
        w=8,
        h=6,
    )
    board.add(
        ts(
            "Label values folded",
            "Label values past their cap, folded into 'other' by the cardinality guard, per "
            "second and by label: non-zero means raise a cap or fix the label source.",
            "short",
            min_val=0,
            table_legend=False,
        ),
        [
            prom(
                "sum by (label) (rate(dpagent_label_values_folded_total[$__rate_interval]))",
                "{{label}}",
            )
        ],
        w=8,
        h=6,
    )
    board.row("Monitoring stack")
    board.add(
        ts(
            "Rule evaluations and failures",
            "Prometheus rule group evaluations per second, and failed evaluations (should be 0).",
            "short",
            min_val=0,
            table_legend=False,
        ),
        [
            prom("sum(rate(prometheus_rule_evaluations_total[$__rate_interval]))", "evaluations"),
            prom(
                "sum(rate(prometheus_rule_evaluation_failures_total[$__rate_interval]))",
                "failures",
            ),
        ],
        w=12,
        h=7,
    )
    board.add(
        ts(
            "Alertmanager notifications",
            "Notifications sent per second by integration, and those that failed.",
            "short",
            min_val=0,
            table_legend=False,
        ),
        [
            prom(
                "sum by (integration) (rate(alertmanager_notifications_total[$__rate_interval]))",
                "sent {{integration}}",
            ),
            prom(
                "sum by (integration) "
                "(rate(alertmanager_notifications_failed_total[$__rate_interval]))",
                "failed {{integration}}",
            ),
        ],
        w=12,
        h=7,
    )
    return board.build()


_BUILDERS: Final[tuple[Callable[[RulesConfig], BuiltDashboard], ...]] = (
    _overview,
    _agents,
    _failures,
    _trends,
    lambda _config: _logs(),
    _system,
)


def build_dashboards(config: RulesConfig = DEFAULT_CONFIG) -> list[BuiltDashboard]:
    """Every dashboard, in the order of :data:`DASHBOARD_UIDS`."""
    return [build(config) for build in _BUILDERS]


def render_dashboard(built: BuiltDashboard) -> str:
    """The dashboard's JSON text, byte for byte what ``--write`` commits."""
    return JSONEncoder(sort_keys=True, indent=2).encode(built.model) + "\n"


def write_dashboards(
    directory: str | Path = DASHBOARDS_DIR, config: RulesConfig = DEFAULT_CONFIG
) -> list[Path]:
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for built in build_dashboards(config):
        path = out / built.filename
        path.write_text(render_dashboard(built), encoding="utf-8")
        written.append(path)
    return written


def check_dashboards(
    directory: str | Path = DASHBOARDS_DIR, config: RulesConfig = DEFAULT_CONFIG
) -> list[str]:
    """A unified diff from the committed JSON files to the generator's output (also naming
    stray ``*.json`` files the generator does not make); empty when they agree."""
    out = Path(directory)
    diff: list[str] = []
    expected = {b.filename: render_dashboard(b) for b in build_dashboards(config)}
    for name, text in expected.items():
        path = out / name
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        diff.extend(
            difflib.unified_diff(
                current.splitlines(keepends=True),
                text.splitlines(keepends=True),
                fromfile=f"{path} (committed)",
                tofile=f"{path} (generated)",
            )
        )
    for stray in sorted(p.name for p in out.glob("*.json") if p.name not in expected):
        diff.append(f"{out / stray}: not made by the generator (remove it)\n")
    return diff


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m dpagent.dashboards",
        description="Generate the Grafana dashboards from THRESHOLDS.",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="write the JSON files")
    mode.add_argument(
        "--check", action="store_true", help="exit 1 and print a diff when the files drifted"
    )
    parser.add_argument(
        "--dir",
        default=str(DASHBOARDS_DIR),
        help="dashboard directory (default: deploy/grafana/dashboards in this repository)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.check:
        diff = check_dashboards(args.dir)
        if diff:
            sys.stdout.writelines(diff)
            print(
                "\nthe dashboards differ from the generator: run "
                "`python -m dpagent.dashboards --write`",
                file=sys.stderr,
            )
            return 1
        return 0
    for path in write_dashboards(args.dir):
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
