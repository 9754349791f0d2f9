"""``python -m dpagent.stack``: the stack without Docker, run as a user runs it.

Each test starts the command as a subprocess on free ports with its state in ``tmp_path``,
reads the URLs it prints, checks that they answer with the repository's configuration, and
stops it with a signal; afterwards no process whose command line names the state directory
may be left.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from servers import REPO_ROOT, find_binary, http_json, wait_until

from dpagent import stack

pytestmark = [pytest.mark.servers, pytest.mark.slow]

URL_LINE = re.compile(r"^\s+(Prometheus|Alertmanager|Pushgateway|demo /metrics)\s+(http://\S+)")


def _processes_mentioning(text: str) -> list[int]:
    """PIDs of live processes whose command line contains ``text`` (zombies excluded)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            status = (entry / "status").read_text()
        except OSError:
            continue
        if text in cmdline and "State:\tZ" not in status:
            pids.append(int(entry.name))
    return pids


@dataclass
class RunningStack:
    process: subprocess.Popen[str]
    state: Path
    urls: dict[str, str]
    output: list[str]

    def stop(self, signum: int) -> tuple[int, str, str]:
        self.process.send_signal(signum)
        out, err = self.process.communicate(timeout=40)
        return self.process.returncode, "".join(self.output) + out, err


def _start(tmp_path: Path, *extra: str) -> RunningStack:
    for binary in ("prometheus", "prometheus-alertmanager", "prometheus-pushgateway"):
        find_binary(binary)  # fails with the install command when missing
    state = tmp_path / "state"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dpagent.stack",
            "--repo",
            str(REPO_ROOT),
            "--state-dir",
            str(state),
            "--prometheus-port",
            "0",
            "--alertmanager-port",
            "0",
            "--pushgateway-port",
            "0",
            "--demo-port",
            "0",
            "--time-scale",
            "0.01",
            "--rate",
            "10",
            *extra,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    output: list[str] = []
    urls: dict[str, str] = {}
    assert process.stdout is not None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        output.append(line)
        match = URL_LINE.match(line)
        if match:
            urls[match.group(1)] = match.group(2)
        if line.startswith("Press Ctrl-C"):
            return RunningStack(process, state, urls, output)
    process.kill()
    out, err = process.communicate(timeout=10)
    raise AssertionError(f"the stack did not come up:\n{''.join(output)}{out}\n{err}")


@pytest.fixture
def cleanup() -> Iterator[list[RunningStack]]:
    stacks: list[RunningStack] = []
    yield stacks
    for running in stacks:
        if running.process.poll() is None:
            running.process.kill()
            running.process.communicate(timeout=10)
        for pid in _processes_mentioning(str(running.state)):
            os.kill(pid, signal.SIGKILL)


def _get(url: str) -> str:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as response:
        return str(response.read().decode())


def _port_closed(url: str) -> bool:
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, int(port))) != 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serves_the_printed_urls_and_stops_cleanly(
    tmp_path: Path, cleanup: list[RunningStack], signum: int
) -> None:
    running = _start(tmp_path)
    cleanup.append(running)
    urls = running.urls
    assert set(urls) == {"Prometheus", "Alertmanager", "Pushgateway", "demo /metrics"}
    for name in ("Prometheus", "Alertmanager", "Pushgateway"):
        assert _get(f"{urls[name]}/-/ready"), name
    assert 'dpagent_operations_total{agent="image_sourcing"' in _get(urls["demo /metrics"])
    assert len(_processes_mentioning(str(running.state))) >= 4  # the four services

    prometheus = urls["Prometheus"]
    # The same files as docker compose: byte-identical copies in the repository's layout,
    # only the discovered targets differ.
    copied = running.state / "deploy" / "prometheus" / "prometheus.yml"
    assert copied.read_bytes() == (REPO_ROOT / "deploy/prometheus/prometheus.yml").read_bytes()
    assert (running.state / "alerts.rules.yml").read_bytes() == (
        REPO_ROOT / "alerts.rules.yml"
    ).read_bytes()
    groups = {g["name"] for g in http_json(f"{prometheus}/api/v1/rules")["data"]["groups"]}
    assert groups == {"dpagent.recording", "dpagent.alerts"}
    loaded = yaml.safe_load(http_json(f"{prometheus}/api/v1/status/config")["data"]["yaml"])
    assert {c["job_name"] for c in loaded["scrape_configs"]} >= {"dpagent", "pushgateway"}
    demo_address = urls["demo /metrics"].removeprefix("http://").removesuffix("/metrics")

    def discovered() -> bool:
        active = http_json(f"{prometheus}/api/v1/targets")["data"]["activeTargets"]
        return any(
            t["labels"]["job"] == "dpagent" and t["labels"]["instance"] == demo_address
            for t in active
        )

    wait_until(discovered, 20, message="the demo discovered as a dpagent target")
    am = http_json(f"{urls['Alertmanager']}/api/v2/status")
    am_config = yaml.safe_load(am["config"]["original"])
    assert am_config["route"]["receiver"] == "dpagent-warning"

    code, out, err = running.stop(signum)
    assert code == 0, f"exit {code}\n{out}\n{err}"
    assert "dpagent stack: stopped" in out
    assert not _processes_mentioning(str(running.state)), "services left running"
    for url in urls.values():
        assert _port_closed(url), f"{url} still accepts connections"


def test_a_dead_service_stops_the_others(tmp_path: Path, cleanup: list[RunningStack]) -> None:
    running = _start(tmp_path, "--no-demo")
    cleanup.append(running)
    assert "demo /metrics" not in running.urls
    pushgateways = [
        pid
        for pid in _processes_mentioning(str(running.state))
        if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"pushgateway")
    ]
    assert len(pushgateways) == 1
    os.kill(pushgateways[0], signal.SIGKILL)
    out, err = running.process.communicate(timeout=40)
    assert running.process.returncode == 1, out + err
    assert "pushgateway exited" in err
    assert not _processes_mentioning(str(running.state))


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "dpagent.stack",
                "--repo",
                str(REPO_ROOT),
                "--state-dir",
                str(tmp_path / "state"),
                "--prometheus-port",
                str(port),
                "--alertmanager-port",
                "0",
                "--pushgateway-port",
                "0",
                "--demo-port",
                "0",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode != 0
    assert f"port {port} for prometheus is in use" in result.stderr
    assert not _processes_mentioning(str(tmp_path / "state"))


def test_missing_binary_and_files_are_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(stack.BINARIES, "pushgateway", ("no-such-pushgateway-binary",))
    with pytest.raises(stack.StackError, match="apt-get install"):
        stack.find_binary("pushgateway")
    with pytest.raises(stack.StackError, match=re.escape("deploy/prometheus/prometheus.yml")):
        stack.find_repo_files(tmp_path)
    assert stack.find_repo_files(REPO_ROOT / "dpagent").root == REPO_ROOT
    assert stack.main(["--repo", str(tmp_path)]) == 2
