"""Many small frames through the per-frame chain in Dagster: throughput, Dagster's own overhead,
memory and storage.

Simulates ``--frames`` small frames (1 000 by default), then drives a temporary Dagster instance on
disk (SQLite storage, as ``dagster dev`` keeps it) as the daemon would: the raw-frames sensor ticks,
registering at most ``ingest_max_frames_per_run`` frames per tick and launching one range run of
``per_frame_job`` (``calibrated_frame``, ``plate_solution``) over them, until every frame is in.
With ``--psf``, the chain goes on to ``footprints`` and ``reference_stars`` once, then ``cutouts``,
``psf_model`` and ``star_fluxes`` in range runs of the same size.

Figures: frames per minute; per frame, the wall time of the runs, the time inside the steps
(STEP_START to STEP_SUCCESS: the science plus its writes) and the rest (run set-up and teardown,
Dagster's bookkeeping); event-log records per frame; peak memory; the size of Dagster's storage
and of the science database.

    .venv/bin/python -m benchmarks.scale [--frames 1000] [--size 256] [--psf]
"""

import argparse
import resource
import tempfile
import time
from pathlib import Path

import dagster as dg

from benchmarks.results_io import report
from lightcurver_dagster.defs.partitions import frames_partitions
from lightcurver_dagster.defs.sensors import range_run_tags
from lightcurver_ops.simulate import SimulationSpec
from tests.dagster.pipeline import Pipeline, age_fresh

PSF_CHAIN = ("cutouts", "psf_model", "star_fluxes")


def step_seconds(instance: dg.DagsterInstance, run_id: str) -> float:
    """Seconds between each step's start and its success, summed over the run's steps."""
    started: dict[str, float] = {}
    total = 0.0
    for record in instance.all_logs(run_id):
        if not record.is_dagster_event:
            continue
        kind = record.dagster_event.event_type_value
        if kind == "STEP_START":
            started[record.step_key] = record.timestamp
        elif kind == "STEP_SUCCESS":
            total += record.timestamp - started.pop(record.step_key)
    return total


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--size", type=int, default=256, help="frame side, pixels")
    parser.add_argument("--psf", action="store_true", help="also cutouts, PSF and star fluxes")
    args = parser.parse_args()
    figures: dict[str, float | int | str] = {"frames": args.frames, "frame_size": args.size}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "dagster_home"
        home.mkdir()
        instance = dg.DagsterInstance.local_temp(str(home))
        spec = SimulationSpec(n_frames=args.frames, nx=args.size, ny=args.size, seed=4)
        start = time.perf_counter()
        pipeline = Pipeline.simulated(Path(tmp) / "sim", spec, instance, stars_to_use_psf=5)
        figures["simulate_s"] = time.perf_counter() - start

        runs: list[dg.ExecuteInProcessResult] = []
        start = time.perf_counter()
        while len(instance.get_dynamic_partitions(frames_partitions.name)) < args.frames:
            age_fresh(pipeline.raw)
            runs += pipeline.execute(pipeline.tick())
        if args.psf:
            pipeline.materialize_each("footprints", "reference_stars")
            keys = instance.get_dynamic_partitions(frames_partitions.name)
            size = pipeline.config.ingest_max_frames_per_run
            job = pipeline.definitions.resolve_implicit_global_asset_job_def()
            for first in range(0, len(keys), size):
                chunk = keys[first : first + size]
                runs.append(
                    job.execute_in_process(
                        instance=instance,
                        asset_selection=[dg.AssetKey(name) for name in PSF_CHAIN],
                        tags=range_run_tags(chunk[0], chunk[-1]),
                    )
                )
        wall = time.perf_counter() - start
        assert all(run.success for run in runs)
        inside = sum(step_seconds(instance, run.run_id) for run in runs)
        records = sum(len(instance.all_logs(run.run_id)) for run in runs)
        figures |= {
            "runs": len(runs),
            "frames_per_minute": 60 * args.frames / wall,
            "wall_per_frame_s": wall / args.frames,
            "in_steps_per_frame_s": inside / args.frames,
            "outside_steps_per_frame_s": (wall - inside) / args.frames,
            "event_records_per_frame": records / args.frames,
            "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "dagster_storage_mb": directory_bytes(home) / 2**20,
            "science_database_mb": sum(
                path.stat().st_size for path in pipeline.config.workdir.glob("database.sqlite3*")
            )
            / 2**20,
        }
    report("scale" + ("_psf" if args.psf else ""), figures)


if __name__ == "__main__":
    main()
