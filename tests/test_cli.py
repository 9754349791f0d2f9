"""The dpagent command: help, input errors and exit codes, SIGINT, demo, stats, export."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import PrometheusServer, PushgatewayServer, free_port, wait_until

from dpagent.cli import EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, main

COMMAND = [sys.executable, "-m", "dpagent.cli"]
HEADER = "sku,name,brand,price,description\n"
URL = re.compile(r"metrics at (http://\S+/metrics)")


def csv_file(tmp_path: Path, rows: int, bad: str = "") -> Path:
    lines = [f"P-{i:04d},Part {i},Borla,{10 + i},Fits 2015-2020 Ford F-150\n" for i in range(rows)]
    path = tmp_path / "products.csv"
    path.write_text(HEADER + bad + "".join(lines), encoding="utf-8")
    return path


def environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DPAGENT_", "OTEL_"))}
    env.update(DPAGENT_LOG_DIR=str(tmp_path / "logs"), NO_COLOR="1", PYTHONUNBUFFERED="1")
    return env


class Running:
    """A dpagent subprocess whose stderr is collected as it arrives."""

    def __init__(self, args: list[str], tmp_path: Path) -> None:
        self.process = subprocess.Popen(
            COMMAND + args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=environment(tmp_path),
            text=True,
        )
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        # Both pipes are drained as output arrives, so the child never blocks on a full pipe.
        self._readers = [
            threading.Thread(target=self._read, args=(stream, into), daemon=True)
            for stream, into in (
                (self.process.stdout, self.stdout_lines),
                (self.process.stderr, self.stderr_lines),
            )
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    def metrics_url(self) -> str:
        found = wait_until(lambda: URL.search(self.stderr), 30, message="the metrics URL")
        return found.group(1)

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        try:
            self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        for reader in self._readers:
            reader.join(timeout=5)
        return self.process.returncode, "".join(self.stdout_lines), self.stderr


@pytest.fixture
def running(tmp_path: Path) -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for proc in started:  # never leave a process behind
        if proc.process.poll() is None:
            proc.process.kill()
            proc.process.wait()


def scrape(url: str) -> str:
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=5) as r:
        return str(r.read().decode())


def sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


# --- help and input errors (in process: they stop before any set-up) ----------------


@pytest.mark.parametrize("command", [[], ["run"], ["demo"], ["stats"], ["export"]])
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: dpagent {' '.join(command)}".rstrip())


def run_in_process(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.err


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_in_process(["run", "--input", str(tmp_path / "nope.csv")], capsys)
    assert code == EXIT_USAGE
    assert err.strip() == f"dpagent run: error: {tmp_path / 'nope.csv'}: no such file"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        (HEADER, "no product rows after the header"),
        (HEADER + ",no sku,,,\nbad sku!,x,,,\n", "no valid product rows (2 skipped)"),
        ("id,title\n1,x\n", "lacks the required column(s) sku, name"),
    ],
)
def test_unusable_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = tmp_path / "in.csv"
    path.write_text(text)
    code, err = run_in_process(["run", "--input", str(path)], capsys)
    assert code == EXIT_USAGE
    assert err.strip().splitlines()[-1].startswith("dpagent run: error: ")
    assert message in err


def test_bad_options_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["run", "--input", "x", "--workers", "0"], ["stats", "--hours", "-1"],
                 ["demo", "--rate", "fast"], ["run"]):  # fmt: skip
        with pytest.raises(SystemExit) as exited:
            main(args)
        assert exited.value.code == EXIT_USAGE
    assert "Traceback" not in capsys.readouterr().err


def test_stats_and_export_without_prometheus(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, err = run_in_process(["stats", "--prometheus-url", url], capsys)
    assert code == EXIT_UNAVAILABLE
    assert (
        err.strip()
        == f"dpagent stats: error: cannot reach Prometheus at {url}: [Errno 111] Connection refused"
    )
    out = tmp_path / "out.json"
    code, err = run_in_process(["export", "--prometheus-url", url, "-o", str(out)], capsys)
    assert code == EXIT_UNAVAILABLE and len(err.strip().splitlines()) == 1
    assert not out.exists()


# --- real processes -------------------------------------------------------------------


def test_malformed_rows_are_reported_and_skipped(tmp_path: Path, running: list[Running]) -> None:
    path = csv_file(tmp_path, 6, bad=",no sku,Borla,1,\nP-X,Bad price,Borla,ten,\n")
    summary = tmp_path / "summary.json"
    proc = Running(
        ["run", "--input", str(path), "--time-scale", "0", "--metrics-port", "0",
         "--summary-json", str(summary)],
        tmp_path,
    )  # fmt: skip
    running.append(proc)
    code, out, err = proc.finish()
    assert code == EXIT_FAILURES, err
    assert f"dpagent run: {path} line 2: sku is empty: skipped" in err
    assert f"dpagent run: {path} line 3: price 'ten' is not a number: skipped" in err
    assert "Traceback" not in err
    assert "Batch summary: 6 products" in out
    assert "rows skipped (malformed): 2" in out
    document = json.loads(summary.read_text())
    assert document["planned"] == 6 and document["not_processed"] == 0
    assert [row["line"] for row in document["skipped_rows"]] == [2, 3]
    assert (tmp_path / "logs" / "main_structured.jsonl").exists()


@pytest.mark.servers
def test_sigint_mid_batch_stops_cleanly_pushes_and_prints_the_summary(
    tmp_path: Path, running: list[Running], pushgateway: PushgatewayServer
) -> None:
    path = csv_file(tmp_path, 400)
    summary = tmp_path / "summary.json"
    proc = Running(
        ["run", "--input", str(path), "--workers", "2", "--time-scale", "0.02",
         "--metrics-port", "0", "--pushgateway", pushgateway.url, "--summary-json", str(summary)],
        tmp_path,
    )  # fmt: skip
    running.append(proc)
    url = proc.metrics_url()

    def items_done() -> float:
        text = scrape(url)
        return sum(
            sample(text, "dpagent_batch_items_processed_total", agent="bigcommerce_upload",
                   outcome=outcome) or 0
            for outcome in ("success", "failure")
        )  # fmt: skip

    wait_until(lambda: items_done() >= 5, 60, message="five products uploaded")
    proc.process.send_signal(signal.SIGINT)
    code, out, err = proc.finish()
    assert code == EXIT_INTERRUPTED, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "dpagent run: stopping" in err
    assert "(interrupted)" in out and f"metrics push: pushed to {pushgateway.url}" in out
    document = json.loads(summary.read_text())
    assert document["interrupted"] and document["pushed"]
    assert 0 < document["not_processed"] < 400
    # The final push holds exactly what the summary counted.
    pushed = pushgateway.metrics_text()
    for agent, counts in document["agents"].items():
        for outcome, key in (("success", "succeeded"), ("failure", "failed")):
            assert sample(
                pushed, "dpagent_batch_items_processed_total", agent=agent, outcome=outcome,
                job="dpagent_batch",
            ) == counts[key], (agent, outcome)  # fmt: skip
    assert sample(pushed, "push_time_seconds", job="dpagent_batch") is not None


@pytest.mark.servers
def test_demo_serves_metrics_and_stats_and_export_read_them_back(
    tmp_path: Path, running: list[Running], prometheus_factory: Any
) -> None:
    prom: PrometheusServer = prometheus_factory()
    proc = Running(
        ["demo", "--duration", "8", "--rate", "40", "--time-scale", "0.01", "--metrics-port", "0",
         "--profile", "throttled"],
        tmp_path,
    )  # fmt: skip
    running.append(proc)
    url = proc.metrics_url()
    prom.set_targets("dpagent", [url.split("//")[1].split("/")[0]])
    text = wait_until(
        lambda: next((t for t in [scrape(url)] if "dpagent_bigcommerce_rate_limited" in t), None),
        20,
        message="agent metrics on /metrics",
    )
    for name in ("dpagent_operations_total", "dpagent_image_quality_score_bucket",
                 "dpagent_bigcommerce_api_requests_total", "dpagent_cache_requests_total",
                 "dpagent_batch_size_items_bucket", "process_resident_memory_bytes"):  # fmt: skip
        assert f"\n{name}" in text, name
    prom.wait_for(
        lambda p: p.query('sum(dpagent_bigcommerce_rate_limited_total{job="dpagent"}) > 0'),
        timeout=30,
        message="the demo scraped",
    )
    code, out, err = proc.finish(timeout=60)
    assert code == EXIT_OK, err
    assert out == ""  # stdout stays free for JSON logs
    assert "Demo (throttled)" in err and "Traceback" not in err

    env = environment(tmp_path)
    stats = subprocess.run(
        [*COMMAND, "stats", "--hours", "1", "--prometheus-url", prom.url, "--json"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert stats.returncode == EXIT_OK, stats.stderr
    agents = json.loads(stats.stdout)["agents"]
    assert set(agents) == {"image_sourcing", "vehicle_applications", "bigcommerce_upload"}
    assert all(entry["total"] > 0 for entry in agents.values())
    table = subprocess.run(
        [*COMMAND, "stats", "--hours", "1", "--prometheus-url", prom.url],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert table.returncode == EXIT_OK and "upload_product" in table.stdout
    output = tmp_path / "exports" / "metrics.json"
    export = subprocess.run(
        [*COMMAND, "export", "--hours", "1", "-o", str(output), "--prometheus-url", prom.url],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert export.returncode == EXIT_OK, export.stderr
    assert json.loads(output.read_text())["summary"]["agents"].keys() == agents.keys()


def test_stack_is_a_cli_command_with_its_own_help(capsys: pytest.CaptureFixture[str]) -> None:
    from dpagent.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["stack", "--help"])
    assert stopped.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: dpagent stack")
    assert "--no-demo" in out and "--target HOST:PORT" in out
