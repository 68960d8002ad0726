"""Time per frame of ``plate_solution`` and ``cutouts`` on simulated 2k x 2k frames.

Science alone (median over frames): plate solving by adapting a reference frame's WCS and by
matching the catalogue, with the WCS error at the frame corners against the simulator's truth;
cutting every reference-star stamp and the ROI with cosmic-ray cleaning and writing the HDF5 file.
Then the Dagster range runs of both assets over all frames on a real instance. Prints the figures
and writes ``benchmarks/results/astrometry_cutouts.json``.

    .venv/bin/python -m benchmarks.astrometry_cutouts [--frames 6] [--size 2048]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import dagster as dg
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from benchmarks.results_io import report
from lightcurver_dagster.definitions import build_definitions
from lightcurver_dagster.defs.partitions import frames_partitions
from lightcurver_dagster.defs.sensors import range_run_tags
from lightcurver_dagster.frame_registry import register_frames
from lightcurver_ops import frames
from lightcurver_ops.catalog import StarSelection, read_catalog_file, select_stars
from lightcurver_ops.config import load_config
from lightcurver_ops.cutouts import write_frame_cutouts
from lightcurver_ops.db.engine import open_science_database
from lightcurver_ops.frame_cutouts import make_frame_cutouts
from lightcurver_ops.plate_solving import ReferenceFrame, solve_frame, source_positions
from lightcurver_ops.simulate import SimulationSpec, simulate_dataset


def _corner_error(wcs_header: str, truth_header: dict, shape: tuple[int, int]) -> float:
    ny, nx = shape
    corners = np.array([[0, 0], [nx - 1, 0], [0, ny - 1], [nx - 1, ny - 1]], float)
    ra, dec = WCS(fits.Header(truth_header)).all_pix2world(corners[:, 0], corners[:, 1], 0)
    x, y = WCS(fits.Header.fromstring(wcs_header)).all_world2pix(ra, dec, 0)
    return float(np.max(np.hypot(x - corners[:, 0], y - corners[:, 1])))


def _science(root: Path, truth) -> dict[str, float]:
    config = load_config(root / "config.yaml")
    calibrated = []
    for frame in truth.frames:
        raw = frames.read_raw_frame(root / "raw" / frame.file_name)
        calibrated.append(
            frames.calibrate_frame(
                raw,
                truth.spec.gain,
                truth.spec.exptime,
                n_boxes=3,
                mask_sources=False,
                threshold=2.0,
                min_area=20,
            )
        )
    reference = ReferenceFrame(
        0, WCS(calibrated[0].header).celestial, *source_positions(calibrated[0].sources)
    )
    catalog = read_catalog_file(config.resolve(config.gaia_catalog_file))
    adapt_config = config.model_copy(
        update={"already_plate_solved": False, "plate_solving_strategy": "adapt_wcs_from_reference"}
    )
    gaia_config = config.model_copy(
        update={"already_plate_solved": False, "plate_solving_strategy": "alternate_gaia_solve"}
    )
    selection = StarSelection.from_config(config)
    stars = [
        dict(zip(row.colnames, row, strict=True))
        for row in select_stars(catalog, selection, selection.disk())
    ]
    times: dict[str, list[float]] = {"adapt": [], "catalog": [], "cutouts": []}
    errors: dict[str, list[float]] = {"adapt": [], "catalog": []}
    for index, (frame, cal) in enumerate(zip(truth.frames, calibrated, strict=True)):
        shape = cal.image.shape
        row = {"id": index, "mjd": frame.mjd, "seeing_pixels": cal.seeing_pixels}
        for name, solve_config in (("adapt", adapt_config), ("catalog", gaia_config)):
            if name == "adapt" and index == 0:
                continue
            start = time.perf_counter()
            result = solve_frame(
                solve_config,
                row,
                cal.header,
                cal.sources,
                shape,
                reference=reference,
                catalog=lambda: catalog,
            )
            times[name].append(time.perf_counter() - start)
            errors[name].append(_corner_error(result.wcs["wcs_header"], frame.wcs_header, shape))
        wcs = WCS(cal.header).celestial
        frame_row = {
            "exptime": truth.spec.exptime,
            "gain": truth.spec.gain,
            "mjd": frame.mjd,
            "background_rms_electron_per_second": cal.sky_rms,
            "sky_level_electron_per_second": cal.sky_level,
        }
        start = time.perf_counter()
        result = make_frame_cutouts(config, frame_row, cal.image.astype(float), cal.header, wcs, stars)
        with tempfile.TemporaryDirectory() as tmp:
            write_frame_cutouts(Path(tmp) / "c.h5", result.stamps, {"frame": index}, frame_shape=shape)
        times["cutouts"].append(time.perf_counter() - start)
    figures = {
        f"{name}_seconds_per_frame_median": statistics.median(values) for name, values in times.items()
    }
    figures |= {f"{name}_worst_corner_error_pixels": max(values) for name, values in errors.items()}
    figures["reference_stars"] = len(stars)
    return figures


def _dagster(root: Path) -> dict[str, float]:
    config_path = root / "config.yaml"
    config = load_config(config_path)
    engine = open_science_database(config.science_database_url)
    definitions = build_definitions(str(config_path))
    job = definitions.resolve_implicit_global_asset_job_def()
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    figures = {}
    with dg.instance_for_test() as instance:
        plan = register_frames(instance, engine, config, settle_seconds=0, max_frames=10_000)
        keys = [record.partition_key for record in plan.new]
        instance.add_dynamic_partitions(frames_partitions.name, keys)
        tags = range_run_tags(keys[0], keys[-1])
        for assets, tagged in (
            (["calibrated_frame"], True),
            (["plate_solution"], True),
            (["footprints", "reference_stars"], False),
            (["cutouts"], True),
        ):
            start = time.perf_counter()
            result = job.execute_in_process(
                instance=instance,
                asset_selection=[dg.AssetKey(a) for a in assets],
                tags=tags if tagged else {},
                run_config=quiet,
            )
            assert result.success
            elapsed = time.perf_counter() - start
            figures[f"dagster_{'_'.join(assets)}_seconds" + ("_per_frame" if tagged else "")] = (
                elapsed / len(keys) if tagged else elapsed
            )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--size", type=int, default=2048)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        truth = simulate_dataset(
            root, SimulationSpec(n_frames=args.frames, nx=args.size, ny=args.size, seed=11)
        )
        figures = {"frame_size": f"{args.size}x{args.size}", "frames": args.frames}
        figures |= _science(root, truth)
        figures |= _dagster(root)
    report("astrometry_cutouts", figures)


if __name__ == "__main__":
    main()
