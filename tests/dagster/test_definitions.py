"""The code location loads, with the shapes the design relies on."""

import subprocess
import sys

import dagster as dg

from lightcurver_dagster.definitions import defs
from lightcurver_dagster.defs.partitions import frames_partitions


def test_definitions_load_and_validate():
    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_job_def("per_frame_job") is not None


def test_calibrated_frame_is_partitioned_by_frame_and_batched():
    node = defs.resolve_asset_graph().get(dg.AssetKey("calibrated_frame"))
    assert node.partitions_def == frames_partitions
    assert node.backfill_policy == dg.BackfillPolicy.single_run()
    assert node.description.startswith("Raw frame converted to e-/s")


def test_raw_frames_sensor_ships_running():
    sensor = defs.resolve_sensor_def("raw_frames_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.job_name == "per_frame_job"


def test_dagster_cli_validates_the_code_location(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-m", "lightcurver_dagster.definitions"],
        capture_output=True,
        text=True,
        timeout=300,
        env={"DAGSTER_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
