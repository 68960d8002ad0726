"""Star fluxes, the normalisation baseline and coefficients on simulated frames, against truth."""

from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from sqlalchemy import func, select

from lightcurver_dagster.defs.all_frames.star_reference_fluxes import SCATTER_CHECK
from lightcurver_ops import paths
from lightcurver_ops.cutouts import read_frame_cutouts
from lightcurver_ops.db.schema import (
    absolute_zeropoints,
    catalog_star_photometry,
    normalization_coefficients,
    star_flux_in_frame,
    star_reference_fluxes,
)
from lightcurver_ops.simulate import SimulationSpec, psf_stamp
from tests.dagster.pipeline import TO_NORMALISATION, Pipeline

N_FRAMES = 8


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Pipeline:
    # every star with a stamp is a candidate, the galaxy (large excess noise) included
    pipeline = Pipeline.simulated(
        tmp_path_factory.mktemp("photometry") / "sim",
        SimulationSpec(n_frames=N_FRAMES + 1, nx=512, ny=512, seed=11, star_density=10.0, exptime=1200.0),
        stars_to_use_psf=6,
        stars_to_use_norm=60,
        star_max_astrometric_excess_noise=None,
    )
    pipeline.hold_back_last_frames()  # it arrives after the baseline exists
    pipeline.ingest()
    pipeline.materialize_each("footprints", "reference_stars", "cutouts", "psf_model", "star_fluxes")
    return pipeline


def sources_by_gaia_id(pipeline: Pipeline) -> dict[str, object]:
    return {str(source.source_id): source for source in pipeline.truth.sources}


def captured_share(pipeline: Pipeline, frame_index: int, key: str) -> dict[str, float]:
    """Share of each star's true PSF inside its stamp (what a PSF model normalised on the stamp sees)."""
    frame = pipeline.truth.frames[frame_index]
    stamps, _, _ = read_frame_cutouts(pipeline.config.workdir / paths.cutouts_relpath(key))
    shares = {}
    for star, stamp in stamps.items():
        x, y = stamp.position
        ix, iy = round(x), round(y)
        half = stamp.size // 2
        window = psf_stamp(frame, x - ix, y - iy, half_size=half + 1)
        # stamp pixel [j, i] is frame pixel origin + (i, j); the star's nearest pixel is [half, half]
        start = 1 + half - (ix - stamp.origin[0]), 1 + half - (iy - stamp.origin[1])
        shares[star] = float(window[start[1] : start[1] + stamp.size, start[0] : start[0] + stamp.size].sum())
    return shares


def flux_scales(pipeline: Pipeline) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each frame's true flux scale of the constant stars, the share of the true PSF in the stamps,
    and the stars' pulls about the scale.

    The frame's flux scale is the weighted mean over its constant stars of measured flux over true
    flux above the atmosphere: the transparency times the share of the flux the frame's PSF model
    captures. The pulls are the stars' deviations from it in reported uncertainties.
    """
    rows = pipeline.rows()
    sources = sources_by_gaia_id(pipeline)
    with pipeline.engine.connect() as connection:
        fluxes = [dict(r) for r in connection.execute(select(star_flux_in_frame)).mappings()]
    pulls, scales, stamp_shares = [], [], []
    for index, frame in enumerate(pipeline.truth.frames[:N_FRAMES]):
        key = Path(frame.file_name).stem
        shares = captured_share(pipeline, index, key)
        ratio, error, share = [], [], []
        for row in (r for r in fluxes if r["frame_id"] == rows[key]["id"]):
            source = sources[row["star_gaia_id"]]
            if source.kind != "star":
                continue
            true_flux = source.flux_e_per_s_per_frame[index]
            ratio.append(row["flux"] / true_flux)
            error.append(row["flux_uncertainty"] / true_flux)
            share.append(shares[row["star_gaia_id"]])
        ratio, error = np.asarray(ratio), np.asarray(error)
        scale = np.sum(ratio / error**2) / np.sum(1 / error**2)
        pulls.extend((ratio - scale) / error)
        scales.append(scale)
        stamp_shares.append(np.mean(share))
    return np.asarray(scales), np.asarray(stamp_shares), np.asarray(pulls)


def test_star_fluxes_match_truth_with_honest_uncertainties(pipeline: Pipeline):
    scales, shares, pulls = flux_scales(pipeline)
    assert len(pulls) > 20 * N_FRAMES
    assert 0.8 <= np.std(pulls) <= 1.3, np.std(pulls)
    transparency = np.array([frame.transparency for frame in pipeline.truth.frames[:N_FRAMES]])
    # the PSF model holds the flux of the true PSF inside the stamp
    assert np.max(np.abs(scales / (transparency * shares) - 1)) < 0.03, scales / (transparency * shares)


def test_baseline_rejects_the_variable_and_coefficients_follow_transparency(pipeline: Pipeline):
    result = pipeline.materialize("star_reference_fluxes")
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == SCATTER_CHECK
    sources = sources_by_gaia_id(pipeline)
    with pipeline.engine.connect() as connection:
        baseline = {r.star_gaia_id: r for r in connection.execute(select(star_reference_fluxes))}
    kinds = {sources[star].kind: row for star, row in baseline.items() if sources[star].kind != "star"}
    assert kinds["variable"].rejected == 1
    assert sum(row.rejected for star, row in baseline.items() if sources[star].kind == "star") <= 1

    assert pipeline.materialize("normalization_coefficient").success
    rows = pipeline.rows()
    with pipeline.engine.connect() as connection:
        coefficients = {r.frame_id: r for r in connection.execute(select(normalization_coefficients))}
    assert len(coefficients) == N_FRAMES
    measured = np.array(
        [
            coefficients[rows[Path(f.file_name).stem]["id"]].coefficient
            for f in pipeline.truth.frames[:N_FRAMES]
        ]
    )
    ratio = np.log(measured / flux_scales(pipeline)[0])
    rms_mmag = 1085.7 * np.std(ratio - ratio.mean())
    print(f"coefficients against the stars' true flux scale: {rms_mmag:.2f} mmag RMS")
    assert rms_mmag <= 2.0, rms_mmag
    assert (pipeline.config.workdir / paths.NORMALIZATION_PLOT).stat().st_size > 10_000

    # the constant stars divided by the coefficients scatter about their reference fluxes like their
    # photon noise
    with pipeline.engine.connect() as connection:
        fluxes = [dict(r) for r in connection.execute(select(star_flux_in_frame)).mappings()]
    pulls = [
        (
            row["flux"] / coefficients[row["frame_id"]].coefficient
            - baseline[row["star_gaia_id"]].reference_flux
        )
        / (row["flux_uncertainty"] / coefficients[row["frame_id"]].coefficient)
        for row in fluxes
        if row["frame_id"] in coefficients
        and row["star_gaia_id"] in baseline
        and sources[row["star_gaia_id"]].kind == "star"
        and not baseline[row["star_gaia_id"]].rejected
    ]
    print(f"normalised constant stars: scatter {np.std(pulls):.2f} x their photon noise")
    assert len(pulls) > 20 * N_FRAMES
    assert np.std(pulls) <= 1.2, np.std(pulls)


def test_a_late_frame_runs_alone_and_matches_a_rebuilt_baseline(pipeline: Pipeline):
    key = pipeline.release_late_frame()
    before = pipeline.instance.get_materialized_partitions(dg.AssetKey("psf_model"))
    pipeline.ingest()
    for name in ("cutouts", "psf_model", "star_fluxes", "normalization_coefficient"):
        assert pipeline.materialize_partition(name, key).success
    after = pipeline.instance.get_materialized_partitions(dg.AssetKey("psf_model"))
    assert after - before == {key}
    frame_id = pipeline.rows()[key]["id"]

    def coefficient() -> float:
        with pipeline.engine.connect() as connection:
            return connection.execute(
                select(normalization_coefficients.c.coefficient).where(
                    normalization_coefficients.c.frame_id == frame_id
                )
            ).scalar_one()

    incremental = coefficient()
    assert pipeline.materialize("star_reference_fluxes").success
    assert pipeline.materialize_partition("normalization_coefficient", key).success
    assert abs(2.5 * np.log10(incremental / coefficient())) < 1e-3
    with pipeline.engine.connect() as connection:
        n = connection.execute(select(func.count()).select_from(normalization_coefficients)).scalar_one()
    assert n == N_FRAMES + 1


def test_zero_points_match_the_simulator(pipeline: Pipeline):
    assert pipeline.materialize("zeropoint").success
    rows = pipeline.rows()
    with pipeline.engine.connect() as connection:
        stored = {r.frame_id: r for r in connection.execute(select(absolute_zeropoints))}
        cached = connection.execute(select(func.count()).select_from(catalog_star_photometry)).scalar_one()
    assert cached > 0
    errors = []
    for frame in pipeline.truth.frames[:N_FRAMES]:
        row = stored[rows[Path(frame.file_name).stem]["id"]]
        assert row.source_catalog == "gaia" and row.zeropoint_uncertainty < 0.05
        errors.append(row.zeropoint - frame.zero_point)
    print(f"zero points minus the simulator's: {np.round(errors, 4)} mag")
    assert np.max(np.abs(errors)) <= 0.03, errors


def test_with_psfs_inside_the_stamps_coefficients_follow_the_transparency(tmp_path: Path):
    """Compact PSFs (Moffat index 6-8, no wing) lie inside the stamps: the flux scale is then the
    transparency itself, provided the PSF model holds the whole flux under the right sky.

    A PSF model normalised on its stamp takes in whatever sky offset lies under its stars: 1e-4 of
    the sky shifts it by about 1 mmag. sep's 3 x 3 mesh interpolates this data set's sky with errors
    of that size at the stars (RMS over 8 frames at 4 800 s: 3.8 mmag, growing with depth); the
    polynomial sky fitted to the source-free pixels (the default ``background_model``) is 3-10
    times closer there (1.0 mmag). The exposure is long (4 800 s) so that the photon noise of
    the coefficients (0.5 mmag each) leaves the systematics visible; at 1 200 s both sky models
    give 1.9 mmag, the coefficients' errors (1.0 mmag) plus the PSF model's own noise."""
    exptime = 4800.0
    spec = SimulationSpec(
        n_frames=N_FRAMES,
        nx=512,
        ny=512,
        seed=12,
        star_density=10.0,
        exptime=exptime,
        saturation_adu=60000.0 * exptime / 1200.0,  # the same stars saturate as at 1 200 s
        moffat_beta_range=(6.0, 8.0),
        wing_fraction_range=(0.0, 0.0),
    )
    pipeline = Pipeline.simulated(
        tmp_path / "sim",
        spec,
        stars_to_use_psf=15,
        stars_to_use_norm=60,
    )
    truth = pipeline.truth
    pipeline.ingest()
    pipeline.materialize_each(*TO_NORMALISATION)
    rows = pipeline.rows()
    with pipeline.engine.connect() as connection:
        coefficients = {
            r.frame_id: r.coefficient for r in connection.execute(select(normalization_coefficients))
        }
    measured = np.array([coefficients[rows[Path(f.file_name).stem]["id"]] for f in truth.frames])
    ratio = np.log(measured / np.array([f.transparency for f in truth.frames]))
    rms_mmag = 1085.7 * np.std(ratio - ratio.mean())
    print(f"coefficients against the transparency: {rms_mmag:.2f} mmag RMS")
    assert rms_mmag <= 2.0, rms_mmag
