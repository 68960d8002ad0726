"""``lightcurver-dagster``: simulate a data set, run the pipeline headless, or open the web UI.

``run`` and ``demo`` materialise every asset in-process with the same asset code the UI and the
daemon run, recording the runs in ``<workdir>/dagster_home`` so that ``ui`` shows them afterwards.
"""

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

DAGSTER_HOME_DIRNAME = "dagster_home"
DAGSTER_YAML = "telemetry:\n  enabled: false\n"
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def _prepare_environment(config_path: Path) -> Path:
    """Point ``LIGHTCURVER_CONFIG`` and ``DAGSTER_HOME`` at the config and its work directory."""
    from lightcurver_ops.config import CONFIG_ENV_VAR, load_config

    config = load_config(config_path)
    home = config.require_workdir() / DAGSTER_HOME_DIRNAME
    home.mkdir(exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(DAGSTER_YAML)
    os.environ[CONFIG_ENV_VAR] = str(config_path.resolve())
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _contiguous_ranges(ordered: Sequence[str], wanted: set[str], size: int) -> list[tuple[str, str]]:
    """Runs of consecutive partitions (in registration order) that are wanted, at most ``size`` long."""
    ranges: list[list[str]] = []
    previous = -2
    for index, key in enumerate(ordered):
        if key not in wanted:
            continue
        if index != previous + 1 or len(ranges[-1]) >= size:
            ranges.append([])
        ranges[-1].append(key)
        previous = index
    return [(keys[0], keys[-1]) for keys in ranges]


def _waves(graph) -> list[tuple[bool, list]]:
    """Asset keys in dependency order, grouped into consecutive per-frame and all-frames waves."""
    waves: list[tuple[bool, list]] = []
    for level in graph.toposorted_asset_keys_by_level:
        for partitioned in (True, False):
            keys = sorted(
                (k for k in level if (graph.get(k).partitions_def is not None) == partitioned), key=str
            )
            if not keys:
                continue
            if waves and waves[-1][0] == partitioned:
                waves[-1][1].extend(keys)
            else:
                waves.append((partitioned, keys))
    return waves


def run_pipeline(config_path: Path, batch_size: int = 64) -> int:
    """Register every raw frame and materialise all assets in-process; returns the exit status.

    Assets run in waves: per-frame assets over the frames that need them (contiguous ranges, one
    run each), then the all-frames assets that depend on them, and so on. A frame is processed by
    a per-frame wave when one of the wave's assets is missing for it, when its raw file changed,
    or when an earlier wave of this invocation re-processed it; every frame of a per-frame asset that
    reads a baseline (an all-frames asset tagged ``BASELINE_TAG``) rebuilt by this invocation.
    All-frames assets run when a frame was processed by this invocation or when they are missing.
    """
    _prepare_environment(config_path)

    import dagster as dg

    from lightcurver_dagster.definitions import build_definitions
    from lightcurver_dagster.defs.decorators import BASELINE_TAG
    from lightcurver_dagster.defs.partitions import frames_partitions
    from lightcurver_dagster.defs.sensors import range_run_tags
    from lightcurver_dagster.frame_registry import register_frames
    from lightcurver_ops import paths
    from lightcurver_ops.config import load_config
    from lightcurver_ops.db.engine import open_science_database
    from lightcurver_ops.reports import frame_summary

    config = load_config(config_path)
    engine = open_science_database(config.science_database_url)
    definitions = build_definitions(str(config_path.resolve()))
    instance = dg.DagsterInstance.get()

    rerun: set[str] = set()
    while True:
        plan = register_frames(instance, engine, config, settle_seconds=0.0, max_frames=1000)
        if not plan.new and not plan.changed:
            break
        instance.add_dynamic_partitions(frames_partitions.name, [r.partition_key for r in plan.new])
        rerun.update(r.partition_key for r in plan.changed)
    ordered = instance.get_dynamic_partitions(frames_partitions.name)
    print(f"{len(ordered)} frames registered", flush=True)

    job = definitions.resolve_implicit_global_asset_job_def()
    graph = definitions.resolve_asset_graph()
    rebuilt_baselines: set = set()
    for partitioned, keys in _waves(graph):
        names = ", ".join(k.to_user_string() for k in keys)
        if partitioned:
            for key in keys:
                rerun |= set(ordered) - instance.get_materialized_partitions(key)
                if graph.get(key).parent_keys & rebuilt_baselines:
                    rerun |= set(ordered)  # a new baseline re-runs its per-frame increments
            ranges = _contiguous_ranges(ordered, rerun, batch_size)
            print(f"{names}: {len(rerun)} frames to process", flush=True)
            runs = [range_run_tags(first, last) for first, last in ranges]
        else:
            missing = [key for key in keys if instance.get_latest_materialization_event(key) is None]
            if not rerun and not missing:
                print(f"{names}: up to date", flush=True)
                continue
            print(f"{names}", flush=True)
            runs = [{}]
            rebuilt_baselines |= {key for key in keys if BASELINE_TAG in graph.get(key).tags}
        for tags in runs:
            result = job.execute_in_process(
                instance=instance,
                asset_selection=keys,
                tags=tags,
                run_config=QUIET_RUN_CONFIG,
                raise_on_error=False,
            )
            if not result.success:
                print(
                    f"run {result.run_id} failed; see `lightcurver-dagster ui {config_path}`", file=sys.stderr
                )
                return 1

    print(frame_summary(engine))
    print(f"products in {config.workdir}: light curves in {config.workdir / paths.LIGHT_CURVES_DIR}")
    print(f"database at {config.science_database_url}")
    return 0


def simulate(out_dir: Path, n_frames: int, size: int, seed: int) -> Path:
    """Write a simulated data set; returns the path of its ``config.yaml``."""
    from lightcurver_ops.simulate import SimulationSpec, simulate_dataset

    spec = SimulationSpec(n_frames=n_frames, nx=size, ny=size, seed=seed)
    simulate_dataset(out_dir.resolve(), spec)
    return out_dir.resolve() / "config.yaml"


def open_ui(config_path: Path, host: str, port: int) -> None:
    """Replace this process by ``dagster dev`` on the work directory's Dagster instance."""
    _prepare_environment(config_path)
    command = [sys.executable, "-m", "dagster", "dev", "-m", "lightcurver_dagster.definitions"]
    os.execv(sys.executable, [*command, "-h", host, "-p", str(port)])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lightcurver-dagster", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    sim = commands.add_parser("simulate", help="write a simulated data set with ground truth")
    sim.add_argument("out", type=Path)
    sim.add_argument("--frames", type=int, default=12)
    sim.add_argument("--size", type=int, default=1024, help="frame side, pixels")
    sim.add_argument("--seed", type=int, default=1)

    demo = commands.add_parser("demo", help="simulate a data set and run the pipeline on it")
    demo.add_argument("--workdir", type=Path, default=Path("demo_workdir"))
    demo.add_argument("--frames", type=int, default=12)
    demo.add_argument("--size", type=int, default=1024, help="frame side, pixels")
    demo.add_argument("--seed", type=int, default=1)

    run = commands.add_parser("run", help="materialise every asset headless, in-process")
    run.add_argument("config", type=Path)
    run.add_argument("--batch", type=int, default=64, help="frames per run")

    ui = commands.add_parser("ui", help="open the Dagster web UI (dagster dev) on this work directory")
    ui.add_argument("config", type=Path)
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    warnings.filterwarnings("ignore", message=".*(beta|preview).*", category=Warning)
    from lightcurver_ops.errors import LightcurverError

    try:
        if args.command == "simulate":
            print(f"simulated data set: config at {simulate(args.out, args.frames, args.size, args.seed)}")
            return 0
        if args.command == "demo":
            config_path = simulate(args.workdir, args.frames, args.size, args.seed)
            print(f"simulated {args.frames} frames in {args.workdir.resolve()}")
            return run_pipeline(config_path)
        if args.command == "run":
            return run_pipeline(args.config, args.batch)
        open_ui(args.config, args.host, args.port)
    except LightcurverError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
