"""Time per frame of ``calibrated_frame`` on simulated 2k x 2k frames.

Two figures: the science of one frame alone (``import_frame``: read, e-/s, sky, sources, seeing,
ephemeris, write; median over frames and repeats) and a Dagster range run over all frames on a
real instance (sensor registration excluded), whose per-frame cost includes Dagster's event-log
writes. Peak resident memory of the process is reported too. Prints the figures and writes
``benchmarks/results/calibrated_frame.json``.

    .venv/bin/python -m benchmarks.calibrated_frame [--frames 6] [--size 2048] [--repeats 3]
"""

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import dagster as dg

from benchmarks.results_io import report
from lightcurver_dagster.definitions import build_definitions
from lightcurver_dagster.defs.partitions import frames_partitions
from lightcurver_dagster.defs.sensors import range_run_tags
from lightcurver_dagster.frame_registry import register_frames
from lightcurver_ops.config import load_config
from lightcurver_ops.db.engine import open_science_database
from lightcurver_ops.files import file_sha256
from lightcurver_ops.frame_import import import_frame
from lightcurver_ops.header import load_header_parser
from lightcurver_ops.simulate import SimulationSpec, simulate_dataset


def _science_seconds(config_path: Path, repeats: int) -> list[float]:
    config = load_config(config_path)
    parser = load_header_parser(config.header_parser_path)
    times = []
    for path in sorted(config.resolved_raw_dirs[0].glob(config.files_match_pattern)):
        for _ in range(repeats):
            start = time.perf_counter()
            result = import_frame(config, parser, path.stem, path, file_sha256(path))
            times.append(time.perf_counter() - start)
            assert not result.eliminated, result.row["comment"]
    return times


def _dagster_seconds(config_path: Path) -> tuple[float, int]:
    config = load_config(config_path)
    engine = open_science_database(config.science_database_url)
    definitions = build_definitions(str(config_path))
    with dg.instance_for_test() as instance:
        plan = register_frames(instance, engine, config, settle_seconds=0, max_frames=10_000)
        keys = [record.partition_key for record in plan.new]
        instance.add_dynamic_partitions(frames_partitions.name, keys)
        start = time.perf_counter()
        result = definitions.resolve_job_def("per_frame_job").execute_in_process(
            instance=instance,
            tags=range_run_tags(keys[0], keys[-1]),
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
        elapsed = time.perf_counter() - start
    assert result.success
    return elapsed, len(keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        start = time.perf_counter()
        simulate_dataset(root, SimulationSpec(n_frames=args.frames, nx=args.size, ny=args.size, seed=11))
        simulate_seconds = time.perf_counter() - start
        science = _science_seconds(root / "config.yaml", args.repeats)
        dagster_total, n_frames = _dagster_seconds(root / "config.yaml")

    figures = {
        "frame_size": f"{args.size}x{args.size}",
        "frames": args.frames,
        "repeats": args.repeats,
        "science_seconds_per_frame_median": statistics.median(science),
        "science_seconds_per_frame_min": min(science),
        "science_seconds_per_frame_max": max(science),
        "dagster_range_run_seconds": dagster_total,
        "dagster_seconds_per_frame": dagster_total / n_frames,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "simulation_seconds_per_frame": simulate_seconds / args.frames,
    }
    report("calibrated_frame", figures)


if __name__ == "__main__":
    main()
