"""The production topology, live, as docker-compose runs it: PostgreSQL (Dagster's storage and the
science database, separate databases on one server), ``dagster code-server start``,
``dagster-webserver`` and ``dagster-daemon`` as separate processes with ``deploy/dagster.yaml``.

Two nights of frames reach the light curves through the sensors and the automation; a backfill of a
range of frames launched through the webserver's GraphQL API runs as one run; the daemon is killed
in the middle of that run and restarted, and every frame ends materialised exactly once with nothing
duplicated in the science database."""

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.execution.backfill import BulkActionStatus
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from lightcurver_ops.config import DATABASE_URL_ENV_VAR
from lightcurver_ops.db.engine import open_science_database
from lightcurver_ops.db.schema import metadata
from tests.integration.graphql import backfill_status, launch_range_backfill
from tests.integration.live import (
    ACTIVE,
    PER_FRAME_ASSETS,
    Telescope,
    last_event_id,
    materialized_since,
    wait_for_frames,
)
from tests.integration.processes import free_port, log_tails, running, wait_for_webserver, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
BIN = Path(sys.executable).parent
BACKFILLED = ("psf_model",)


@dataclass
class Stack:
    telescope: Telescope
    instance: dg.DagsterInstance
    url: str
    science_url: str
    processes: ExitStack
    daemon_command: list[str]
    environment: dict[str, str]
    daemon: subprocess.Popen | None = None
    waves: list[list[str]] = field(default_factory=list)
    second_wave_events: dict[str, list[str]] = field(default_factory=dict)

    @property
    def logs(self) -> Path:
        return self.telescope.root / "logs"

    def start_daemon(self) -> None:
        self.daemon = self.processes.enter_context(
            running("daemon", self.daemon_command, self.environment, self.logs)
        )

    def crash_daemon(self) -> None:
        """SIGKILL: no clean shutdown, as when the machine or the container dies."""
        os.killpg(self.daemon.pid, signal.SIGKILL)
        self.daemon.wait(30)


def settled(instance: dg.DagsterInstance) -> bool:
    """No run queued or running, no backfill left to launch."""
    if instance.get_runs(dg.RunsFilter(statuses=ACTIVE), limit=1):
        return False
    return not instance.get_backfills(status=BulkActionStatus.REQUESTED)


@pytest.fixture(scope="module")
def production(tmp_path_factory, postgres_server) -> Iterator[Stack]:
    telescope = Telescope.simulate(tmp_path_factory.mktemp("production") / "sim", seed=7)
    root, logs = telescope.root, telescope.root / "logs"
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    dagster_url = make_url(postgres_server.new_database())
    science_url = postgres_server.new_database()
    grpc_port, web_port = free_port(), free_port()
    workspace = root / "workspace.yaml"
    workspace.write_text(
        yaml.safe_dump(
            {
                "load_from": [
                    {"grpc_server": {"host": "127.0.0.1", "port": grpc_port, "location_name": "lightcurver"}}
                ]
            }
        )
    )
    postgres = {
        "DAGSTER_POSTGRES_HOST": "127.0.0.1",
        "DAGSTER_POSTGRES_PORT": str(postgres_server.port),
        "DAGSTER_POSTGRES_USER": "postgres",
        "DAGSTER_POSTGRES_PASSWORD": "unused-trust-auth",
        "DAGSTER_POSTGRES_DB": dagster_url.database,
    }
    environment = os.environ | telescope.environment() | postgres
    environment |= {"DAGSTER_HOME": str(home), DATABASE_URL_ENV_VAR: science_url}
    code_server = [
        str(BIN / "dagster"), "code-server", "start", "-h", "127.0.0.1", "-p", str(grpc_port),
        "-m", "lightcurver_dagster.definitions", "--location-name", "lightcurver",
    ]  # fmt: skip
    webserver = [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(web_port), "-w", str(workspace)]
    daemon = [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)]
    with ExitStack() as processes, pytest.MonkeyPatch.context() as patch:
        for name, value in postgres.items():
            patch.setenv(name, value)
        patch.setenv(DATABASE_URL_ENV_VAR, science_url)
        processes.enter_context(running("code-server", code_server, environment, logs))
        web = processes.enter_context(running("webserver", webserver, environment, logs))
        url = f"http://127.0.0.1:{web_port}"
        wait_for_webserver(url, web)
        instance = dg.DagsterInstance.from_config(str(home))
        stack = Stack(telescope, instance, url, science_url, processes, daemon, environment)
        stack.start_daemon()
        seconds = []
        for wave in range(len(telescope.waves)):
            marker = last_event_id(instance)
            stack.waves.append(telescope.drop(wave))
            seconds.append(wait_for_frames(instance, telescope.config, stack.waves[-1], logs))
        wait_until(lambda: settled(instance), "the automation to settle", 300.0, interval=5.0)
        print(f"production stack: first night {seconds[0]:.0f} s, second night {seconds[1]:.0f} s")
        stack.second_wave_events = materialized_since(instance, marker)
        yield stack


def test_both_nights_reach_the_light_curves_on_postgres(production: Stack):
    stack = production
    first, second = stack.waves
    for name in PER_FRAME_ASSETS:
        assert set(first) | set(second) <= stack.instance.get_materialized_partitions(dg.AssetKey(name))
        assert sorted(stack.second_wave_events[name]) == sorted(second), name  # each new frame once
    assert stack.instance.get_run_records(), "runs are recorded in PostgreSQL"


def row_counts(science_url: str) -> dict[str, int]:
    engine = open_science_database(science_url)
    with engine.connect() as connection:
        return {
            name: connection.execute(select(func.count()).select_from(table)).scalar_one()
            for name, table in metadata.tables.items()
            if name != "alembic_version"
        }


def test_a_graphql_backfill_survives_a_daemon_crash_and_writes_each_frame_once(production: Stack):
    stack = production
    frames = stack.waves[0]
    counts_before = row_counts(stack.science_url)
    marker = last_event_id(stack.instance)
    backfill = launch_range_backfill(stack.url, BACKFILLED, frames[0], frames[-1], "re-fit the first night")

    def backfill_runs() -> list[dg.DagsterRun]:
        return list(stack.instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill})))

    def started() -> bool:
        runs = backfill_runs()
        return bool(runs) and runs[0].status == dg.DagsterRunStatus.STARTED

    wait_until(started, "the backfill's run to start", 300.0, interval=1.0)
    stack.crash_daemon()  # in the middle of the run
    time.sleep(5)
    stack.start_daemon()

    def finished() -> str | None:
        status = backfill_status(stack.url, backfill)
        assert status not in ("FAILED", "CANCELED", "COMPLETED_FAILED"), (status, log_tails(stack.logs))
        return status if status.startswith("COMPLETED") else None

    wait_until(finished, f"backfill {backfill}", 600.0, interval=3.0)
    runs = backfill_runs()
    assert len(runs) == 1, [r.run_id for r in runs]
    run = runs[0]
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert run.tags["dagster/asset_partition_range_start"] == frames[0]
    assert run.tags["dagster/asset_partition_range_end"] == frames[-1]
    for name in BACKFILLED:
        records = stack.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(name), after_storage_id=marker), limit=1000
        ).records
        in_run = Counter(r.partition_key for r in records if r.run_id == run.run_id)
        assert in_run == Counter(frames), (name, in_run)
    # the automation re-runs what follows the new PSFs, for these frames only, then the light curves
    wait_until(lambda: settled(stack.instance), "the automation to settle", 600.0, interval=5.0)
    time.sleep(10)
    wait_until(lambda: settled(stack.instance), "the automation to settle", 600.0, interval=5.0)
    after = materialized_since(stack.instance, marker)
    for name in PER_FRAME_ASSETS:
        assert set(after[name]) <= set(frames), (name, after[name])
    assert set(after["roi_fluxes"]) == set(frames)
    assert materialized_since(stack.instance, marker, ["light_curves"])["light_curves"]
    assert row_counts(stack.science_url) == counts_before
