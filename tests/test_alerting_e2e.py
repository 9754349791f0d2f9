"""End to end through the real servers: instrumented workload -> Prometheus (fast rule
variant, 1 s scrape and evaluation) -> Alertmanager (the repo's alertmanager.yml, 1 s group
timing) -> a webhook receiver run by the test. Also the Pushgateway path of batch runs.

The alert-latency figure (first injected failure -> webhook notification) is printed
whatever pytest's capture mode, next to the sum of ``for``, scrape and evaluation
intervals and ``group_wait`` it is compared with.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from servers import (
    FAST_ROUTE_TIMING,
    AlertmanagerServer,
    Notification,
    PrometheusServer,
    PushgatewayServer,
    WebhookReceiver,
)
from test_rules_promtool import humanize_percentage

from dpagent.telemetry import (
    MetricsServer,
    instrument,
    push_to_gateway,
    start_metrics_server,
)
from dpagent.telemetry.rules import fast_config, format_duration, le_label, write_rules
from dpagent.telemetry.thresholds import THRESHOLDS

pytestmark = [pytest.mark.servers, pytest.mark.slow]

SCALE = 60  # the fast variant: a minute of the production rules is a second here
FAST = fast_config(SCALE)
INTERVAL_S = 1.0  # scrape and evaluation interval
FAILING = "vehicle_applications"
HEALTHY = tuple(agent for agent in THRESHOLDS if agent != FAILING)
OPS_PER_SECOND = 20  # per agent: the 10 s window holds ~200, far above the 20-call guard


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    for unit in sorted(units, key=len, reverse=True):
        if duration.endswith(unit):
            return float(duration[: -len(unit)]) * units[unit]
    raise ValueError(duration)


GROUP_WAIT_S = _seconds(FAST_ROUTE_TIMING["group_wait"])


class Workload:
    """Each agent runs one instrumented operation ``OPS_PER_SECOND`` times a second in a
    background thread; :meth:`fail` makes one agent's calls raise from then on."""

    def __init__(self, registry: CollectorRegistry, agents: tuple[str, ...]) -> None:
        self._lock = threading.Lock()
        self._failing: set[str] = set()
        self.first_failure: dict[str, float] = {}  # agent -> time.monotonic()
        self.first_failure_wall: dict[str, float] = {}
        self.calls = 0
        self._steps = {agent: self._step(agent, registry) for agent in agents}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="e2e-workload", daemon=True)

    def _step(self, agent: str, registry: CollectorRegistry) -> Callable[[bool], None]:
        @instrument(agent, "e2e_step", registry=registry)
        def step(fail: bool) -> None:
            if fail:
                raise ConnectionError(f"injected failure in {agent}")
            time.sleep(0.001)

        return step

    def fail(self, agent: str) -> None:
        with self._lock:
            self._failing.add(agent)

    def recover(self, agent: str) -> None:
        with self._lock:
            self._failing.discard(agent)

    def _run(self) -> None:
        period = 1 / OPS_PER_SECOND
        next_tick = time.monotonic()
        while not self._stop.is_set():
            for agent, step in self._steps.items():
                with self._lock:
                    fail = agent in self._failing
                if fail and agent not in self.first_failure:
                    self.first_failure_wall[agent] = time.time()
                    self.first_failure[agent] = time.monotonic()
                with contextlib.suppress(ConnectionError):
                    step(fail)
                self.calls += 1
            next_tick += period
            self._stop.wait(max(0.0, next_tick - time.monotonic()))

    def __enter__(self) -> Workload:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@pytest.fixture
def fast_rules(tmp_path: Path) -> Path:
    """The fast variant of the rules, generated (not hand-written) from the same source."""
    return write_rules(tmp_path / "alerts.fast.rules.yml", FAST)


@pytest.fixture
def metrics_registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics_server(metrics_registry: CollectorRegistry) -> Iterator[MetricsServer]:
    server = start_metrics_server(0, registry=metrics_registry)
    yield server
    server.stop()


def _target(server: MetricsServer) -> str:
    return f"127.0.0.1:{server.port}"


def _start_stack(
    prometheus_factory: Callable[..., PrometheusServer],
    alertmanager_factory: Callable[..., AlertmanagerServer],
    webhook_receiver: WebhookReceiver,
    rules: Path,
    agent_target: str,
) -> tuple[PrometheusServer, AlertmanagerServer]:
    am = alertmanager_factory(webhook_url=webhook_receiver.url)
    prom = prometheus_factory(
        rule_files=[rules],
        targets={"dpagent": [agent_target], "alertmanager": [am.address]},
        scrape_interval=f"{INTERVAL_S:g}s",
        evaluation_interval=f"{INTERVAL_S:g}s",
    )
    return prom, am


def _wait_target_up(prom: PrometheusServer, instance: str) -> None:
    prom.wait_for(
        lambda p: p.query(f'up{{job="dpagent", instance="{instance}"}} == 1'),
        timeout=30,
        message=f"the dpagent target {instance} to be up",
    )


def _agent_alerts(prom: PrometheusServer, agents: tuple[str, ...]) -> list[dict[str, Any]]:
    return [a for a in prom.alerts() if a["labels"].get("agent") in agents]


def _notified_agents(receiver: WebhookReceiver) -> set[str]:
    return {a["labels"].get("agent", "") for n in receiver.notifications for a in n.alerts}


def test_failures_in_one_agent_page_through_alertmanager_and_resolve(
    prometheus_factory: Callable[..., PrometheusServer],
    alertmanager_factory: Callable[..., AlertmanagerServer],
    webhook_receiver: WebhookReceiver,
    fast_rules: Path,
    metrics_registry: CollectorRegistry,
    metrics_server: MetricsServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = _target(metrics_server)
    prom, _ = _start_stack(
        prometheus_factory, alertmanager_factory, webhook_receiver, fast_rules, target
    )
    window = FAST.success_rate_window
    with Workload(metrics_registry, tuple(THRESHOLDS)) as workload:
        _wait_target_up(prom, target)
        # Every agent healthy and measured before anything is injected.
        ratio = f"agent:dpagent_operations:success_ratio_rate{format_duration(window)}"
        prom.wait_for(
            lambda p: (
                {dict(k)["agent"] for k, v in p.query_values(ratio).items() if v == 1}
                >= set(THRESHOLDS)
            ),
            timeout=30,
            message="a success ratio of 1 for every agent",
        )
        # ... over a full window, so the latency below is not flattered by a short history.
        prom.wait_for(
            lambda p: p.query(
                f'count_over_time(up{{job="dpagent"}}[{format_duration(window)}])'
                f" >= {window / INTERVAL_S - 1:g}"
            ),
            timeout=3 * window,
            message="a full rule window of scrapes",
        )
        # The slow-operation rule reads each agent's own `le` bucket: it must be scraped.
        for agent, t in THRESHOLDS.items():
            le = le_label(t.max_duration)
            assert prom.query(
                f'dpagent_operation_duration_seconds_bucket{{agent="{agent}", le="{le}"}}'
            ), f"no bucket le={le!r} for {agent}: the rules' le form does not match the exposition"
        assert not _agent_alerts(prom, tuple(THRESHOLDS)), prom.alerts()

        workload.fail(FAILING)
        firing = prom.wait_for(
            lambda p: p.alerts("firing", alertname="DPAgentSuccessRateLow", agent=FAILING),
            timeout=60,
            message=f"DPAgentSuccessRateLow firing for {FAILING}",
        )
        firing_seen = time.monotonic()
        alert = firing[0]
        assert alert["labels"] == {
            "alertname": "DPAgentSuccessRateLow",
            "agent": FAILING,
            "severity": "critical",
        }
        annotations = alert["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}
        assert annotations["runbook_url"] == "docs/runbook.md#dpagentsuccessratelow"
        assert annotations["summary"] == f"{FAILING} success rate is below its 80% objective"
        measured = float(alert["value"])
        assert measured < THRESHOLDS[FAILING].min_success_rate
        # value and annotations come from the same evaluation
        assert annotations["description"] == (
            f"Only {humanize_percentage(measured)} of {FAILING} operations succeeded over the "
            f"last {format_duration(window)} (objective: at least 80%)."
        )

        note = webhook_receiver.wait_for(
            lambda n: (
                n.status == "firing"
                and n.group_labels == {"alertname": "DPAgentSuccessRateLow", "agent": FAILING}
            ),
            timeout=30,
        )
        latency = note.received_at - workload.first_failure[FAILING]
        assert note.body["receiver"] == "dpagent-critical"
        [delivered] = note.alerts
        assert delivered["labels"] == alert["labels"]
        assert delivered["annotations"]["runbook_url"] == annotations["runbook_url"]

        # The healthy agents stayed quiet: nothing pending or firing, nothing delivered.
        assert not _agent_alerts(prom, HEALTHY), _agent_alerts(prom, HEALTHY)
        assert not _notified_agents(webhook_receiver) & set(HEALTHY)

        workload.recover(FAILING)
        recovered_at = time.monotonic()
        resolved = webhook_receiver.wait_for(
            lambda n: (
                n.status == "resolved"
                and n.group_labels == {"alertname": "DPAgentSuccessRateLow", "agent": FAILING}
            ),
            timeout=60,
        )
        assert resolved.alerts[0]["status"] == "resolved"
        assert resolved.alerts[0]["labels"] == alert["labels"]
        assert not prom.alerts(alertname="DPAgentSuccessRateLow")
        assert not _agent_alerts(prom, HEALTHY)
        assert not _notified_agents(webhook_receiver) & set(HEALTHY)

    _report_latency(capsys, workload, firing, firing_seen, note, latency, resolved, recovered_at)
    expected = FAST.success_rate_for + 2 * INTERVAL_S + GROUP_WAIT_S
    # The share of failures in the window must first cross the threshold (20% for this
    # agent: ~2 s of a 10 s window); beyond that, only the intervals summed in `expected`.
    window_fill = FAST.success_rate_window * (1 - THRESHOLDS[FAILING].min_success_rate)
    assert latency <= expected + window_fill + 5, (latency, expected, window_fill)


def _report_latency(
    capsys: pytest.CaptureFixture[str],
    workload: Workload,
    firing: list[dict[str, Any]],
    firing_seen: float,
    note: Notification,
    latency: float,
    resolved: Notification,
    recovered_at: float,
) -> None:
    active_at = datetime.fromisoformat(firing[0]["activeAt"].replace("Z", "+00:00")).timestamp()
    to_pending = active_at - workload.first_failure_wall[FAILING]
    for_s = FAST.success_rate_for
    expected = for_s + 2 * INTERVAL_S + GROUP_WAIT_S
    with capsys.disabled():
        print(
            "\n[alert latency] DPAgentSuccessRateLow "
            f"(fast rules: window {FAST.success_rate_window:g}s, for {for_s:g}s; "
            f"scrape {INTERVAL_S:g}s, eval {INTERVAL_S:g}s, group_wait {GROUP_WAIT_S:g}s)\n"
            f"  first failure -> webhook:        {latency:6.2f} s\n"
            f"  for + scrape + eval + group_wait: {expected:6.2f} s\n"
            f"  first failure -> pending:         {to_pending:6.2f} s "
            "(failures fill the window past the threshold, then a scrape and an evaluation)\n"
            f"  first failure -> firing seen:     "
            f"{firing_seen - workload.first_failure[FAILING]:6.2f} s\n"
            f"  firing seen -> webhook:           {note.received_at - firing_seen:6.2f} s\n"
            f"  recovery -> resolved webhook:     {resolved.received_at - recovered_at:6.2f} s\n"
        )


def test_target_down_alert_names_its_agents_and_inhibits_their_alerts(
    prometheus_factory: Callable[..., PrometheusServer],
    alertmanager_factory: Callable[..., AlertmanagerServer],
    webhook_receiver: WebhookReceiver,
    fast_rules: Path,
    metrics_registry: CollectorRegistry,
    metrics_server: MetricsServer,
) -> None:
    target = _target(metrics_server)
    prom, am = _start_stack(
        prometheus_factory, alertmanager_factory, webhook_receiver, fast_rules, target
    )
    with Workload(metrics_registry, tuple(THRESHOLDS)) as workload:
        workload.fail(FAILING)
        _wait_target_up(prom, target)
        am.wait_for(
            lambda a: [
                x
                for x in a.alerts(alertname="DPAgentSuccessRateLow", agent=FAILING)
                if x["status"]["state"] == "active"
            ],
            timeout=60,
            message="DPAgentSuccessRateLow active in Alertmanager",
        )
        metrics_server.stop()  # the target goes down; the workload thread carries on

        down = prom.wait_for(
            lambda p: p.alerts("firing", alertname="DPAgentTargetDown"),
            timeout=30,
            message="DPAgentTargetDown firing",
        )
        # One alert per agent the down process was running, found from its last samples.
        assert sorted(a["labels"]["agent"] for a in down) == sorted(THRESHOLDS)
        for a in down:
            assert a["labels"] == {
                "alertname": "DPAgentTargetDown",
                "agent": a["labels"]["agent"],
                "job": "dpagent",
                "instance": target,
                "severity": "critical",
            }
            assert a["annotations"]["runbook_url"] == "docs/runbook.md#dpagenttargetdown"

        # While the target is down, the agent's own alert is inhibited, not delivered again.
        suppressed = am.wait_for(
            lambda a: [
                x
                for x in a.alerts(alertname="DPAgentSuccessRateLow", agent=FAILING)
                if x["status"]["state"] == "suppressed" and x["status"]["inhibitedBy"]
            ],
            timeout=20,
            message="DPAgentSuccessRateLow inhibited by DPAgentTargetDown",
        )
        inhibitors = {
            x["fingerprint"]: x for x in am.alerts(alertname="DPAgentTargetDown", agent=FAILING)
        }
        assert set(suppressed[0]["status"]["inhibitedBy"]) <= set(inhibitors), (
            suppressed,
            inhibitors,
        )
        webhook_receiver.wait_for(
            lambda n: (
                n.status == "firing"
                and n.group_labels == {"alertname": "DPAgentTargetDown", "agent": FAILING}
                and n.body["receiver"] == "dpagent-critical"
            ),
            timeout=20,
        )


def test_batch_run_pushed_to_the_pushgateway_reaches_prometheus(
    prometheus_factory: Callable[..., PrometheusServer],
    pushgateway: PushgatewayServer,
    fast_rules: Path,
) -> None:
    prom = prometheus_factory(
        rule_files=[fast_rules],
        targets={"pushgateway": [pushgateway.address]},
        scrape_interval=f"{INTERVAL_S:g}s",
        evaluation_interval=f"{INTERVAL_S:g}s",
    )
    registry = CollectorRegistry()

    @instrument("bigcommerce_upload", "batch_upload", registry=registry)
    def upload(fail: bool) -> None:
        if fail:
            raise TimeoutError("injected")

    for i in range(7):
        with contextlib.suppress(TimeoutError):
            upload(fail=i % 3 == 0)
    run_id = "e2e-batch-1"
    assert push_to_gateway(pushgateway.url, job="dpagent_batch", grouping_key={"run": run_id},
                           registry=registry)  # fmt: skip

    selector = (
        f'dpagent_operations_total{{job="dpagent_batch", run="{run_id}", '
        'agent="bigcommerce_upload", operation="batch_upload"}'
    )
    values = prom.wait_for(
        lambda p: {dict(k)["outcome"]: v for k, v in p.query_values(selector).items()},
        timeout=30,
        message="the pushed batch counters in Prometheus",
    )
    # honor_labels kept the pushed job and grouping key; the counts are the run's.
    assert values == {"success": 4.0, "failure": 3.0}
    [series] = prom.query(selector.replace("}", ', outcome="success"}'))
    assert series["metric"]["job"] == "dpagent_batch"
    assert "exported_job" not in series["metric"]
    [up] = prom.query('up{job="pushgateway"}')
    assert up["value"][1] == "1"
    # A gateway that cannot be reached is reported, not raised, so a batch never fails on it.
    pushgateway.stop()
    assert push_to_gateway(pushgateway.url, job="dpagent_batch", registry=registry) is False
