"""Cost of one raw-frames sensor tick against an archive of N already-registered files.

Measures the pieces a tick runs: the directory scan (glob + stat), reading the raw-file registry
from SQLite, listing the instance's partitions and planning, when one new file has arrived among
N registered ones. Prints the figures and writes ``benchmarks/results/sensor_scan.json``.

    .venv/bin/python -m benchmarks.sensor_scan [--files 5000]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import dagster as dg

from benchmarks.results_io import report
from lightcurver_dagster.defs.partitions import frames_partitions
from lightcurver_ops.db.engine import open_science_database
from lightcurver_ops.db.frames import register_raw_files, registered_raw_files
from lightcurver_ops.ingest import plan_ingest, scan_raw_dirs


def _timed(function, repeats: int = 5) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        raw.mkdir()
        for index in range(args.files):
            (raw / f"frame_{index:06d}.fits").write_bytes(b"x")
        scanned = scan_raw_dirs([raw], "*.fits")
        engine = open_science_database(f"sqlite:///{tmp}/database.sqlite3")
        instance = dg.DagsterInstance.ephemeral()
        old = scanned[:-1]
        plan = plan_ingest(old, {}, set(), now_ns=time.time_ns(), settle_seconds=0, max_frames=10**9)
        with engine.begin() as connection:
            register_raw_files(connection, plan.new, registered_mjd=60000.0)
        instance.add_dynamic_partitions(frames_partitions.name, [r.partition_key for r in plan.new])

        scan_s, scanned = _timed(lambda: scan_raw_dirs([raw], "*.fits"))

        def read_registry():
            with engine.connect() as connection:
                return registered_raw_files(connection)

        registry_s, registry = _timed(read_registry)
        partitions_s, known = _timed(lambda: set(instance.get_dynamic_partitions(frames_partitions.name)))
        plan_s, plan = _timed(
            lambda: plan_ingest(
                scanned, registry, known, now_ns=time.time_ns(), settle_seconds=0, max_frames=64
            )
        )
        assert len(plan.new) == 1 and not plan.changed

    figures = {
        "registered_files": args.files - 1,
        "scan_seconds": scan_s,
        "registry_read_seconds": registry_s,
        "instance_partitions_seconds": partitions_s,
        "plan_seconds": plan_s,
        "tick_seconds_total": scan_s + registry_s + partitions_s + plan_s,
    }
    report("sensor_scan", figures)


if __name__ == "__main__":
    main()
