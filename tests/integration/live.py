"""A simulated telescope feeding a running Dagster deployment, and what the tests read back from it.

The deployment under test (``dagster dev``, or the production processes) runs with the sensor and
automation intervals shortened; the test only drops raw files and waits, as an observer would.
"""

import csv
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from sqlalchemy import select

from lightcurver_dagster.defs.automation import AUTOMATION_INTERVAL_ENV_VAR, BASELINE_CRON_ENV_VAR
from lightcurver_dagster.defs.sensors import SENSOR_INTERVAL_ENV_VAR
from lightcurver_ops import paths
from lightcurver_ops.config import CONFIG_ENV_VAR, LightcurverConfig, load_config
from lightcurver_ops.db.engine import open_science_database
from lightcurver_ops.db.schema import frames
from lightcurver_ops.simulate import SimulationSpec, simulate_dataset
from tests.dagster.pipeline import update_config
from tests.integration.processes import log_tails, wait_until

WAVES = (4, 2)
"""Frames in the first and the second night."""
FRAME_PRODUCTS = ("calibrated_frame", "psf_model", "normalization_coefficient", "roi_fluxes")
"""Per-frame assets every frame of every wave must reach."""
PER_FRAME_ASSETS = (
    "calibrated_frame",
    "plate_solution",
    "cutouts",
    "psf_model",
    "star_fluxes",
    "normalization_coefficient",
    "zeropoint",
    "roi_fluxes",
)
ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
"""Statuses of a run not yet finished."""
WAVE_TIMEOUT_S = 900.0
NEVER_CRON = "0 0 1 1 *"
"""Baseline cron of the tests: the baselines are built when missing, never rebuilt mid-test."""


@dataclass
class Telescope:
    """Simulated frames kept in ``staging/`` and copied into the raw directory one night at a time."""

    root: Path
    waves: list[list[str]]
    config: LightcurverConfig = field(init=False)

    def __post_init__(self) -> None:
        self.config = load_config(self.config_path)

    @classmethod
    def simulate(cls, root: Path, seed: int = 5) -> "Telescope":
        spec = SimulationSpec(
            n_frames=sum(WAVES), nx=512, ny=512, seed=seed, star_density=10.0, exptime=1200.0
        )
        simulate_dataset(root, spec)
        update_config(
            root / "config.yaml",
            stars_to_use_psf=6,
            stars_to_use_norm=30,
            ingest_settle_seconds=1.0,
            roi_deconv_all_iters=400,
        )
        staging = root / "staging"
        staging.mkdir()
        names = sorted(path.name for path in (root / "raw").glob("*.fits"))
        for name in names:
            (root / "raw" / name).rename(staging / name)
        return cls(root, [names[: WAVES[0]], names[WAVES[0] :]])

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    def environment(self) -> dict[str, str]:
        """What the Dagster processes need: the config, short sensor intervals, a quiet cron."""
        return {
            CONFIG_ENV_VAR: str(self.config_path),
            SENSOR_INTERVAL_ENV_VAR: "3",
            AUTOMATION_INTERVAL_ENV_VAR: "3",
            BASELINE_CRON_ENV_VAR: NEVER_CRON,
            "OMP_NUM_THREADS": "1",
        }

    def drop(self, wave: int) -> list[str]:
        """Copy a night's frames into the raw directory (fresh files); returns their partition keys."""
        raw = self.config.raw_dirs[0]
        for name in self.waves[wave]:
            shutil.copyfile(self.root / "staging" / name, Path(raw) / name)
        return [Path(name).stem for name in self.waves[wave]]


def failed_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return list(instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE])))


def light_curve_frames(config: LightcurverConfig) -> set[str]:
    """Partition keys of the frames in the per-epoch light-curve CSV."""
    path = config.workdir / paths.LIGHT_CURVES_DIR / f"{config.roi_name}_photometry_per_epoch.csv"
    if not path.exists():
        return set()
    with path.open() as f:
        ids = {int(row["frame_id"]) for row in csv.DictReader(f)}
    engine = open_science_database(config.science_database_url)
    with engine.connect() as connection:
        rows = connection.execute(select(frames.c.id, frames.c.partition_key)).all()
    return {row.partition_key for row in rows if row.id in ids}


def wait_for_frames(
    instance: dg.DagsterInstance, config: LightcurverConfig, keys: Sequence[str], log_dir: Path
) -> float:
    """Wait until every frame of ``keys`` has every product and is in the light curves; returns the
    seconds it took. Any failed run fails the wait at once, with the processes' logs."""
    start = time.monotonic()

    def done() -> bool:
        failed = failed_runs(instance)
        assert not failed, f"failed runs {[r.run_id for r in failed]}\n{log_tails(log_dir)}"
        for name in FRAME_PRODUCTS:
            if not set(keys) <= instance.get_materialized_partitions(dg.AssetKey(name)):
                return False
        return set(keys) <= light_curve_frames(config)

    try:
        wait_until(done, f"frames {list(keys)} to reach the light curves", WAVE_TIMEOUT_S, interval=3.0)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{progress(instance, config, keys)}\n{log_tails(log_dir)}") from None
    return time.monotonic() - start


def progress(instance: dg.DagsterInstance, config: LightcurverConfig, keys: Sequence[str]) -> str:
    """Where the frames ``keys`` stand, for a timeout's message: the products each one lacks, whether
    it is in the light curves, and the runs not yet finished."""
    lines = []
    for name in FRAME_PRODUCTS:
        missing = set(keys) - instance.get_materialized_partitions(dg.AssetKey(name))
        lines.append(f"{name}: missing {sorted(missing)}")
    lines.append(f"not in the light curves: {sorted(set(keys) - light_curve_frames(config))}")
    for run in instance.get_runs(dg.RunsFilter(statuses=ACTIVE)):
        assets = sorted(key.to_user_string() for key in run.asset_selection or ())
        lines.append(f"run {run.run_id} {run.status.value}: {assets}")
    return "\n".join(lines)


def last_event_id(instance: dg.DagsterInstance) -> int:
    return instance.event_log_storage.get_maximum_record_id() or 0


def materialized_since(
    instance: dg.DagsterInstance, after: int, assets: Iterable[str] = PER_FRAME_ASSETS
) -> dict[str, list[str]]:
    """Partitions materialised after event ``after``, per asset (with repeats)."""
    found = {}
    for name in assets:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(name), after_storage_id=after), limit=10_000
        ).records
        found[name] = [record.partition_key for record in records]
    return found
