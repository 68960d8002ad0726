"""psf_model over a range of frames: one batched fit, stored per frame, checked against truth."""

from pathlib import Path

import dagster as dg
import h5py
import numpy as np
import pytest
from sqlalchemy import func, select

from lightcurver_dagster.defs.per_frame.psf_model import PSF_CHECK
from lightcurver_ops import paths
from lightcurver_ops.db.schema import psfs, star_flux_in_frame
from lightcurver_ops.simulate import SimulationSpec
from tests.dagster.pipeline import Pipeline


@pytest.fixture
def pipeline(tmp_path: Path) -> Pipeline:
    spec = SimulationSpec(n_frames=3, nx=512, ny=512, seed=7)
    return Pipeline.simulated(tmp_path / "sim", spec, stars_to_use_psf=6)


def test_psf_models_of_a_batch_match_truth_and_are_replaced_on_rerun(pipeline: Pipeline):
    pipeline.ingest()
    for name in ("footprints", "reference_stars", "cutouts"):
        assert pipeline.materialize(name).success
    result = pipeline.materialize("psf_model")
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == PSF_CHECK and check.passed, check.metadata

    rows = pipeline.rows()
    with pipeline.engine.connect() as connection:
        stored = {row.frame_id: row for row in connection.execute(select(psfs))}
    workdir = pipeline.config.workdir
    for frame in pipeline.truth.frames:
        key = Path(frame.file_name).stem
        row = stored[rows[key]["id"]]
        assert 0.8 <= row.chi2 <= 1.3
        assert row.subsampling_factor == 2 and row.psf_ref.count("_") == 6  # psf_ + 6 star names
        with h5py.File(workdir / paths.psf_relpath(key)) as f:
            assert f["narrow_psf"][()].sum() == pytest.approx(1.0, abs=1e-3)
            assert f.attrs["effective_fwhm_pixels"] == pytest.approx(frame.seeing_fwhm_pixels, rel=0.05)
            assert len(f["star_ids"]) == 6
        assert (workdir / paths.psf_plot_relpath(key)).stat().st_size > 10_000

    assert pipeline.materialize("psf_model").success  # a re-fit replaces, never duplicates
    with pipeline.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(psfs)).scalar_one() == len(rows)
    assert pipeline.instance.get_materialized_partitions(dg.AssetKey("psf_model")) == set(rows)


def test_field_distortion_is_fitted_stored_and_used(pipeline: Pipeline):
    pipeline.ingest()
    pipeline.materialize_each("footprints", "reference_stars", "cutouts")
    pipeline.configure(field_distortion=True)
    pipeline.materialize_each("psf_model", "star_fluxes")
    workdir = pipeline.config.workdir
    for key in pipeline.rows():
        with h5py.File(workdir / paths.psf_relpath(key)) as f:
            assert f["distortion"].shape == (3, 2) and np.any(f["distortion"][()] != 0)
    with pipeline.engine.connect() as connection:
        stored = {row.frame_id: row.chi2 for row in connection.execute(select(psfs))}
        assert connection.execute(select(func.count()).select_from(star_flux_in_frame)).scalar_one() > 0
    assert all(0.8 <= chi2 <= 1.3 for chi2 in stored.values())
