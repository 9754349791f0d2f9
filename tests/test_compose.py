"""docker-compose.yml, the Dockerfile and the configs the containers read, validated offline.

No Docker engine, Grafana, Loki, Alloy or Tempo runs here, so these tests check what can be
checked without them: Debian's docker-compose 1.29 parses and interpolates the file (it
rejects keys it does not know), every bind mount exists in the repository and lands where
the program reading it looks, images are pinned, credentials come from the environment,
ports stay on loopback, and the configs agree with each other (service names, ports,
labels). Prometheus' and Alertmanager's configs are checked with promtool and amtool in the
same layout as the containers mount them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from servers import REPO_ROOT, find_binary

COMPOSE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
DEPLOY = REPO_ROOT / "deploy"

SERVICES = {
    "dpagent-demo",
    "dpagent-batch",
    "prometheus",
    "alertmanager",
    "pushgateway",
    "loki",
    "alloy",
    "tempo",
    "grafana",
}
# Services without a healthcheck, and why (checked so the list cannot grow silently).
NO_HEALTHCHECK = {"dpagent-batch": "serves /metrics only while a run is in progress"}
TEST_PASSWORD = "not-admin-3f9c"


def _compose_copy(tmp_path: Path, env: str | None) -> Path:
    """The compose file and everything it mounts, in a temporary directory, with ``env``
    as its .env (None: no .env)."""
    for name in ("docker-compose.yml", "Dockerfile", ".dockerignore", "alerts.rules.yml"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    if env is not None:
        (tmp_path / ".env").write_text(env)
    return tmp_path


def _example_env(password: str = TEST_PASSWORD) -> str:
    return ENV_EXAMPLE.read_text().replace(
        "GF_ADMIN_PASSWORD=\n", f"GF_ADMIN_PASSWORD={password}\n"
    )


def _docker_compose(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = find_binary("docker-compose")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(workdir)}  # no variables from this shell
    return subprocess.run(
        [binary, "-f", "docker-compose.yml", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``docker-compose config`` of a copy with .env made from .env.example."""
    workdir = _compose_copy(tmp_path_factory.mktemp("compose"), _example_env())
    result = _docker_compose(workdir, "config")
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    config["_workdir"] = str(workdir)
    return dict(config)


def _services(resolved: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield from resolved["services"].items()


def test_config_validates_with_docker_compose_1_29(tmp_path: Path) -> None:
    workdir = _compose_copy(tmp_path, _example_env())
    result = _docker_compose(workdir, "config", "-q")
    assert result.returncode == 0, result.stderr
    version = _docker_compose(workdir, "version", "--short")
    assert version.stdout.startswith("1."), version.stdout  # the strict old parser


def test_grafana_password_is_required_without_default(tmp_path: Path) -> None:
    raw = COMPOSE.read_text()
    assert re.search(r"GF_SECURITY_ADMIN_PASSWORD: \$\{GF_ADMIN_PASSWORD:\?[^}]+\}", raw)
    assert "GF_ADMIN_PASSWORD:-" not in raw and "GF_ADMIN_PASSWORD-" not in raw
    assert raw.count("GF_SECURITY_ADMIN_PASSWORD") == 1
    # No .env at all, and the example as shipped (empty password): both refused.
    for i, env in enumerate((None, ENV_EXAMPLE.read_text())):
        (tmp_path / str(i)).mkdir()
        workdir = _compose_copy(tmp_path / str(i), env)
        result = _docker_compose(workdir, "config", "-q")
        assert result.returncode != 0
        assert "GF_ADMIN_PASSWORD" in result.stderr


def test_compose_rejects_what_docker_compose_1_29_rejects(tmp_path: Path) -> None:
    # The validation is real: a key newer than 1.29 makes it fail (see FACTS.md).
    workdir = _compose_copy(tmp_path, _example_env())
    text = (workdir / "docker-compose.yml").read_text()
    (workdir / "docker-compose.yml").write_text("name: dpagent\n" + text)
    assert _docker_compose(workdir, "config", "-q").returncode != 0
    raw = yaml.safe_load(COMPOSE.read_text())
    assert "name" not in raw
    for name, service in raw["services"].items():
        assert "develop" not in service, name
        assert "start_interval" not in (service.get("healthcheck") or {}), name


def test_every_service_is_there(resolved: dict[str, Any]) -> None:
    assert set(resolved["services"]) == SERVICES


def test_images_are_pinned(resolved: dict[str, Any]) -> None:
    for name, service in _services(resolved):
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag, f"{name}: {image} has no tag"
        assert tag != "latest" and re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: {image}"
    from_lines = re.findall(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), re.M)
    assert from_lines and all(re.search(r":\d+\.\d+\.\d+", f) for f in from_lines), from_lines
    # Prometheus 3 (exemplar storage, OpenMetrics scraping by default).
    assert resolved["services"]["prometheus"]["image"].startswith("prom/prometheus:v3.")


def test_healthchecks_and_dependency_conditions(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    for name, service in services.items():
        check = service.get("healthcheck")
        if name in NO_HEALTHCHECK:
            # docker-compose writes `disable: true` as the engine's form, test NONE.
            assert check in ({"disable": True}, {"test": ["NONE"]}), name
            continue
        assert check and check["test"][0] in {"CMD", "CMD-SHELL"}, f"{name}: no healthcheck"
        assert check.get("interval") and check.get("retries"), name
        for dependency, spec in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert spec["condition"] in {"service_healthy", "service_started"}, name
            if dependency not in NO_HEALTHCHECK:
                assert spec["condition"] == "service_healthy", f"{name} -> {dependency}"
    assert set(services["grafana"]["depends_on"]) >= {"prometheus", "loki", "tempo"}
    assert "loki" in services["alloy"]["depends_on"]


def test_host_ports_are_loopback_only(resolved: dict[str, Any]) -> None:
    published = 0
    for name, service in _services(resolved):
        for port in service.get("ports") or []:
            spec = port if isinstance(port, str) else f"{port.get('host_ip')}:{port['published']}"
            assert spec.startswith("127.0.0.1:"), f"{name}: {port} is reachable from outside"
            published += 1
    assert published >= 9
    raw = yaml.safe_load(COMPOSE.read_text())
    for name, service in raw["services"].items():
        for port in service.get("ports") or []:
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"


def _mounts(service: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            kind = "bind" if source.startswith((".", "/")) else "volume"
            yield {"type": kind, "source": source, "target": target, "read_only": mode == ["ro"]}
        else:
            yield volume


def test_bind_mounts_exist_and_data_is_in_named_volumes(resolved: dict[str, Any]) -> None:
    workdir = Path(resolved["_workdir"])
    named = set(resolved.get("volumes") or {})
    binds = 0
    for name, service in _services(resolved):
        for mount in _mounts(service):
            if mount["type"] == "bind":
                source = Path(mount["source"])
                relative = source.relative_to(workdir)
                assert (REPO_ROOT / relative).exists(), f"{name}: {relative} is not in the repo"
                assert mount.get("read_only"), f"{name}: {relative} should be mounted read-only"
                binds += 1
            else:
                assert mount["source"] in named, f"{name}: {mount['source']} is not declared"
    assert binds >= 9
    used = {
        m["source"] for _, s in _services(resolved) for m in _mounts(s) if m["type"] == "volume"
    }
    assert used == named, f"declared but unused: {named - used}"


def _mount_target(resolved: dict[str, Any], service: str, repo_path: str) -> PurePosixPath:
    workdir = Path(resolved["_workdir"])
    for mount in _mounts(resolved["services"][service]):
        if mount["type"] == "bind" and Path(mount["source"]) == workdir / repo_path:
            return PurePosixPath(mount["target"])
    raise AssertionError(f"{service} does not mount {repo_path}")


def _arg(service: dict[str, Any], flag: str) -> str:
    command = service["command"]
    for item in command:
        if item.startswith(f"{flag}="):
            return str(item.split("=", 1)[1])
    raise AssertionError(f"{flag} not in {command}")


def _norm(path: PurePosixPath) -> PurePosixPath:
    parts: list[str] = []
    for part in path.parts:
        if part == "..":
            parts.pop()
        elif part != ".":
            parts.append(part)
    return PurePosixPath(*parts)


def test_prometheus_reads_the_repo_config_and_rules(
    resolved: dict[str, Any], tmp_path: Path
) -> None:
    service = resolved["services"]["prometheus"]
    config_dir = _mount_target(resolved, "prometheus", "deploy/prometheus")
    rules = _mount_target(resolved, "prometheus", "alerts.rules.yml")
    config_file = PurePosixPath(_arg(service, "--config.file"))
    assert config_file == config_dir / "prometheus.yml"
    prometheus_yml = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (rule_file,) = prometheus_yml["rule_files"]
    assert _norm(config_dir / rule_file) == rules
    assert "--enable-feature=exemplar-storage" in service["command"]
    # promtool, in the containers' layout: the relative rule path resolves and loads.
    root = tmp_path / "root"
    shutil.copytree(DEPLOY / "prometheus", root / config_dir.relative_to("/"))
    shutil.copy(REPO_ROOT / "alerts.rules.yml", root / rules.relative_to("/"))
    result = subprocess.run(
        [find_binary("promtool"), "check", "config", str(root / config_file.relative_to("/"))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "rules found" in result.stdout


def test_scrape_targets_name_the_compose_services() -> None:
    ports = {"dpagent": ("dpagent-demo", 8000), "pushgateway": ("pushgateway", 9091)}
    ports["alertmanager"] = ("alertmanager", 9093)
    for job, (service, port) in ports.items():
        groups = json.loads((DEPLOY / "prometheus" / "targets" / f"{job}.json").read_text())
        targets = {t for g in groups for t in g["targets"]}
        assert f"{service}:{port}" in targets, f"{job}: {targets}"
        assert service in SERVICES


def test_alertmanager_runs_the_repo_entrypoint(resolved: dict[str, Any], tmp_path: Path) -> None:
    service = resolved["services"]["alertmanager"]
    entrypoint = _mount_target(
        resolved, "alertmanager", "deploy/prometheus/alertmanager-entrypoint.sh"
    )
    template = _mount_target(resolved, "alertmanager", "deploy/prometheus/alertmanager.yml")
    assert service["entrypoint"] == ["/bin/sh", str(entrypoint)]
    env = service["environment"]
    assert env["DPAGENT_ALERTMANAGER_TEMPLATE"] == str(template)
    assert env["ALERTMANAGER_BIN"] == "/bin/alertmanager"
    assert "--cluster.listen-address=" in service["command"]
    result = subprocess.run(
        [find_binary("amtool"), "check-config", str(DEPLOY / "prometheus" / "alertmanager.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_is_provisioned_and_locked_down(resolved: dict[str, Any]) -> None:
    service = resolved["services"]["grafana"]
    env = service["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == TEST_PASSWORD  # from .env, nothing else
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    provisioning = _mount_target(resolved, "grafana", "deploy/grafana/provisioning")
    assert provisioning == PurePosixPath("/etc/grafana/provisioning")
    dashboards = _mount_target(resolved, "grafana", "deploy/grafana/dashboards")
    providers = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "dashboards.yaml").read_text()
    )
    assert {p["options"]["path"] for p in providers["providers"]} == {str(dashboards)}
    home = PurePosixPath(env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert home.parent == dashboards
    assert (DEPLOY / "grafana" / "dashboards" / home.name).exists()


def _container_ports(service: dict[str, Any]) -> set[int]:
    ports = set()
    for port in service.get("ports") or []:
        ports.add(
            int(port["target"])
            if isinstance(port, dict)
            else int(str(port).rsplit(":", 1)[1].split("/")[0])
        )
    check = " ".join(service.get("healthcheck", {}).get("test", []))
    ports.update(int(p) for p in re.findall(r"127\.0\.0\.1[:/](\d+)", check))
    return ports


def test_datasources_point_at_services(resolved: dict[str, Any]) -> None:
    datasources = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "datasources.yaml").read_text()
    )["datasources"]
    services = resolved["services"]
    for ds in datasources:
        host, port = re.fullmatch(r"http://([\w-]+):(\d+)", ds["url"]).groups()  # type: ignore[union-attr]
        assert host in services, ds["url"]
        assert int(port) in _container_ports(services[host]), ds["url"]


def test_logs_and_traces_are_wired(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    demo, alloy = services["dpagent-demo"], services["alloy"]
    # The demo's log directory is the volume Alloy reads, read-only.
    log_dir = demo["environment"]["DPAGENT_LOG_DIR"]
    demo_volume = {m["target"]: m["source"] for m in _mounts(demo)}[log_dir]
    alloy_mount = next(m for m in _mounts(alloy) if m["source"] == demo_volume)
    assert alloy_mount.get("read_only")
    config = (DEPLOY / "alloy" / "config.alloy").read_text()
    (path,) = re.findall(r'__path__\s*=\s*"([^"]+)"', config)
    assert path.startswith(alloy_mount["target"] + "/") and path.endswith("main_structured.jsonl")
    assert _mount_target(resolved, "alloy", "deploy/alloy/config.alloy") == PurePosixPath(
        alloy["command"][-1]
    )
    (push_url,) = re.findall(r'url\s*=\s*"(http://[^"]+)"', config)
    assert re.fullmatch(r"http://loki:3100/loki/api/v1/push", push_url)
    assert config.count("{") == config.count("}")
    # Traces: the demo exports OTLP/HTTP to Tempo's receiver, which listens beyond localhost.
    assert demo["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://tempo:4318"
    tempo = yaml.safe_load((DEPLOY / "tempo" / "tempo.yaml").read_text())
    otlp = tempo["distributor"]["receivers"]["otlp"]["protocols"]
    assert otlp["http"]["endpoint"] == "0.0.0.0:4318"
    assert tempo["server"]["http_listen_port"] == 3200
    tempo_mount = _mount_target(resolved, "tempo", "deploy/tempo/tempo.yaml")
    assert services["tempo"]["command"] == [f"-config.file={tempo_mount}"]
    volume_root = {m["target"] for m in _mounts(services["tempo"]) if m["type"] == "volume"}
    assert tempo["storage"]["trace"]["local"]["path"].startswith(tuple(volume_root))


def test_loki_keeps_structured_metadata(resolved: dict[str, Any]) -> None:
    loki = yaml.safe_load((DEPLOY / "loki" / "loki.yaml").read_text())
    (schema,) = loki["schema_config"]["configs"]
    assert schema["schema"] == "v13" and schema["store"] == "tsdb"
    assert loki["limits_config"]["allow_structured_metadata"] is True
    assert loki["server"]["http_listen_port"] == 3100
    mount = _mount_target(resolved, "loki", "deploy/loki/loki.yaml")
    assert resolved["services"]["loki"]["command"] == [f"-config.file={mount}"]
    volume = next(m for m in _mounts(resolved["services"]["loki"]) if m["type"] == "volume")
    assert loki["common"]["path_prefix"] == volume["target"]


def test_env_example_documents_every_variable() -> None:
    used = set(re.findall(r"(?<!\$)\$\{(\w+)", COMPOSE.read_text()))
    documented = set(re.findall(r"^(\w+)=", ENV_EXAMPLE.read_text(), re.M))
    assert used - documented == set(), f"undocumented in .env.example: {used - documented}"
    assert documented - used == set(), f".env.example lists unused: {documented - used}"
    # Each variable has a comment above it.
    lines = ENV_EXAMPLE.read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^\w+=", line):
            previous = [x for x in lines[:i] if x.strip()]
            assert previous and previous[-1].startswith(("#", *[f"{v}=" for v in documented]))


def test_demo_image_runs_unprivileged_with_a_healthcheck() -> None:
    text = DOCKERFILE.read_text()
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in {"root", "0", "0:0"}
    assert re.search(r"^HEALTHCHECK ", text, re.M)
    assert re.search(r'^ENTRYPOINT \["dpagent"\]', text, re.M)
    for copied in re.findall(r"^COPY\s+(\S+)", text, re.M):
        assert (REPO_ROOT / copied).exists(), copied
    ignore = DOCKERIGNORE.read_text().splitlines()
    assert ignore[ignore.index("*") if "*" in ignore else 0] == "*"  # allow-list
    assert {"!pyproject.toml", "!README.md", "!dpagent/", "!examples/"} <= set(ignore)
