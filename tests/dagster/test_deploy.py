"""The production files load: the instance config on a real PostgreSQL server, the scale-out run
launchers against their own config schemas, and the compose file's promises (localhost only,
read-only raw data, secrets from the environment)."""

import importlib
import shutil
import subprocess
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster._serdes import ConfigurableClassData
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SERVICES = {"postgresql", "code-server", "webserver", "daemon"}


def instance_home(tmp_path: Path, *parts: str) -> Path:
    """A DAGSTER_HOME whose dagster.yaml is the concatenation of ``parts`` (as the README says)."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("".join((DEPLOY / part).read_text() for part in parts))
    return home


@pytest.fixture
def postgres_environment(monkeypatch, postgres_server) -> None:
    url = make_url(postgres_server.new_database())
    for name, value in {
        "DAGSTER_POSTGRES_HOST": "127.0.0.1",
        "DAGSTER_POSTGRES_PORT": str(postgres_server.port),
        "DAGSTER_POSTGRES_USER": "postgres",
        "DAGSTER_POSTGRES_PASSWORD": "unused-trust-auth",
        "DAGSTER_POSTGRES_DB": url.database,
    }.items():
        monkeypatch.setenv(name, value)


@pytest.mark.postgres
def test_production_instance_runs_on_postgres_with_the_queue_limits(tmp_path, postgres_environment):
    home = instance_home(tmp_path, "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        limits = instance.get_concurrency_config().run_queue_config
        assert limits.max_concurrent_runs == 4
        assert {
            "key": "lightcurver/device",
            "value": "accelerator",
            "limit": 1,
        } in limits.tag_concurrency_limits
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 1
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
        assert not instance.telemetry_enabled
        run = instance.create_run_for_job(dg.GraphDefinition("noop").to_job(), tags={"a": "b"})
        assert instance.get_run_by_id(run.run_id).tags["a"] == "b"


@pytest.mark.parametrize(
    ("fragment", "launcher"), [("docker.yaml", "DockerRunLauncher"), ("kubernetes.yaml", "K8sRunLauncher")]
)
def test_scale_out_run_launchers_load(tmp_path, fragment, launcher, monkeypatch):
    for name in ("HOST", "PORT", "USER", "PASSWORD", "DB"):
        monkeypatch.setenv(f"DAGSTER_POSTGRES_{name}", "5432" if name == "PORT" else "x")
    home = instance_home(tmp_path, "dagster.yaml", f"scale-out/{fragment}")
    config, _ = dagster_instance_config(str(home))  # the whole file against Dagster's instance schema
    block = config["run_launcher"]
    assert block["class"] == launcher
    cls = getattr(importlib.import_module(block["module"]), block["class"])
    result = process_config(cls.config_type(), block["config"])
    assert result.success, result.errors
    if launcher == "DockerRunLauncher":  # builds without a Docker engine; K8s needs a cluster's config
        data = ConfigurableClassData(block["module"], block["class"], yaml.safe_dump(block["config"]))
        assert type(data.rehydrate(as_type=object)).__name__ == launcher


def test_compose_keeps_the_ui_local_the_raw_data_read_only_and_secrets_out():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == SERVICES
    assert services["webserver"]["ports"] == [
        "${DAGSTER_WEBSERVER_BIND:-127.0.0.1}:${DAGSTER_WEBSERVER_PORT:-3000}:3000"
    ]
    assert all("ports" not in services[name] for name in SERVICES - {"webserver"})
    raw = [v for v in services["code-server"]["volumes"] if v.endswith(":/data/raw:ro")]
    assert len(raw) == 1, services["code-server"]["volumes"]
    assert "healthcheck" in services["postgresql"]
    assert services["daemon"]["depends_on"]["postgresql"]["condition"] == "service_healthy"
    assert services["code-server"]["build"]["dockerfile"] == "deploy/Dockerfile"
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if "PASSWORD" in key or key.endswith("DATABASE_URL"):
                assert "${POSTGRES_PASSWORD" in value, (name, key)
    example = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert example["POSTGRES_PASSWORD"] == "change-me"
    assert example["DAGSTER_WEBSERVER_BIND"] == "127.0.0.1"


def test_dockerfile_copies_what_exists():
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source


def test_compose_file_is_valid_for_docker_compose(tmp_path):
    docker = shutil.which("docker")
    probe = docker and subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
    if not probe or probe.returncode != 0:
        pytest.skip("the docker compose plugin is not installed here")
    env = tmp_path / ".env"
    env.write_text((ROOT / ".env.example").read_text())
    result = subprocess.run(
        [docker, "compose", "--env-file", str(env), "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
