"""A simulated work directory with a real Dagster instance, driven as the daemon would drive it."""

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from sqlalchemy import select

from lightcurver_dagster.definitions import build_definitions
from lightcurver_dagster.defs.partitions import frames_partitions
from lightcurver_dagster.defs.resources import build_resources
from lightcurver_dagster.defs.sensors import range_run_tags, raw_frames_sensor
from lightcurver_ops.config import load_config
from lightcurver_ops.db.engine import open_science_database
from lightcurver_ops.db.schema import frames
from lightcurver_ops.simulate import SimulationSpec, SimulationTruth, simulate_dataset

TO_NORMALISATION = (
    "footprints",
    "reference_stars",
    "cutouts",
    "psf_model",
    "star_fluxes",
    "star_reference_fluxes",
    "normalization_coefficient",
)
"""The assets from registered frames to normalisation coefficients, in dependency order."""

TO_LIGHT_CURVES = (*TO_NORMALISATION, "zeropoint", "roi_cube", "roi_model", "roi_fluxes", "light_curves")
"""The assets from registered frames to the light curves, in dependency order."""


class Pipeline:
    """Tick the raw-frames sensor, run what it asks, materialise assets, read the science database."""

    def __init__(
        self, root: Path, truth: SimulationTruth, instance: dg.DagsterInstance | None = None
    ) -> None:
        self.root = root
        self.truth = truth
        self.config_path = root / "config.yaml"
        self.raw = root / "raw"
        self.instance = instance or dg.DagsterInstance.ephemeral()
        self.definitions = build_definitions(str(self.config_path))
        self.job = self.definitions.resolve_job_def("per_frame_job")
        self.config = load_config(self.config_path)
        self.engine = open_science_database(self.config.science_database_url)

    @classmethod
    def simulated(
        cls, root: Path, spec: SimulationSpec, instance: dg.DagsterInstance | None = None, **config: Any
    ) -> "Pipeline":
        """Simulate a data set in ``root``, its config.yaml updated with ``config``; Dagster state in
        ``instance`` (default: an ephemeral, in-memory one)."""
        truth = simulate_dataset(root, spec)
        update_config(root / "config.yaml", **config)
        return cls(root, truth, instance)

    def configure(self, **values: Any) -> None:
        """Edit config.yaml and pick the change up."""
        update_config(self.config_path, **values)
        self.reload_config()

    def reload_config(self) -> None:
        """Pick up an edited config.yaml."""
        self.config = load_config(self.config_path)

    def hold_back_last_frames(self, n: int = 1) -> None:
        """Move the last ``n`` raw frames to ``late/``; they arrive later, one at a time and in their
        order, with :meth:`release_late_frame`."""
        late = self.root / "late"
        late.mkdir(exist_ok=True)
        for frame in self.truth.frames[-n:]:
            (self.raw / frame.file_name).rename(late / frame.file_name)

    def release_late_frame(self) -> str:
        """Drop the first held-back frame into the raw directory; returns its partition key."""
        path = min((self.root / "late").glob("*.fits"))
        path.rename(self.raw / path.name)
        return self.key_of(path.name)

    def tick(self) -> dg.SensorResult | dg.SkipReason:
        resources = build_resources(str(self.config_path))
        with dg.build_sensor_context(instance=self.instance, resources=resources) as context:
            return raw_frames_sensor(context)

    def execute(self, result: dg.SensorResult) -> list[dg.ExecuteInProcessResult]:
        """What the daemon does with a tick: add the partitions, launch the runs."""
        for request in result.dynamic_partitions_requests:
            self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        return [
            self.job.execute_in_process(
                instance=self.instance,
                partition_key=run.partition_key,
                tags=run.tags,
                raise_on_error=False,
            )
            for run in result.run_requests
        ]

    def ingest(self) -> list[dg.ExecuteInProcessResult]:
        """Age the raw files past the settle time, tick once and run what the sensor asks."""
        age_fresh(self.raw)
        runs = self.execute(self.tick())
        assert runs and all(run.success for run in runs)
        return runs

    def ingest_all(self) -> None:
        """Tick until every raw frame is registered (the sensor takes at most
        ``ingest_max_frames_per_run`` frames a tick)."""
        while len(self.instance.get_dynamic_partitions(frames_partitions.name)) < len(
            list(self.raw.glob("*.fits"))
        ):
            self.ingest()

    def materialize(self, *assets: str, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
        """Materialise assets (per-frame ones over every registered frame) in one run."""
        keys = [dg.AssetKey(name) for name in assets]
        graph = self.definitions.resolve_asset_graph()
        tags = {}
        if graph.get(keys[0]).partitions_def is not None:
            registered: Sequence[str] = self.instance.get_dynamic_partitions(frames_partitions.name)
            tags = range_run_tags(registered[0], registered[-1])
        job = self.definitions.resolve_implicit_global_asset_job_def()
        return job.execute_in_process(
            instance=self.instance, asset_selection=keys, tags=tags, raise_on_error=raise_on_error
        )

    def materialize_each(self, *assets: str) -> None:
        """Materialise assets one after the other (one run each), asserting success."""
        for name in assets:
            assert self.materialize(name).success, name

    def materialize_partition(self, asset: str, partition_key: str) -> dg.ExecuteInProcessResult:
        """Materialise one frame of a per-frame asset, as the automation would after a new frame."""
        job = self.definitions.resolve_implicit_global_asset_job_def()
        return job.execute_in_process(
            instance=self.instance, asset_selection=[dg.AssetKey(asset)], partition_key=partition_key
        )

    def rows(self) -> dict[str, dict]:
        with self.engine.connect() as connection:
            return {row["partition_key"]: dict(row) for row in connection.execute(select(frames)).mappings()}

    def key_of(self, file_name: str) -> str:
        return Path(file_name).stem


def update_config(path: Path, **values: Any) -> None:
    """Set top-level keys of a config.yaml."""
    config = yaml.safe_load(path.read_text()) | values
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def age(path: Path, seconds: float = 60.0) -> None:
    """Pretend a file was last written ``seconds`` ago."""
    past = path.stat().st_mtime - seconds
    os.utime(path, (past, past))


def age_all(directory: Path) -> None:
    for path in directory.glob("*.fits"):
        age(path)


def age_fresh(directory: Path) -> None:
    """Age only the files written in the last 30 s: files aged before keep their mtime (a changed
    mtime makes the sensor re-run their frames)."""
    for path in directory.glob("*.fits"):
        if time.time() - path.stat().st_mtime < 30.0:
            age(path)
